"""Switching greenlets and continulets from a signal handler, while the main code switches too.

Expected: exit 0, stdout ends with "ok"; never a crash.
"""
import signal
import sys

from _continuation import continulet
from greenlet import getcurrent, greenlet

main = getcurrent()
hits = [0]


def ping():
    while True:
        main_of_handler = ping_g.parent
        main_of_handler.switch("pong")


ping_g = greenlet(ping)


def handler(signum, frame):
    # a greenlet switch and a continulet round trip from inside the handler
    g = greenlet(lambda: getcurrent().parent.switch("in-handler"))
    assert g.switch() == "in-handler"
    c = continulet(lambda c: c.switch("c") and "done")
    assert c.switch() == "c"
    hits[0] += 1


signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)


def worker(c, n):
    total = 0
    for i in range(n):
        total += c.switch(i)
    return total


try:
    for _ in range(200):
        c = continulet(worker, 200)
        v = c.switch()
        while c.is_pending():
            v = c.switch(v)
        assert ping_g.switch() == "pong"
        if hits[0] >= 20:
            break
finally:
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
print("handler ran", hits[0] > 0)
print("ok")
sys.stdout.flush()
