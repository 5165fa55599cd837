"""stackless.tasklet: life cycle, run queue placement, throw/kill, attributes (SPEC §3.2).

Expected results follow C Stackless 3.x (taskletobject.c / scheduling.c); where PyPy's
lib_pypy stackless lacks the API or behaves differently the test is a documented deviation.
"""

import gc
import sys
import threading

import pytest

from conftest import IMPL, differs

stackless = pytest.importorskip("stackless")

NO_ATTRS = "lib_pypy tasklets lack this attribute (SPEC §3.4)"
NO_THROW = "lib_pypy tasklets have no throw()/raise_exception() (SPEC §3.4)"
KILL_NOW = "lib_pypy kill() has no pending= and no Stackless queue placement (SPEC §3.4)"


def test_call_creates_alive_scheduled_tasklet():
    got = []
    t = stackless.tasklet(got.append)(1)
    assert t.alive is True
    assert stackless.getruncount() == 2
    stackless.run()
    assert got == [1]
    assert t.alive is False


def test_setup_is_call():
    got = []
    t = stackless.tasklet(got.append)
    assert t.setup(7) is t
    stackless.run()
    assert got == [7]


def test_kwargs_are_passed():
    got = []
    stackless.tasklet(lambda a, b=0: got.append((a, b)))(1, b=2)
    stackless.run()
    assert got == [(1, 2)]


def test_function_runs_only_when_scheduled():
    got = []
    stackless.tasklet(got.append)("x")
    assert got == []
    stackless.run()
    assert got == ["x"]


@differs("pypy-oracle", reason="lib_pypy tasklet() takes (func, label), not (func, args, kwargs)")
def test_bind_with_args_makes_paused_tasklet():
    got = []
    t = stackless.tasklet(got.append, (5,))
    assert (t.alive, t.paused, t.scheduled) == (True, True, False)
    assert stackless.getruncount() == 1
    t.insert()
    stackless.run()
    assert got == [5]


@differs("pypy-oracle", reason="lib_pypy bind(func) takes no args/kwargs")
def test_bind_none_keeps_function_and_sets_args():
    got = []
    t = stackless.tasklet(got.append)
    assert t.bind(None, (3,)) is t
    t.insert()
    stackless.run()
    assert got == [3]


@differs("pypy-oracle", reason="lib_pypy bind(func) takes no kwargs")
def test_bind_kwargs_only():
    got = []
    t = stackless.tasklet(lambda x=1: got.append(x))
    t.bind(kwargs={"x": 9})
    t.insert()
    stackless.run()
    assert got == [9]


@differs("pypy-oracle", reason="lib_pypy bind(func) cannot unbind (None is not callable)")
def test_bind_all_none_unbinds():
    t = stackless.tasklet(lambda: None)
    t.bind(None)
    with pytest.raises(RuntimeError) as e:
        t.setup()
    assert str(e.value) == "the tasklet was not bound to a function"


@differs("pypy-oracle", reason="lib_pypy does not distinguish alive before setup")
def test_bound_but_not_setup_is_not_alive():
    t = stackless.tasklet(lambda: None)
    assert (t.alive, t.scheduled) == (False, False)


def test_rebind_finished_tasklet_keeps_identity():
    got = []
    t = stackless.tasklet(got.append)(1)
    stackless.run()
    t.bind(got.append)
    t.setup(2)
    stackless.run()
    assert got == [1, 2]


@differs("pypy-oracle", reason="lib_pypy insert() appends a scheduled tasklet a second time")
def test_insert_is_idempotent():
    t = stackless.tasklet(lambda: None)()
    t.insert()
    t.insert()
    assert stackless.getruncount() == 2
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy remove() returns None and has no paused attribute")
def test_remove_pauses_and_returns_self():
    t = stackless.tasklet(lambda: None)()
    assert t.remove() is t
    assert (t.alive, t.paused, t.scheduled) == (True, True, False)
    assert stackless.getruncount() == 1
    t.remove()  # not scheduled: no-op
    t.insert()
    assert t.scheduled
    stackless.run()
    assert not t.alive


def test_removed_tasklet_does_not_run():
    got = []
    t = stackless.tasklet(got.append)(1)
    t.remove()
    stackless.run()
    assert got == []
    t.insert()
    stackless.run()
    assert got == [1]


def test_run_switches_immediately_and_returns_to_caller():
    log = []

    def f():
        log.append("f")

    t = stackless.tasklet(f)()
    log.append("before")
    t.run()
    log.append("after")
    assert log == ["before", "f", "after"]
    assert t.alive is False


@differs("pypy-oracle", reason="lib_pypy run() appends the target instead of making it current")
def test_run_upsets_fifo_order():
    # run() makes the target current; the caller runs right after it, ahead of older tasklets
    log = []

    def w(name):
        log.append(name)
        stackless.schedule()
        log.append(name + "2")

    a = stackless.tasklet(w)("a")
    b = stackless.tasklet(w)("b")
    b.run()
    log.append("main")
    stackless.run()
    assert log == ["b", "main", "a", "b2", "a2"]
    assert not a.alive and not b.alive


@differs("pypy-oracle", reason="lib_pypy switch() is a raw coroutine switch without queue bookkeeping")
def test_switch_pauses_the_caller():
    log = []
    main = stackless.getmain()

    def f():
        log.append(("f", main.paused, main.scheduled))
        main.insert()

    t = stackless.tasklet(f)()
    t.switch()
    log.append("main back")
    assert log == [("f", True, False), "main back"]
    assert not t.alive


@differs("pypy-oracle", reason="lib_pypy TaskletExit derives from Exception")
def test_taskletexit_is_systemexit():
    assert issubclass(stackless.TaskletExit, SystemExit)
    assert not issubclass(stackless.TaskletExit, Exception)


def test_taskletexit_ends_tasklet_silently():
    def f():
        raise stackless.TaskletExit

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.alive is False


def test_uncaught_exception_propagates_out_of_run():
    def f():
        raise ValueError("boom")

    stackless.tasklet(f)()
    with pytest.raises(ValueError) as e:
        stackless.run()
    assert str(e.value) == "boom"


def test_kill_runs_finally_and_ends_tasklet():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.alive
    t.kill()
    assert log == ["finally"]
    assert t.alive is False


@differs("pypy-oracle", reason="lib_pypy kill() skips a never-started tasklet as a zombie incorrectly")
def test_kill_never_started_tasklet_does_not_call_it():
    got = []
    t = stackless.tasklet(got.append)(1)
    t.kill()
    assert got == []
    assert (t.alive, t.scheduled) == (False, False)
    assert stackless.getruncount() == 1


def test_kill_dead_tasklet_is_noop():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    t.kill()
    assert t.alive is False


def test_kill_can_be_caught():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except stackless.TaskletExit:
            log.append("caught")
        log.append("continues")

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill()
    assert log == ["caught", "continues"]
    assert not t.alive


@differs("pypy-oracle", reason=KILL_NOW)
def test_kill_pending_defers_until_run():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.kill(pending=True) is None
    assert log == []
    assert t.scheduled and t.alive
    stackless.run()
    assert log == ["finally"]
    assert not t.alive


@differs("pypy-oracle", reason="lib_pypy kill() leaves a blocked tasklet counted in balance")
def test_kill_blocked_tasklet_unblocks_channel():
    ch = stackless.channel()
    log = []

    def f():
        try:
            ch.receive()
        except stackless.TaskletExit:
            log.append("exit")
            raise

    t = stackless.tasklet(f)()
    stackless.run()
    assert ch.balance == -1 and t.blocked
    t.kill()
    assert log == ["exit"]
    assert ch.balance == 0
    assert not t.blocked and not t.alive


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_switches_to_target_now():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except ValueError as e:
            log.append(("caught", e.args))

    t = stackless.tasklet(f)()
    stackless.run()
    t.throw(ValueError, "v")
    assert log == [("caught", ("v",))]


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_instance_and_tuple_value():
    log = []

    def f():
        for _ in range(2):
            try:
                stackless.schedule_remove()
            except KeyError as e:
                log.append(e.args)

    t = stackless.tasklet(f)()
    stackless.run()
    t.throw(KeyError("k"))
    t.throw(KeyError, (1, 2))
    assert log == [("k",), (1, 2)]


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_pending_makes_runnable_without_switch():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except ValueError:
            log.append("caught")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.throw(ValueError, pending=True) is None
    assert log == [] and t.scheduled
    stackless.run()
    assert log == ["caught"]


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_into_current_raises_immediately():
    with pytest.raises(KeyError):
        stackless.getcurrent().throw(KeyError)


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_into_unstarted_tasklet_skips_function():
    got = []
    t = stackless.tasklet(got.append)(1)
    with pytest.raises(ValueError):
        t.throw(ValueError)
    assert got == [] and not t.alive


@differs("pypy-oracle", reason=NO_THROW)
def test_throw_with_traceback_keeps_it():
    try:
        raise IndexError("x")
    except IndexError:
        tb = sys.exc_info()[2]
    seen = []

    def f():
        try:
            stackless.schedule_remove()
        except IndexError as e:
            seen.append(tb in _tb_chain(e.__traceback__))

    t = stackless.tasklet(f)()
    stackless.run()
    t.throw(IndexError, IndexError("x"), tb)
    assert seen == [True]


def _tb_chain(tb):
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


@differs("pypy-oracle", reason=NO_THROW)
def test_raise_exception_builds_from_args():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except ValueError as e:
            log.append(e.args)

    t = stackless.tasklet(f)()
    stackless.run()
    t.raise_exception(ValueError, 1, 2)
    assert log == [(1, 2)]


@differs("pypy-oracle", reason="lib_pypy has no set_atomic / atomic attribute")
def test_set_atomic_returns_previous():
    cur = stackless.getcurrent()
    assert cur.atomic is False
    assert cur.set_atomic(True) is False
    assert cur.atomic is True
    assert cur.set_atomic(0) is True
    assert cur.atomic is False


@differs("pypy-oracle", reason="lib_pypy has no atomic context manager")
def test_atomic_context_manager_restores():
    cur = stackless.getcurrent()
    with stackless.atomic():
        assert cur.atomic is True
        with stackless.atomic():
            assert cur.atomic is True
        assert cur.atomic is True
    assert cur.atomic is False


@differs("pypy-oracle", reason="lib_pypy has no set_ignore_nesting")
def test_set_ignore_nesting_returns_previous():
    t = stackless.tasklet(lambda: None)
    assert t.set_ignore_nesting(1) is False
    assert t.ignore_nesting is True
    assert t.set_ignore_nesting(False) is True


def test_tempval_is_writable():
    t = stackless.tasklet(lambda: None)
    t.tempval = 42
    assert t.tempval == 42


@differs("pypy-oracle", reason=NO_ATTRS)
def test_main_tasklet_attributes():
    main = stackless.getmain()
    assert main is stackless.getcurrent()
    assert (main.is_main, main.is_current, main.alive, main.scheduled) == (True, True, True, True)
    assert main.blocked is False and main.paused is False
    assert main.thread_id == threading.get_ident()


@differs("pypy-oracle", reason=NO_ATTRS)
def test_is_current_inside_tasklet():
    seen = []

    def f():
        me = stackless.getcurrent()
        seen.append((me is t, me.is_current, me.is_main, stackless.getmain().is_current))

    t = stackless.tasklet(f)()
    stackless.run()
    assert seen == [(True, True, False, False)]


@differs("pypy-oracle", reason=NO_ATTRS)
def test_prev_next_follow_run_queue():
    main = stackless.getmain()
    assert main.next is main and main.prev is main
    a = stackless.tasklet(lambda: None)()
    b = stackless.tasklet(lambda: None)()
    assert (main.next, a.next, b.next) == (a, b, main)
    assert (main.prev, a.prev, b.prev) == (b, main, a)
    a.remove()
    assert (a.next, a.prev, main.next) == (None, None, b)
    stackless.run()
    a.insert()
    stackless.run()


@differs("pypy-oracle", reason=NO_ATTRS)
def test_prev_next_in_channel_queue():
    ch = stackless.channel()
    a = stackless.tasklet(ch.receive)()
    b = stackless.tasklet(ch.receive)()
    stackless.run()
    assert ch.queue is a
    assert (a.prev, a.next, b.prev, b.next) == (None, b, a, None)
    ch.send(1)
    ch.send(2)
    stackless.run()


@differs("pypy-oracle", reason=NO_ATTRS)
def test_frame_of_current_and_suspended_tasklet():
    assert stackless.getcurrent().frame is sys._getframe()

    def worker_body():
        stackless.schedule_remove()

    t = stackless.tasklet(worker_body)()
    assert t.frame is None  # not started yet
    stackless.run()
    assert t.frame.f_code.co_name == "worker_body"
    t.insert()
    stackless.run()
    assert t.frame is None


@differs("pypy-oracle", reason=NO_ATTRS)
def test_restorable_before_start():
    t = stackless.tasklet(lambda: None)()
    assert t.restorable is True
    stackless.run()


@differs("pypy-oracle", reason=NO_ATTRS)
def test_dead_tasklet_state():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    assert (t.alive, t.paused, t.scheduled, t.blocked) == (False, False, False, False)
    assert (t.next, t.prev, t.frame) == (None, None, None)


def test_tasklet_subclass_with_attributes():
    class Named(stackless.tasklet):
        def __init__(self, func, name):
            super().__init__(func)
            self.name = name

    got = []
    t = Named(lambda: got.append(stackless.getcurrent().name), "n1")()
    stackless.run()
    assert got == ["n1"]
    assert t.name == "n1"


@differs("pypy-oracle", reason="lib_pypy tasklets have no bind()")
def test_subclass_bind_is_called_by_init():
    # tasklet.__init__ is self.bind(...): an override is called (CPython's native __init__
    # takes the common call itself only for classes that keep tasklet.bind).
    calls = []

    class Binding(stackless.tasklet):
        def bind(self, func=None, args=None, kwargs=None):
            calls.append(func)
            return super().bind(func, args, kwargs)

    def f():
        pass

    t = Binding(f)
    assert calls == [f]
    t()
    stackless.run()
    assert not t.alive


@differs("pypy-oracle", reason="lib_pypy tasklets have no bind()")
def test_bind_assigned_to_a_subclass_later_is_called_by_init():
    # the native __init__ remembers the last class whose bind is tasklet.bind (pystate::cast
    # K2): a bind assigned afterwards is seen
    calls = []

    class Late(stackless.tasklet):
        pass

    def f():
        pass

    Late(f)
    Late(f)

    def bind(self, func=None, args=None, kwargs=None):
        calls.append(func)
        return stackless.tasklet.bind(self, func, args, kwargs)

    Late.bind = bind
    t = Late(f)
    assert calls == [f]
    t()
    stackless.run()
    assert not t.alive


@differs("pypy-oracle", reason=NO_ATTRS)
def test_subclass_init_without_super_still_belongs_to_this_thread():
    got = []

    class NoSuper(stackless.tasklet):
        def __init__(self, tag):
            self.tag = tag

    t = NoSuper("x")
    assert t.thread_id == threading.get_ident()
    t.bind(lambda: got.append(stackless.getcurrent().tag))
    t()
    stackless.run()
    assert got == ["x"]


@pytest.mark.skipif(IMPL.startswith("cpython-pure") or not IMPL.startswith("cpython"),
                    reason="the native base's tp_new")
def test_native_new_is_raw():
    # pystate::slots (Z1): the raw tp_new is installed on every supported CPython, and an
    # instance of a subclass with a dict keeps it (made by object.__new__, Z2)
    from continulet import _native

    assert _native.tasklet_new_is_raw()

    class WithDict(stackless.tasklet):
        pass

    t = WithDict.__new__(WithDict)
    assert t.thread_id == threading.get_ident() and not t.alive
    t.tag = "d"
    assert t.__dict__ == {"tag": "d"}


@differs("pypy-oracle", reason="lib_pypy tasklet() setup checks differ (SPEC §3.4)")
def test_setup_errors():
    t = stackless.tasklet(lambda *a: None)(1)
    with pytest.raises(RuntimeError) as ei:
        t.setup(2)
    assert str(ei.value) == "tasklet is alive"
    t.kill()
    u = stackless.tasklet()
    with pytest.raises(RuntimeError) as ei:
        u()
    assert str(ei.value) == "the tasklet was not bound to a function"
    with pytest.raises(TypeError) as ei:
        stackless.tasklet(42)
    assert str(ei.value) == "tasklet function must be a callable or None"


@differs("pypy-oracle", reason=NO_ATTRS)
def test_tasklet_made_in_another_thread_belongs_to_it():
    out = []

    def worker():
        t = stackless.tasklet(lambda: out.append(threading.get_ident()))
        out.append(t.thread_id == threading.get_ident())
        t()
        stackless.run()

    th = threading.Thread(target=worker)
    th.start()
    th.join(30)
    assert out[0] is True and out[1] == th.ident


@differs("pypy-oracle", reason="lib_pypy has no bind_thread")
def test_bind_thread_to_current_thread_is_noop():
    t = stackless.tasklet(lambda: None)
    assert t.bind_thread() is None
    assert t.thread_id == threading.get_ident()


def test_exceptions_do_not_leak_between_tasklets():
    seen = []

    def f():
        seen.append(sys.exc_info()[0])

    try:
        raise KeyError
    except KeyError:
        stackless.tasklet(f)()
        stackless.run()
        seen.append(sys.exc_info()[0])
    assert seen == [None, KeyError]


def test_many_tasklets_round_robin():
    log = []

    def w(i):
        for k in range(3):
            log.append((k, i))
            stackless.schedule()

    for i in range(50):
        stackless.tasklet(w)(i)
    stackless.run()
    assert log == [(k, i) for k in range(3) for i in range(50)]



def test_finalizer_of_a_replaced_tempval_can_read_the_tasklet():
    # the native core releases the old value after its store into the tasklet, not during it
    seen = []

    class Old(object):
        def __del__(self):
            seen.append((t.tempval, t.alive))

    t = stackless.tasklet()
    t.tempval = Old()
    t.tempval = 1
    gc.collect()
    assert seen == [(1, False)]


# -- a tasklet that becomes garbage while alive (Stackless 3.x: its finalizer kills it) ------

GARBAGE_ORACLE = "lib_pypy's tasklets have no finalizer: a garbage one is freed without running"


def _collect_until(cond, rounds=10):
    for _ in range(rounds):
        gc.collect()
        if cond():
            return True
    return cond()


def _suspended_with_log(block):
    log = []

    def body():
        try:
            block()
        except BaseException as e:
            log.append(type(e).__name__)
            raise
        finally:
            log.append("finally")

    return body, log


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
def test_paused_tasklet_that_becomes_garbage_is_killed():
    import weakref

    body, log = _suspended_with_log(stackless.schedule_remove)
    t = stackless.tasklet(body)()
    stackless.run()
    assert t.alive and not t.scheduled
    ref = weakref.ref(t)
    del t
    assert _collect_until(lambda: log == ["TaskletExit", "finally"]), log
    assert _collect_until(lambda: ref() is None)
    assert stackless.getcurrent() is stackless.getmain() and stackless.getruncount() == 1


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
@pytest.mark.parametrize("direction", ["receive", "send"])
@pytest.mark.parametrize("start", ["run", "schedule"])
def test_tasklet_blocked_on_a_channel_that_becomes_garbage_is_killed(direction, start):
    # run(): it blocks with nothing else runnable (the watchdog's path, in Python natively);
    # schedule(): with the main tasklet runnable (the native core's own block).
    import weakref

    ch = stackless.channel()
    block = ch.receive if direction == "receive" else (lambda: ch.send((1, ch)))
    body, log = _suspended_with_log(block)
    t = stackless.tasklet(body)()
    stackless.run() if start == "run" else stackless.schedule()
    assert t.blocked and ch.balance == (-1 if direction == "receive" else 1)
    refs = weakref.ref(t), weakref.ref(ch)
    del t, ch, block, body  # (body: its closure holds block)
    assert _collect_until(lambda: log == ["TaskletExit", "finally"]), log
    assert _collect_until(lambda: all(r() is None for r in refs))
    assert stackless.getruncount() == 1


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
def test_error_of_a_garbage_tasklet_being_killed_is_unraisable():
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(type(u.exc_value))

    def body():
        try:
            stackless.schedule_remove()
        finally:
            raise ValueError("from finally")

    try:
        stackless.tasklet(body)()
        stackless.run()
        assert _collect_until(lambda: seen)
    finally:
        sys.unraisablehook = old
    assert seen == [ValueError]
    assert stackless.getcurrent() is stackless.getmain() and stackless.getruncount() == 1


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
def test_tasklet_found_garbage_inside_a_scheduler_step_is_killed_at_the_next_one():
    # The collector runs inside the step (an allocation of a schedule callback, here a
    # forced collection): the kill waits for the thread's next scheduling operation.
    body, log = _suspended_with_log(stackless.schedule_remove)
    t = stackless.tasklet(body)()
    stackless.run()
    del t
    seen = []

    def callback(prev, nxt):
        gc.collect()
        seen.append(list(log))

    stackless.tasklet(lambda: None)()
    stackless.set_schedule_callback(callback)
    try:
        stackless.schedule()
    finally:
        stackless.set_schedule_callback(None)
    assert seen and seen[0] == []  # not killed inside the step
    assert _collect_until(lambda: stackless.schedule() is not None and log == ["TaskletExit", "finally"]), log


@pytest.mark.fresh_interpreter_on_pypy
@pytest.mark.parametrize("start", ["run", "schedule"])
def test_tasklet_of_a_bound_channel_method_blocked_on_it_is_freed(start):
    # tasklet(ch.receive)(): no Python frame of its own; the function holds the channel.
    # (Nothing of it runs when it is killed: lib_pypy, which frees it unkilled, passes too.)
    import weakref

    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run() if start == "run" else stackless.schedule()
    assert t.blocked
    refs = weakref.ref(t), weakref.ref(ch)
    del t, ch
    assert _collect_until(lambda: all(r() is None for r in refs))
    assert stackless.getruncount() == 1


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
def test_tasklet_started_with_keyword_arguments_that_becomes_garbage_is_killed():
    import weakref

    log = []

    def body(ch, *, tag):
        try:
            ch.receive()
        except BaseException as e:
            log.append((tag, type(e).__name__))
            raise

    ch = stackless.channel()
    t = stackless.tasklet(body)(ch, tag="kw")
    stackless.schedule()
    assert t.blocked
    refs = weakref.ref(t), weakref.ref(ch)
    del t, ch
    assert _collect_until(lambda: log == [("kw", "TaskletExit")]), log
    assert _collect_until(lambda: all(r() is None for r in refs))


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=GARBAGE_ORACLE)
def test_tasklet_started_with_many_arguments_that_becomes_garbage_is_killed():
    import weakref

    log = []

    def body(ch, a, b, c, *rest, **named):
        try:
            ch.receive()
        except BaseException as e:
            log.append((a + b + c, rest, named, type(e).__name__))
            raise

    ch = stackless.channel()
    t1 = stackless.tasklet(body)(ch, 1, 2, 3)
    t2 = stackless.tasklet(body)(ch, 1, 2, 3, 4, x=5)
    stackless.schedule()
    assert t1.blocked and t2.blocked
    refs = weakref.ref(t1), weakref.ref(t2), weakref.ref(ch)
    del t1, t2, ch
    assert _collect_until(lambda: len(log) == 2), log
    assert sorted(log, key=repr) == [(6, (), {}, "TaskletExit"), (6, (4,), {"x": 5}, "TaskletExit")]
    assert _collect_until(lambda: all(r() is None for r in refs))


def test_tasklet_keyword_arguments_that_are_not_identifiers_are_passed():
    got = []
    stackless.tasklet(lambda **kw: got.append(kw))(**{"not-a-name": 1, "class": 2})
    stackless.tasklet(lambda *a, **kw: got.append((a, kw)))(1, 2, 3, 4, five=5)
    stackless.run()
    assert got == [{"not-a-name": 1, "class": 2}, ((1, 2, 3, 4), {"five": 5})]



def test_continulets_of_finished_tasklets_found_by_the_collector_are_not_reused():
    # A finished tasklet's continulet may be kept for the next tasklet (pybind B5), but never
    # one somebody else references: here, whatever the collector lists.
    import gc

    from _continuation import continulet

    for _ in range(10):
        stackless.tasklet(lambda: None)()
    stackless.run()
    held = [o for o in gc.get_objects() if isinstance(o, continulet) and not o.is_pending()]
    ch = stackless.channel()
    blocked = [stackless.tasklet(ch.receive)() for _ in range(10)]
    stackless.run()
    assert all(t.blocked for t in blocked)
    assert not any(c.is_pending() for c in held)
    for _ in blocked:
        ch.send(None)
    stackless.run()
    assert not any(t.alive for t in blocked)
    assert not any(c.is_pending() for c in held)
