"""greenlet 3.x, in pure Python, on top of ``_continuation`` (PyPy's continulets).

The same file runs on PyPy (builtin ``_continuation``) and on CPython (our native extension).
It imports only ``_continuation``, ``continulet._compat`` and the standard library.

# State

Every greenlet has one continulet, ``_c``, and a few slots:

==============  =======  ===========  ==========  ==========================================
state           ``_c``   ``_ts``      ``_home``   notes
==============  =======  ===========  ==========  ==========================================
unstarted       None     None         None        ``_run`` holds the callable (if any)
active          cont.    thread st.   thread st.  running (``_ts.current is g``) or suspended
dead            cont.    None         thread st.  finished, or killed before it ran
main            uninit.  thread st.   thread st.  ``_main``; one per thread, never dead while
                                                  its thread lives
==============  =======  ===========  ==========  ==========================================

A greenlet whose thread has exited keeps ``_ts`` but ``_alive(_ts)`` is false: it is dead.

The slots are spelled ``_greenlet__c``, ``_greenlet__ts``, ... in the code (what ``self.__c``
mangles to in this class), never ``_c``/``_run``: subclasses own the short private names
(gevent's ``Greenlet`` sets and defines its own ``_run``), as with the C greenlet, whose state
is invisible to Python.  This text uses the short names.

# Invariants (per thread)

I1. The main greenlet's continulet is *uninitialized*.  While a user greenlet runs, its own
    continulet stores the thread's original ("main") stack; every suspended greenlet's
    continulet stores its own stack.  So one double switch
    ``continulet.switch(current._c, value, to=target._c)`` moves between any two greenlets
    (an uninitialized ``self``/``to`` makes it a plain switch), and a dying greenlet returns
    into its parent with ``permute(dying._c, parent._c)`` followed by ``return``.
I2. The *sender* does all bookkeeping before the switch (``ts.current``, contextvars);
    ``ts.origin`` is set by the sender and cleared by the receiver, so "``ts.origin`` is not
    None" means "a switch is under way": ``__del__`` then defers its kill (``ts.deleteme``).
I3. No frame of a suspended greenlet's own stack holds that greenlet (only its continulet),
    so on a refcounting interpreter an unreferenced suspended greenlet is finalized promptly
    and gets ``GreenletExit`` (unless user code itself keeps a reference).
I4. A switch that does not happen changes nothing: ``_transfer`` undoes its bookkeeping when
    an exception is raised before the switch (an asynchronous KeyboardInterrupt between two of
    its steps on PyPy or in pure mode, where they are Python code, could otherwise leave
    ``ts.current`` naming a greenlet that is not running).
I5. So does a death that does not happen.  A greenlet dies into its parent by ``permute`` and
    ``return`` (I1); an exception escaping its continulet *before* the ``permute`` reaches the
    main greenlet instead (its continulet stores the main stack), with ``ts.current`` naming
    the dying greenlet or the parent.  ``_die`` changes the state in an order the receiving
    main greenlet can read (``_thrown_in``): the parent's context is set before the parent is
    made current, and the parent, if unstarted, is begun last; ``ts.starting`` names a
    continulet that ``_begin`` made and whose ``_bootstrap`` has not run yet, so a start that
    did not happen is undone (the greenlet is unstarted again, ``_unbegin``).
"""

import sys
import threading
import _thread

import _continuation
from contextvars import Context as _Context
from continulet._compat import (
    get_contextvar_context as _get_ctx,
    native as _native,
    native_part as _native_part,
    normalize_exc as _normalize_exc,
    owned_by_layer as _owned_by_layer,
    set_contextvar_context as _set_ctx,
    suspended_frame as _suspended_frame,
    thread_exiting as _thread_exiting,
)


# CPython: the native bases of greenlet and _ThreadState, whose ``switch`` takes the common
# case natively (crates/pybind/src/greenlet.rs); None on PyPy or with CONTINULET_PURE set
# (then this module is the whole implementation).
_NATIVE = _native_part("_GreenletBase")
_stack_saved_of = getattr(_native, "stack_saved", None)  # CPython: bytes a continulet saved

__version__ = "3.5.0+continulet.0.1.0"
__implementation__ = "continulet"
__all__ = ["__version__", "GreenletExit", "error", "getcurrent", "greenlet", "gettrace", "settrace"]

GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True
CLOCKS_PER_SEC = 1000000

error = _continuation.error
_continulet = _continuation.continulet
_cswitch = _continulet.switch
_cthrow = _continulet.throw
_permute = _continuation.permute
try:
    raise TypeError
except TypeError:
    _TracebackType = type(sys.exc_info()[2])
_MISSING = object()
_is_finalizing = sys.is_finalizing
_leaked = []  # greenlets that survived GreenletExit on collection (kept, as greenlet does)


class GreenletExit(BaseException):
    """This special exception does not propagate to the parent greenlet; it
can be used to kill a single greenlet."""

    __module__ = "greenlet"


# ____________________________________________________________ per-thread state


if _NATIVE is not None:

    class _ThreadState(_NATIVE._ThreadStateBase):
        __slots__ = ("starting",)  # the other fields are the native base's (same names)

    _GreenletBase = _NATIVE._GreenletBase
    _GREENLET_SLOTS = ()
    _new_object = _GreenletBase.__new__
else:

    class _ThreadState(object):
        __slots__ = ("current", "main", "origin", "trace", "deleteme", "thread", "exited", "starting")

    class _GreenletBase(object):
        """Owns the instance ``__dict__`` and ``__weakref__`` (as the native base does), so
        that ``greenlet`` can define ``__dict__`` with greenlet's own checks."""

    _GREENLET_SLOTS = (
        "_greenlet__c", "_greenlet__ts", "_greenlet__home", "_greenlet__parent", "_greenlet__run",
        "_greenlet__context", "_greenlet__main",
    )
    _new_object = object.__new__


class _ThreadSentinel(object):
    """Lives only in the thread-local dict: freed when the thread exits."""

    __slots__ = ("ts",)

    def __del__(self):
        self.ts.exited = True


class _Local(_thread._local):
    def __init__(self):
        ts = _ThreadState()
        ts.origin = ts.trace = ts.starting = None
        ts.deleteme = []
        ts.exited = False
        t = threading.current_thread()
        ts.thread = None if t is threading.main_thread() else t
        main = _new_object(greenlet)
        main._greenlet__c = _continulet.__new__(_continulet)
        main._greenlet__ts = main._greenlet__home = ts
        main._greenlet__parent = main._greenlet__context = None
        main._greenlet__main = True
        ts.main = ts.current = main
        self.ts = ts
        self.sentinel = _ThreadSentinel()
        self.sentinel.ts = ts




def _alive(ts):
    if ts.exited:
        return False
    if _thread_exiting() and (ts.thread is None or ts.thread.ident == _thread.get_ident()):
        return False  # this thread's state is being cleared (its greenlets' stacks too)
    return ts.thread is None or _thread_alive(ts.thread)


def _thread_alive(t):
    """``t.is_alive()`` without its bookkeeping: where threads have a ``_tstate_lock``
    (CPython 3.10-3.12, PyPy 3.9), ``is_alive`` called here, from another thread, can race
    with ``t.join()`` and break it (PyPy 3.9: "cannot release un-acquired lock"); the lock,
    held until the thread's end, is only looked at."""
    lock = getattr(t, "_tstate_lock", _MISSING)
    if lock is _MISSING or type(t).is_alive is not threading.Thread.is_alive:
        return t.is_alive()  # (3.13+: no such lock; dummy and subclassed threads: their own)
    return lock is not None and t._started.is_set() and not t._is_stopped and lock.locked()


# ____________________________________________________________ switching core


def _transfer(ts, target, op, arg):
    """Switch from the current greenlet to the active ``target``; ``op`` is switch or throw.

    The current greenlet is read here, not passed in: on CPython 3.10 a caller's arguments
    stay on its value stack until the call returns, which would keep it referenced (I3).
    An exception raised before the switch happened — an asynchronous one (KeyboardInterrupt)
    between two of the steps below, or the switch's own refusal — leaves the state as it was
    (I4); one delivered by the switch found it set by whoever switched to us."""
    cur = ts.current
    cc = cur._greenlet__c
    tc = target._greenlet__c
    saved = _get_ctx()
    new = target._greenlet__context
    try:
        ts.origin = cur  # first: from here on a __del__ defers its kill (I2)
        cur._greenlet__context = saved
        ts.current = target
        target._greenlet__context = None
        _set_ctx(new)
        del cur, target  # I3; and PyPy may keep this frame alive as the f_back of the target's stack
        arg = op(cc, arg, to=tc)
    except BaseException:
        _undo_transfer(ts, cc, tc, saved, new)
        _after(ts, "throw")
        raise
    if ts.trace is None and not ts.deleteme:
        ts.origin = None
    else:
        _after(ts, "switch")
    return arg


def _undo_transfer(ts, cc, tc, saved, new):
    """``_transfer`` raised: if we never left (the origin it set is still the greenlet of
    ``cc``, ours), put back what it changed; the target stays as it was, or is dead if its
    continulet ended before its ``_bootstrap`` took over (a RecursionError at its first line,
    at the recursion limit)."""
    prev = ts.origin
    if prev is None or _slot_c(prev) is not cc:
        _repair_main(ts, cc)  # the switch happened
        return
    g = ts.current
    if g is not prev:
        if g is not ts.main and _slot_c(g) is tc:
            if not tc.is_pending():
                g._greenlet__ts = None
            else:
                _unbegin(g, ts)
        g._greenlet__context = new
        ts.current = prev
    _set_ctx(saved)
    prev._greenlet__context = None


def _thrown_in(ts, cc):
    """Receiver side of a switch that raised, once it happened (the native switch's)."""
    _repair_main(ts, cc)
    _after(ts, "throw")


def _repair_main(ts, cc):
    """A switch of ours (continulet ``cc``) raised after it happened: the sender set the state
    (I2) — unless a greenlet died with an exception before its ``permute`` (I5), which then
    reaches the main greenlet with the state part-way to the parent: finish it as a death
    into the main greenlet."""
    main = ts.main
    if _slot_c(main) is not cc:
        return
    g = ts.current
    if g is not main:
        c = _slot_c(g)
        if c is not None and not c.is_pending():
            g._greenlet__ts = None  # the dying greenlet (or a parent that died as it began)
        else:  # the parent, made current after it was given its context (the current one)
            if g._greenlet__context is None:
                g._greenlet__context = _get_ctx()
            _unbegin(g, ts)
        ts.current = main
    elif main._greenlet__context is None:
        return  # a death into us whose hand-over was complete
    ts.starting = None
    _set_ctx(main._greenlet__context)
    main._greenlet__context = None


def _unbegin(g, ts):
    """Undo ``_begin`` of ``g`` if its ``_bootstrap`` has not run (I5): unstarted again."""
    c = ts.starting
    if c is not None and _slot_c(g) is c:
        ts.starting = None
        g._greenlet__c = g._greenlet__ts = g._greenlet__home = None


def _cthrow_tb(cc, exc, to):
    return _cthrow(cc, exc, None, exc.__traceback__, to=to)


def _after(ts, event):
    """Receiver side of a switch: clear ``origin``, run deferred kills, call the tracer."""
    origin = ts.origin
    ts.origin = None
    if ts.deleteme:
        _kill_pending(ts)
    trace = ts.trace
    if trace is not None and origin is not None:
        try:
            trace(event, (origin, ts.current))
        except BaseException:
            ts.trace = None
            raise


def _pack(args, kwargs):
    if kwargs:
        return (args, kwargs) if args else kwargs
    return args[0] if len(args) == 1 else args


def _lineage_main(g):
    while _slot_c(g) is None:
        g = _slot_parent(g)
        if g is None:
            return None
    return _slot_home(g).main


def _check_switch(g, ts):
    m = _lineage_main(g)
    if m is ts.main:
        return
    if m is None:
        raise error("cannot switch to a garbage collected greenlet")
    if not _alive(m._greenlet__home):
        raise error("cannot switch to a different thread (which happens to have exited)")
    raise error("Cannot switch to a different thread\n\tCurrent:  %r\n\tExpected: %r" % (ts.main, m))


def _deliver(target, args, kwargs, exc):
    """Slow path of switch/throw: self-switch, dead targets, unstarted targets, errors."""
    ts = _tls.ts
    if ts.deleteme:
        _kill_pending(ts)
    _check_switch(target, ts)
    if (exc is not None and target._greenlet__ts is None and target._greenlet__c is not None
            and isinstance(exc, GreenletExit)):
        args, kwargs, exc = (exc,), None, None  # GreenletExit thrown at a dead greenlet: a value
    while True:
        if target is ts.current:
            ts.origin = target
            if exc is not None:
                try:
                    raise exc
                except BaseException:
                    _after(ts, "throw")
                    raise
            _after(ts, "switch")
            return _pack(args, kwargs)
        if target._greenlet__ts is ts:
            if exc is not None:
                return _transfer(ts, target, _cthrow_tb, exc)
            return _transfer(ts, target, _cswitch, _pack(args, kwargs))
        if target._greenlet__c is None:
            run = target.run  # may run arbitrary code (subclass properties)
            if target._greenlet__c is not None:
                continue
            _check_switch(target, ts)
            try:
                _begin(target, ts, run, args, kwargs, exc)
                return _transfer(ts, target, _cswitch, None)
            except BaseException:
                _unbegin(target, ts)  # it never ran (I5); one that ran cleared ts.starting
                raise
        target = _slot_parent(target)  # dead: on to the parent


def _begin(g, ts, run, args, kwargs, exc):
    c = _continulet(_bootstrap, [g, run, args or (), kwargs or {}, exc])
    ts.starting = c  # first: until its _bootstrap runs, the start can be undone (I5)
    g._greenlet__c = c
    g._greenlet__ts = g._greenlet__home = ts
    # After the greenlet is consistent (an asynchronous exception may land at this call on
    # PyPy, where it is a Python no-op): a garbage greenlet is killed by __del__ with
    # GreenletExit, never unwound by CPython's collector.
    _owned_by_layer(c)


def _bootstrap(c, box):
    g, run, args, kwargs, exc = box
    del box[:]
    ts = _tls.ts
    result = None
    try:
        ts.starting = None  # I5: begun
        _after(ts, "switch" if exc is None else "throw")
        # The run attribute is released here, in the new greenlet, as the C greenlet's
        # inner_bootstrap does: its __del__ may switch.
        try:
            del g._greenlet__run
        except AttributeError:
            pass
        del g  # I3
        if exc is not None:
            raise exc
        # explicit arities: CALL runs a Python ``run`` in this eval loop (no C recursion, less
        # C stack saved per switch of this greenlet; the collector, and the clearing of an
        # exited thread's stacks, see the arguments on this frame's stack); ``*args`` goes
        # through CALL_FUNCTION_EX (its tuple is held by C)
        if kwargs:
            result = run(*args, **kwargs)
        elif not args:
            result = run()
        elif len(args) == 1:
            result = run(args[0])
        elif len(args) == 2:
            result = run(args[0], args[1])
        elif len(args) == 3:
            result = run(args[0], args[1], args[2])
        else:
            result = run(*args)
    except GreenletExit as e:
        result = e
        exc = None
    except BaseException as e:
        exc = e
    else:
        exc = None
    del run, args, kwargs
    exc, result = _die(c, ts, result, exc)
    if exc is not None:
        raise exc
    return result


def _die(c, ts, result, exc):
    """Dying greenlet (continulet ``c``): find the parent to return into (skipping dead ones,
    starting an unstarted one), make it current and hand it ``c``'s end; returns what ``c``
    ends with, ``(exception or None, result)``.  Raises nothing itself, so that no frame of
    ours joins the traceback of an exception the greenlet passes on.  Its changes come in the
    order I5 needs."""
    g = ts.current
    ts.origin = g  # first: from here on a __del__ defers its kill (I2)
    g._greenlet__context = _get_ctx()
    g._greenlet__ts = None
    p = g._greenlet__parent
    run = _MISSING
    while True:
        if p is None:  # greenlet would abort ("ran out of parent greenlets"); use main
            p = ts.main
        if _slot_ts(p) is ts:
            break
        if _slot_c(p) is None:
            try:
                run = p.run
                _check_switch(p, ts)
            except BaseException as e:
                run = _MISSING
                exc = e
            else:
                break
        elif _slot_ts(p) is not None or _slot_main(p):
            exc = error("cannot switch to a different thread")
        p = _slot_parent(p)
    _set_ctx(p._greenlet__context)
    ts.current = p
    p._greenlet__context = None
    if run is not _MISSING:
        _begin(p, ts, run, None if exc is not None else (result,), None, exc)
        result = exc = None
    _permute(c, p._greenlet__c)
    del g, p
    return exc, result


# ____________________________________________________________ collection of suspended greenlets


def _kill(g, ts):
    old = g._greenlet__parent
    try:
        g._greenlet__parent = ts.current  # within the try: put back whatever happens
        _deliver(g, None, None, GreenletExit("Killing the greenlet because all references have vanished."))
    except BaseException:
        _unraisable(g)
    finally:
        g._greenlet__parent = old
    if g._greenlet__ts is ts:
        _leaked.append(g)
        sys.stderr.write("GreenletExit did not kill %r\n" % (g,))


_draining = set()  # thread states whose pending kills are being run (a kill switches: no nesting)


def _kill_pending(ts):
    """Kill the greenlets whose kill ``__del__`` deferred, in order, one at a time (a switch
    during a kill does not start a nested run).  Each leaves ``ts.deleteme`` before its kill
    and goes back to its head if an asynchronous exception (KeyboardInterrupt) lands here
    before its kill happened, so that the next switch kills it and the rest."""
    if ts in _draining:
        return
    pending = ts.deleteme
    try:
        _draining.add(ts)
        while pending:
            g = pending[0]
            try:
                del pending[0]
                if g._greenlet__ts is ts and g is not ts.current:
                    _kill(g, ts)
            except BaseException:
                if g._greenlet__ts is ts and (not pending or pending[0] is not g):
                    pending.insert(0, g)
                raise
    finally:
        _draining.discard(ts)


class _UnraisableArgs(object):
    """What ``sys.unraisablehook`` receives (its own type cannot be made from Python)."""

    __slots__ = ("exc_type", "exc_value", "exc_traceback", "err_msg", "object")


def _unraisable(obj):
    """As ``PyErr_WriteUnraisable(obj)``: to a replaced ``sys.unraisablehook``, else to stderr."""
    typ, val, tb = sys.exc_info()
    try:
        hook = getattr(sys, "unraisablehook", None)
        if hook is not None and hook is not getattr(sys, "__unraisablehook__", None):
            args = _UnraisableArgs()
            args.exc_type, args.exc_value, args.exc_traceback = typ, val, tb
            args.err_msg, args.object = None, obj
            hook(args)
            return
        sys.stderr.write("Exception ignored in: %r\n" % (obj,))
        sys.excepthook(typ, val, tb)
    except BaseException:
        pass


# ____________________________________________________________ the greenlet type


def getcurrent():
    "Returns the current greenlet (i.e. the one which called this function)."
    if _is_finalizing():  # greenlet >= 3.5.1: not during interpreter finalization
        raise RuntimeError("greenlet is being finalized")
    return _current()


def _current():
    ts = _tls.ts
    if ts.deleteme:
        _kill_pending(ts)
    return ts.current


_base_dict = _GreenletBase.__dict__["__dict__"]


def _set_dict(g, value):
    if not isinstance(value, dict):  # the C greenlet's __dict__ setter
        raise TypeError("__dict__ must be a dictionary")
    _base_dict.__set__(g, value)


def _del_dict(g):
    raise TypeError("__dict__ may not be deleted")


class greenlet(_GreenletBase):
    """greenlet(run=None, parent=None) -> greenlet

Creates a new greenlet object (without running it).

 - *run* -- The callable to invoke.
 - *parent* -- The parent greenlet. The default is the current greenlet."""

    __slots__ = _GREENLET_SLOTS

    if _NATIVE is None:  # the native base's __new__ does this (a Python one would be called)

        def __new__(cls, *args, **kwargs):
            self = _new_object(cls)
            self._greenlet__c = self._greenlet__ts = self._greenlet__home = self._greenlet__context = None
            self._greenlet__main = False
            self._greenlet__parent = _current()
            return self

    def __init__(self, run=_MISSING, parent=None, *extra):
        if extra:
            raise TypeError("green() takes at most 2 arguments (%d given)" % (2 + len(extra)))
        if run is not _MISSING:
            _set_run(self, run)
        if parent is not None:
            _set_parent(self, parent)

    if _NATIVE is None:

        def switch(self, *args, **kwargs):
            """switch(*args, **kwargs)

    Switch execution to this greenlet, starting it with ``run(*args, **kwargs)`` if it has not
    started yet.  Returns the value passed when switching back."""
            ts = _tls.ts
            if self._greenlet__ts is ts and ts.current is not self:
                if kwargs:
                    return _transfer(ts, self, _cswitch, (args, kwargs) if args else kwargs)
                return _transfer(ts, self, _cswitch, args[0] if len(args) == 1 else args)
            return _deliver(self, args, kwargs, None)

    def throw(self, *args, **kwargs):
        """throw([typ[, val[, tb]]]) -- switch to this greenlet and raise the exception there
(default `greenlet.GreenletExit`)."""
        if kwargs:
            raise TypeError("throw() takes no keyword arguments")
        if len(args) > 3:
            raise TypeError("throw expected at most 3 arguments, got %d" % len(args))
        exc = _make_exc(*args)
        ts = _tls.ts
        if self._greenlet__ts is ts and ts.current is not self:
            return _transfer(ts, self, _cthrow_tb, exc)
        return _deliver(self, None, None, exc)

    def __bool__(self):
        if self._greenlet__main:
            return True
        ts = self._greenlet__ts
        return ts is not None and (ts is _tls.ts or _alive(ts))

    @property
    def dead(self):
        if self._greenlet__main:
            return not _alive(self._greenlet__ts)
        ts = self._greenlet__ts
        return self._greenlet__c is not None and (ts is None or (ts is not _tls.ts and not _alive(ts)))

    @property
    def run(self):
        if self._greenlet__main:
            raise AttributeError("Main greenlets do not have a run attribute.")
        if self._greenlet__c is None:
            try:
                return _slot_run(self)  # not via getattr: a subclass's __getattr__ sees only "run"
            except AttributeError:
                pass
        raise AttributeError("run")

    @run.setter
    def run(self, value):
        _set_run(self, value)

    @run.deleter
    def run(self):
        _set_run(self, _MISSING)

    @property
    def parent(self):
        return self._greenlet__parent

    @parent.setter
    def parent(self, value):
        _set_parent(self, value)

    @parent.deleter
    def parent(self):
        raise AttributeError("can't delete attribute")

    @property
    def gr_frame(self):
        ts = self._greenlet__ts
        if ts is None or ts.current is self or ts.exited:
            return None  # (an exited thread's greenlets: their frames are cleared, as greenlet 3.x does)
        f = _suspended_frame((ts.current if self._greenlet__main else self)._greenlet__c)
        while f is not None and f.f_code in _INTERNAL_CODE:
            f = f.f_back
        return f

    @property
    def gr_context(self):
        ts = self._greenlet__ts
        if ts is not None and ts.current is self:
            if ts is not _tls.ts:
                raise ValueError("cannot get context of a greenlet that is running in a different thread")
            return _get_ctx()
        return self._greenlet__context

    @gr_context.setter
    def gr_context(self, ctx):
        if ctx is not None and not isinstance(ctx, _Context):
            raise TypeError("greenlet context must be a contextvars.Context or None")
        ts = self._greenlet__ts
        if ts is not None and ts.current is self:
            if ts is not _tls.ts:
                raise ValueError("cannot set context of a greenlet that is running in a different thread")
            _set_ctx(ctx)
        else:
            self._greenlet__context = ctx

    @gr_context.deleter
    def gr_context(self):
        raise AttributeError("can't delete context attribute")

    @property
    def _stack_saved(self):
        """Bytes of this greenlet's C stack saved to the heap while it is suspended (0 when
        running, dead or not started; always 0 where the interpreter does not say)."""
        ts = self._greenlet__ts
        if _stack_saved_of is None or ts is None or self is ts.current:
            return 0
        # I1: a suspended main greenlet's stack is kept by the running greenlet's continulet
        c = ts.current._greenlet__c if self._greenlet__main else self._greenlet__c
        return _stack_saved_of(c) if c is not None else 0

    # greenlet's own __dict__ checks; attribute access itself goes through the base's dict slot
    __dict__ = property(_base_dict.__get__, _set_dict, _del_dict, doc="The instance dictionary.")

    def __getstate__(self):
        raise TypeError("cannot serialize '%s' object" % _tp_name(self))

    def __repr__(self):
        home = self._greenlet__home
        exited = home is not None and not _alive(home)
        otid = "0x%x" % id(home) if home is not None and not exited else "0x(nil)"
        if self.dead:
            return "<%s object at 0x%x (otid=%s) %sdead>" % (
                _tp_name(self), id(self), otid, "(thread exited) " if exited else "")
        if _tls.ts.current is self:
            where = " current"
        else:
            where = " suspended" if self._greenlet__c is not None else ""
        return "<%s object at 0x%x (otid=%s)%s%s%s%s>" % (
            _tp_name(self), id(self), otid, where, " active" if self._greenlet__c is not None else "",
            " started" if self._greenlet__c is not None else " pending",
            " main" if self._greenlet__main else "")

    def __del__(self):
        # greenlet 3.x: a suspended greenlet that loses its last reference gets GreenletExit.
        ts = self._greenlet__ts
        if ts is None or self._greenlet__main or self._greenlet__c is None:
            return
        try:
            if sys.is_finalizing() or not _alive(ts):
                return  # no code runs at shutdown / for greenlets of exited threads
            if ts is not _tls.ts or ts.origin is not None:
                ts.deleteme.append(self)  # other thread, or mid-switch (I2): kill it later
                return
            _kill(self, ts)
        except Exception:
            pass

    getcurrent = staticmethod(getcurrent)
    error = error
    GreenletExit = GreenletExit


def _tp_name(g):
    return "greenlet.greenlet" if type(g) is greenlet else type(g).__name__


def _set_run(g, run):
    if g._greenlet__main:
        raise AttributeError("Main greenlets do not have a run attribute.")
    if g._greenlet__c is not None:
        raise AttributeError("run cannot be set after the start of the greenlet")
    if run is not _MISSING:
        g._greenlet__run = run
    else:
        try:
            del g._greenlet__run
        except AttributeError:
            pass


def _set_parent(g, parent):
    if g._greenlet__main:
        raise AttributeError("cannot set the parent of a main greenlet")
    if not isinstance(parent, greenlet):
        raise TypeError("GreenletChecker: Expected any type of greenlet, not %s" % type(parent).__name__)
    p = parent
    while p is not None:
        if p is g:
            raise ValueError("cyclic parent chain")
        root = p
        p = _slot_parent(p)
    if not _slot_main(root):
        raise ValueError("parent must not be garbage collected")
    if g._greenlet__c is not None and g._greenlet__home.main is not root:
        raise ValueError("parent cannot be on a different thread")
    g._greenlet__parent = parent


def _make_exc(typ=GreenletExit, val=None, tb=None):
    if tb is not None and not isinstance(tb, _TracebackType):
        raise TypeError("throw() third argument must be a traceback object")
    if isinstance(typ, type) and issubclass(typ, BaseException):
        exc = _normalize_exc(typ, val)
    elif isinstance(typ, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        exc = typ
    else:
        raise TypeError("exceptions must be classes, or instances, not %s" % type(typ).__name__)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


# ____________________________________________________________ tracing


def gettrace():
    "gettrace() -> object\n\nReturns the currently set tracing function, or None."
    return _tls.ts.trace


def settrace(callback):
    "settrace(callback) -> object\n\nSets a new tracing function and returns the previous one."
    ts = _tls.ts
    prev, ts.trace = ts.trace, callback
    return prev


def enable_optional_cleanup(flag):
    """Accepted for compatibility; this implementation has no optional cleanup pass."""


def get_clocks_used_doing_optional_cleanup():
    return 0


if "gevent" in sys.modules:
    # gevent is importing us: its compiled modules ask for greenlet's C API capsule
    # (PyCapsule_Import("greenlet._C_API")), which a pure-Python greenlet cannot give; say so.
    # Only then: a module ``__getattr__`` keeps CPython (3.11+) from specializing every
    # ``greenlet.<name>`` lookup in users' code (LOAD_ATTR_MODULE), ~250 instructions each.
    def __getattr__(name):
        if name == "_C_API":
            raise AttributeError(
                "module 'greenlet' has no attribute '_C_API': this greenlet is continulet's, in "
                "pure Python (greenlet.__implementation__ == 'continulet'), without greenlet's C "
                "API.  Extensions compiled against greenlet's headers cannot use it; for gevent "
                "set GEVENT_PURE_PYTHON=1, or switch to the real greenlet: pip uninstall greenlet "
                "&& pip install greenlet"
            )
        raise AttributeError("module 'greenlet' has no attribute %r" % (name,))


# The slots read without the instance's __getattribute__ (a subclass's may be anything: the
# C greenlet's state is not attributes at all); used where parent chains are walked.
_slot_c, _slot_ts, _slot_home, _slot_parent, _slot_main, _slot_run = (
    (_GreenletBase if _NATIVE is not None else greenlet).__dict__["_greenlet__" + n].__get__
    for n in ("c", "ts", "home", "parent", "main", "run"))
greenlet.settrace = staticmethod(settrace)
_tls = _Local()  # per-thread state; _Local.__init__ runs once in each thread that uses greenlets
greenlet.gettrace = staticmethod(gettrace)

_INTERNAL_CODE = frozenset(
    f.__code__ for f in (_transfer, _cthrow_tb, _after, _deliver, _bootstrap, _kill, _kill_pending, getcurrent,
                         _current, greenlet.throw, greenlet.__del__)
    + ((greenlet.switch,) if _NATIVE is None else ())
)
if _NATIVE is not None:
    # The native base creates greenlets (parent: the current greenlet) and takes the common
    # __init__ calls, greenlet(run) and greenlet(run, parent); this __init__ stays for every
    # other call (its checks, its messages).
    _init_slow = greenlet.__dict__["__init__"]
    del greenlet.__init__
    # greenlet.greenlet's finalizer is native (it calls __del__ only when there is something to
    # kill); __del__ stays in the class for subclasses and super() calls.
    _finalize_slow = greenlet.__dict__["__del__"]
    _NATIVE.greenlet_init(sys.modules[__name__])
