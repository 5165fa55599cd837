"""Switching in a ``__del__`` run by the interpreter's last collections at exit, with nothing
else suspended: the first switch of the thread's pyo3 bookkeeping at that point (pyo3 will
not attach a finalizing interpreter; the raw methods' entry falls back to pyo3's trampoline).

Expected: exit 0; stdout "main done", then (CPython, whose last collection runs it)
"del 42 42 [3]"; nothing on stderr.
"""
import sys

from _continuation import continulet
from greenlet import greenlet
import stackless


class SwitchesInDel(object):
    def __del__(self):
        g = greenlet(lambda x: x * 2)
        doubled = g.switch(21)
        c = continulet(lambda c, x: x + 1, 41)
        plus_one = c.switch()
        out = []
        stackless.tasklet(out.append)(3)
        stackless.run()
        sys.stdout.write("del %r %r %r\n" % (doubled, plus_one, out))
        sys.stdout.flush()


CYCLE = SwitchesInDel()
CYCLE.me = CYCLE  # finalized by the last collections at exit
print("main done")
sys.stdout.flush()
