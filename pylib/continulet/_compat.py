"""The one seam between the pure-Python layer and the interpreter.

``greenlet`` and ``stackless`` need three things that pure Python cannot do portably:
normalising an exception triple, and reading / replacing the thread's *current*
``contextvars.Context`` object (not a copy).  PyPy offers them in ``__pypy__``; on CPython our
native extension (``continulet._native``) does.  Nothing else in ``pylib`` may reach for
interpreter specifics.

Exports:
  ``IS_PYPY``
  ``normalize_exc(typ, val=None, tb=None)`` -> exception instance (with ``tb`` attached)
  ``get_contextvar_context()`` -> the current ``Context`` or ``None``
  ``set_contextvar_context(ctx)`` -> make ``ctx`` (a ``Context`` or ``None``) current
  ``native`` -> the native extension module on CPython, ``None`` on PyPy
  ``native_part(name)`` -> ``native`` if it has ``name`` and ``CONTINULET_PURE`` is not set
      (the native bases and fast paths of ``greenlet`` and ``stackless``), else ``None``
  ``suspended_frame(cont)`` -> top frame of the context stored in ``cont`` (or ``None``)
  ``owned_by_layer(cont)`` -> tell the interpreter that ``greenlet``/``stackless`` kill ``cont``
      themselves when it becomes garbage (CPython would otherwise unwind it with
      ``GeneratorExit``; PyPy frees garbage continulets without unwinding them: a no-op)
  ``killed_by_layer(cont)`` -> the same, except that CPython's collector is still shown the
      frames of the context ``cont`` stores, so that a cycle through them is found (a
      ``stackless`` tasklet's, killed by the tasklet's finalizer; PyPy: a no-op)
  ``gc_collecting()`` -> whether the cyclic collector is running (a finalizer called by it
      must not switch; PyPy runs finalizers outside its collector: always False)
  ``write_unraisable(exc, obj)`` -> report ``exc`` through ``sys.unraisablehook``
  ``switch_refused()`` -> whether a switch of this thread would be refused right now (a
      garbage continulet is being unwound: CPython runs its ``finally`` blocks; PyPy never
      does: always False), so that a layer can refuse before it changes anything
  ``thread_exiting()`` -> whether this thread's state is being cleared (it exits): its
      suspended contexts are cleared without running code, no switch may happen (PyPy keeps
      them: always False)
"""

import os
import platform

IS_PYPY = platform.python_implementation() == "PyPy"

if IS_PYPY:
    from __pypy__ import get_contextvar_context, normalize_exc, set_contextvar_context

    native = None

    def suspended_frame(cont):
        """PyPy links the hidden bottom frame's f_back to the top of the stored stack."""
        f = cont._get_frame()
        return f.f_back if f else None

    def owned_by_layer(cont):
        """PyPy's collector frees a garbage continulet without unwinding it: nothing to do."""

    def killed_by_layer(cont):
        """PyPy's collector sees into stacks by itself: nothing to do."""

    def gc_collecting():
        """PyPy calls finalizers at a safe point of the interpreter, never inside a collection."""
        return False

    def thread_exiting():
        """PyPy leaves an exited thread's continulets as they are."""
        return False

    def switch_refused():
        """PyPy frees a garbage continulet without running anything in it."""
        return False

    def write_unraisable(exc, obj):
        import sys
        import types

        sys.unraisablehook(types.SimpleNamespace(
            exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
            err_msg="Exception ignored in", object=obj, extra_line=""))

else:
    from continulet import _native as native
    from continulet._native import (
        gc_collecting,
        get_contextvar_context,
        killed_by_layer,
        owned_by_layer,
        set_contextvar_context,
        suspended_frame,
        switch_refused,
        thread_exiting,
        write_unraisable,
    )

    def normalize_exc(typ, val=None, tb=None):
        """Build the exception ``raise typ, val, tb`` would raise (PyPy's messages)."""
        if isinstance(typ, BaseException):
            if val is not None:
                raise TypeError("instance exception may not have a separate value")
            exc = typ
        elif isinstance(typ, type) and issubclass(typ, BaseException):
            if isinstance(val, typ):
                exc = val
            elif val is None:
                exc = typ()
            elif isinstance(val, tuple):
                exc = typ(*val)
            else:
                exc = typ(val)
        else:
            raise TypeError(
                "exceptions must derive from BaseException, not %s" % type(typ).__name__
            )
        if tb is not None:
            exc = exc.with_traceback(tb)  # raises "__traceback__ must be a traceback or None"
        return exc


def native_part(name):
    """``native`` when it provides ``name`` and the pure mode is not forced."""
    if native is None or os.environ.get("CONTINULET_PURE") or not hasattr(native, name):
        return None
    return native
