"""A gevent-style hub: many greenlets parked on a hub, woken in interleaved order.

The hub is a greenlet that runs a callback loop; workers `wait()` by switching to the hub and
are resumed with values or exceptions via `switch`/`throw` from the hub (as gevent does).
"""
import collections

import pytest

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as G


class Hub(G):
    def __init__(self):
        G.__init__(self)
        self.callbacks = collections.deque()
        self.log = []

    def schedule(self, fn, *args):
        self.callbacks.append((fn, args))

    def run(self):
        while self.callbacks:
            fn, args = self.callbacks.popleft()
            fn(*args)
        return "hub exhausted"


def spawn(hub, fn, *args):
    g = G(fn, parent=hub)
    hub.schedule(g.switch, *args)
    return g


def sleep(hub):
    """Yield to the hub and come back on its next round."""
    me = getcurrent()
    hub.schedule(me.switch)
    return hub.switch()


def test_interleaved_workers():
    hub = Hub()
    order = []

    def worker(name, n):
        for i in range(n):
            order.append((name, i))
            sleep(hub)
        return name

    gs = [spawn(hub, worker, "w%d" % k, 3) for k in range(4)]
    assert hub.switch() == "hub exhausted"
    expected = [("w%d" % k, i) for i in range(3) for k in range(4)]
    assert order == expected
    assert all(g.dead for g in gs)


def test_many_greenlets_ping_through_hub():
    hub = Hub()
    counter = [0]
    n = 300

    def worker():
        for _ in range(5):
            counter[0] += 1
            sleep(hub)

    gs = [spawn(hub, worker) for _ in range(n)]
    assert hub.switch() == "hub exhausted"
    assert counter[0] == 5 * n
    assert all(g.dead for g in gs)


def test_event_wait_and_set():
    hub = Hub()
    waiters = []
    results = []

    def wait_event():
        waiters.append(getcurrent())
        return hub.switch()

    def consumer(k):
        results.append((k, wait_event()))

    def producer():
        sleep(hub)
        for w in list(waiters):
            hub.schedule(w.switch, "value")
        del waiters[:]

    for k in range(5):
        spawn(hub, consumer, k)
    spawn(hub, producer)
    hub.switch()
    assert sorted(results) == [(k, "value") for k in range(5)]


def test_kill_and_timeout_via_throw():
    hub = Hub()
    log = []

    class Timeout(Exception):
        pass

    def sleeper():
        try:
            hub.switch()  # parked forever
        except Timeout:
            log.append("timed out")
            return "recovered"

    def victim():
        try:
            hub.switch()
        except GreenletExit:
            log.append("killed")
            raise
        finally:
            log.append("victim finally")

    s = spawn(hub, sleeper)
    v = spawn(hub, victim)
    hub.schedule(lambda: s.throw(Timeout))
    hub.schedule(lambda: v.throw())
    assert hub.switch() == "hub exhausted"
    assert log == ["timed out", "killed", "victim finally"]
    assert s.dead and v.dead


def test_exception_in_worker_reaches_hub_caller():
    hub = Hub()

    def bad():
        sleep(hub)
        raise RuntimeError("worker failed")

    spawn(hub, bad)
    with pytest.raises(RuntimeError) as ei:
        hub.switch()
    assert str(ei.value) == "worker failed"


def test_nested_switching_inside_callbacks():
    hub = Hub()
    seen = []

    def inner(k):
        seen.append(("inner", k))
        sleep(hub)
        seen.append(("inner-after", k))
        return k * 10

    def outer(k):
        # a greenlet created and driven by another greenlet (parent = outer)
        g = G(inner)
        r = g.switch(k)
        # inner parked on the hub; when the hub resumed it, it returned into outer (its parent)
        seen.append(("outer", k, r))
        sleep(hub)

    for k in range(3):
        spawn(hub, outer, k)
    hub.switch()
    assert [e for e in seen if e[0] == "inner"] == [("inner", k) for k in range(3)]
    assert sorted(e for e in seen if e[0] == "inner-after") == [("inner-after", k) for k in range(3)]
    assert sorted(e for e in seen if e[0] == "outer") == [("outer", k, k * 10) for k in range(3)]
