"""Fuzz worker: runs programs from ``progs.py`` and prints their traces (one interpreter).

stdin: one JSON object per line, ``{"id": ..., "text": ...}``; stdout: one JSON object per
line, ``{"id": ..., "trace": [...]}``, flushed after each program, so that if the process dies
the driver knows which program killed it.  Runs unchanged on CPython (ours) and PyPy.

Names the programs use (see progs.py): ``P`` (trace), ``S`` (show a value: objects by their
registry name, never an address), ``X`` (show an exception), ``F`` (show ``_get_frame()``),
``R`` (registry name -> object), ``K`` (keep: every object created stays alive until the end of
the program unless dropped with ``D``), ``D`` (drop a name, then collect), ``Boom``, ``collect``.
After the program, still-suspended continulets are finished by throwing ``_Cleanup`` into them,
greenlets by ``throw()``, tasklets by ``kill()`` (also those blocked on its channels, kept or
not: one left to a later collection would run in another program's time, with this program's
names gone), with the trace off (on CPython a suspended continulet that becomes
garbage would be leaked: ARCHITECTURE.md known gap).
"""
import gc
import json
import sys


class Boom(Exception):
    pass


class _Cleanup(BaseException):
    pass


def run_program(text):
    trace = []
    on = [True]
    R = {}
    KEEP = []

    def P(*args):
        if on[0]:
            trace.append(" ".join(map(str, args)))

    def S(x):
        for name, obj in R.items():
            if obj is x and x is not None:
                return "<%s>" % name
        if isinstance(x, tuple):
            return "(%s)" % ", ".join(S(i) for i in x)
        if isinstance(x, dict):
            return "{%s}" % ", ".join("%s: %s" % (k, S(v)) for k, v in sorted(x.items()))
        if isinstance(x, BaseException):
            return X(x)
        if type(x).__name__ == "tasklet" and getattr(x, "is_main", False):
            return "<main>"
        if type(x).__module__ in ("_continuation", "greenlet", "stackless"):
            if type(x).__name__ == "greenlet" and getattr(x, "parent", 1) is None:
                return "<main>"
            return "<%s unnamed>" % type(x).__name__
        return repr(x)

    def X(e):
        t = type(e).__name__
        if t in ("error", "Boom", "GreenletExit", "TaskletExit", "ValueError", "AttributeError", "KeyError",
                 "RuntimeError"):
            return "%s(%s)" % (t, e)
        if t == "TypeError" and str(e).startswith(("can't send non-None", "'_continuation.continulet'")):
            return "%s(%s)" % (t, e)  # the module's own messages (SPEC 1.11)
        return t  # interpreter-generated messages (TypeError...) differ: documented

    def F(c):
        f = c._get_frame()
        if f is False or f is None:
            return repr(f)
        return f.f_code.co_name

    def K(obj):
        KEEP.append(obj)
        return obj

    def collect():
        for _ in range(3):
            gc.collect()

    def D(name):
        obj = R.pop(name, None)
        KEEP[:] = [o for o in KEEP if o is not obj]
        del obj
        collect()
        if "greenlet" in ns:
            ns["getcurrent"]()  # run kills deferred to this thread

    ns = {"P": P, "S": S, "X": X, "F": F, "R": R, "K": K, "D": D, "Boom": Boom,
          "collect": collect, "__name__": "__fuzz__"}
    try:
        exec(compile(text, "<fuzz>", "exec"), ns)
        # what became garbage is collected with the trace still on, so a kill-on-GC that PyPy
        # would only do after the program shows in both traces (its *moment* may differ)
        D(None)
    except BaseException as e:  # escaped the main program
        P("ESCAPED", X(e))
    on[0] = False
    _cleanup(KEEP)
    if "stackless" in ns:
        # A dropped tasklet that PyPy's collector found only now waits for the scheduler's
        # next step to be killed: killed here, while this program's names exist, not in the
        # next program's time (and without running anything else of the run queue).
        from stackless import _core

        for _ in range(3):
            collect()
            _core._kill_doomed(_core.get(), None)
        left = ns["stackless"].getruncount()
        if left != 1:
            trace.append("LEFTOVER runcount %d" % left)
    R.clear()
    del KEEP[:]
    collect()
    ns.clear()
    return trace


def _cleanup(keep):
    for obj in reversed(keep):
        for _ in range(100):
            if type(obj).__name__ == "channel":
                # A tasklet blocked on it (one the program dropped, say) is killed now, not
                # by a later collection in another program, when this namespace is gone.
                blocked = getattr(obj, "queue", None)
                if blocked is None:
                    break
                try:
                    blocked.kill()
                except BaseException:
                    pass
                continue
            if type(obj).__name__ == "tasklet":
                if not obj.alive:
                    break
                try:
                    obj.kill()
                except BaseException:
                    pass
            elif type(obj).__name__ == "continulet" or hasattr(obj, "is_pending"):
                if not obj.is_pending():
                    break
                try:
                    obj.throw(_Cleanup)
                except BaseException:
                    pass
            else:
                if obj.dead or not obj:
                    break
                try:
                    obj.throw()
                except BaseException:
                    pass


def main():
    for line in sys.stdin:
        req = json.loads(line)
        try:
            trace = run_program(req["text"])
        except BaseException as e:  # never expected: report it as part of the trace
            trace = ["WORKER-ERROR %s" % type(e).__name__]
        sys.stdout.write(json.dumps({"id": req["id"], "trace": trace}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
