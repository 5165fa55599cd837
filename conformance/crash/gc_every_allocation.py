"""Garbage continulets of every shape with a collection at every allocation (CPython).

    python gc_every_allocation.py [seed] [rounds] [rounds per thread]

Prints "ok <log entries> <refused switches>"; any crash or stray output is a failure.
"""
import gc, random, sys, threading
from _continuation import continulet, permute, error, generator
gc.set_threshold(1, 1, 1)
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
THREAD_ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 50
log = []
def body(c, n, holder):
    try:
        x = [n] * 3
        def deep(k):
            if k:
                return deep(k - 1)
            return c.switch(n)
        deep(n % 5)
        if n % 3 == 0:
            c.switch()
    except GeneratorExit:
        log.append(("exit", n))
        raise
    finally:
        log.append(("fin", n))
        if n % 7 == 0:
            try:
                c.switch()
            except error:
                log.append(("refused", n))

@generator
def gen(self, n):
    try:
        for i in range(n):
            self.switch(i)
    finally:
        log.append(("genfin", n))

def one_round(r):
    cs = []
    for i in range(20):
        c = continulet(body, i, cs)
        k = random.random()
        if k < 0.3:
            pass  # fresh
        elif k < 0.8:
            c.switch()
        else:
            c.switch()
            if cs:
                try:
                    permute(c, random.choice(cs))
                except error:
                    pass
        cs.append(c)
    g = gen(5); next(g)
    if random.random() < 0.5:
        # a cycle through to=
        a = continulet(lambda a: holder[1].switch()); b = continulet(lambda b: holder[0].switch())
        holder = [a, b]; a.switch()
    del cs[:]

def worker(rounds):
    for r in range(rounds):
        one_round(r)
    gc.collect()

for r in range(ROUNDS):
    one_round(r)
gc.collect()
ts = [threading.Thread(target=worker, args=(THREAD_ROUNDS,)) for _ in range(3)]
for t in ts: t.start()
for t in ts: t.join()
gc.collect(); gc.collect()
print("ok", len(log), sum(1 for x in log if x[0] == "refused"))
