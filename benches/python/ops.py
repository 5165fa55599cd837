"""One benchmark operation repeated N times, for instruction counting under callgrind:

    python ops.py OP N

OP: cont_switch | cont_create | cont_to | green_switch | green_create
Instructions per operation = (Ir(N) - Ir(0)) / N, measured by `benches/python/instructions`.
"""
import sys

op, n = sys.argv[1], int(sys.argv[2])

if op.startswith("cont"):
    from _continuation import continulet

    def echo(c):
        v = None
        while True:
            v = c.switch(v)

    if op == "cont_switch":
        c = continulet(echo)
        c.switch()
        for _ in range(n):
            c.switch(1)
    elif op == "cont_create":
        f = lambda c: 1  # noqa: E731
        for _ in range(n):
            continulet(f).switch()
    elif op == "cont_to":
        a = continulet(echo)
        a.switch()

        def back(c):
            while True:
                c.switch()

        b = continulet(back)
        b.switch()
        for _ in range(n):
            b.switch(to=a)
else:
    import greenlet

    main = greenlet.getcurrent()

    def gecho():
        v = None
        while True:
            v = main.switch(v)

    if op == "green_switch":
        g = greenlet.greenlet(gecho)
        g.switch()
        for _ in range(n):
            g.switch(1)
    elif op == "green_create":
        f = lambda: 1  # noqa: E731
        for _ in range(n):
            greenlet.greenlet(f).switch()
