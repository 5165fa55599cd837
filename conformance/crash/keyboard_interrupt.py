"""KeyboardInterrupt (real SIGINT) delivered while greenlets / continulets / tasklets switch.

argv[1] == "caught": 20 interrupts, each caught at top level; switching continues; exit 0 "ok".
argv[1] == "uncaught": it escapes: exit status 130 / -SIGINT with the usual traceback, no crash.
argv[2] == "greenlet" (greenlets + continulets) or "stackless" (tasklets on a channel too).
"""
import os
import signal
import sys
import threading

from _continuation import continulet
from greenlet import getcurrent, greenlet
import stackless

main = getcurrent()
WITH_STACKLESS = sys.argv[2] == "stackless"


def pinger():
    while True:
        main.switch()


def loop_forever(delay=0.3):
    g = greenlet(pinger)
    c = continulet(lambda c: [c.switch() for _ in iter(int, 1)])
    ch = stackless.channel()

    def sender():
        while True:
            ch.send(1)

    if WITH_STACKLESS:
        stackless.tasklet(sender)()
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()
    while True:
        g.switch()
        c.switch()
        if WITH_STACKLESS:
            ch.receive()


if sys.argv[1] == "uncaught":
    loop_forever()
caught = 0
for i in range(20):  # interrupts land at 20 different points of the switch loop
    try:
        loop_forever(0.005 + 0.003 * i)
    except KeyboardInterrupt:
        caught += 1
print("KeyboardInterrupt caught", caught)
# everything still works afterwards
g = greenlet(lambda x: main.switch(x + 1) + 1)
assert g.switch(1) == 2 and g.switch(5) == 6 and g.dead
c = continulet(lambda c, x: c.switch(x) * 2, 21)
assert c.switch() == 21 and c.switch(2) == 4
if WITH_STACKLESS:
    out = []
    stackless.tasklet(out.append)(1)
    stackless.run()
    assert out == [1]
print("ok")
