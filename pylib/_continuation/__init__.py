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


class generator(object):
    def __init__(self, callable):
        self.__func__ = callable

    def __get__(self, obj, type=None):
        return generator(self.__func__.__get__(obj, type))

    def __call__(self, *args, **kwds):
        return genlet(self.__func__, *args, **kwds)


class genlet(continulet):
    __module__ = "_continuation"

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

    # PyPy 3's genlet.send calls builtin next(value) and is broken (SPEC §1.8); ours works.
    send = __next__


