"""Memory per suspended continulet / greenlet, from the growth of RSS over N of them.

    python memory.py [cont|green] [depth] [N]

Prints bytes per suspended object (RSS delta / N, after gc.collect and a warm-up batch).
"""
import gc
import sys

kind = sys.argv[1] if len(sys.argv) > 1 else "cont"
depth = int(sys.argv[2]) if len(sys.argv) > 2 else 1
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def nest(k, fn):
    if k <= 1:
        return fn()
    return nest(k - 1, fn)


if kind == "cont":
    from _continuation import continulet

    def body(c):
        nest(depth, c.switch)

    def make():
        c = continulet(body)
        c.switch()
        return c
else:
    import greenlet

    def body():
        nest(depth, greenlet.getcurrent().parent.switch)

    def make():
        g = greenlet.greenlet(body)
        g.switch()
        return g


keep = [make() for _ in range(1000)]  # warm-up: allocator pools, code caches
gc.collect()
before = rss()
keep += [make() for _ in range(n)]
gc.collect()
after = rss()
print("%s depth %d: %.0f bytes per suspended object" % (kind, depth, (after - before) / n))
