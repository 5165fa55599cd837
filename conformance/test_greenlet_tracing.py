"""settrace/gettrace: event sequences, origin/target pairs, errors in the tracer."""
import gc

import pytest

import greenlet
from greenlet import getcurrent
from greenlet import greenlet as G


def _quiet():
    """Let earlier tests' dropped greenlets die before tracing starts: a collection during the
    test (when one comes depends on allocation counts: under valgrind, say) would otherwise
    trace their kills too."""
    gc.collect()
    getcurrent()  # run kills deferred to this thread


@pytest.fixture
def trace():
    events = []

    def tracer(event, args):
        events.append((event, args))

    _quiet()
    prev = greenlet.settrace(tracer)
    try:
        yield events
    finally:
        greenlet.settrace(prev)


def test_settrace_returns_previous():
    def t1(e, a):
        pass

    def t2(e, a):
        pass

    assert greenlet.gettrace() is None
    assert greenlet.settrace(t1) is None
    assert greenlet.gettrace() is t1
    assert greenlet.settrace(t2) is t1
    assert greenlet.settrace(None) is t2
    assert greenlet.gettrace() is None


def test_start_yield_throw_die(trace):
    main = getcurrent()

    def run():
        try:
            main.switch()
        except ValueError:
            pass

    g = G(run)
    g.switch()
    g.throw(ValueError)
    assert trace == [
        ("switch", (main, g)),
        ("switch", (g, main)),
        ("throw", (main, g)),
        ("switch", (g, main)),
    ]


def test_death_by_exception_is_a_throw_event(trace):
    main = getcurrent()
    g = G(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        g.switch()
    assert trace == [("switch", (main, g)), ("throw", (g, main))]


def test_throw_into_unstarted_events(trace):
    main = getcurrent()
    g = G(lambda: None)
    with pytest.raises(KeyError):
        g.throw(KeyError)
    assert trace == [("throw", (main, g)), ("throw", (g, main))]


def test_switch_between_siblings_events(trace):
    main = getcurrent()
    b = G(lambda: main.switch("b"))
    a = G(lambda: b.switch())
    assert a.switch() == "b"
    assert trace == [("switch", (main, a)), ("switch", (a, b)), ("switch", (b, main))]


def test_switch_to_self_is_traced(trace):
    main = getcurrent()
    assert main.switch(1) == 1
    assert trace == [("switch", (main, main))]


def test_tracer_runs_in_target():
    seen = []

    def tracer(event, args):
        seen.append(getcurrent() is args[1])

    _quiet()
    prev = greenlet.settrace(tracer)
    try:
        G(lambda: None).switch()
    finally:
        greenlet.settrace(prev)
    assert seen == [True, True]


def test_tracer_exception_removes_tracer_and_raises_in_target():
    main = getcurrent()
    ran = []

    def tracer(event, args):
        if args[1] is not main:
            raise SyntaxError("from tracer")

    def run():
        ran.append(True)

    greenlet.settrace(tracer)
    try:
        g = G(run)
        with pytest.raises(SyntaxError):
            g.switch()
        assert greenlet.gettrace() is None
        assert ran == []  # the error was raised in g before run was called
        assert g.dead
    finally:
        greenlet.settrace(None)


def test_tracer_exception_on_switch_back():
    main = getcurrent()
    calls = []

    def tracer(event, args):
        calls.append(event)
        # the switch from g back to main (keyed on the greenlets, not on a call count: a
        # greenlet dropped by an earlier test may be killed, and traced, meanwhile)
        if event == "switch" and args[0] is g and args[1] is main:
            raise KeyError("trace")

    g = G(lambda: main.switch("x"))
    gc.collect()  # let earlier tests' dropped greenlets die before tracing starts
    greenlet.settrace(tracer)
    try:
        with pytest.raises(KeyError):
            g.switch()
        assert greenlet.gettrace() is None
    finally:
        greenlet.settrace(None)
    assert not g.dead
    g.switch()
    assert g.dead


def test_trace_is_per_thread():
    import threading

    seen = {}

    def tracer(e, a):
        pass

    greenlet.settrace(tracer)
    try:
        t = threading.Thread(target=lambda: seen.setdefault("t", greenlet.gettrace()))
        t.start()
        t.join()
        assert seen["t"] is None
        assert greenlet.gettrace() is tracer
    finally:
        greenlet.settrace(None)
