"""Scheduler event order, pinned by text snapshots (STYLE.md point 14).

Each program records the schedule callback (``switch prev -> next``), the channel callback
(``who send/recv on chan blocks/proceeds``) and its own output.  The expected orders in
``snapshots/stackless_*.txt`` were derived by hand from C Stackless 3.x
(``generic_channel_cando``: preference -1 puts the woken receiver right after the sender and
switches to it, preference 0/1 append it and return, schedule_all appends it and switches to
``source->next``; ``slp_schedule_task`` makes ``next`` the queue head; ``tasklet_end`` wakes the
watchdog/main when the queue empties), not copied from an implementation's output.
"""

import os

import pytest

from conftest import IMPL, differs  # noqa: F401

stackless = pytest.importorskip("stackless")


SNAPSHOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "snapshots")


class Trace(object):
    """Records schedule/channel callbacks and program output as text lines."""

    def __init__(self, **named):
        self.lines = []
        self.names = {}
        for name, obj in named.items():
            self.names[id(obj)] = name

    def name(self, obj):
        if obj is None:
            return "None"
        return self.names.get(id(obj), "?")

    def add(self, **named):
        for name, obj in named.items():
            self.names[id(obj)] = name

    def say(self, text):
        self.lines.append(text)

    def on_schedule(self, prev, nxt):
        self.lines.append("switch %s -> %s" % (self.name(prev), self.name(nxt)))

    def on_channel(self, chan, task, sending, willblock):
        self.lines.append("%s %s on %s %s" % (self.name(task), "send" if sending else "recv",
                                              self.name(chan), "blocks" if willblock else "proceeds"))

    def __enter__(self):
        stackless.set_schedule_callback(self.on_schedule)
        stackless.set_channel_callback(self.on_channel)
        return self

    def __exit__(self, *exc):
        stackless.set_schedule_callback(None)
        stackless.set_channel_callback(None)

    def text(self):
        return "\n".join(self.lines) + "\n"


def assert_snapshot(trace, name):
    with open(os.path.join(SNAPSHOTS, name + ".txt")) as f:
        expected = f.read()
    assert trace.text() == expected


def _producer_consumer(tr, ch, consumer_first=False, bystander=False):
    def producer():
        for i in range(3):
            tr.say("P send %d" % i)
            ch.send(i)
        tr.say("P done")

    def consumer():
        for _ in range(3):
            tr.say("C got %s" % ch.receive())

    def x():
        for i in range(2):
            tr.say("X %d" % i)
            stackless.schedule()

    order = [("C", consumer), ("P", producer)] if consumer_first else [("P", producer), ("C", consumer)]
    if bystander:
        order.append(("X", x))
    for name, fn in order:
        tr.add(**{name: stackless.tasklet(fn)()})
    with tr:
        stackless.run()
        tr.say("run returned")


def test_producer_consumer_prefer_receiver():
    # preference -1 (default): a sender hands over to the waiting receiver at once
    ch = stackless.channel()
    tr = Trace(main=stackless.getmain(), ch=ch)
    _producer_consumer(tr, ch)
    assert_snapshot(tr, "stackless_producer_consumer")


def test_preference_sender():
    # preference 1: the sender keeps running; the woken receiver waits behind it
    ch = stackless.channel()
    ch.preference = 1
    tr = Trace(main=stackless.getmain(), ch=ch)
    _producer_consumer(tr, ch)
    assert_snapshot(tr, "stackless_preference_sender")


def test_preference_none():
    # preference 0: neither side is preferred: whoever acts keeps running
    ch = stackless.channel()
    ch.preference = 0
    tr = Trace(main=stackless.getmain(), ch=ch)
    _producer_consumer(tr, ch)
    assert_snapshot(tr, "stackless_preference_none")


def test_schedule_all():
    # schedule_all: after a transfer the acting tasklet always yields to the next runnable (X)
    ch = stackless.channel()
    ch.schedule_all = 1
    tr = Trace(main=stackless.getmain(), ch=ch)
    _producer_consumer(tr, ch, consumer_first=True, bystander=True)
    assert_snapshot(tr, "stackless_schedule_all")


def test_pingpong():
    ping_ch, pong_ch = stackless.channel(), stackless.channel()
    tr = Trace(main=stackless.getmain(), ping_ch=ping_ch, pong_ch=pong_ch)

    def ping():
        for i in range(2):
            tr.say("ping %d" % i)
            pong_ch.send(i)
            tr.say("ping got %s" % ping_ch.receive())

    def pong():
        for _ in range(2):
            v = pong_ch.receive()
            tr.say("pong got %s" % v)
            ping_ch.send(v * 10)

    tr.add(Ping=stackless.tasklet(ping)(), Pong=stackless.tasklet(pong)())
    with tr:
        stackless.run()
        tr.say("run returned")
    assert_snapshot(tr, "stackless_pingpong")


@differs("pypy-oracle", reason="lib_pypy has no throw() and no kill(pending=)")
def test_kill_and_throw_pending():
    ch = stackless.channel()
    tr = Trace(main=stackless.getmain(), ch=ch)

    def victim(name):
        try:
            ch.receive()
        finally:
            tr.say("%s finally" % name)

    def waiter():
        try:
            stackless.schedule_remove()
        except ValueError as e:
            tr.say("W caught %s" % e)
        tr.say("W end")

    v = stackless.tasklet(victim)("V")
    w = stackless.tasklet(waiter)()
    tr.add(V=v, W=w)
    with tr:
        stackless.run()
        tr.say("run returned: V.blocked=%s W.paused=%s" % (v.blocked, w.paused))
        v.kill(pending=True)
        tr.say("after pending kill: balance=%d V.scheduled=%s" % (ch.balance, v.scheduled))
        w.throw(ValueError("boom"), pending=True)
        tr.say("after pending throw: runcount=%d" % stackless.getruncount())
        stackless.run()
        tr.say("second run returned")
        x = stackless.tasklet(victim)("X")
        tr.add(X=x)
        stackless.run()
        x.kill()
        tr.say("kill returned: X.alive=%s" % x.alive)
    assert_snapshot(tr, "stackless_kill_throw_pending")


@differs("pypy-oracle", reason="lib_pypy run() appends the target instead of making it current")
def test_run_order():
    # t.run() makes t current without moving it: the queue rotates (upsets FIFO order)
    tr = Trace(main=stackless.getmain())

    def worker(name):
        for i in range(2):
            tr.say("%s %d" % (name, i))
            stackless.schedule()

    ts = dict((n, stackless.tasklet(worker)(n)) for n in "ABC")
    tr.add(**ts)
    with tr:
        tr.say("runcount %d" % stackless.getruncount())
        ts["B"].run()
        tr.say("B.run returned")
        stackless.run()
        tr.say("run returned")
    assert_snapshot(tr, "stackless_run_order")


@differs("pypy-oracle", reason="lib_pypy reports RuntimeError('No runnable tasklets left.')")
def test_main_blocked_gets_error_when_queue_empties():
    ch = stackless.channel()
    tr = Trace(main=stackless.getmain(), ch=ch)
    tr.add(W=stackless.tasklet(lambda: tr.say("W runs"))())
    with tr:
        try:
            ch.receive()
        except RuntimeError as e:
            tr.say("main: RuntimeError: %s" % e)
    assert_snapshot(tr, "stackless_main_blocked")
