"""This module exposes 'one-shot continuation containers'.

A 'continulet' object from this module is a container that stores a
one-shot continuation.  It is similar in purpose to the 'f_back'
attribute of frames, which points to where execution should continue
after this frame finishes.  The difference is that it will be changed
(often repeatedly) before the frame actually returns.

To make a continulet object, call 'continulet' with a callable and
optional extra arguments.  Later, the first time you switch() to the
continulet, the callable is invoked with the same continulet object as
the extra first argument.

At this point, the one-shot continuation stored in the continulet points
to the caller of switch().  When switch() is called again, this one-shot
continuation is exchanged with the current one; it means that the caller
of switch() is suspended, its continuation stored in the container, and
the old continuation from the continulet object is resumed.

Continulets are internally implemented using stacklets.  Stacklets
are a bit more primitive (they are really one-shot continuations), but
that idea only works in C, not in Python, notably because of exceptions.

The most primitive API is actually 'permute()', which just permutes the
one-shot continuation stored in two (or more) continulets.
"""

# On PyPy the builtin `_continuation` always wins over this package (builtin modules are
# imported first), so this file only ever runs on CPython, where the extension lives in
# `continulet._native`.
from continulet._native import _p, continulet, error, permute  # noqa: F401


def _make_generator():
    # Mirrors PyPy's app_continuation.py: `genlet` is reachable only through `generator` (it
    # is not a module attribute there), so it is built in this closure.  Class attributes
    # match PyPy 3.9's (`vars()` of both classes), except `send`: PyPy 3 binds it to the
    # builtin `next` and is broken (SPEC §1.8); ours is `__next__`, a documented fix.

    class genlet(continulet):
        __qualname__ = "genlet"

        def __iter__(self):
            return self

        def __next__(self, value=None):
            res = self.switch(value)
            if self.is_pending():
                return res
            else:
                if res is not None:
                    raise TypeError("_continuation.generator must return None")
                raise StopIteration

        send = __next__

    class generator(object):
        __qualname__ = "generator"

        def __init__(self, callable):
            self.__func__ = callable

        def __get__(self, obj, type=None):
            return generator(self.__func__.__get__(obj, type))

        def __call__(self, *args, **kwds):
            return genlet(self.__func__, *args, **kwds)

    return generator


generator = _make_generator()
del _make_generator
