"""Switch round trip and create+switch+finish: our continulet and greenlet.py on CPython, vs
the C greenlet (if installed in this venv), and PyPy's continulet when run under PyPy.

    python benches/python/continulet_vs_greenlet.py [--json]

Times are the best of 7 repeats (timeit), in ns per operation, measured in one run so that
the rows compare on the same machine state.
"""
import json
import platform
import sys
import timeit

N = 200_000
rows = []


def best(stmt, setup, number=N):
    t = min(timeit.repeat(stmt, setup=setup, number=number, repeat=7, globals=globals()))
    return t / number * 1e9


def row(name, ns):
    rows.append((name, ns))
    print("%-46s %9.1f ns" % (name, ns))


# --- continulet (ours on CPython, builtin on PyPy) ---------------------------------------------
try:
    from _continuation import continulet  # noqa: E402
except ImportError:
    continulet = None

if continulet is not None:


    def _echo(c):
        v = None
        while True:
            v = c.switch(v)


    _c = continulet(_echo)
    _c.switch()
    row("continulet switch round trip", best("_c.switch(1)", "pass"))
    row("continulet create+switch+finish", best("continulet(lambda c: 1).switch()", "pass", N // 4))
    _a = continulet(_echo)
    _a.switch()


    def _to_bench(c):
        # a -> b via to=: b resumes, switches back to a plainly.
        while True:
            c.switch()


    row("continulet to= double switch (round trip)", best("_b.switch(to=_a)", "_b = continulet(_to_bench); _b.switch()"))


# --- our greenlet.py (or the C greenlet, whichever `import greenlet` gives) ----------------------
try:
    import greenlet  # noqa: E402

    impl = getattr(greenlet, "__implementation__", "greenlet C " + greenlet.__version__)
    _main = greenlet.getcurrent()

    def _gecho():
        v = None
        while True:
            v = _main.switch(v)

    _g = greenlet.greenlet(_gecho)
    _g.switch()
    row("greenlet switch round trip [%s]" % impl, best("_g.switch(1)", "pass"))
    row("greenlet create+switch+finish [%s]" % impl, best("greenlet.greenlet(lambda: 1).switch()", "pass", N // 4))
except ImportError:
    pass

if "--json" in sys.argv:
    print(json.dumps({"python": platform.python_implementation() + " " + sys.version.split()[0], "rows": rows}))
