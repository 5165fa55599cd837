"""The Stackless Python 3.x ``stackless`` module, in pure Python on top of ``_continuation``.

Tasklets are microthreads scheduled cooperatively (and, with ``run(timeout=...)``,
preemptively) by one scheduler per OS thread; channels pass values between tasklets, also
across threads.  The scheduling core lives in ``stackless._core`` behind a small set of
functions, so that a native core can replace it under the same API.
"""

import sys

from stackless import _core
from stackless._core import TaskletExit, bomb

__all__ = [
    "TaskletExit", "atomic", "bomb", "channel", "enable_softswitch", "get_channel_callback",
    "get_schedule_callback", "get_thread_info", "getcurrent", "getcurrentid", "getmain",
    "getruncount", "getthreads", "run", "schedule", "schedule_remove", "set_channel_callback",
    "set_error_handler", "set_schedule_callback", "switch_trap", "tasklet",
]

_get = _core.get


class tasklet(_core.TaskletBase):
    """A tiny task in a Python thread; ``tasklet(func)(*args, **kwargs)`` schedules it."""

    __slots__ = ()

    if _core.NATIVE is None:  # else the native base's __new__ (a class slot, not a Python call)

        def __new__(cls, *args, **kwargs):
            self = _core.TaskletBase.__new__(cls)
            _core.init_fields(self, _get())
            return self

    def __init__(self, func=None, args=None, kwargs=None):
        self.bind(func, args, kwargs)

    def bind(self, func=None, args=None, kwargs=None):
        """Bind a callable and optionally its arguments (then alive but not scheduled)."""
        if func is not None and not callable(func):
            raise TypeError("tasklet function must be a callable or None")
        if args is not None and not isinstance(args, tuple):
            raise TypeError("tasklet args must be a tuple or None")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError("tasklet kwargs must be a dictionary or None")
        s = self._sched
        if self is s.current:
            raise RuntimeError("can't (re)bind the current tasklet")
        if self._next is not None:
            raise RuntimeError("tasklet is scheduled")
        if self._cont is not None and self is not s.main:
            # started and not finished: its frames live on a switched C stack (we always hard
            # switch), which Stackless refuses to throw away as well
            raise RuntimeError("tasklet has C state on its stack")
        if self is s.main and args is None and kwargs is None:
            raise RuntimeError("can't unbind the main tasklet")
        self._cont = None  # drop the frames (tasklet_clear_frames)
        self._alive = False
        if args is None and kwargs is None:
            self._func = func
            self._args = self._kwargs = None
        else:
            if func is not None:
                self._func = func
            self._setup(args or (), kwargs or {}, False)
        return self

    def _setup(self, args, kwargs, insert):
        if self._func is None:
            raise RuntimeError("the tasklet was not bound to a function")
        self._args, self._kwargs = args, kwargs
        self._alive = True
        self.tempval = None
        if insert:
            _core.insert(self)

    def setup(self, *args, **kwargs):
        """Supply the arguments and make the tasklet runnable."""
        if self._alive:
            raise RuntimeError("tasklet is alive")
        self._setup(args, kwargs, True)
        return self

    __call__ = setup

    def insert(self):
        """Append to the end of the run queue (no-op if already scheduled)."""
        _core.check_runnable(self)
        if self._next is None:
            _core.insert(self)
        return self

    def remove(self):
        """Take the tasklet out of the run queue; it becomes paused."""
        _core.remove(self)  # (which checks it under the lock: its thread may be another)
        return self

    def run(self):
        """Run this tasklet now; the caller stays scheduled (it runs right after)."""
        _core.check_runnable(self)
        return _core.run_task(_get(), self, False)

    def switch(self):
        """Like run(), but the caller is removed from the run queue (paused)."""
        _core.check_runnable(self)
        return _core.run_task(_get(), self, True)

    def throw(self, exc, val=None, tb=None, pending=False):
        """Raise ``exc`` in the tasklet (``raise`` semantics); switch to it unless pending."""
        return _core.throw_bomb(_get(), self, _core.exc_to_bomb(exc, val, tb), pending)

    def raise_exception(self, exc_class, *args):
        """Raise ``exc_class(*args)`` in the tasklet and switch to it."""
        return _core.throw_bomb(_get(), self, _core.make_bomb(exc_class, args, "tasklet.raise_exception"), False)

    def kill(self, pending=False):
        """Raise TaskletExit in the tasklet; no-op if it has ended."""
        return _core.throw_bomb(_get(), self, bomb(TaskletExit), pending)

    def set_atomic(self, flag):
        if not isinstance(flag, int):
            raise TypeError("set_atomic needs exactly one bool or integer")
        old, self._atomic = self._atomic, bool(flag)
        return old

    def set_ignore_nesting(self, flag):
        if not isinstance(flag, int):
            raise TypeError("set_ignore_nesting needs exactly one bool or integer")
        old, self._ignore_nesting = self._ignore_nesting, bool(flag)
        return old

    def bind_thread(self, thread_id=None):
        """Move a tasklet that has no stack yet to another thread (default: this one)."""
        cur = _get()
        if thread_id is None and self._sched is cur:
            return None
        if self._next is not None and not self._blocked:
            raise RuntimeError("can't (re)bind a runnable tasklet")
        if self._cont is not None:
            raise RuntimeError("tasklet has C state on its stack")
        target = cur if thread_id is None else _core.find_thread(thread_id)
        if target is None:
            raise ValueError("bad thread")
        self._sched = target
        return None

    alive = property(lambda self: self._alive, doc="True while the tasklet has a function to run.")
    paused = property(lambda self: self._alive and self._next is None)
    blocked = property(lambda self: bool(self._blocked))
    scheduled = property(lambda self: self._next is not None)
    restorable = property(lambda self: self._cont is None and self is not self._sched.main)
    atomic = property(lambda self: self._atomic)
    ignore_nesting = property(lambda self: self._ignore_nesting)
    is_current = property(lambda self: self is self._sched.current)
    is_main = property(lambda self: self is self._sched.main)
    nesting_level = property(lambda self: 0)
    recursion_depth = property(lambda self: 0)
    _channel = property(lambda self: self._chan)

    @property
    def block_trap(self):
        return self._block_trap

    @block_trap.setter
    def block_trap(self, value):
        if not isinstance(value, int):
            raise TypeError("block_trap must be set to a bool or integer")
        self._block_trap = bool(value)

    @property
    def thread_id(self):
        s = self._sched
        return s.thread_id if s.alive() else -1

    @property
    def next(self):
        n = self._next
        return n if isinstance(n, tasklet) else None

    @property
    def prev(self):
        p = self._prev
        return p if isinstance(p, tasklet) else None

    @property
    def frame(self):
        s = self._sched
        if self is s.current and s is _get():
            return sys._getframe(1)
        return _core.tasklet_frame(self)

    def __reduce__(self):
        raise TypeError("tasklets cannot be pickled by this implementation")


class channel(_core.ChannelBase):
    """A rendezvous point: send() blocks until a receive() takes the value, and vice versa."""

    __slots__ = ()

    def __init__(self):
        self._next = self._prev = self
        self._balance = 0
        self._closing = False
        self._preference = -1
        self._schedule_all = 0

    # send() and receive() come from the core (native on CPython)

    def send_exception(self, exc, *args):
        """Raise ``exc(*args)`` in the receiver."""
        _core.channel_action(self, _core.make_bomb(exc, args, "channel.send_exception"), 1)

    def send_throw(self, exc, val=None, tb=None):
        """Raise an exception (``raise`` semantics) in the receiver."""
        _core.channel_action(self, _core.exc_to_bomb(exc, val, tb), 1)

    def send_sequence(self, seq):
        """Send every item of ``seq``; returns the number sent."""
        n = 0
        for item in seq:
            _core.channel_action(self, item, 1)
            n += 1
        return n

    def __iter__(self):
        return self

    def __next__(self):
        if self._closing and self._balance <= 0:
            raise StopIteration
        return _core.channel_action(self, None, -1)

    def open(self):
        self._closing = False

    def close(self):
        """Stop the channel from growing its queue; closed once it is also empty."""
        self._closing = True

    balance = property(lambda self: self._balance, doc=">0: waiting senders, <0: waiting receivers")
    closing = property(lambda self: self._closing)
    closed = property(lambda self: self._closing and self._balance == 0)

    @property
    def queue(self):
        h = self._next
        return None if h is self else h

    @property
    def preference(self):
        return self._preference

    @preference.setter
    def preference(self, value):
        if not isinstance(value, int):
            raise TypeError("preference must be set to an integer")
        self._preference = 1 if value > 0 else -1 if value < 0 else 0

    @property
    def schedule_all(self):
        return self._schedule_all

    @schedule_all.setter
    def schedule_all(self, value):
        if not isinstance(value, int):
            raise TypeError("preference must be set to a bool or integer")
        self._schedule_all = 1 if value else 0

    def __reduce__(self):
        raise TypeError("channels cannot be pickled by this implementation")


class atomic(object):
    """Context manager: the current tasklet is atomic (not preempted) inside the block."""

    __slots__ = ("_old",)

    def __enter__(self):
        self._old = getcurrent().set_atomic(True)

    def __exit__(self, *exc):
        getcurrent().set_atomic(self._old)


_core.tasklet_type = tasklet
if _core.NATIVE is not None:
    # The native base makes tasklets (with this thread's scheduler) and takes setup/__call__
    # and the common __init__ call, tasklet(func); this __init__ stays for every other call.
    _core.NATIVE.tasklet_native_init(tasklet)
    # (__new__ is not defined here at all: deleting a Python __new__ leaves the class's slot
    # calling back through the type's __new__ attribute, ~1,000 instructions per tasklet)
    del tasklet.__init__, tasklet.setup, tasklet.__call__
_core._OUR_GLOBALS.append(globals())
_MISSING = object()


def run(timeout=0, threadblock=False, soft=False, ignore_nesting=False, totaltimeout=False):
    """Run tasklets until none is runnable; with ``timeout`` > 0 return an interrupted tasklet."""
    flags = ((_core.THREADBLOCK if threadblock else 0) | (_core.SOFT if soft else 0)
             | (_core.IGNORE_NESTING if ignore_nesting else 0) | (_core.TOTALTIMEOUT if totaltimeout else 0))
    return _core.run_watchdog(_get(), timeout, flags)


def schedule(retval=_MISSING):
    """Switch to the next runnable tasklet; returns ``retval`` (default: the current tasklet)."""
    s = _get()
    return _core.schedule(s, s.current if retval is _MISSING else retval, False)


if _core.NATIVE is not None:
    schedule = _core.NATIVE.schedule  # noqa: F811 (the same function, without Python frames)


def schedule_remove(retval=_MISSING):
    """Like schedule(), but the current tasklet leaves the run queue."""
    s = _get()
    return _core.schedule(s, s.current if retval is _MISSING else retval, True)


def getcurrent():
    return _get().current


def getmain():
    return _get().main


def getruncount():
    return _get().runcount


def getcurrentid():
    s = _get()
    return s.thread_id if s.current is s.main else id(s.current)


def get_thread_info(thread_id=None):
    """(main, current, runcount) of a thread (default: this one)."""
    s = _get() if thread_id is None else _core.find_thread(thread_id)
    if s is None:
        raise RuntimeError("Thread id not found")
    return (s.main, s.current if s.runcount else None, s.runcount)


def getthreads():
    return _core.all_threads()


def switch_trap(change=0):
    """Add ``change`` to this thread's switch trap level; returns the previous level."""
    s = _get()
    old = s.switch_trap
    s.switch_trap += change
    return old


def _set_hook(name, callback, what):
    if callback is not None and not callable(callback):
        raise TypeError("%s callback must be callable" % what)
    old = _core.hooks[name]
    _core.hooks[name] = callback
    return old


def set_schedule_callback(callback):
    """Install ``callback(prev, next)``, called before every switch; returns the previous one."""
    return _set_hook("schedule", callback, "schedule")


def get_schedule_callback():
    return _core.hooks["schedule"]


def set_channel_callback(callback):
    """Install ``callback(channel, tasklet, sending, willblock)``; returns the previous one."""
    return _set_hook("channel", callback, "channel")


def get_channel_callback():
    return _core.hooks["channel"]


def set_error_handler(handler=None):
    """Handler ``(type, value, tb)`` for uncaught tasklet errors; returns the previous or None."""
    return _set_hook("error", handler, "error handler")


_softswitch = [True]


def enable_softswitch(flag):
    """Accepted for compatibility; there is no hard/soft distinction here."""
    old = _softswitch[0]
    if flag is not None:
        _softswitch[0] = bool(flag)
    return old


def __getattr__(name):
    # deprecated module properties of Stackless (current, main, runcount, threads)
    if name == "current":
        return getcurrent()
    if name == "main":
        return getmain()
    if name == "runcount":
        return getruncount()
    if name == "threads":
        return getthreads()
    raise AttributeError("module 'stackless' has no attribute %r" % (name,))
