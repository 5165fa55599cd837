"""Switching during interpreter shutdown: atexit handlers, module teardown, __del__ at exit,
and suspended greenlets / continulets / tasklets / daemon threads left behind.

Expected: exit 0; stdout has "atexit ok" and "main done"; nothing on stderr but what is
printed below; never a crash.  (Code in suspended greenlets may or may not run at exit:
greenlet 3.x does not inject GreenletExit at shutdown; both are accepted here.)
"""
import atexit
import sys
import threading
import time

from _continuation import continulet
from greenlet import getcurrent, greenlet
import stackless

main = getcurrent()


def parked(tag):
    try:
        main.switch()
    finally:
        pass


# suspended objects left in module globals (torn down at exit)
G_SUSPENDED = [greenlet(parked) for _ in range(10)]
for g in G_SUSPENDED:
    g.switch("x")
C_SUSPENDED = [continulet(lambda c: c.switch()) for _ in range(10)]
for c in C_SUSPENDED:
    c.switch()
CH = stackless.channel()
T_BLOCKED = [stackless.tasklet(CH.receive)() for _ in range(10)]
stackless.run()


class SwitchesInDel(object):
    def __del__(self):
        g = greenlet(lambda: getcurrent().parent.switch(1) + 1)
        g.switch()
        g.switch(1)
        c = continulet(lambda c: c.switch() or 1)
        c.switch()
        c.switch()


DEL_AT_EXIT = SwitchesInDel()
CYCLE = SwitchesInDel()
CYCLE.me = CYCLE  # finalized by the last collections at exit


def in_atexit():
    g = greenlet(lambda: main.switch("atexit-switch"))
    assert g.switch() == "atexit-switch"
    c = continulet(lambda c: c.switch("c-atexit"))
    assert c.switch() == "c-atexit"
    for g in G_SUSPENDED[:5]:
        g.throw()  # kill some explicitly
    out = []
    stackless.tasklet(out.append)(1)
    stackless.run()
    assert out == [1]
    print("atexit ok")
    sys.stdout.flush()


atexit.register(in_atexit)


def daemon():
    m = getcurrent()
    gs = [greenlet(lambda: m.switch()) for _ in range(10)]
    for g in gs:
        g.switch()
    while True:
        for g in gs:
            greenlet(lambda: m.switch()).switch()
        time.sleep(0.001)


threading.Thread(target=daemon, daemon=True).start()
time.sleep(0.05)
print("main done")
sys.stdout.flush()
