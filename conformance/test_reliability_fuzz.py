"""Differential fuzzing against PyPy (issue 8): the short run that is part of the suite.

Runs only in the ``cpython`` column (it drives both interpreters itself): programs from
``fuzz/progs.py`` run on CPython + ours and on PyPy (``.venv/pypy`` with ``pylib``), traces
compared by ``fuzz/driver.py`` (documented deliberate differences in ``driver.DELIBERATE``).
The long run (>= 100,000 programs) is ``ci/fuzz``.
"""
import os
import sys

import pytest

from conftest import only_on

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fuzz"))

import driver  # noqa: E402
import progs  # noqa: E402

PYPY = os.environ.get("CONTINULET_PYPY", os.path.join(ROOT, ".venv/pypy/bin/python"))
SHORT = os.environ.get("CONTINULET_FUZZ_SEEDS", "0:400")

pytestmark = [
    only_on("cpython", reason="the fuzzer drives CPython+ours and PyPy itself; one column is enough"),
    pytest.mark.skipif(not os.path.exists(PYPY), reason="PyPy venv not found (ci/conformance pypy makes it)"),
]


def test_seeded_programs_same_traces_on_cpython_and_pypy():
    rc = driver.main(["--cpython", sys.executable, "--pypy", PYPY, "--seeds", SHORT, "--batch", "400"])
    assert rc == 0, "divergences: see the output above (re-run a seed with fuzz/driver.py --seeds S:S+1 -v)"


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule  # noqa: E402

NAMES = st.sampled_from(list(progs.NAMES[:4]))
VALUES = st.sampled_from([None, None, 0, 1, "s", (1, 2)])
C_STEP = st.one_of(
    st.tuples(st.just("yield"), VALUES),
    st.tuples(st.just("to"), NAMES, VALUES),
    st.tuples(st.just("throw"), NAMES),
    st.tuples(st.just("permute"), st.lists(NAMES, min_size=2, max_size=3, unique=True)),
    st.tuples(st.just("deep"), st.sampled_from([1, 30, 120]), st.tuples(st.just("yield"), VALUES)),
    st.tuples(st.just("raise"), VALUES),
    st.tuples(st.just("return"), VALUES),
)
G_STEP = st.one_of(
    st.tuples(st.just("parent"), VALUES),
    st.tuples(st.just("switch"), NAMES, VALUES),
    st.tuples(st.just("main"), VALUES),
    st.tuples(st.just("throw"), NAMES),
    st.tuples(st.just("deep"), st.sampled_from([1, 30, 120]), st.tuples(st.just("parent"), VALUES)),
    st.tuples(st.just("current")),
    st.tuples(st.just("raise"), VALUES),
    st.tuples(st.just("exitret"), VALUES),
)
CHANNELS = st.sampled_from(list(progs.CHANNELS))
T_STEP = st.one_of(
    st.tuples(st.just("send"), CHANNELS, VALUES),
    st.tuples(st.just("receive"), CHANNELS),
    st.tuples(st.just("schedule")),
    st.tuples(st.just("schedule_remove")),
    st.tuples(st.just("kill"), NAMES),
    st.tuples(st.just("deep"), st.sampled_from([1, 30, 120]), st.tuples(st.just("receive"), CHANNELS)),
    st.tuples(st.just("raise"), VALUES),
    st.tuples(st.just("return"), VALUES),
)

_workers = {}


def _run_both(kind, ops):
    if not _workers:
        (cp, cp_env), (pp, pp_env) = driver.interpreters(type("A", (), {
            "cpython": sys.executable, "pypy": PYPY, "pylib": os.path.join(ROOT, "pylib"), "jit_off": False})())
        _workers["cp"] = driver.Worker(cp, cp_env)
        _workers["pp"] = driver.Worker(pp, pp_env)
    text = progs.render(kind, ops)
    a = _workers["cp"].run(0, text)
    b = _workers["pp"].run(0, text)
    assert driver.divergent(a, b) is None, "%s\n--- cpython+ours\n%s\n--- pypy\n%s" % (
        text, "\n".join(a), "\n".join(b))


class ProgramMachine(RuleBasedStateMachine):
    """Builds a program one operation at a time; after each rule the program so far is run on
    both interpreters (persistent workers), so hypothesis shrinks a divergence to few ops.
    Each rule stands for one operation per kind of program (continulet / greenlet / tasklet)."""

    @initialize(kind=st.sampled_from(["continulet", "greenlet", "tasklet"]))
    def start(self, kind):
        self.kind = kind
        self.ops = []

    def _add(self, op):
        self.ops.append(op)
        _run_both(self.kind, self.ops)

    @rule(n=NAMES, c=st.lists(C_STEP, max_size=4), g=st.lists(G_STEP, max_size=4),
          t=st.lists(T_STEP, max_size=4), parent=st.sampled_from(["main", "a", "b"]))
    def new(self, n, c, g, t, parent):
        self._add({"continulet": ("new", n, progs._cut(c)), "greenlet": ("new", n, parent, progs._cut(g)),
                   "tasklet": ("new", n, progs._cut(t))}[self.kind])

    @rule(n=NAMES, v=VALUES)
    def switch_or_run(self, n, v):
        self._add(("run",) if self.kind == "tasklet" else ("switch", n, v))

    @rule(n=NAMES, m=NAMES, v=VALUES, ch=CHANNELS)
    def to_kwswitch_or_send(self, n, m, v, ch):
        self._add({"continulet": ("to", n, m, v), "greenlet": ("kwswitch", n, v),
                   "tasklet": ("send", ch, v)}[self.kind])

    @rule(n=NAMES)
    def throw_or_kill(self, n):
        self._add(("kill", n) if self.kind == "tasklet" else ("throw", n))

    @rule(n=NAMES, ns=st.lists(NAMES, max_size=3, unique=True), ch=CHANNELS)
    def permute_dead_or_receive(self, n, ns, ch):
        self._add({"continulet": ("permute", ns), "greenlet": ("dead", n),
                   "tasklet": ("receive", ch)}[self.kind])

    @rule(n=NAMES)
    def query_or_schedule(self, n):
        self._add({"continulet": ("pending", n), "greenlet": ("dead", n),
                   "tasklet": ("schedule",)}[self.kind])

    @rule(n=NAMES)
    def drop(self, n):
        self._add(("drop", n))


ProgramMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("CONTINULET_FUZZ_EXAMPLES", "40")), stateful_step_count=12,
    deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
test_hypothesis_program_machine = ProgramMachine.TestCase


def teardown_module(module):
    for w in _workers.values():
        w.close()
