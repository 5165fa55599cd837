"""Module-level scheduler API: run (incl. preemptive timeout), schedule, callbacks (SPEC §3.1)."""

import sys
import threading

import pytest

from conftest import IMPL, differs  # noqa: F401

stackless = pytest.importorskip("stackless")


@pytest.fixture(autouse=True)
def no_tracer_left():
    """On top of conftest's scheduler clean-up: no opcode tracer survives a test."""
    yield
    sys.settrace(None)


NO_RUN_ARGS = "lib_pypy run() takes no arguments: cooperative only (SPEC §3.4)"
MISSING = "missing from lib_pypy stackless (SPEC §3.4)"


def test_runcount_includes_main():
    assert stackless.getruncount() == 1
    stackless.tasklet(lambda: None)()
    stackless.tasklet(lambda: None)()
    assert stackless.getruncount() == 3
    stackless.run()
    assert stackless.getruncount() == 1


def test_runcount_inside_run_excludes_waiting_main():
    seen = []
    stackless.tasklet(lambda: seen.append(stackless.getruncount()))()
    stackless.tasklet(lambda: seen.append(stackless.getruncount()))()
    stackless.run()
    assert seen == [2, 1]


def test_schedule_alone_returns_current():
    assert stackless.schedule() is stackless.getcurrent()


def test_schedule_returns_retval():
    log = []
    stackless.tasklet(lambda: log.append("t"))()
    assert stackless.schedule(42) == 42
    assert log == ["t"]


def test_schedule_round_robin_order():
    log = []

    def w(name):
        log.append(name + "1")
        stackless.schedule()
        log.append(name + "2")

    stackless.tasklet(w)("a")
    stackless.tasklet(w)("b")
    stackless.schedule()
    log.append("main")
    stackless.run()
    assert log == ["a1", "b1", "main", "a2", "b2"]


@differs("pypy-oracle", reason="lib_pypy tasklets have no scheduled attribute")
def test_schedule_remove_pauses_caller():
    log = []

    def w():
        log.append("before")
        stackless.schedule_remove()
        log.append("after")

    t = stackless.tasklet(w)()
    stackless.run()
    assert log == ["before"]
    assert t.alive and not t.scheduled
    t.insert()
    stackless.run()
    assert log == ["before", "after"]


@differs("pypy-oracle", reason="lib_pypy schedule_remove returns the tasklet, ignoring tempval")
def test_schedule_remove_resumes_with_tempval():
    got = []

    def w():
        got.append(stackless.schedule_remove())

    t = stackless.tasklet(w)()
    stackless.run()
    t.tempval = "value"
    t.insert()
    stackless.run()
    assert got == ["value"]


def test_schedule_remove_default_retval_is_current():
    got = []

    def w():
        got.append(stackless.schedule_remove() is stackless.getcurrent())

    t = stackless.tasklet(w)()
    stackless.run()
    t.insert()
    stackless.run()
    assert got == [True]


def test_run_with_nothing_to_do_returns_none():
    assert stackless.run() is None


def test_run_returns_when_only_blocked_tasklets_remain():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    assert stackless.run() is None
    assert t.blocked and stackless.getruncount() == 1
    ch.send(None)


def test_exception_leaves_other_tasklets_runnable():
    log = []

    def bad():
        raise KeyError("k")

    stackless.tasklet(bad)()
    stackless.tasklet(lambda: log.append("later"))()
    with pytest.raises(KeyError):
        stackless.run()
    assert log == []
    assert stackless.getruncount() == 2
    stackless.run()
    assert log == ["later"]


def test_exception_in_tasklet_goes_to_main_schedule():
    def bad():
        raise OSError("o")

    stackless.tasklet(bad)()
    with pytest.raises(OSError):
        stackless.schedule()
    assert stackless.getruncount() == 1


def test_nested_run_inside_tasklet():
    log = []

    def inner():
        log.append("inner")

    def outer():
        stackless.tasklet(inner)()
        stackless.run()
        log.append("outer after nested run")

    stackless.tasklet(outer)()
    stackless.run()
    assert log == ["inner", "outer after nested run"]


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_run_timeout_interrupts_and_returns_victim():
    def spin():
        for _ in range(10 ** 6):  # bounded: interrupted long before the end
            pass

    t = stackless.tasklet(spin)()
    victim = stackless.run(timeout=500)
    assert victim is t
    assert (t.alive, t.scheduled, t.paused) == (True, False, True)
    t.kill()
    assert not t.alive


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_run_timeout_restores_previous_tracer():
    def tracer(frame, event, arg):
        return None

    def spin():
        for _ in range(10 ** 6):  # bounded: interrupted long before the end
            pass

    t = stackless.tasklet(spin)()
    sys.settrace(tracer)
    try:
        victim = stackless.run(timeout=300)
        restored = sys.gettrace()
    finally:
        sys.settrace(None)
    assert victim is t and restored is tracer
    t.kill()


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_run_timeout_without_interrupt_returns_none():
    got = []
    stackless.tasklet(lambda: got.append(sum(range(10))))()
    assert stackless.run(timeout=1000000) is None
    assert got == [45]


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_preemption_is_round_robin():
    counts = {"a": 0, "b": 0}

    def spin(name):
        for _ in range(10 ** 6):
            counts[name] += 1

    a = stackless.tasklet(spin)("a")
    b = stackless.tasklet(spin)("b")
    order = []
    for i in range(4):
        v = stackless.run(timeout=2000)
        order.append("a" if v is a else "b")
        if i < 3:
            v.insert()  # requeue the victim behind the other spinner
    assert order == ["a", "b", "a", "b"]
    assert counts["a"] > 0 and counts["b"] > 0
    assert (a.scheduled, b.scheduled) == (True, False)
    a.kill()  # a dies; main is next in the queue (b is not scheduled)
    b.kill()
    assert not a.alive and not b.alive


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_atomic_tasklet_is_not_interrupted():
    done = []

    def work():
        with stackless.atomic():
            n = 0
            for i in range(20000):
                n += i
            done.append(n)

    t = stackless.tasklet(work)()
    v = stackless.run(timeout=100)
    # the whole atomic section ran; the pending interrupt hits once atomic is cleared
    assert done == [sum(range(20000))]
    assert v is t and t.alive
    t.insert()
    assert stackless.run() is None
    assert not t.alive


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_soft_timeout_returns_at_next_schedule_point():
    log = []

    def w():
        for i in range(3):
            n = 0
            for k in range(3000):
                n += k
            log.append(i)
            stackless.schedule()

    t = stackless.tasklet(w)()
    v = stackless.run(timeout=100, soft=True)
    assert v is None
    assert log == [0]
    assert t.scheduled and t.alive  # soft: the victim stays in the queue
    stackless.run()
    assert log == [0, 1, 2]


@differs("pypy-oracle", reason=NO_RUN_ARGS)
def test_totaltimeout_counts_across_switches():
    def w():
        for _ in range(10 ** 5):
            stackless.schedule()

    a = stackless.tasklet(w)()
    b = stackless.tasklet(w)()
    v = stackless.run(timeout=3000, totaltimeout=True)
    assert v in (a, b)
    assert stackless.getruncount() == 2
    a.kill()
    b.kill()


@differs("pypy-oracle", reason="lib_pypy set_schedule_callback returns None")
def test_set_schedule_callback_returns_previous():
    def a(prev, nxt):
        pass

    assert stackless.set_schedule_callback(a) is None
    assert stackless.get_schedule_callback() is a
    assert stackless.set_schedule_callback(None) is a
    assert stackless.get_schedule_callback() is None


def test_schedule_callback_sees_every_switch():
    calls = []
    main = stackless.getmain()
    t = stackless.tasklet(stackless.schedule)()
    stackless.set_schedule_callback(lambda p, n: calls.append((p, n)))
    stackless.run()
    stackless.set_schedule_callback(None)
    # t's own schedule() finds no other runnable tasklet: no switch, no callback
    assert calls == [(main, t), (t, main)]


@differs("pypy-oracle", reason="lib_pypy marks the tasklet dead only after the switch")
def test_schedule_callback_prev_is_dead_on_exit():
    seen = []
    t = stackless.tasklet(lambda: None)()
    stackless.set_schedule_callback(lambda p, n: seen.append((p is t, p.alive)))
    stackless.run()
    stackless.set_schedule_callback(None)
    assert seen == [(False, True), (True, False)]


@differs("pypy-oracle", reason=MISSING)
def test_switch_trap_blocks_switches():
    stackless.tasklet(lambda: None)()
    assert stackless.switch_trap(1) == 0
    try:
        with pytest.raises(RuntimeError) as e:
            stackless.schedule()
    finally:
        assert stackless.switch_trap(-1) == 1
    assert str(e.value) == "switch_trap"
    assert stackless.getruncount() == 2 and stackless.getcurrent() is stackless.getmain()
    stackless.run()


@differs("pypy-oracle", reason=MISSING)
def test_switch_trap_allows_no_op_schedule():
    stackless.switch_trap(1)
    try:
        assert stackless.schedule() is stackless.getcurrent()
    finally:
        stackless.switch_trap(-1)
    assert stackless.switch_trap(0) == 0


@differs("pypy-oracle", reason=MISSING)
def test_getcurrentid():
    assert stackless.getcurrentid() == threading.get_ident()
    ids = []
    stackless.tasklet(lambda: ids.append(stackless.getcurrentid()))()
    stackless.tasklet(lambda: ids.append(stackless.getcurrentid()))()
    stackless.run()
    assert len(set(ids)) == 2 and threading.get_ident() not in ids


@differs("pypy-oracle", reason=MISSING)
def test_get_thread_info_for_this_thread():
    t = stackless.tasklet(lambda: None)()
    main = stackless.getmain()
    assert stackless.get_thread_info() == (main, main, 2)
    assert stackless.get_thread_info(threading.get_ident()) == (main, main, 2)
    stackless.run()
    assert t.alive is False


@differs("pypy-oracle", reason=MISSING)
def test_module_properties():
    assert stackless.current is stackless.getcurrent()
    assert stackless.main is stackless.getmain()
    assert stackless.runcount == stackless.getruncount() == 1
    assert threading.get_ident() in stackless.threads


@differs("pypy-oracle", reason="lib_pypy bomb is a plain class with writable attributes")
def test_bomb_attributes_read_only():
    b = stackless.bomb(ValueError, ValueError("v"), None)
    assert b.type is ValueError and str(b.value) == "v" and b.traceback is None
    with pytest.raises(AttributeError):
        b.type = KeyError


@differs("pypy-oracle", reason="lib_pypy bomb does not accept an exc_info tuple")
def test_bomb_from_exc_info_tuple():
    try:
        1 / 0
    except ZeroDivisionError:
        b = stackless.bomb(sys.exc_info())
    assert b.type is ZeroDivisionError and isinstance(b.value, ZeroDivisionError)
    assert b.traceback is not None


@differs("pypy-oracle", reason="lib_pypy bomb does not accept an exc_info tuple")
def test_bomb_in_tempval_explodes_on_run():
    t = stackless.tasklet(lambda: 42)()
    try:
        1 / 0
    except ZeroDivisionError:
        t.tempval = stackless.bomb(*sys.exc_info())
    with pytest.raises(ZeroDivisionError):
        t.run()
    assert not t.alive


@differs("pypy-oracle", reason=MISSING)
def test_error_handler_swallows_tasklet_errors():
    seen = []
    old = stackless.set_error_handler(lambda t, v, tb: seen.append((t, str(v))))
    try:
        stackless.tasklet(lambda: {}["x"])()
        stackless.run()
    finally:
        assert stackless.set_error_handler(old) is not None
    assert seen == [(KeyError, "'x'")]


@differs("pypy-oracle", reason=MISSING)
def test_enable_softswitch_returns_previous():
    old = stackless.enable_softswitch(None)
    assert stackless.enable_softswitch(old) == old
