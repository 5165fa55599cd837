"""Random programs of continulet / greenlet operations, as small Python program texts.

``generate(seed)`` -> program text (deterministic: the same seed gives the same text on any
interpreter).  ``render(kind, ops)`` turns an operation list into text; the hypothesis state
machine in ``test_reliability_fuzz.py`` builds such lists itself, so both paths share the
renderer.  A program prints its *trace* through ``P(...)``; ``S(x)`` names objects (no ids or
addresses ever reach the trace).

Programs always terminate: the main program is a finite list of operations and every body a
finite list of steps, each executed at most once (every switch resumes a *different* point of
one of these lists).

Operations (main program), ``kind == "continulet"``:
  new NAME STEPS | switch NAME V | to NAME NAME V | throw NAME | permute NAMES | pending NAME
  | drop NAME | collect | frame NAME | uninit NAME
Steps (inside a body): yield V | to NAME V | throw NAME | permute NAMES | deep D STEP | raise V
  | return V | new NAME STEPS (nested creation)
``kind == "greenlet"``: new NAME PARENT STEPS | switch NAME V | kwswitch NAME V | throw NAME
  | dead NAME | drop NAME | collect | reparent NAME PARENT; steps: parent V | switch NAME V
  | main V | throw NAME | deep D STEP | raise V | return V | current | exitret V
``kind == "tasklet"`` (stackless: native core on CPython, pure Python on PyPy): new NAME STEPS
  | run | schedule | send CH V | receive CH | kill NAME | throw NAME | state NAME | remove NAME
  | insert NAME | runcount | balance CH | pref CH P | close CH | drop NAME | collect; steps:
  send CH V | receive CH | schedule | schedule_remove | kill NAME | current | balance CH
  | deep D STEP | raise V | return V
Tasklet programs end with a kill of every tasklet still alive (trace off), so the scheduler is
empty again for the next program.
"""

import random

NAMES = "abcdef"

PRELUDE_CONTINULET = '''\
from _continuation import continulet, permute, error
'''
PRELUDE_GREENLET = '''\
from greenlet import greenlet, getcurrent, GreenletExit, error
main = getcurrent()
'''
PRELUDE_TASKLET = '''\
import stackless
from stackless import tasklet, channel, TaskletExit
CH = {"x": K(channel()), "y": K(channel())}
'''
CHANNELS = "xy"


_POOL = list(NAMES)


def _n(rng):
    """A name: mostly one that was created at the start of the program."""
    return rng.choice(_POOL)


def _v(rng):
    return None if rng.random() < 0.5 else rng.choice([0, 1, 2, "s", (1, 2), -5])


# -- generation ---------------------------------------------------------------------------------


def _c_step(rng, depth):
    r = rng.random()
    if r < 0.30:
        return ("yield", _v(rng))
    if r < 0.45:
        return ("to", _n(rng), _v(rng))
    if r < 0.52:
        return ("throw", _n(rng))
    if r < 0.58:
        return ("permute", rng.sample(NAMES, rng.randint(2, 3)))
    if r < 0.68 and depth < 2:
        return ("deep", rng.choice([1, 5, 30, 120]), _c_step(rng, depth + 1))
    if r < 0.74 and depth < 1:
        return ("new", _n(rng), _cut([_c_step(rng, depth + 1) for _ in range(rng.randint(0, 3))]))
    if r < 0.82:
        return ("raise", _v(rng))
    return ("return", _v(rng))


def _c_op(rng):
    r = rng.random()
    n = _n(rng)
    if r < 0.22:
        return ("new", n, _cut([_c_step(rng, 0) for _ in range(rng.randint(0, 5))]))
    if r < 0.55:
        return ("switch", n, _v(rng))
    if r < 0.65:
        return ("to", n, _n(rng), _v(rng))
    if r < 0.72:
        return ("throw", n)
    if r < 0.77:
        return ("permute", rng.sample(NAMES, rng.randint(0, 4)))
    if r < 0.82:
        return ("pending", n)
    if r < 0.88:
        return ("drop", n)
    if r < 0.91:
        return ("collect",)
    if r < 0.95:
        return ("frame", n)
    return ("uninit", n)


def _g_step(rng, depth):
    r = rng.random()
    if r < 0.25:
        return ("parent", _v(rng))
    if r < 0.45:
        return ("switch", _n(rng), _v(rng))
    if r < 0.52:
        return ("main", _v(rng))
    if r < 0.58:
        return ("throw", _n(rng))
    if r < 0.66 and depth < 2:
        return ("deep", rng.choice([1, 5, 30, 120]), _g_step(rng, depth + 1))
    if r < 0.71:
        return ("current",)
    if r < 0.78:
        return ("raise", _v(rng))
    if r < 0.82:
        return ("exitret", _v(rng))
    return ("return", _v(rng))


def _g_op(rng):
    r = rng.random()
    n = _n(rng)
    if r < 0.22:
        return ("new", n, rng.choice(["main"] + _POOL), _cut([_g_step(rng, 0) for _ in range(rng.randint(0, 5))]))
    if r < 0.52:
        return ("switch", n, _v(rng))
    if r < 0.58:
        return ("kwswitch", n, _v(rng))
    if r < 0.66:
        return ("throw", n)
    if r < 0.72:
        return ("dead", n)
    if r < 0.80:
        return ("drop", n)
    if r < 0.84:
        return ("collect",)
    return ("reparent", n, rng.choice(["main"] + _POOL))


def _ch(rng):
    return rng.choice(CHANNELS)


def _t_step(rng, depth):
    r = rng.random()
    if r < 0.20:
        return ("send", _ch(rng), _v(rng))
    if r < 0.40:
        return ("receive", _ch(rng))
    if r < 0.52:
        return ("schedule",)
    if r < 0.56:
        return ("schedule_remove",)
    if r < 0.62:
        return ("kill", _n(rng))
    if r < 0.66:
        return ("current",)
    if r < 0.69:
        return ("balance", _ch(rng))
    if r < 0.77 and depth < 2:
        return ("deep", rng.choice([1, 5, 30, 120]), _t_step(rng, depth + 1))
    if r < 0.84:
        return ("raise", _v(rng))
    return ("return", _v(rng))


def _t_op(rng):
    r = rng.random()
    n = _n(rng)
    if r < 0.20:
        return ("new", n, _cut([_t_step(rng, 0) for _ in range(rng.randint(0, 5))]))
    if r < 0.34:
        return ("run",)
    if r < 0.44:
        return ("schedule",)
    if r < 0.52:
        return ("send", _ch(rng), _v(rng))
    if r < 0.60:
        return ("receive", _ch(rng))
    if r < 0.66:
        return ("kill", n)
    if r < 0.69:
        return ("throw", n)
    if r < 0.76:
        return ("state", n)
    if r < 0.80:
        return ("remove", n)
    if r < 0.84:
        return ("insert", n)
    if r < 0.86:
        return ("runcount",)
    if r < 0.89:
        return ("balance", _ch(rng))
    if r < 0.92:
        return ("pref", _ch(rng), rng.choice([-1, 0, 1]))
    if r < 0.94:
        return ("close", _ch(rng))
    if r < 0.97:
        return ("drop", n)
    return ("collect",)


def _cut(steps):
    """Steps after a raise/return would be dead code."""
    for i, st in enumerate(steps):
        if st[0] in ("raise", "return", "exitret"):
            return steps[:i + 1]
    return steps


def generate_ops(seed):
    rng = random.Random(seed)
    r = rng.random()
    kind = "continulet" if r < 0.35 else "greenlet" if r < 0.7 else "tasklet"
    op = {"continulet": _c_op, "greenlet": _g_op, "tasklet": _t_op}[kind]
    ops = []
    created = rng.sample(NAMES, rng.randint(2, 4))
    _POOL[:] = list(NAMES) + created * 4
    for n in created:  # something to operate on
        while True:
            o = op(rng)
            if o[0] == "new":
                ops.append((o[0], n) + o[2:])
                break
    return kind, ops + [op(rng) for _ in range(rng.randint(3, 25))]


def generate(seed):
    kind, ops = generate_ops(seed)
    return render(kind, ops)


# -- rendering ----------------------------------------------------------------------------------


class _W(object):
    def __init__(self):
        self.lines = []
        self.fn = 0

    def add(self, ind, text):
        self.lines.append("    " * ind + text)

    def fresh(self, base):
        self.fn += 1
        return "%s%d" % (base, self.fn)


def _guard(w, ind, tag, body_lines):
    """``try: <lines> except BaseException as e: P(tag, X(e))`` (errors never stop a body)."""
    w.add(ind, "try:")
    for line in body_lines:
        w.add(ind + 1, line)
    w.add(ind, "except Exception as e:")
    w.add(ind + 1, "P(%r, X(e))" % (tag,))


def _deep(w, ind, tag, st, deferred, step_text, arg):
    """``deep D STEP``: a function recursing D times (passing ``arg`` along), then the step."""
    sub = _W()
    sub.fn = w.fn
    fn = sub.fresh("deep")
    sub.add(0, "def %s(%sn):" % (fn, arg))
    sub.add(1, "if n:")
    sub.add(2, "return %s(%sn - 1)" % (fn, arg))
    step_text(sub, 1, tag + "d", st[2], deferred)
    w.fn = sub.fn
    deferred.append(sub.lines)
    w.add(ind, "%s(%s%d)" % (fn, arg, st[1]))


def _exit_body(w, name, steps, prefix, params, shown, exit_exc, step_text):
    """A greenlet or tasklet body: its steps, tracing the exit exception and re-raising it."""
    fn = w.fresh("%s%s_" % (prefix, name))
    deferred = []
    w2 = _W()
    w2.fn = w.fn
    w2.add(0, "def %s(%s):" % (fn, params))
    w2.add(1, "P(%r, 'start', %s)" % (name, shown))
    w2.add(1, "try:")
    w2.add(2, "pass")
    for i, st in enumerate(steps):
        step_text(w2, 2, "%s.%d" % (name, i), st, deferred)
    w2.add(1, "except %s as e:" % exit_exc)
    w2.add(2, "P(%r, 'exit', X(e))" % name)
    w2.add(2, "raise")
    w2.add(1, "P(%r, 'end')" % name)
    w.fn = w2.fn
    for d in deferred:
        w.lines.extend(d)
    w.lines.extend(w2.lines)
    return fn


def _c_body(w, name, steps):
    fn = w.fresh("body_%s_" % name)
    deferred = []
    w2 = _W()
    w2.fn = w.fn
    w2.add(0, "def %s(c, *args):" % fn)
    w2.add(1, "P(%r, 'start', S(c), args)" % name)
    _c_steps(w2, 1, name, steps, deferred)
    w2.add(1, "P(%r, 'end')" % name)
    w.fn = w2.fn
    for d in deferred:
        w.lines.extend(d)
    w.lines.extend(w2.lines)
    return fn


def _c_steps(w, ind, name, steps, deferred):
    for i, st in enumerate(steps):
        tag = "%s.%d" % (name, i)
        _c_step_text(w, ind, tag, st, deferred)


def _c_step_text(w, ind, tag, st, deferred):
    k = st[0]
    if k == "yield":
        _guard(w, ind, tag, ["P(%r, 'got', S(c.switch(%r)))" % (tag, st[1])])
    elif k == "to":
        _guard(w, ind, tag, ["P(%r, 'got', S(c.switch(%r, to=R.get(%r))))" % (tag, st[2], st[1])])
    elif k == "throw":
        _guard(w, ind, tag, ["P(%r, 'got', S(R[%r].throw(Boom(%r))))" % (tag, st[1], tag)])
    elif k == "permute":
        _guard(w, ind, tag, ["permute(*[R[n] for n in %r if n in R])" % (st[1],), "P(%r, 'permuted')" % tag])
    elif k == "deep":
        _deep(w, ind, tag, st, deferred, _c_step_text, 'c, ')
    elif k == "new":
        sub = _W()
        sub.fn = w.fn
        fn = _c_body(sub, st[1], st[2])
        w.fn = sub.fn
        deferred.append(sub.lines)
        w.add(ind, "R[%r] = K(continulet(%s, %r))" % (st[1], fn, tag))
    elif k == "raise":
        w.add(ind, "raise Boom(%r)" % (st[1],))
    elif k == "return":
        w.add(ind, "return %r" % (st[1],))
    else:
        raise ValueError(st)


def _g_body(w, name, steps):
    return _exit_body(w, name, steps, "run_", "*args, **kwargs", "S(args), S(kwargs)", "GreenletExit",
                      _g_step_text)


def _g_step_text(w, ind, tag, st, deferred):
    k = st[0]
    if k == "parent":
        _guard(w, ind, tag, ["P(%r, 'got', S(getcurrent().parent.switch(%r)))" % (tag, st[1])])
    elif k == "switch":
        _guard(w, ind, tag, ["P(%r, 'got', S(R[%r].switch(%r)))" % (tag, st[1], st[2])])
    elif k == "main":
        _guard(w, ind, tag, ["P(%r, 'got', S(main.switch(%r)))" % (tag, st[1])])
    elif k == "throw":
        _guard(w, ind, tag, ["P(%r, 'got', S(R[%r].throw(Boom(%r))))" % (tag, st[1], tag)])
    elif k == "deep":
        _deep(w, ind, tag, st, deferred, _g_step_text, '')
    elif k == "current":
        w.add(ind, "P(%r, 'current', S(getcurrent()), S(getcurrent().parent))" % tag)
    elif k == "raise":
        w.add(ind, "raise Boom(%r)" % (st[1],))
    elif k == "exitret":
        w.add(ind, "raise GreenletExit(%r)" % (st[1],))
    elif k == "return":
        w.add(ind, "return %r" % (st[1],))
    else:
        raise ValueError(st)


def _t_body(w, name, steps):
    return _exit_body(w, name, steps, "tbody_", "*args", "S(args)", "TaskletExit", _t_step_text)


def _t_step_text(w, ind, tag, st, deferred):
    k = st[0]
    if k == "send":
        _guard(w, ind, tag, ["CH[%r].send(%r)" % (st[1], st[2]), "P(%r, 'sent')" % tag])
    elif k == "receive":
        _guard(w, ind, tag, ["P(%r, 'got', S(CH[%r].receive()))" % (tag, st[1])])
    elif k == "schedule":
        _guard(w, ind, tag, ["stackless.schedule()", "P(%r, 'resumed')" % tag])
    elif k == "schedule_remove":
        _guard(w, ind, tag, ["stackless.schedule_remove()", "P(%r, 'reinserted')" % tag])
    elif k == "kill":
        _guard(w, ind, tag, ["R[%r].kill()" % st[1], "P(%r, 'killed')" % tag])
    elif k == "current":
        w.add(ind, "P(%r, 'current', S(stackless.getcurrent()), stackless.getruncount())" % tag)
    elif k == "balance":
        w.add(ind, "P(%r, 'balance', CH[%r].balance)" % (tag, st[1]))
    elif k == "deep":
        _deep(w, ind, tag, st, deferred, _t_step_text, '')
    elif k == "raise":
        w.add(ind, "raise Boom(%r)" % (st[1],))
    elif k == "return":
        w.add(ind, "return %r" % (st[1],))
    else:
        raise ValueError(st)


def _t_main(tag, op, w):
    """(line, guarded) for a main-program operation of a tasklet program."""
    k = op[0]
    if k == "new":
        return "R[%r] = K(tasklet(%s)(%r))" % (op[1], _t_body(w, op[1], op[2]), tag), False
    if k == "run":
        return "stackless.run(); P(%r, 'ran', stackless.getruncount())" % tag, True
    if k == "schedule":
        return "stackless.schedule(); P(%r, 'scheduled')" % tag, True
    if k == "send":
        return "CH[%r].send(%r); P(%r, 'sent')" % (op[1], op[2], tag), True
    if k == "receive":
        return "P(%r, 'got', S(CH[%r].receive()))" % (tag, op[1]), True
    if k == "kill":
        return "R[%r].kill(); P(%r, 'killed')" % (op[1], tag), True
    if k == "throw":
        return "R[%r].throw(Boom(%r)); P(%r, 'thrown')" % (op[1], tag, tag), True
    if k == "state":
        return ("t = R[%r]; P(%r, 'state', t.alive, t.blocked, t.scheduled, t.paused, t.restorable)"
                % (op[1], tag)), True
    if k == "remove":
        return "R[%r].remove(); P(%r, 'removed')" % (op[1], tag), True
    if k == "insert":
        return "R[%r].insert(); P(%r, 'inserted')" % (op[1], tag), True
    if k == "runcount":
        return "P(%r, 'runcount', stackless.getruncount())" % tag, True
    if k == "balance":
        return "P(%r, 'balance', CH[%r].balance)" % (tag, op[1]), True
    if k == "pref":
        return "CH[%r].preference = %r; P(%r, 'pref')" % (op[1], op[2], tag), True
    if k == "close":
        return "CH[%r].close(); P(%r, 'closed', CH[%r].closed, CH[%r].closing)" % (
            op[1], tag, op[1], op[1]), True
    if k == "drop":
        return "D(%r); P(%r, 'dropped')" % (op[1], tag), False
    if k == "collect":
        return "collect(); P(%r, 'collected')" % tag, False
    raise ValueError(op)


def render(kind, ops):
    w = _W()
    w.add(0, {"continulet": PRELUDE_CONTINULET, "greenlet": PRELUDE_GREENLET, "tasklet": PRELUDE_TASKLET}[kind])
    main = []
    for i, op in enumerate(ops):
        tag = "m%d" % i
        k = op[0]
        if kind == "tasklet":
            main.append(_t_main(tag, op, w))
        elif kind == "continulet":
            if k == "new":
                fn = _c_body(w, op[1], op[2])
                main.append(("R[%r] = K(continulet(%s, %r))" % (op[1], fn, tag), False))
            elif k == "switch":
                main.append(("P(%r, 'got', S(R[%r].switch(%r)))" % (tag, op[1], op[2]), True))
            elif k == "to":
                main.append(("P(%r, 'got', S(R[%r].switch(%r, to=R.get(%r))))" % (tag, op[1], op[3], op[2]), True))
            elif k == "throw":
                main.append(("P(%r, 'got', S(R[%r].throw(Boom(%r))))" % (tag, op[1], tag), True))
            elif k == "permute":
                main.append(("permute(*[R[n] for n in %r if n in R]); P(%r, 'permuted')" % (op[1], tag), True))
            elif k == "pending":
                main.append(("P(%r, 'pending', R[%r].is_pending())" % (tag, op[1]), True))
            elif k == "drop":
                main.append(("D(%r); P(%r, 'dropped')" % (op[1], tag), False))
            elif k == "collect":
                main.append(("collect(); P(%r, 'collected')" % tag, False))
            elif k == "frame":
                main.append(("P(%r, 'frame', F(R[%r]))" % (tag, op[1]), True))
            elif k == "uninit":
                main.append(("R[%r] = K(continulet.__new__(continulet))" % op[1], False))
            else:
                raise ValueError(op)
        else:
            if k == "new":
                fn = _g_body(w, op[1], op[3])
                par = "main" if op[2] == "main" else "R.get(%r, main)" % op[2]
                main.append(("R[%r] = K(greenlet(%s, %s))" % (op[1], fn, par), True))
            elif k == "switch":
                main.append(("P(%r, 'got', S(R[%r].switch(%r)))" % (tag, op[1], op[2]), True))
            elif k == "kwswitch":
                main.append(("P(%r, 'got', S(R[%r].switch(1, v=%r)))" % (tag, op[1], op[2]), True))
            elif k == "throw":
                main.append(("P(%r, 'got', S(R[%r].throw(Boom(%r))))" % (tag, op[1], tag), True))
            elif k == "dead":
                main.append(("P(%r, 'dead', R[%r].dead, bool(R[%r]))" % (tag, op[1], op[1]), True))
            elif k == "drop":
                main.append(("D(%r); P(%r, 'dropped')" % (op[1], tag), False))
            elif k == "collect":
                main.append(("collect(); P(%r, 'collected')" % tag, False))
            elif k == "reparent":
                par = "main" if op[2] == "main" else "R[%r]" % op[2]
                main.append(("R[%r].parent = %s; P(%r, 'reparented')" % (op[1], par, tag), True))
            else:
                raise ValueError(op)
    w.add(0, "P('main', 'begin')")
    for i, (line, guarded) in enumerate(main):
        if guarded:
            _guard(w, 0, "m%d" % i, [line])
        else:
            w.add(0, line)
    w.add(0, "P('main', 'done')")
    return "\n".join(w.lines) + "\n"


if __name__ == "__main__":
    import sys

    print(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
