"""Scenario: a small gevent program on continulet's greenlet (run with GEVENT_PURE_PYTHON=1).

gevent's compiled (Cython) modules need greenlet's C API capsule (``greenlet._C_API``), which a
pure-Python greenlet cannot provide, so on CPython gevent must run in its pure-Python mode.
Spawns greenlets that sleep, pass values over a queue and join; asserts gevent's Greenlet
subclasses ours.  Prints one line, exits non-zero on failure.
"""

import os
import sys

import gevent
import greenlet
from gevent.queue import Queue

assert greenlet.__implementation__ == "continulet", greenlet.__file__
assert issubclass(gevent.Greenlet, greenlet.greenlet)


def square(n):
    gevent.sleep(0.005 * (5 - n))
    return n * n


def producer(q):
    for i in range(5):
        q.put(i)
        gevent.sleep(0)
    q.put(None)


def consumer(q, out):
    while True:
        item = q.get()
        if item is None:
            return len(out)
        out.append((item, greenlet.getcurrent() is gevent.getcurrent()))


jobs = [gevent.spawn(square, i) for i in range(5)]
gevent.joinall(jobs, timeout=10, raise_error=True)
q, out = Queue(), []
p, c = gevent.spawn(producer, q), gevent.spawn(consumer, q, out)
gevent.joinall([p, c], timeout=10, raise_error=True)
got = ([j.value for j in jobs], out, c.value)
assert got == ([0, 1, 4, 9, 16], [(i, True) for i in range(5)], 5), got
print("gevent %s (GEVENT_PURE_PYTHON=%s) on greenlet %s (%s): %r" % (
    gevent.__version__, os.environ.get("GEVENT_PURE_PYTHON"), greenlet.__version__, greenlet.__file__, got[0]))
sys.stdout.flush()
