"""continulets and greenlets: the same program on CPython (ours) and PyPy."""
import platform

import greenlet
from _continuation import continulet

print("greenlet from", greenlet.__file__.rsplit("/", 2)[-2], "| implementation:", getattr(greenlet, "__implementation__", "?"))


# A continulet generator: values flow out by switching.
def numbers(c, n):
    for i in range(n):
        c.switch(i * i)


c = continulet(numbers, 5)
print("continulet squares:", [c.switch() for _ in range(5)])


# Greenlets: a ping-pong.
def ping(n):
    for i in range(n):
        n = pong.switch("ping %d" % i)
    return "ping done"


def pong(msg):
    while True:
        print("   ", msg)
        msg = p.switch()


p = greenlet.greenlet(ping)
pong = greenlet.greenlet(pong)
print("greenlet ping-pong on", platform.python_implementation())
print(p.switch(3))
