"""(argv: [create]) Recursion at the limit inside a continulet and a greenlet, and a switch made at the limit.

Expected: RecursionError raised and caught in each context; switches, creations and starts made
as close to the limit as they can run work and return; exit 0, stdout ends with "ok".
"""
import sys

from _continuation import continulet
from greenlet import getcurrent, greenlet


def recurse(n=0):
    return recurse(n + 1)


def at_limit(action, n=0):
    """Recurse until RecursionError, then run ``action`` as deep as it can run: if it raises
    RecursionError itself, the frame above catches that and tries one frame shallower."""
    try:
        return at_limit(action, n + 1)
    except RecursionError:
        return action()


def in_continulet(c):
    try:
        recurse()
    except RecursionError:
        pass
    # switching out at the limit and coming back
    r = at_limit(lambda: c.switch("from-limit"))
    return ("after", r)


c = continulet(in_continulet)
v = c.switch()
print("continulet yielded", v)
if c.is_pending():
    print("continulet returned", c.switch("back"))


def in_greenlet():
    try:
        recurse()
    except RecursionError:
        pass
    return at_limit(lambda: getcurrent().parent.switch("from-limit"))


g = greenlet(in_greenlet)
v = g.switch()
print("greenlet yielded", v)
if not g.dead:
    print("greenlet returned", g.switch("back"))

if sys.argv[1:] == ["create"]:
    # creating and starting a continulet / greenlet as close to the limit as possible
    print("create at limit:", at_limit(lambda: continulet(lambda c: 1).switch()))
    print("greenlet at limit:", at_limit(lambda: greenlet(lambda: 2).switch()))
# the main stack is intact afterwards
sys.setrecursionlimit(200)
try:
    recurse()
except RecursionError:
    print("main RecursionError at limit 200")
print("ok")
