"""Collection of greenlets: suspended ones get GreenletExit (finally runs), others just go away."""
import gc
import weakref

import pytest

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as G

from conftest import differs, only_on

NO_KILL = "lib_pypy greenlet frees suspended greenlets silently (no GreenletExit, finally not run)"
MESSAGE = "Killing the greenlet because all references have vanished."


def _collect(until=None):
    """Collect until ``until()`` holds (PyPy's JIT may keep a dead object reachable a little longer)."""
    for _ in range(20):
        gc.collect()
        getcurrent()  # run any kill greenlet deferred to this thread
        if until is None or until():
            return


def _parked(log):
    main = getcurrent()

    def run():
        try:
            main.switch()
        except GreenletExit as e:
            log.append(("exit", str(e), getcurrent().parent is main))
            raise
        finally:
            log.append("finally")

    g = G(run)
    g.switch()
    return g


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_suspended_greenlet_is_killed_on_collection():
    log = []
    g = _parked(log)
    r = weakref.ref(g)
    del g
    _collect(lambda: log)
    assert log == [("exit", MESSAGE, True), "finally"]
    assert r() is None


def test_unstarted_greenlet_is_just_freed():
    ran = []
    g = G(lambda: ran.append(1))
    r = weakref.ref(g)
    del g
    _collect()
    assert r() is None
    assert ran == []


def test_unstarted_greenlet_in_cycles_is_collected():
    # through its instance __dict__, a subclass slot, and its own parent field
    class Slotted(G):
        __slots__ = ("other",)

    a = G(lambda: None)
    a.me = a
    b = Slotted(lambda: None)
    b.other = b
    c = G(lambda: None)
    d = G(lambda: None, parent=c)
    c.partner = d
    refs = [weakref.ref(x) for x in (a, b, c, d)]
    del a, b, c, d
    _collect(lambda: all(r() is None for r in refs))
    assert [r() for r in refs] == [None] * 4


def test_dead_greenlet_is_freed():
    g = G(lambda: None)
    g.switch()
    r = weakref.ref(g)
    del g
    _collect()
    assert r() is None


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_kill_runs_in_current_greenlet_context():
    main = getcurrent()
    log = []

    def victim_run():
        try:
            d.switch()
        except GreenletExit:
            log.append(("parent during kill", getcurrent().parent))
            raise

    def dropper():
        v = G(victim_run, parent=main)
        v.switch()
        del v
        _collect(lambda: log)
        return "dropper done"

    d = G(dropper)
    assert d.switch() == "dropper done"
    assert log == [("parent during kill", d)]


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_parent_restored_after_kill():
    main = getcurrent()
    keep = []
    original_parent = G(lambda: None)

    def run():
        try:
            main.switch()
        except GreenletExit:
            me = getcurrent()
            keep.append(me)  # resurrects the greenlet...
            parent_during = me.parent
            keep.append(parent_during)
            # ...and dies normally, back into the killer

    g = G(run, parent=original_parent)
    g.parent = main
    g.switch()
    g.parent = original_parent
    del g
    _collect(lambda: keep)
    assert len(keep) == 2
    g, parent_during = keep
    assert parent_during is main
    assert g.parent is original_parent
    assert g.dead


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_greenlet_catching_exit_and_returning():
    log = []
    main = getcurrent()

    def run():
        try:
            main.switch()
        except GreenletExit:
            log.append("caught")
            return "ignored result"

    g = G(run)
    g.switch()
    del g
    _collect(lambda: log)
    assert log == ["caught"]


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_many_suspended_greenlets_collected():
    log = []
    gs = [_parked(log) for _ in range(50)]
    del gs
    _collect(lambda: log.count("finally") == 50)
    assert log.count("finally") == 50


def test_weakref_callback_after_death():
    called = []
    g = G(lambda: None)
    r = weakref.ref(g, lambda ref: called.append(True))
    g.switch()
    del g
    _collect(lambda: called)
    assert called == [True]
    assert r() is None


@pytest.mark.fresh_interpreter_on_pypy
@differs("pypy-oracle", reason=NO_KILL)
def test_greenlet_refusing_to_die(capfd):
    main = getcurrent()
    state = []

    def stubborn():
        while True:
            try:
                main.switch()
            except GreenletExit:
                state.append("refused")
                main.switch()  # while being killed, main is the parent: go back there

    g = G(stubborn)
    g.switch()
    del g
    _collect(lambda: state)
    assert state == ["refused"]
    err = capfd.readouterr().err
    assert "GreenletExit did not kill <greenlet.greenlet object at " in err


@differs("cpython-pure", "pypy", "pypy-oracle",
         reason="greenlet.py's own switch/_deliver frames, on the path that started the greenlet, stay "
                "referenced by the traceback of an exception that later passed through them, and they "
                "reference the greenlet: it is neither freed nor killed while that exception lives.  The "
                "native start on CPython has no such frames (as the C greenlet: killed at once)")
def test_greenlet_referenced_only_by_an_old_traceback_path_is_killed():
    # Reduced from fuzz seeds 120715 and 123072: g starts its unstarted parent p; p throws into
    # a dead greenlet, so the exception lands in main, in the switch that started g, and stays
    # alive (p's suspended frame holds it) with that switch's frames in its traceback.
    log = []
    main = getcurrent()
    dead = G(lambda: None)
    dead.switch()

    class Boom(Exception):
        pass

    def run_p(*args):
        dead.throw(Boom("p"))

    p = G(run_p)

    def run_g(*args):
        try:
            getcurrent().parent.switch(1)
        except GreenletExit:
            log.append("g killed")
            raise

    g = G(run_g, p)
    with pytest.raises(Boom):
        g.switch()
    w = weakref.ref(g)
    del g
    _collect(lambda: w() is None)
    assert log == ["g killed"]
    assert w() is None
    assert p  # still suspended, holding the exception


def _continulets():
    from _continuation import continulet

    return [o for o in gc.get_objects() if isinstance(o, continulet)]


def test_continulets_of_dead_greenlets_found_by_the_collector_are_not_reused():
    # A dead greenlet's continulet may be kept for the next greenlet (pybind B5), but
    # never one somebody else references: here, whatever the collector lists.
    for _ in range(10):
        G(lambda: None).switch()
    held = [c for c in _continulets() if not c.is_pending()]
    main = getcurrent()
    parked = [G(lambda: main.switch()) for _ in range(10)]
    for g in parked:
        g.switch()
    assert not any(c.is_pending() for c in held)
    for g in parked:
        g.switch()
    assert all(g.dead for g in parked)
    assert not any(c.is_pending() for c in held)


@only_on("cpython", "cpython-pure", "pypy", reason="greenlet.py's own field")
def test_continulet_of_a_dead_greenlet_kept_by_a_reference_stays_finished():
    from _continuation import error

    g = G(lambda: 42)
    assert g.switch() == 42
    c = g._greenlet__c
    del g
    main = getcurrent()
    parked = [G(lambda: main.switch()) for _ in range(3)]
    for p in parked:
        p.switch()
    assert not c.is_pending()
    with pytest.raises(error, match="continulet already finished"):
        c.switch()
    for p in parked:
        p.switch()
    assert not c.is_pending()


@only_on("cpython", "cpython-pure", "pypy", reason="lib_pypy greenlet does not track thread exit")
def test_a_finished_thread_leaves_no_continulet_of_its_greenlets():
    import threading

    def work():
        for _ in range(20):
            G(lambda: None).switch()

    work()  # this thread's own spares, if any, are made before the count
    before = len(_continulets())
    t = threading.Thread(target=work)
    t.start()
    t.join()
    _collect(lambda: len(_continulets()) <= before)
    assert len(_continulets()) <= before
