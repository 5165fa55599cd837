"""Scheduling core of the pure-Python ``stackless``: run queues, switching, channels, watchdogs.

This module is the boundary a native core (``stackless-core`` behind the pybind extension) is
meant to replace: ``__init__`` only calls the functions below and reads the per-object fields
documented here.  Everything is modelled on C Stackless 3.x (``Stackless/module/scheduling.c``,
``channelobject.c``, ``taskletobject.c``); function names cite their C counterparts.

# State
One ``_Sched`` per OS thread (``threading.local``), created lazily together with the thread's
main tasklet.  Tasklet fields: ``_sched`` (owner thread), ``_next``/``_prev`` (links: run queue
*or* channel queue, ``None`` when floating), ``_blocked`` (0, 1 = send, -1 = receive), ``_chan``
(channel while blocked), ``_cont`` (continulet, created at the first switch into the tasklet
by the thread's ``factory`` continulet so that every tasklet starts at the same shallow
recursion depth, ``None`` before and after; its frames are shown to CPython's collector, and
the tasklet's finalizer kills it: ``_finalize``), ``_alive``, ``tempval`` (value/bomb handed
over by the next switch).  Scheduler: ``doomed`` (tasklets that became garbage alive, to be
killed at the thread's next safe point) and ``doomed_waiting`` (``doomed`` is not empty).
Channel fields: ``_next``/``_prev`` (the channel is the sentinel of its circular queue),
``_balance``.

# Invariants
I1. The run queue is a circular doubly linked list through ``_next``/``_prev``; ``s.chain`` is
    its head and equals ``s.current`` whenever the running tasklet is scheduled.  All queue and
    channel mutations happen under ``_lock`` (other threads insert into our queue).
I2. Continuation passing: every suspended tasklet's continuation is stored in its own ``_cont``;
    the running tasklet's ``_cont`` holds a *spare* continuation (the unstarted start of the main
    tasklet's continulet).  ``prev._cont.switch(to=nxt._cont)`` and, for a dying tasklet,
    ``permute(dying, nxt)`` + return both preserve this.
I3. Only a thread switches its own tasklets; other threads only move tasklets into its queue
    and wake it (``_wake``).  Such a wake-up is one ``with _lock:`` section, which also
    makes again the checks the owner thread could have falsified since (blocked, alive:
    ``check_runnable``, ``throw_bomb``).  A tasklet of another thread taken from a channel
    goes into its queue in the section that takes it: floating in between, a thread's main
    tasklet would look revivable to its own thread (``_schedule_block``), resume without the
    handoff, and could block again before a later section of ours moved it.
I4. No user code (callbacks, tracers) runs while ``_lock`` is held, and outside a
    ``with _lock:`` block of this module a thread does not hold it (finalizers that call
    stackless from inside one aside).
I5. One asynchronous exception (a KeyboardInterrupt from a signal, on PyPy or in pure mode,
    where this module is Python code) landing at any bytecode of a scheduling step leaves the
    queues consistent (I1, links, ``runcount``, ``_balance``, ``_blocked``/``_chan``, the
    watchdogs) and the thread usable, and it reaches the main tasklet if no tasklet catches it.
    The queue primitives compute every new value before their first store and store them all
    again if interrupted (idempotent stores): each is all or nothing.  A step made of several
    is undone, by state, when its switch did not happen: the current tasklet is back in the run
    queue and unblocked, a tasklet it woke goes back where it was, a handoff not yet given to
    ``schedule_task`` is taken back (after that the value has moved).  ``schedule_task`` tells
    its own switch apart: it sets ``s.current`` to the target last, and whoever resumes it sets
    it back; resumed, the exception takes the place of what was handed over (``tempval`` is
    cleared, nothing stale explodes later).  A ``with _lock:`` block ends with a few bytecodes
    outside its handler (PyPy): the function that opens it (``_soft_irq``: its caller) releases
    a lock left held in its handler (``_unlock``, I4).  An exception escaping a tasklet's
    continulet before ``_tasklet_end``'s ``permute`` (the first or last bytecodes of
    ``_tasklet_main``, ``_tasklet_end`` itself) resumes the main tasklet through the spare
    continuation (I2), inside ``schedule_task``, with the main tasklet's continulet ended:
    ``_repair_main`` gives it a new spare and finishes the death (``_tasklet_end`` makes the
    next tasklet current only once that one has a continulet and the dying one has none).  An
    exception escaping the factory ends it; ``_new_cont`` makes a new one.  Beyond this: an
    exception raised while one is being handled (inside these handlers, or any
    ``except``/``finally`` block: the usual limit of Python code) or a second one before the
    first is handled; one raised by or in a dying tasklet's schedule callback is dropped, as
    any error of that callback; and a value handed to a tasklet whose receive is then
    interrupted before it returns is lost with it.
"""

import sys
import threading
from keyword import iskeyword as _iskeyword

from _continuation import continulet, error as _cerror, permute
from continulet._compat import (
    gc_collecting as _gc_collecting,
    killed_by_layer as _killed_by_layer,
    native_part as _native_part,
    owned_by_layer as _owned_by_layer,
    suspended_frame as _suspended_frame,
    switch_refused as _switch_refused,
    thread_exiting as _thread_exiting,
    write_unraisable as _write_unraisable,
)

THREADBLOCK, SOFT, IGNORE_NESTING, TOTALTIMEOUT = 1, 2, 4, 8

# The native core of the CPython extension, or None (PyPy, or CONTINULET_PURE set: then this
# module is the whole core).
NATIVE = _native_part("SchedBase")

if NATIVE is not None:
    # Fields in Rust (same names), and the hot paths: channel send/receive, schedule(), the
    # start and end of tasklets.  Everything else below runs on those objects unchanged.
    TaskletBase, ChannelBase, SchedBase = NATIVE.TaskletBase, NATIVE.ChannelBase, NATIVE.SchedBase
else:

    class TaskletBase(object):
        """The fields of a tasklet (see # State)."""

        __slots__ = ("_sched", "_next", "_prev", "_chan", "_cont", "_func", "_args", "_kwargs",
                     "_blocked", "_alive", "_atomic", "_ignore_nesting", "_block_trap",
                     "_pending_irq", "tempval", "__weakref__")

        def __del__(self):
            if getattr(self, "_alive", False) and self._cont is not None:
                _finalize(self, 2)

    class ChannelBase(object):
        """The fields of a channel (see # State) and its hot methods."""

        __slots__ = ("_next", "_prev", "_balance", "_closing", "_preference", "_schedule_all",
                     "__weakref__")

        def send(self, value):
            """Send a value; blocks until a receiver takes it."""
            return channel_action(self, value, 1)

        def receive(self):
            """Receive a value; blocks until a sender provides one."""
            return channel_action(self, None, -1)

    SchedBase = object

_lock = threading.RLock()
_tls = threading.local()
_threads = {}  # thread id -> _Sched (guarded by _lock)
hooks = {"schedule": None, "channel": None, "error": None} if NATIVE is None else NATIVE.Hooks()
tasklet_type = None  # set by __init__
_OUR_GLOBALS = []  # globals dicts of our modules (frames to hide / not to trace)


class TaskletExit(SystemExit):
    """Raised in a tasklet to kill it; silently ends the tasklet when it escapes."""


class bomb(object):
    """Holds an exception; it explodes when a tasklet receives it as its value."""

    __slots__ = ("_type", "_value", "_tb")

    def __init__(self, type=None, value=None, traceback=None):
        if isinstance(type, tuple) and value is None and traceback is None:
            type, value, traceback = (type + (None, None, None))[:3]
        self._type, self._value, self._tb = type, value, traceback

    type = property(lambda self: self._type)
    value = property(lambda self: self._value)
    traceback = property(lambda self: self._tb)

    def _exception(self):
        t, v = self._type, self._value
        if isinstance(t, BaseException):
            e = t
        elif isinstance(v, BaseException):
            e = v
        elif v is None:
            e = t()
        elif isinstance(v, tuple):
            e = t(*v)
        else:
            e = t(v)
        if self._tb is not None:
            e = e.with_traceback(self._tb)
        return e


def exc_to_bomb(exc, val=None, tb=None):
    """slp_exc_to_bomb: validate ``raise``-style arguments now, raise later."""
    if tb is not None and type(tb).__name__ != "traceback":
        raise TypeError("third argument must be a traceback object")
    if isinstance(exc, type) and issubclass(exc, BaseException):
        pass
    elif isinstance(exc, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        exc, val = type(exc), exc
    else:
        raise TypeError("exceptions must be classes, or instances, not %s" % type(exc).__name__)
    return bomb(exc, val, tb)


def make_bomb(klass, args, what):
    """slp_make_bomb: ``klass(*args)`` raised in the receiver."""
    if not (isinstance(klass, type) and issubclass(klass, BaseException)) and not isinstance(klass, str):
        raise TypeError("%s needs Exception or string subclass as first parameter" % what)
    return bomb(klass, tuple(args))


def init_fields(t, s):
    t._sched = s
    t._next = t._prev = t._chan = t._cont = t._func = t._args = t._kwargs = None
    t._blocked = 0
    t._alive = t._atomic = t._ignore_nesting = t._block_trap = t._pending_irq = False
    t.tempval = None


def _spare(c):
    raise SystemError("stackless: the spare continuation was resumed (internal error)")


def _factory_main(fc, s):
    """Creates tasklet continulets at the factory's own (shallow) depth: see ``_new_cont``.

    Requests and replies go through ``s.factory_io`` so that no frame of the suspended
    factory keeps a tasklet or its continulet alive.  An exception (MemoryError..., or an
    asynchronous one) is the reply, re-raised in the requesting tasklet; one that escapes
    all the same (the few bytecodes outside the ``try``) ends the factory, and ``_new_cont``
    makes a new one (I5).
    """
    while True:
        try:
            fc.switch()
            s.factory_io = _killed_by_layer_and_return(continulet(_tasklet_main, s.factory_io))
        except BaseException as e:
            s.factory_io = e


def _owned_by_layer_and_return(c):
    """``c``, marked as killed by this module when garbage (never unwound by CPython's GC)."""
    _owned_by_layer(c)
    return c


def _killed_by_layer_and_return(c):
    """``c`` (a tasklet's), marked as killed by this module when garbage, the collector still
    seeing its frames (a cycle through them is found; ``_finalize`` kills the tasklet).
    Nothing of ``c`` may stay on the factory's suspended stack (it is not shown)."""
    _killed_by_layer(c)
    return c


def _new_cont(s, t):
    """The continulet of tasklet ``t``, created inside the thread's factory continulet.

    A continulet's recursion depth is fixed where it is created (on PyPy as on CPython), so
    creating it in the tasklet that first switches to ``t`` would stack every tasklet on top of
    the one that started it: 1,000 tasklets started one by one raised RecursionError.
    """
    s.factory_io = t
    try:
        s.factory.switch()
    except BaseException:
        s.factory_io = None
        if not s.factory.is_pending():  # an exception escaped the factory: it ended (I5)
            s.factory = _owned_by_layer_and_return(continulet(_factory_main, s))
            s.factory.switch()
        raise
    reply, s.factory_io = s.factory_io, None
    if isinstance(reply, BaseException):
        raise reply
    return reply


class _Sched(SchedBase):
    """Per-thread scheduler state (PyThreadState.st in C Stackless)."""

    def __init__(self):
        self.thread_id = threading.get_ident()
        self.thread = threading.current_thread()
        self.initial = self.thread is threading.main_thread()
        self.cond = threading.Condition(_lock)
        self.chain = None
        self.runcount = 0
        self.watchdogs = [None]  # [interrupt watchdog or None, run() callers...]
        self.interrupted = None
        self.blocked = False  # thread waits for other threads (schedule_thread_block)
        self.switch_trap = 0
        self.schedlock = False
        self.interval = 0
        self.ticks = 0
        self.watermark = 0
        self.runflags = 0
        self.tracing = False
        self.doomed = []  # tasklets that became garbage alive, to kill (_finalize)
        self.doomed_waiting = False
        self.glob_tracer, self.local_tracer = _make_tracers(self)
        # (the native base's __new__ would ask for the scheduler this is making)
        main = TaskletBase.__new__(tasklet_type) if NATIVE is None else NATIVE.bare_tasklet(tasklet_type)
        init_fields(main, self)
        main._alive = True
        main._cont = _owned_by_layer_and_return(continulet(_spare))
        self.factory_io = None
        self.factory = _owned_by_layer_and_return(continulet(_factory_main, self))
        self.factory.switch()
        self.main = self.current = main
        _insert(self, main)

    def alive(self):
        if _thread_exiting() and self.thread_id == threading.get_ident():
            return False  # this thread's state is being cleared (its contexts too)
        return self.thread.is_alive() or self.thread is threading.current_thread()


def get():
    try:
        return _tls.sched
    except AttributeError:
        pass
    s = _Sched()
    try:
        with _lock:
            _threads[s.thread_id] = s
    except BaseException:
        _unlock()
        raise
    _tls.sched = s  # last: interrupted before, the next call makes a new one (I5)
    return s


def find_thread(tid):
    try:
        with _lock:
            s = _threads.get(tid)
    except BaseException:
        _unlock()
        raise
    if s is None or not s.alive():
        return None
    return s


def all_threads():
    try:
        with _lock:
            return [tid for tid, s in _threads.items() if s.alive()]
    except BaseException:
        _unlock()
        raise


def _unlock():
    """In a handler outside ``with _lock:`` (I4): an exception that landed between the end of
    such a block and the call of its ``__exit__`` left the lock held once (I5)."""
    if _lock._is_owned():
        _lock.release()


# ---- run queue and channel queue primitives (O(1); caller holds _lock) ----------------------
# Each computes its new values first and stores them again if interrupted: all or nothing (I5).

def _insert(s, t):
    """SLP_CHAIN_INSERT: put ``t`` before the head, i.e. at the end of the run queue."""
    h = s.chain
    if h is None:
        c = s.runcount + 1
        try:
            t._next = t._prev = t
            s.chain = t
            s.runcount = c
        except BaseException:
            t._next = t._prev = t
            s.chain = t
            s.runcount = c
            raise
    else:
        _link(s, t, h._prev, h)


def _link(s, t, p, n):
    """Put ``t`` between ``p`` and ``n`` (``p._next is n``) in the run queue of ``s``."""
    c = s.runcount + 1
    try:
        t._prev = p
        t._next = n
        p._next = n._prev = t
        s.runcount = c
    except BaseException:
        t._prev = p
        t._next = n
        p._next = n._prev = t
        s.runcount = c
        raise


def _insert_after_head(s, t):
    h = s.chain
    _link(s, t, h, h._next)


def _remove(s, t):
    """slp_current_remove_tasklet: unlink ``t``; if it was the head, its successor becomes head."""
    n = t._next
    c = s.runcount - 1
    if n is t:
        try:
            s.chain = None
            t._next = t._prev = None
            s.runcount = c
        except BaseException:
            s.chain = None
            t._next = t._prev = None
            s.runcount = c
            raise
    else:
        p = t._prev
        h = n if s.chain is t else s.chain
        try:
            p._next = n
            n._prev = p
            s.chain = h
            t._next = t._prev = None
            s.runcount = c
        except BaseException:
            p._next = n
            n._prev = p
            s.chain = h
            t._next = t._prev = None
            s.runcount = c
            raise


def _unremove(s, t):
    if t._next is None:
        _insert(s, t)
    s.chain = t


def chan_insert(ch, t, d, before=None):
    node = ch if before is None else before
    p = node._prev
    b = ch._balance + d
    try:
        t._prev = p
        t._next = node
        p._next = node._prev = t
        ch._balance = b
        t._blocked = d
        t._chan = ch
    except BaseException:
        t._prev = p
        t._next = node
        p._next = node._prev = t
        ch._balance = b
        t._blocked = d
        t._chan = ch
        raise


def chan_remove(t):
    """slp_channel_remove(_slow): unlink a blocked tasklet."""
    ch, n, p = t._chan, t._next, t._prev
    b = ch._balance - t._blocked
    try:
        p._next = n
        n._prev = p
        ch._balance = b
        t._next = t._prev = t._chan = None
        t._blocked = 0
    except BaseException:
        p._next = n
        n._prev = p
        ch._balance = b
        t._next = t._prev = t._chan = None
        t._blocked = 0
        raise


def _unwake(t, chan, nxt, d):
    """Put ``t`` back where it was before a wake-up that is undone: blocked on ``chan`` before
    ``nxt`` (``d`` its direction), or paused (``chan`` and ``nxt`` None), or else scheduled."""
    if chan is not None:
        if t._chan is None:
            if t._next is not None:
                _remove(t._sched, t)
            if nxt is not chan and (nxt is None or nxt._chan is not chan):
                nxt = None  # its old successor left the channel meanwhile: at the end
            chan_insert(chan, t, d, nxt)
    elif nxt is None and t._next is not None and not t._blocked:
        _remove(t._sched, t)


def _wake(s):
    if s.blocked:  # schedule_thread_unblock: not blocked from now on (for _deadlock checks)
        s.blocked = False
        s.cond.notify_all()


# ``tasklet.insert``/``run``/``switch`` check the tasklet first, outside the lock (the native
# fast path needs no lock); for a tasklet of another thread, that thread can block or end it
# before the lock is ours: the core makes the same check again under it.  ``remove`` makes its
# checks under the lock only.

def check_runnable(t):
    if t._blocked:
        raise RuntimeError("You cannot run a blocked tasklet")
    if t._next is None and not t._alive and t is not t._sched.current:
        raise RuntimeError("You cannot run an unbound(dead) tasklet")


def insert(t):
    """impl_tasklet_insert; ``tasklet.insert`` made the checks first."""
    try:
        with _lock:
            check_runnable(t)
            if t._next is None:
                s = t._sched
                _insert(s, t)
                _wake(s)
    except BaseException:
        _unlock()
        raise


def remove(t):
    """impl_tasklet_remove, its checks included."""
    try:
        with _lock:
            if t._blocked:
                raise RuntimeError("You cannot remove a blocked tasklet.")
            if t is t._sched.current:
                raise RuntimeError("The current tasklet cannot be removed.")
            if t._next is not None:
                _remove(t._sched, t)
    except BaseException:
        _unlock()
        raise


def get_watchdog(s, interrupt=False):
    w = s.watchdogs
    if len(w) == 1:
        return s.main
    if interrupt:
        return w[0] if w[0] is not None else s.main
    return w[-1]


# ---- callbacks --------------------------------------------------------------------------------

def _notify_schedule(s, prev, nxt):
    cb = hooks["schedule"]
    if cb is not None:
        if s.schedlock:
            raise RuntimeError("Recursive scheduler call due to callbacks!")
        try:
            s.schedlock = True
            cb(prev, nxt)
        finally:
            s.schedlock = False


def _notify_channel(s, ch, t, d, cando):
    cb = hooks["channel"]
    if cb is not None:
        if s.schedlock:
            raise RuntimeError("Recursive channel call due to callbacks!")
        try:
            s.schedlock = True
            cb(ch, t, 1 if d > 0 else 0, 0 if cando else 1)
        finally:
            s.schedlock = False


# ---- switching --------------------------------------------------------------------------------

def claim(t):
    """TASKLET_CLAIMVAL + bomb explosion."""
    v = t.tempval
    t.tempval = None
    if isinstance(v, bomb):
        raise v._exception()
    return v


def schedule_task(s, prev, nxt):
    """slp_schedule_task: make ``nxt`` (a tasklet of this thread: I3; the callers wake another
    thread's themselves) run; returns ``prev``'s tempval when ``prev`` runs again.

    A switch that does not happen changes nothing here: ``nxt`` goes back where it was (I5)."""
    if nxt is None:
        return _schedule_block(s, prev)
    if s.switch_trap and prev is not nxt:
        raise RuntimeError("switch_trap")
    target, u_chan, u_next, u_dir = nxt, nxt._chan, nxt._next, nxt._blocked  # for the undo
    head = s.chain
    phase = 0  # 1: switching (s.current set first), 2: no switch, claiming
    try:
        with _lock:
            if nxt._blocked:
                chan_remove(nxt)
            if nxt._next is None:
                _insert(s, nxt)
        nxt = _soft_irq(s, prev, nxt)
        if prev is nxt:
            phase = 2
            return claim(prev)
        _notify_schedule(s, prev, nxt)
        with _lock:
            phase = 1
            s.current = s.chain = nxt
        if not s.runflags & TOTALTIMEOUT:
            s.watermark = s.ticks + s.interval
        c = nxt._cont
        if c is None:
            c = nxt._cont = _new_cont(s, nxt)
        prev._cont.switch(to=c)
        if s.tracing:
            _retrace(s, sys._getframe())
        return claim(prev)
    except BaseException:
        _switch_failed(s, prev, nxt, head, phase, target, u_chan, u_next, u_dir)
        raise


def _switch_failed(s, prev, nxt, head, phase, target, u_chan, u_next, u_dir):
    """``schedule_task`` raised: tell apart by state whether its switch happened (I5)."""
    _unlock()
    if prev is s.main and not prev._cont.is_pending():
        _repair_main(s)  # a tasklet's end escaped into us: the switch happened, long ago
        return
    if phase == 2 or (phase == 1 and s.current is not nxt):
        # no switch, or we switched and were resumed: nothing to undo, and this exception
        # takes the place of the value or bomb handed to us (none is left for a later claim)
        prev.tempval = None
        return
    with _lock:
        if s.current is nxt:  # set, but the switch did not happen
            s.current = prev
            s.chain = head
        _unwake(target, u_chan, u_next, u_dir)


def _repair_main(s):
    """An exception escaped a tasklet's continulet before ``_tasklet_end``'s ``permute`` and
    resumed the main tasklet through the spare continuation (I2), whose continulet has ended:
    give it a new spare, finish the death of the tasklet whose continulet ended (the current
    one, unless ``_tasklet_end`` made the next one current), make the main tasklet current."""
    main = s.main
    main._cont = _owned_by_layer_and_return(continulet(_spare))
    main.tempval = None  # an error or value meant for the main tasklet gives way to this one
    with _lock:
        t = s.current
        if t is not main:
            c = t._cont
            if c is None or not c.is_pending():
                t._alive = False
                t._cont = None
                if t._blocked:
                    chan_remove(t)
                if t._next is not None:
                    _remove(s, t)
            s.current = main
        if main._next is not None and not main._blocked:
            s.chain = main


def _deadlock(s):
    """check_for_deadlock: True if no other thread could ever wake us."""
    for th in threading.enumerate():
        tid = th.ident
        if tid is None or tid == s.thread_id or not th.is_alive():
            continue
        o = _threads.get(tid)
        if o is None or not o.blocked or o.thread is not th:
            return False
    return True


def _schedule_block(s, prev):
    """schedule_task_block: nothing is runnable; wake the watchdog, wait for a thread, or fail."""
    wakeup = get_watchdog(s)
    revive = not (s.runflags & THREADBLOCK) and wakeup._next is None
    if not revive:
        nxt = None
        try:
            with _lock:
                try:
                    while s.chain is None and not _deadlock(s):
                        s.blocked = True
                        s.cond.wait(0.05)
                finally:
                    s.blocked = False
                nxt = s.chain
        except BaseException:
            _unlock()
            raise
        if nxt is not None:
            return schedule_task(s, prev, nxt)
    if revive or (s.initial and wakeup._next is None):
        if isinstance(prev.tempval, bomb):
            wakeup.tempval = prev.tempval
        return schedule_task(s, prev, wakeup)
    prev.tempval = bomb(RuntimeError, "Deadlock: the last runnable tasklet cannot be blocked.")
    return schedule_task(s, prev, prev)


# Refused before anything changes (the queues, a handoff) when a switch of this thread would
# be refused: a garbage continulet's ``finally`` blocks are running (CPython).  (Inline in each
# operation: a helper function's frame costs more than the check.)
_REFUSED = "cannot switch while a garbage continulet is being unwound"


def schedule(s, retval, remove_current):
    """PyStackless_Schedule."""
    if _switch_refused():
        raise _cerror(_REFUSED)
    if s.doomed_waiting:
        _kill_doomed(s, _caller(2))
    prev = s.current
    old = prev.tempval
    try:
        with _lock:
            nxt = prev._next if prev._next is not None else s.chain
            prev.tempval = retval
            if remove_current and prev._next is not None:
                _remove(s, prev)
                if nxt is prev:
                    nxt = None
        return schedule_task(s, prev, nxt)
    except BaseException:
        _unlock()
        if prev.tempval is retval:
            prev.tempval = old
        if remove_current:
            with _lock:
                if prev._next is None:
                    _unremove(s, prev)
        raise


def run_task(s, task, remove_current):
    """impl_tasklet_run_remove: tasklet.run() / tasklet.switch()."""
    prev = s.current
    if task._sched is s:
        try:
            if remove_current and prev is not task:
                with _lock:
                    if prev._next is not None:
                        _remove(s, prev)
            return schedule_task(s, prev, task)  # which schedules ``task``, or undoes it
        except BaseException:
            _unlock()
            if remove_current:
                with _lock:
                    if prev._next is None:
                        _unremove(s, prev)
            raise
    rs = task._sched
    if not rs.alive():
        raise RuntimeError("tasklet has no thread")  # its thread exited (thread_id is -1)
    if remove_current:
        raise RuntimeError("can't switch to a different thread.")
    try:
        with _lock:  # interthread: run it next in its own thread
            check_runnable(task)
            if task._next is None:
                if rs.blocked or rs.chain is None:
                    _insert(rs, task)
                    rs.chain = task
                else:
                    _insert_after_head(rs, task)
            _wake(rs)
    except BaseException:
        _unlock()
        raise
    return claim(prev)


def throw_bomb(s, t, b, pending):
    """_impl_tasklet_throw_bomb."""
    if s.current is t:
        raise b._exception()
    if not t._alive:
        if not issubclass(b.type, TaskletExit):
            raise RuntimeError("You cannot throw to a dead tasklet")
        try:
            with _lock:
                if t._blocked:
                    chan_remove(t)
                if t._next is not None:
                    _remove(t._sched, t)
        except BaseException:
            _unlock()
            raise
        return None
    old = t.tempval
    u_chan, u_next, u_dir = t._chan, t._next, t._blocked
    ts = t._sched
    woken = False
    try:
        t.tempval = b
        if not pending and ts is s:
            return schedule_task(s, s.current, t)
        # schedule_task_interthread (we keep running), or pending: wake it, unless its thread
        # ended it since the check above (then it is the dead tasklet's case after all)
        with _lock:
            if t._alive:
                if t._blocked:
                    chan_remove(t)
                if t._next is None:
                    _insert(ts, t)
                _wake(ts)
                woken = True
        if not woken:
            t.tempval = old
            return throw_bomb(s, t, b, pending)
        return None if pending else claim(s.current)
    except BaseException:
        _unlock()
        if t.tempval is b:
            t.tempval = old
            if pending or ts is not s:
                with _lock:
                    if ts is s or not woken:  # (another thread may run it once woken)
                        _unwake(t, u_chan, u_next, u_dir)
        raise


_CALLERS = {}


def _written_call(n, names):
    """``call(func, args, kwargs)`` calling ``func`` with ``n`` positional arguments and the
    keyword arguments ``names``, all written out: a call inlined as ``_tasklet_main``'s short
    ones are.  None for names that cannot be written as keywords, or past 256 shapes."""
    call = _CALLERS.get((n, names))
    if call is None:
        if len(_CALLERS) >= 256 or not all(
                type(k) is str and k.isidentifier() and not _iskeyword(k) for k in names):
            return None
        written = ["args[%d]" % i for i in range(n)] + ["%s=kwargs[%r]" % (k, k) for k in names]
        made = {}
        # Our globals: the frame is ours (not traced, hidden as _tasklet_main's is).
        exec("def call(func, args, kwargs):\n    return func(%s)\n" % ", ".join(written),
             globals(), made)
        call = _CALLERS[(n, names)] = made["call"]
    return call


def _tasklet_main(cont, t):
    """Bottom of every tasklet: run the function, then tasklet_end."""
    err = None
    try:
        claim(t)  # a pending throw/kill before the first run explodes here
        func, args, kwargs = t._func, t._args, t._kwargs
        t._args = t._kwargs = None
        # Positional calls of a Python function are inlined (3.11+), so that the collector is
        # shown exactly what the tasklet's frames hold (a tasklet blocked on a channel that
        # became garbage is found and killed); ``func(*args)`` would hold them in C.
        n = -1 if kwargs else len(args)
        if n == 0:
            func()
        elif n == 1:
            func(args[0])
        elif n == 2:
            func(args[0], args[1])
        elif n == 3:
            func(args[0], args[1], args[2])
        else:
            call = _written_call(len(args), tuple(kwargs) if kwargs else ())
            if call is not None:
                call(func, args, kwargs)  # inlined too, its arguments written out
            else:
                func(*args, **kwargs)
    except TaskletExit:
        pass
    except BaseException:
        err = bomb(*sys.exc_info())
        handler = hooks["error"]
        if handler is not None and not isinstance(err.value, SystemExit):
            try:
                handler(err.type, err.value, err.traceback)
                err = None
            except BaseException:
                err = bomb(*sys.exc_info())
    _tasklet_end(t._sched, t, cont, err)
    return None  # resumes the tasklet permuted in by _tasklet_end


def _tasklet_end(s, t, cont, err):
    """tasklet_end + schedule_task_destruct: pick the next tasklet and hand our stack to it.

    Interrupted, the exception reaches the main tasklet (I5), which reads how far this got:
    the next tasklet is made current last, once it has a continulet and ``t`` has none."""
    nxt = None
    try:
        with _lock:
            t._alive = False
            if t._next is not None:
                _remove(s, t)
            nxt = s.chain
            if nxt is None:
                wake = get_watchdog(s)
                if wake._blocked and err is None:
                    txt = ("the main tasklet is receiving without a sender available."
                           if wake._blocked < 0 else
                           "the main tasklet is sending without a receiver available.")
                    err = bomb(RuntimeError, txt)
                nxt = wake
            if err is not None:
                nxt = get_watchdog(s)
                nxt.tempval = err
            if nxt._blocked:
                chan_remove(nxt)
            if nxt._next is None:
                _insert(s, nxt)
    except BaseException:
        _unlock()
        if nxt is not None:
            with _lock:  # the next tasklet, taken from its channel, must not float
                if nxt._next is None and not nxt._blocked:
                    _insert(s, nxt)
        raise
    if hooks["schedule"] is not None:  # only then can the except below swallow anything
        try:
            _notify_schedule(s, t, nxt)
        except BaseException:
            pass  # a dying tasklet has nobody to report to
    if nxt._cont is None:
        nxt._cont = _new_cont(s, nxt)
    t._cont = None
    try:
        with _lock:
            s.current = s.chain = nxt
    except BaseException:
        _unlock()
        raise
    if not s.runflags & TOTALTIMEOUT:
        s.watermark = s.ticks + s.interval
    permute(cont, nxt._cont)


# ---- channels ---------------------------------------------------------------------------------

def channel_action(ch, arg, d):
    """generic_channel_action: d = 1 send, -1 receive."""
    if _switch_refused():
        raise _cerror(_REFUSED)
    s = get()
    if s.doomed_waiting:
        _kill_doomed(s, _caller(2))
    source = s.current
    old = source.tempval
    target = tv = switchto = None
    switching = handed = False
    try:
        with _lock:
            cando = ch._balance < 0 if d > 0 else ch._balance > 0
            interthread = cando and ch._next._sched is not s
        source.tempval = arg
        if not interthread:
            _notify_channel(s, ch, source, d, cando)
        with _lock:
            cando = ch._balance < 0 if d > 0 else ch._balance > 0
            if cando:
                t = ch._next
                tv = t.tempval
                target = t
                chan_remove(t)
                t.tempval = source.tempval
                source.tempval = tv
                if t._sched is not s:  # schedule_task_interthread, in this same section (I3)
                    _insert(t._sched, t)
                    _wake(t._sched)
                    handed = True
                elif ch._schedule_all:
                    _insert(s, t)
                    switchto = source._next
                elif ch._preference == -d:
                    _insert_after_head(s, t)
                    switchto = t
                else:
                    _insert(s, t)
                    switchto = source
            else:
                if source._block_trap:
                    raise RuntimeError("this tasklet does not like to be blocked.")
                if ch._closing:
                    raise ValueError("Send/receive operation on a closed channel")
                _remove(s, source)
                chan_insert(ch, source, d)
                switchto = s.chain
        switching = True
        ret = claim(source) if handed else schedule_task(s, source, switchto)
    except BaseException:
        _unlock()
        with _lock:
            if (target is not None and not switching and target._chan is None
                    and (target._sched is s or (target._next is None and target._alive))):
                # a handoff that did not get to schedule_task (or, for another thread's
                # tasklet, to its queue): the other side waits again
                if target._next is not None and not target._blocked:
                    _remove(s, target)
                chan_insert(ch, target, -d, ch._next)
                target.tempval = tv
            if source._chan is ch:  # a block whose switch did not happen
                chan_remove(source)
            if source._next is None:
                _unremove(s, source)
        source.tempval = old
        raise
    if interthread:
        _notify_channel(s, ch, source, d, True)
    return ret


# ---- run() and preemption ----------------------------------------------------------------------

def run_watchdog(s, timeout, flags):
    """PyStackless_RunWatchdogEx."""
    if _switch_refused():
        raise _cerror(_REFUSED)
    if s.doomed_waiting:
        _kill_doomed(s, _caller(2))
    cur = s.current
    interrupt = timeout > 0
    if interrupt and s.watchdogs[0] is not None:
        interrupt = False
    saved = (s.interval, s.watermark, s.runflags, s.tracing)
    old_trace = sys.gettrace() if interrupt else None
    try:
        if interrupt:
            s.watchdogs[0] = cur
        s.watchdogs.append(cur)
        if interrupt:
            s.interval, s.watermark, s.runflags = timeout, s.ticks + timeout, flags
            # 3.12 turns on opcode events for sys.settrace only if some frame already asked for
            # them: ask on this (our own, untraced) frame first.
            sys._getframe().f_trace_opcodes = True
            if NATIVE is not None:
                NATIVE.set_tick_tracer(s)  # the same counting, in C (pystate/trace.rs)
            else:
                sys.settrace(s.glob_tracer)
            s.tracing = True
        elif len(s.watchdogs) == 2:
            s.runflags = flags & THREADBLOCK  # deviation: threadblock also works without timeout
        s.interrupted = None
        with _lock:
            if cur._next is not None:
                _remove(s, cur)
            nxt = s.chain
        schedule_task(s, cur, nxt)
        _run_done(s, cur, interrupt, old_trace, saved)
    except BaseException:
        _unlock()
        with _lock:
            if cur._next is None:
                _unremove(s, cur)
        _run_done(s, cur, interrupt, old_trace, saved)  # again, if interrupted in there (I5)
        raise
    victim, s.interrupted = s.interrupted, None
    if victim is not None and not flags & SOFT:
        remove(victim)
        return victim
    return None


def _run_done(s, cur, interrupt, old_trace, saved):
    """The end of ``run_watchdog``: pop the watchdogs down to ``cur`` (those above it are
    scheduled again), restore the tracer and the budget.  Idempotent."""
    w = s.watchdogs
    if cur in w[1:]:
        while True:
            popped = w[-1]
            if w[0] is popped:
                w[0] = None
            if popped._next is None and popped is not cur and popped._alive:
                insert(popped)
            w.pop()
            if popped is cur:
                break
    if interrupt:
        sys.settrace(old_trace)
    if interrupt or len(w) == 1:
        s.interval, s.watermark, s.runflags, s.tracing = saved


def _soft_irq(s, prev, nxt):
    """slp_schedule_soft_irq: in soft mode, a pending interrupt returns to the watchdog."""
    if not (prev._pending_irq and s.runflags & SOFT):
        return nxt
    prev._pending_irq = False
    wd = get_watchdog(s, True)
    if wd._next is not None or prev is wd or nxt is wd:
        return nxt
    s.interrupted = nxt
    with _lock:  # (its caller, schedule_task, releases a lock left held: I5)
        _link(s, wd, nxt._prev, nxt)  # before nxt
    return wd


# ---- tasklets that become garbage alive ----------------------------------------------------------

def _finalize(t, depth):
    """``tasklet.__del__`` (PEP 442): a tasklet still alive lost its last reference, or the
    collector found it in a garbage cycle (blocked on a channel nobody else references).
    Stackless kills it: ``TaskletExit`` is raised in it and its ``finally`` blocks run.  Now,
    if its thread is this one and between two operations (judged from the frame the
    finalizer was called from, ``depth`` levels up: 1 from the native finalizer); else it
    waits in ``s.doomed`` (kept alive) for the end of the collection, or the thread's next
    ``schedule``/channel operation/``run``.  Called by ``TaskletBase.__del__`` (pure core) or
    the native tasklet finalizer."""
    s = getattr(t, "_sched", None)  # (None: a tasklet whose __new__ did not finish)
    if s is None or not t._alive or t._cont is None or t is s.main or t is s.current:
        return
    if sys.is_finalizing() or not s.alive():
        return  # no code runs at shutdown / in an exited thread (freed as it is)
    s.doomed.append(t)
    s.doomed_waiting = True
    if s is getattr(_tls, "sched", None) and not _gc_collecting():
        _kill_doomed(s, _caller(depth + 1))
    if s.doomed_waiting and _GC_CALLBACKS is not None and _at_gc_end not in _GC_CALLBACKS:
        _GC_CALLBACKS.append(_at_gc_end)


def _caller(depth):
    """The frame ``depth`` levels up from here (1: the caller, 2: its caller), or None when the
    Python stack is not that deep (a call from native code with no Python frame below: a
    native tasklet's bottom, or a collection run there)."""
    try:
        return sys._getframe(depth)
    except ValueError:
        return None


def _kill_doomed(s, frame):
    """Kill the tasklets ``_finalize`` kept, if this thread (``s``'s) may switch now: no native
    fast path mid-step (its N5), no frame of this module mid-operation at or below ``frame``
    (``stackless``'s own frames are its API's, each calling here between two operations)."""
    if NATIVE is not None and NATIVE.core_busy():
        return
    f = frame
    while f is not None:
        if f.f_globals is _G:
            if f.f_code is not _TASKLET_MAIN_CODE:
                return  # mid-step: the next operation's entry will do it
            break  # the bottom of a tasklet
        f = f.f_back
    f = frame = None
    doomed = s.doomed
    while doomed:
        t = doomed.pop()
        s.doomed_waiting = bool(doomed)
        if t._alive and t is not s.current:
            try:
                throw_bomb(s, t, bomb(TaskletExit), False)
            except BaseException as e:
                _write_unraisable(e, t)


def _at_gc_end(phase, info):
    """``gc.callbacks`` entry while tasklets wait in a ``s.doomed``: after a collection (or
    before the next one) no list of the collector is on the stack; kill this thread's."""
    s = getattr(_tls, "sched", None)
    if s is not None and s.doomed_waiting:
        _kill_doomed(s, _caller(2))
    cbs = _GC_CALLBACKS
    if cbs and cbs[-1] is _at_gc_end and not any(o.doomed_waiting for o in list(_threads.values())):
        del cbs[-1]  # (only as the last entry: the collector walks the list by index)


try:
    from gc import callbacks as _GC_CALLBACKS  # CPython (PyPy has no gc.callbacks)
except ImportError:
    _GC_CALLBACKS = None


def _in_core(frame):
    while frame is not None:
        if frame.f_globals is _OUR_GLOBALS[0] or frame.f_globals is _OUR_GLOBALS[-1]:
            return frame.f_code is not _TASKLET_MAIN_CODE  # the bottom of a tasklet is safe
        frame = frame.f_back
    return False


def _tick_expired(s, frame):
    """interrupt_timeout_return, called from the opcode tracer."""
    cur = s.current
    wd = get_watchdog(s, True)
    if cur is wd or wd._next is not None or s.interval <= 0:
        s.watermark = s.ticks + max(s.interval, 1)
        return
    if cur._atomic or s.schedlock or s.switch_trap:
        return  # stays pending: re-checked at the next opcode
    if s.runflags & SOFT:
        s.watermark = s.ticks + s.interval
        cur._pending_irq = True
        return
    if _in_core(frame):
        s.watermark = s.ticks + 16
        return
    s.interrupted = cur
    # switch inside call_tracing, so that the other tasklets run with tracing enabled
    sys.call_tracing(schedule_task, (s, cur, wd))


def _make_tracers(s):
    def local(frame, event, arg):
        if event == "opcode" and s.tracing:
            s.ticks += 1
            if s.ticks >= s.watermark:
                _tick_expired(s, frame)
        return local

    def glob(frame, event, arg):
        g = frame.f_globals
        if g is _OUR_GLOBALS[0] or g is _OUR_GLOBALS[-1]:
            return None
        # f_trace first: on 3.13, enabling opcode events before the frame has a local tracer
        # gives no opcode events for that code object's first traced call.
        frame.f_trace = local
        frame.f_trace_opcodes = True
        return local

    return glob, local


def _retrace(s, frame):
    """Frames that existed before run(timeout) started get the opcode tracer when resumed."""
    local = s.local_tracer
    while frame is not None:
        g = frame.f_globals
        if frame.f_trace is None and g is not _OUR_GLOBALS[0] and g is not _OUR_GLOBALS[-1]:
            frame.f_trace = local
            frame.f_trace_opcodes = True
        frame = frame.f_back


def tasklet_frame(t):
    """Top user frame of a suspended tasklet (our own frames hidden)."""
    s = t._sched
    if t is s.current:
        return None
    c = t._cont
    if c is None or t is s.main:
        return None
    f = _suspended_frame(c)
    while f is not None and (f.f_globals is _OUR_GLOBALS[0] or f.f_globals is _OUR_GLOBALS[-1]):
        f = f.f_back
    return f


_G = globals()
_OUR_GLOBALS.append(_G)
_TASKLET_MAIN_CODE = _tasklet_main.__code__
if NATIVE is not None:
    # Tasklet start without Python: the factory and the tasklets' bottom are native (and a
    # tasklet's continulet has no hidden start frame).
    _tasklet_main, _factory_main, _new_cont = NATIVE.tasklet_main, NATIVE.factory_main, NATIVE.new_cont
    NATIVE.stackless_init(sys.modules[__name__])
    init_fields, insert = NATIVE.init_fields, NATIVE.insert  # after stackless_init took ours
