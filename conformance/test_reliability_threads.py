"""Threads under load (issue 8): many threads switching concurrently, misuse across threads,
threads that exit with suspended greenlets/tasklets, no deadlock with the GIL.

Every thread is joined with a timeout, so a deadlock is a test failure, not a hung CI job.
``sys.setswitchinterval`` is made tiny while the threads run, so the GIL changes hands in the
middle of switches as often as possible.  Sizes: ``CONTINULET_THREADS`` (8) threads, each with
``CONTINULET_THREAD_TASKS`` (1000; 200 on PyPy) greenlets or tasklets; ``ci/reliability`` raises the rounds.
"""

import gc
import os
import subprocess
import sys
import threading
import weakref

import pytest

from conftest import IS_PYPY, differs, only_on

THREADS = int(os.environ.get("CONTINULET_THREADS", "8"))
# PyPy is the reference column here, not the subject, and is ~10x slower at this (its GC walks
# every suspended stacklet): smaller default sizes there keep the suite's time in bounds.
TASKS = int(os.environ.get("CONTINULET_THREAD_TASKS", "200" if IS_PYPY else "1000"))
ROUNDS = int(os.environ.get("CONTINULET_THREAD_ROUNDS", "3" if IS_PYPY else "5"))
JOIN_TIMEOUT = 120

ORACLE_THREADS = "lib_pypy stackless keeps one module-global scheduler (single-threaded: hangs)"
not_on_oracle_stackless = only_on("cpython", "cpython-pure", "pypy", reason=ORACLE_THREADS)
ORACLE_GREENLET = "lib_pypy greenlet: different cross-thread messages / no thread-exit tracking"


@pytest.fixture
def fast_gil():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(fn, n=THREADS):
    """Run ``fn(i)`` in ``n`` threads started together; return results; fail on error or hang."""
    results = [None] * n
    errors = []
    barrier = threading.Barrier(n)

    def wrap(i):
        try:
            barrier.wait(JOIN_TIMEOUT)
            results[i] = fn(i)
        except BaseException as e:  # reported to the test thread
            errors.append((i, e))

    ths = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(JOIN_TIMEOUT)
    hung = [t for t in ths if t.is_alive()]
    assert not hung, "%d threads did not finish within %ds (deadlock?)" % (len(hung), JOIN_TIMEOUT)
    if errors:
        raise errors[0][1]
    return results


# -- concurrent switching ------------------------------------------------------------------


def test_threads_each_switch_a_ring_of_greenlets(fast_gil):
    from greenlet import getcurrent, greenlet

    def work(tid):
        main = getcurrent()
        ring = []
        total = [0]

        def run(k):
            v = main.switch()
            for _ in range(ROUNDS):
                total[0] += k
                nxt = ring[(k + 1) % len(ring)]
                v = nxt.switch(v + 1) if not nxt.dead else v
            return (tid, k)

        ring.extend(greenlet(run) for _ in range(TASKS))
        for k, g in enumerate(ring):
            g.switch(k)
        v = ring[0].switch(0)  # goes round the ring ROUNDS times
        while any(not g.dead for g in ring):
            for g in ring:
                if not g.dead:
                    v = g.switch(v)
        assert all(g.dead for g in ring)
        assert getcurrent() is main
        return total[0]

    results = run_threads(work)
    expected = ROUNDS * sum(range(TASKS))
    assert results == [expected] * THREADS


def test_threads_each_run_greenlet_chains_with_throw(fast_gil):
    from greenlet import GreenletExit, getcurrent, greenlet

    def work(tid):
        main = getcurrent()
        killed = 0
        live = []
        for i in range(TASKS):
            g = greenlet(lambda i=i: main.switch(i) * 2)
            assert g.switch() == i
            live.append(g)
        for i, g in enumerate(live):
            if i % 2:
                assert isinstance(g.throw(GreenletExit), GreenletExit)
                killed += 1
            else:
                assert g.switch(i) == 2 * i
        del live[:]  # nothing suspended left
        return killed

    assert run_threads(work) == [TASKS // 2] * THREADS


def test_threads_each_switch_continulets(fast_gil):
    from _continuation import continulet

    def body(c, n):
        total = 0
        for _ in range(ROUNDS):
            total += c.switch(n)
        return total

    def work(tid):
        cs = [continulet(body, i) for i in range(TASKS)]
        for i, c in enumerate(cs):
            assert c.switch() == i
        for _ in range(ROUNDS - 1):
            for i, c in enumerate(cs):
                assert c.switch(1) == i
        return sum(c.switch(1) for c in cs)

    assert run_threads(work) == [ROUNDS * TASKS] * THREADS


@not_on_oracle_stackless
def test_threads_each_schedule_tasklets_and_channels(fast_gil):
    import stackless

    def work(tid):
        ch = stackless.channel()
        seen = []

        def sender(i):
            for r in range(ROUNDS):
                stackless.schedule()
                ch.send((i, r))

        def receiver():
            for _ in range(TASKS * ROUNDS):
                seen.append(ch.receive())

        for i in range(TASKS):
            stackless.tasklet(sender)(i)
        stackless.tasklet(receiver)()
        stackless.run()
        assert stackless.getruncount() == 1
        return len(seen), len(set(seen))

    assert run_threads(work) == [(TASKS * ROUNDS, TASKS * ROUNDS)] * THREADS


@not_on_oracle_stackless
def test_channel_between_threads_under_load(fast_gil):
    """Threads pass values to the main thread's receiver tasklet through one channel, ROUNDS
    times: each value arrives once, each thread's in order (a race lost one value in ~300
    rounds before 562e703; ``ci/reliability`` runs 50 rounds)."""
    import stackless

    n = 200
    for _ in range(ROUNDS):
        ch = stackless.channel()

        def work(tid):
            for i in range(n):
                ch.send((tid, i))
            return tid

        got = []

        def receiver():
            for _ in range(THREADS * n):
                got.append(ch.receive())

        stackless.tasklet(receiver)()
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("r", run_threads(work)))
        t.start()
        stackless.run(threadblock=True)
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()
        assert box["r"] == list(range(THREADS))
        for tid in range(THREADS):
            assert [v for v in got if v[0] == tid] == [(tid, i) for i in range(n)]
        assert len(got) == THREADS * n


# -- misuse across threads while everything runs ---------------------------------------------


@differs("pypy-oracle", reason=ORACLE_GREENLET)
def test_cross_thread_misuse_under_load_gets_documented_errors(fast_gil):
    import greenlet
    from _continuation import continulet, error

    ready = threading.Barrier(THREADS)
    parked = [None] * THREADS

    def work(tid):
        main = greenlet.getcurrent()
        g = greenlet.greenlet(lambda: main.switch("parked") or "done")
        assert g.switch() == "parked"
        c = continulet(lambda c: c.switch("parked") or "done")
        assert c.switch() == "parked"
        parked[tid] = (main, g, c)
        ready.wait(JOIN_TIMEOUT)
        errors = 0
        for other in range(THREADS):
            if other == tid:
                continue
            omain, og, oc = parked[other]
            with pytest.raises(greenlet.error) as ei:
                og.switch()
            assert str(ei.value) == "Cannot switch to a different thread\n\tCurrent:  %r\n\tExpected: %r" % (
                main, omain)
            with pytest.raises(greenlet.error) as ei:
                og.throw()
            assert str(ei.value).startswith("Cannot switch to a different thread\n")
            with pytest.raises(error) as ei:
                oc.switch()
            assert str(ei.value) == "cannot switch to a different thread"
            with pytest.raises(error) as ei:
                c.switch(to=oc)
            assert str(ei.value) == "cross-thread double switch"
            errors += 4
        ready.wait(JOIN_TIMEOUT)  # nobody finishes its own before all tried
        assert g.switch() == "done" and g.dead
        assert c.switch() == "done" and not c.is_pending()
        return errors

    assert run_threads(work) == [4 * (THREADS - 1)] * THREADS


# -- threads that exit with suspended greenlets / tasklets ----------------------------------


def _collect_until(pred):
    """gc.collect until ``pred()`` (PyPy's warm JIT may keep a dead object a little longer)."""
    for _ in range(20):
        gc.collect()
        if pred():
            return True
    return False


def _park_greenlets_in_threads(holder, log, per_thread, n=THREADS):
    """Each thread parks ``per_thread`` greenlets (kept alive by ``holder``) and exits."""
    from greenlet import getcurrent, greenlet

    def work(tid):
        main = getcurrent()

        def run():
            try:
                main.switch()
            finally:
                log.append("finally")  # must not run in another thread (greenlet 3.x)

        gs = [greenlet(run) for _ in range(per_thread)]
        for g in gs:
            g.switch()
        holder.extend(gs)  # still referenced when the thread exits
        return len(gs)

    return sum(run_threads(work, n))


def _in_fresh_interpreter(name):
    """Run ``name()`` of this module in a fresh interpreter: whether an object is collected
    must not depend on what earlier tests left in PyPy's JIT (see the GC-kill notes)."""
    code = "import sys; sys.path.insert(0, %r); import %s as m; m.%s()" % (
        os.path.dirname(os.path.abspath(__file__)), __name__.rpartition(".")[2], name)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=JOIN_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr


def check_thread_exit_with_suspended_greenlets():
    holder, log = [], []
    assert _park_greenlets_in_threads(holder, log, TASKS // 10) == THREADS * (TASKS // 10)
    assert _collect_until(lambda: all(g.dead for g in holder))
    refs = [weakref.ref(g) for g in holder]
    del holder[:]
    assert _collect_until(lambda: all(r() is None for r in refs))
    assert log == []


@differs("pypy-oracle", reason=ORACLE_GREENLET)
def test_thread_exit_with_suspended_greenlets_runs_no_code_and_frees_them():
    _in_fresh_interpreter("check_thread_exit_with_suspended_greenlets")


def check_thread_exit_with_blocked_tasklets():
    import stackless

    refs = []

    def work(tid):
        ch = stackless.channel()
        ts = [stackless.tasklet(ch.receive)() for _ in range(TASKS // 10)]
        stackless.run()
        assert all(t.blocked for t in ts)
        refs.extend(weakref.ref(t) for t in ts)
        return len(ts)

    assert sum(run_threads(work)) == THREADS * (TASKS // 10)
    assert _collect_until(lambda: all(r() is None for r in refs)), "tasklets of exited threads not freed"


@not_on_oracle_stackless
def test_thread_exit_with_blocked_tasklets_frees_them():
    _in_fresh_interpreter("check_thread_exit_with_blocked_tasklets")


def check_thread_exit_frees_what_only_suspended_stacks_hold():
    """A thread exits holding a greenlet referenced only by the frame of another suspended
    greenlet, a paused tasklet referenced only by a blocked tasklet's frame: nothing runs in
    any of them (greenlet 3.x; the cleanup runs no code), and each is freed once what the
    main thread holds of the other goes."""
    import stackless
    from greenlet import getcurrent, greenlet

    log, refs, holder = [], [], []

    def work(tid):
        main = getcurrent()

        def a():
            try:
                main.switch()
            finally:
                log.append("a")

        def b(ga):
            try:
                main.switch()  # `ga` is referenced only by this frame
            finally:
                log.append("b")

        ga = greenlet(a)
        ga.switch()
        gb = greenlet(b)
        gb.switch(ga)
        refs.extend([weakref.ref(ga), weakref.ref(gb)])
        holder.append(gb)
        del ga

        def paused():
            try:
                stackless.schedule_remove()
            finally:
                log.append("paused")

        def blocker(ch, t):
            try:
                ch.receive()  # `t` is referenced only by this frame
            finally:
                log.append("blocker")

        ch = stackless.channel()
        tp = stackless.tasklet(paused)()
        stackless.run()
        tb = stackless.tasklet(blocker)(ch, tp)
        stackless.run()
        refs.extend([weakref.ref(tp), weakref.ref(tb)])
        holder.append(ch)
        return 1

    assert sum(run_threads(work, 2)) == 2
    del holder[:]
    assert _collect_until(lambda: all(r() is None for r in refs)), [r() for r in refs]
    assert log == []


@not_on_oracle_stackless
def test_thread_exit_frees_what_only_suspended_stacks_hold():
    _in_fresh_interpreter("check_thread_exit_frees_what_only_suspended_stacks_hold")


class _Payload(object):
    """A local whose weak reference tells when a cleared frame let it go."""


def check_thread_exit_clears_running_generators():
    """Greenlets suspended inside running generators (a ``for`` loop's, a generator
    delegating with ``yield from``) and a coroutine when their thread exits: nothing runs in
    them (no generator ``finally``), their locals are freed."""
    from greenlet import getcurrent, greenlet

    log, refs, holder = [], [], []

    def work(tid):
        main = getcurrent()

        def inner(p):
            try:
                yield main.switch()
            finally:
                log.append("inner")

        def outer(p):
            try:
                yield from inner(p)
            finally:
                log.append("outer")

        def run(p, make):
            try:
                for _ in make(p):
                    pass
            finally:
                log.append("run")

        class Switch(object):
            def __await__(self):
                yield main.switch()

        async def coroutine(p):
            try:
                await Switch()
            finally:
                log.append("coroutine")

        def drive(p, _):
            try:
                coroutine(p).send(None)
            finally:
                log.append("drive")

        for body, make in ((run, inner), (run, outer), (drive, None)):
            p = _Payload()
            refs.append(weakref.ref(p))
            g = greenlet(body)
            g.switch(p, make)
            holder.append(g)
        return 1

    assert sum(run_threads(work, 2)) == 2
    assert _collect_until(lambda: all(r() is None for r in refs)), "locals of cleared frames kept"
    assert log == []
    del holder[:]
    gc.collect()
    assert log == []


@not_on_oracle_stackless
@differs("pypy", reason="PyPy keeps a suspended continulet's frames after its thread exits "
         "(they are never resumed: their locals stay referenced until it is collected)")
def test_thread_exit_clears_running_generators():
    _in_fresh_interpreter("check_thread_exit_clears_running_generators")


def check_thread_exit_keeps_frames_held_elsewhere_readable():
    """Frame objects of a suspended greenlet kept by the main thread (its top frame, a frame
    below it, a running generator's) stay readable after its thread exits and its stack is
    cleared: code, line, ``f_back`` chain, locals (cleared: no crash reading them).  Plain
    locals are freed at once; what a cell variable references, at the latest when the frame
    goes (3.10 keeps the cells of a frame held elsewhere).  Nothing runs."""
    from greenlet import getcurrent, greenlet

    log, plain, in_cell, frames, holder = [], [], [], [], []

    def work(tid):
        main = getcurrent()

        def gen(q):
            try:
                frames.append(sys._getframe())
                yield main.switch()
            finally:
                log.append("gen")

        def deepest(p, q):
            cell = [p]  # (a cell variable, read through the frame's locals)

            def closure():
                return cell

            del p
            frames.append(sys._getframe())
            try:
                for _ in gen(q):
                    pass
            finally:
                log.append("deepest")
            return closure

        def run(p, q):
            frames.append(sys._getframe())
            try:
                deepest(p, q)
            finally:
                log.append("run")

        p, q = _Payload(), _Payload()
        in_cell.append(weakref.ref(p))
        plain.append(weakref.ref(q))
        g = greenlet(run)
        g.switch(p, q)
        holder.append(g)
        return 1

    assert sum(run_threads(work, 2)) == 2
    assert _collect_until(lambda: all(r() is None for r in plain)), "locals of cleared frames kept"
    for f in frames:
        seen = 0
        while f is not None and seen < 50:
            assert f.f_code.co_name and f.f_lineno > 0
            f.f_locals  # (cleared locals read as absent)
            f, seen = f.f_back, seen + 1
    assert log == []
    del holder[:], frames[:]
    assert _collect_until(lambda: all(r() is None for r in in_cell)), "cells of cleared frames kept"
    assert log == []


@not_on_oracle_stackless
@differs("pypy", reason="PyPy keeps a suspended continulet's frames after its thread exits "
         "(they are never resumed: their locals stay referenced until it is collected)")
def test_thread_exit_keeps_frames_held_elsewhere_readable():
    _in_fresh_interpreter("check_thread_exit_keeps_frames_held_elsewhere_readable")


def check_fork_keeps_the_surviving_threads_stacks():
    """In the child of a ``fork()``, CPython clears the other threads' states from the thread
    that survives: that thread's own suspended greenlet, continulet and tasklet must still
    resume there (only a thread's own exit clears its stacks)."""
    import warnings

    import stackless
    from _continuation import continulet
    from greenlet import getcurrent, greenlet

    main = getcurrent()
    g = greenlet(lambda: "greenlet %s" % (main.switch("suspended"),))
    assert g.switch() == "suspended"
    c = continulet(lambda c: "continulet %s" % (c.switch("suspended"),))
    assert c.switch() == "suspended"
    ch = stackless.channel()
    stackless.tasklet(lambda: ch.send("tasklet"))()
    stackless.run()

    ready, done = threading.Event(), threading.Event()

    def other():  # another thread with a suspended greenlet, alive during the fork
        m = getcurrent()
        greenlet(m.switch).switch()
        ready.set()
        done.wait(JOIN_TIMEOUT)

    t = threading.Thread(target=other)
    t.start()
    assert ready.wait(JOIN_TIMEOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (3.12+: fork of a multi-threaded process)
        pid = os.fork()
    if pid == 0:
        try:
            ok = (g.switch(1) == "greenlet 1" and c.switch(2) == "continulet 2"
                  and ch.receive() == "tasklet")
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    done.set()
    t.join(JOIN_TIMEOUT)
    assert os.waitstatus_to_exitcode(status) == 0
    assert g.switch(3) == "greenlet 3" and c.switch(4) == "continulet 4" and ch.receive() == "tasklet"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
@not_on_oracle_stackless
def test_fork_keeps_the_surviving_threads_stacks():
    _in_fresh_interpreter("check_fork_keeps_the_surviving_threads_stacks")


@pytest.mark.leakcheck
def test_thread_exit_with_suspended_greenlets_is_flat():
    from test_reliability_leaks import check_flat

    def cycle(k):
        for _ in range(k):
            holder, log = [], []
            _park_greenlets_in_threads(holder, log, 10, 4)
            del holder[:]
            assert log == []

    check_flat(cycle, 20, batch=5, warmup=5)


@pytest.mark.leakcheck
def test_threads_finishing_all_their_greenlets_are_flat():
    from greenlet import getcurrent, greenlet

    from test_reliability_leaks import check_flat

    def work(tid):
        main = getcurrent()
        gs = [greenlet(main.switch) for _ in range(50)]
        for g in gs:
            g.switch()
        for g in gs:
            g.switch()
        assert all(g.dead for g in gs)

    check_flat(lambda k: [run_threads(work, 4) for _ in range(k)], 20, batch=5, warmup=5)


# -- the GIL ---------------------------------------------------------------------------------


def test_gil_released_between_switches_no_deadlock(fast_gil):
    """Greenlets that block on locks/conditions owned by other threads' greenlets."""
    import time

    from greenlet import getcurrent, greenlet

    cond = threading.Condition()
    counter = [0]
    n = 50

    def work(tid):
        main = getcurrent()

        def run(k):
            for _ in range(3):
                with cond:  # a lock held across nothing: the switch happens outside it
                    counter[0] += 1
                    cond.notify_all()
                time.sleep(0)  # release the GIL in the middle of a greenlet
                main.switch()

        gs = [greenlet(run) for _ in range(n)]
        for k, g in enumerate(gs):
            g.switch(k)
        while any(not g.dead for g in gs):
            for g in gs:
                if not g.dead:
                    g.switch()
        with cond:
            assert cond.wait_for(lambda: counter[0] >= THREADS * n * 3, JOIN_TIMEOUT)
        return tid

    assert run_threads(work) == list(range(THREADS))


def test_lock_held_across_a_switch_is_released_by_other_greenlet():
    """A lock is owned by the thread, not the greenlet: another greenlet may release it."""
    from greenlet import getcurrent, greenlet

    lock = threading.Lock()
    main = getcurrent()

    def holder():
        lock.acquire()
        main.switch()

    g = greenlet(holder)
    g.switch()
    assert lock.locked()
    lock.release()
    g.switch()
    assert g.dead and not lock.locked()
