"""Startup hook of continulet's ``greenlet`` drop-in; ``continulet-greenlet.pth`` imports it.

It matters where the interpreter ships a greenlet of its own in its standard library: PyPy has
``greenlet.py`` (lib_pypy, 0.4.13) and ``greenlet.egg-info`` there, *before* site-packages on
``sys.path``, hiding our package from ``import`` and our distribution from pip.  There it

1. puts a meta path finder for the one name ``greenlet`` in front of ``sys.meta_path``; it
   returns our ``greenlet`` package (installed next to this file);
2. inserts ``continulet-greenlet-metadata/`` (a copy of our ``.dist-info``, whose RECORD lists
   every installed file, so ``pip uninstall greenlet`` removes them all) just before the
   standard library on ``sys.path``, so pip and ``importlib.metadata`` see
   ``greenlet 3.5.0+continulet...`` first and ``pip install sqlalchemy`` does not fetch greenlet.

Elsewhere (CPython) the finder is installed too but returns None, so the normal import
system runs.  On every interpreter the first ``import greenlet`` warns if another greenlet
distribution shares our site-packages directory (files of two distributions mixed).

Cost at startup: one ``stat`` (plus a list insert on PyPy).  ``python -S`` skips it, as every
``.pth``; ``greenlet.__implementation__ == "continulet"`` shows which greenlet is active.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PKG = os.path.join(_HERE, "greenlet")
_TWIN = os.path.join(_HERE, "continulet-greenlet-metadata")
_OURS = "__OUR_DIST_INFO__"  # replaced at build time with our .dist-info directory name


def _bundled_stdlib_dir():
    """The standard library directory if it holds a greenlet of its own, else None."""
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    for name in ("greenlet.py", os.path.join("greenlet", "__init__.py")):
        if os.path.exists(os.path.join(stdlib, name)):
            return stdlib
    return None


def _check_mixed():
    """Warn if another greenlet distribution's files share our directory (never silently)."""
    try:
        names = os.listdir(_HERE)
        pkg = os.listdir(_PKG)
    except OSError:
        return
    others = sorted(
        n for n in names
        if n.lower().startswith("greenlet-") and n.endswith((".dist-info", ".egg-info")) and n != _OURS
    )
    binaries = sorted(n for n in pkg if n.endswith((".so", ".pyd", ".h")))
    if others or binaries:
        import warnings

        warnings.warn(
            "continulet's greenlet drop-in (%s) shares %s with another greenlet (%s): their "
            "files are mixed.  To keep continulet's: pip install --force-reinstall --no-deps "
            "<continulet's greenlet wheel or packaging/greenlet>; to return to the real greenlet: "
            "pip uninstall greenlet (repeat until pip says it is not installed), then "
            "pip install greenlet." % (_OURS[: -len(".dist-info")], _HERE, ", ".join(others + binaries)),
            RuntimeWarning,
            stacklevel=3,
        )


class ContinuletGreenletFinder:
    """``sys.meta_path`` entry for the top-level name ``greenlet`` only."""

    shadowed = False
    checked = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "greenlet" or path is not None:
            return None
        if not cls.checked:
            cls.checked = True
            _check_mixed()
        if not cls.shadowed or not os.path.exists(os.path.join(_PKG, "__init__.py")):
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(
            "greenlet", os.path.join(_PKG, "__init__.py"), submodule_search_locations=[_PKG]
        )


def _install():
    if any(getattr(f, "__name__", None) == ContinuletGreenletFinder.__name__ for f in sys.meta_path):
        return
    stdlib = _bundled_stdlib_dir()
    if stdlib is not None:
        ContinuletGreenletFinder.shadowed = True
        if os.path.isdir(_TWIN) and _TWIN not in sys.path:
            norm = [os.path.normcase(os.path.abspath(p or ".")) for p in sys.path]
            key = os.path.normcase(stdlib)
            sys.path.insert(norm.index(key) if key in norm else 0, _TWIN)
    sys.meta_path.insert(0, ContinuletGreenletFinder)


_install()
