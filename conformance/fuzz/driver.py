"""Differential fuzz driver: the same programs on CPython + ours and on PyPy; traces compared.

    python driver.py --cpython PY --pypy PY [--seeds A:B] [--batch N] [--jobs J]

Programs come from ``progs.generate(seed)``; each worker process (``worker.py``) runs a batch
of programs, so interpreter start-up is paid once per batch.  A divergence is a failure unless
it matches ``DELIBERATE`` (the documented differences).  Exit status 1 on any failure, with the
seed, the program text and both traces printed (re-run one seed with ``--seeds S:S+1 -v``).
"""
import argparse
import re
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import progs  # noqa: E402

# Documented deliberate differences between CPython+ours and PyPy that a trace can show.
# Messages of interpreter-generated exceptions (TypeError, RecursionError, ...) are never
# printed by the workers (only their type), so they need no entry here.  Each entry:
# (name, predicate(cpython_trace, pypy_trace) -> bool).
KILL_LINE = re.compile(r"^\w+ exit GreenletExit\(Killing the greenlet because all references have vanished\.\)$")


def _split_kills(trace):
    kills = [x for x in trace if KILL_LINE.match(x)]
    return [x for x in trace if not KILL_LINE.match(x)], sorted(kills)


def _greenlet_kill_moment(cp, pp):
    """greenlet 3.x kills a suspended greenlet when its last reference goes: on CPython that is
    the moment of refcount death, on PyPy the next collection that finds it (a later
    ``gc.collect()`` of the program, at the latest the final one the worker runs with the trace
    on).  The same greenlets get ``GreenletExit``; only where it shows in the trace differs.
    (Real greenlet on PyPy behaves the same way.)"""
    (a, ka), (b, kb) = _split_kills(cp), _split_kills(pp)
    return a == b and ka == kb


def _gc_cycle_through_suspended_frames(cp, pp):
    """ARCHITECTURE.md known gap: CPython's GC does not traverse the frames of a suspended
    continulet, so a greenlet kept only by a cycle through its own suspended frames (e.g. an
    exception it threw, whose traceback holds the frames that started it) is never collected,
    hence never killed; PyPy collects it and kills it with GreenletExit."""
    (a, ka), (b, kb) = _split_kills(cp), _split_kills(pp)
    return a == b and _strict_superset(kb, ka)


TASKLET_KILL_LINE = re.compile(r"^\w+ exit TaskletExit\(\)$")


def _tasklet_kill_moment(cp, pp):
    """Stackless kills a tasklet that becomes garbage alive with ``TaskletExit`` (its
    ``finally`` blocks run): on CPython at the moment of refcount death, on PyPy at a later
    collection — one of the program's, or the worker's final one, or after the trace is off
    (then the kill is missing from PyPy's trace).  Everything else matches, and PyPy's kills
    are some of CPython's.  (That PyPy kills garbage tasklets at all is proven by the
    conformance suite's garbage tests, not here.)"""
    a = [x for x in cp if not TASKLET_KILL_LINE.match(x)]
    b = [x for x in pp if not TASKLET_KILL_LINE.match(x)]
    ka = sorted(x for x in cp if TASKLET_KILL_LINE.match(x))
    kb = sorted(x for x in pp if TASKLET_KILL_LINE.match(x))
    return a == b and _sub_multiset(kb, ka)


def _sub_multiset(small, big):
    rest = list(big)
    for k in small:
        if k not in rest:
            return False
        rest.remove(k)
    return True


DELIBERATE = [("greenlet-kill-moment", _greenlet_kill_moment),
              ("gc-cycle-through-suspended-frames", _gc_cycle_through_suspended_frames),
              ("tasklet-kill-moment", _tasklet_kill_moment)]


def _strict_superset(big, small):
    return _sub_multiset(small, big) and len(big) > len(small)


def _native_kill_not_held_by_python_frames(cp, pp, pure):
    """On CPython the native greenlet paths (start, switch, death) run no Python frame of
    greenlet.py; where greenlet.py runs in Python (PyPy, CPython with CONTINULET_PURE=1), its
    ``switch``/``_deliver`` frames on the path that started a greenlet can outlive the switch in
    the traceback of an exception that later passed through them, and they reference that
    greenlet: dropped, it is then neither freed nor killed (the C greenlet kills it, as native
    CPython does: conformance test_greenlet_referenced_only_by_an_old_traceback_path_is_killed).
    Deliberate only if the traces agree but for kill lines, native CPython's kills are a strict
    superset of PyPy's, and CPython running the same greenlet.py as PyPy (``pure``: the program
    re-run with CONTINULET_PURE=1) gives PyPy's trace."""
    if pure is None:
        return False
    (a, ka), (b, kb) = _split_kills(cp), _split_kills(pp)
    if a != b or not _strict_superset(ka, kb):
        return False
    return pure == pp or _greenlet_kill_moment(pure, pp)


class Worker(object):
    """A persistent worker process (one interpreter)."""

    def __init__(self, python, env=None):
        self.python = python
        self.env = env
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            self.python + [os.path.join(HERE, "worker.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=self.env, bufsize=1)

    def run(self, pid, text):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps({"id": pid, "text": text}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            err = self.proc.stderr.read()
            self.proc = None
            return ["WORKER-DIED rc=%s %s" % (rc, err[-2000:])]
        return json.loads(line)["trace"]

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(60)
        self.proc = None


def run_batch(python, env, items, timeout):
    """Run [(id, text)] in one process; returns {id: trace}; a crash marks the program that died."""
    out = {}
    pending = list(items)
    while pending:
        data = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in pending)
        try:
            r = subprocess.run(python + [os.path.join(HERE, "worker.py")], input=data, capture_output=True,
                               text=True, env=env, timeout=timeout)
            stdout, rc, err = r.stdout, r.returncode, r.stderr
        except subprocess.TimeoutExpired as e:
            stdout, rc, err = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), \
                "timeout", ""
        done = 0
        for line in stdout.splitlines():
            res = json.loads(line)
            out[res["id"]] = res["trace"]
            done += 1
        if done == len(pending):
            break
        dead_id = pending[done][0]
        out[dead_id] = ["WORKER-DIED rc=%s %s" % (rc, err[-2000:])]
        pending = pending[done + 1:]
    return out


def normalize(trace):
    return trace


DELIBERATE_SEEN = {}


def divergent(a, b):
    if a == b:
        return None
    for name, pred in DELIBERATE:
        if pred(a, b):
            DELIBERATE_SEEN[name] = DELIBERATE_SEEN.get(name, 0) + 1
            return None
    return "traces differ"


def interpreters(args):
    cp_env = dict(os.environ)
    cp_env.pop("PYTHONPATH", None)
    pp_env = dict(os.environ)
    pp_env["PYTHONPATH"] = args.pylib
    return ([args.cpython], cp_env), ([args.pypy] + (["--jit", "off"] if args.jit_off else []), pp_env)


def main(argv=None):
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(HERE))
    ap.add_argument("--cpython", default=os.path.join(root, ".venv/cp311/bin/python"))
    ap.add_argument("--pypy", default=os.path.join(root, ".venv/pypy/bin/python"))
    ap.add_argument("--pylib", default=os.path.join(root, "pylib"))
    ap.add_argument("--seeds", default="0:1000")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--jit-off", action="store_true", help="run PyPy with --jit off")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args(argv)
    a, b = map(int, args.seeds.split(":"))
    (cp, cp_env), (pp, pp_env) = interpreters(args)
    t0 = time.time()
    failures = 0
    n = 0
    for start in range(a, b, args.batch):
        seeds = range(start, min(b, start + args.batch))
        items = [(s, progs.generate(s)) for s in seeds]
        # the two interpreters run their batch concurrently (2 cores)
        import threading
        res = {}
        th = threading.Thread(target=lambda: res.setdefault("pp", run_batch(pp, pp_env, items, args.timeout)))
        th.start()
        res["cp"] = run_batch(cp, cp_env, items, args.timeout)
        th.join()
        for s, text in items:
            n += 1
            ta, tb = res["cp"].get(s), res["pp"].get(s)
            why = divergent(ta, tb)
            if why and ta and tb:
                pure_env = dict(cp_env, CONTINULET_PURE="1")
                pure = run_batch(cp, pure_env, [(s, text)], args.timeout).get(s)
                if _native_kill_not_held_by_python_frames(ta, tb, pure):
                    name = "native-kill-not-held-by-greenlet.py-frames"
                    DELIBERATE_SEEN[name] = DELIBERATE_SEEN.get(name, 0) + 1
                    why = None
            if why or args.v:
                if why:
                    failures += 1
                print("=== seed %d: %s\n%s--- cpython+ours\n%s\n--- pypy\n%s" % (
                    s, why or "same", text, "\n".join(ta or []), "\n".join(tb or [])))
        print("fuzz: %d programs, %d divergences, %.0fs" % (n, failures, time.time() - t0), flush=True)
    print("fuzz: done: %d programs (seeds %d:%d), %d divergences not on the deliberate list, "
          "deliberate: %s, %.0fs" % (n, a, b, failures, DELIBERATE_SEEN or "none", time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
