"""continulet: Stackless-style tasklets and channels, and greenlets, on a Rust switching core.

The importable names users care about are PyPy's: ``_continuation``, ``greenlet`` and
``stackless``.  This package holds what sits behind them on CPython: the native extension
(``continulet._native``) and the one compatibility seam (``continulet._compat``) through which
the pure-Python layer reaches interpreter internals on both CPython and PyPy.
"""

__version__ = "0.1.0"
