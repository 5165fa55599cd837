"""Misuse table (issue 8): every misuse in SPEC's error catalogues (§1.11, §2, §3) with the
exact exception type and message.  Rows already asserted elsewhere in the suite are repeated
here so that the catalogue reads as one table; PyPy's lib_pypy deviations are marked.
"""
import threading

import pytest

from conftest import IMPL, differs

from _continuation import continulet, error, permute

ORACLE_G = "lib_pypy greenlet: no such check / different message (SPEC 2.12)"
ORACLE_S = "lib_pypy stackless: no such check / different message (SPEC 3.4)"


def _foreign_continulet():
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("c", continulet(lambda c: c.switch())))
    th.start()
    th.join()
    return box["c"]


def _finished():
    c = continulet(lambda c: None)
    c.switch()
    return c


def _c_init_twice():
    c = continulet(lambda c: None)
    c.__init__(lambda c: None)


def _c_pickle():
    import pickle

    pickle.dumps(continulet(lambda c: None))


def _c_setstate():
    continulet(lambda c: None).__setstate__(None)


def _g(run=lambda: None):
    import greenlet

    return greenlet.greenlet(run)


def _g_started():
    import greenlet

    main = greenlet.getcurrent()
    g = greenlet.greenlet(lambda: main.switch())
    g.switch()
    return g


def _g_del_dict():
    del _g().__dict__


def _g_set_dict():
    _g().__dict__ = 5


def _g_foreign_parent():
    import greenlet

    box = {}
    th = threading.Thread(target=lambda: box.setdefault("g", greenlet.getcurrent()))
    th.start()
    th.join()
    _g_started().parent = box["g"]


def _tasklet_of_thread(live):
    """A bound tasklet created in another thread: still running (``live``) or exited."""
    import stackless

    box, go = {}, threading.Event()

    def thread():
        box["t"] = stackless.tasklet(lambda: None)
        go.wait(10)

    th = threading.Thread(target=thread)
    th.start()
    while "t" not in box:
        th.join(0.001)
    if not live:
        go.set()
        th.join()
    box["t"].bind(lambda: None, ())
    return box["t"], go, th


def _tasklet_foreign_switch():
    t, go, th = _tasklet_of_thread(live=True)
    try:
        t.switch()
    finally:
        go.set()
        th.join()


def _tasklet_no_thread(method):
    t, _, _ = _tasklet_of_thread(live=False)
    assert t.thread_id == -1
    getattr(t, method)()


def _g_parent_root_not_main():
    # Not reachable through greenlet's public API (every parent chain ends in a main
    # greenlet), in C greenlet nor here: the check is defence against corrupted state, so
    # the row corrupts it (a chain whose root is not a main greenlet).
    g, orphan = _g(), _g()
    orphan._greenlet__parent = None
    g.parent = orphan


def _tasklet_rebind_started():
    import stackless

    def f():
        stackless.schedule_remove()

    t = stackless.tasklet(f)()
    t.run()  # now paused inside f, with a stack: not restorable
    try:
        t.bind(lambda: None)
    finally:
        t.kill()


def _set_gr_context():
    _g().gr_context = 5


def _run_after_start():
    _g_started().run = lambda: None


CATALOGUE = [
    # --- §1.11 _continuation
    ("init-twice", _c_init_twice, error, "continulet already __init__ialized", ()),
    ("switch-finished", lambda: _finished().switch(), error, "continulet already finished", ()),
    ("to-finished", lambda: continulet(lambda c: None).switch(to=_finished()), error,
     "continulet already finished", ()),
    ("foreign-thread", lambda: _foreign_continulet().switch(), error, "cannot switch to a different thread", ()),
    ("cross-thread-double", lambda: continulet(lambda c: None).switch(to=_foreign_continulet()), error,
     "cross-thread double switch", ()),
    ("permute-finished", lambda: permute(continulet(lambda c: None), _finished()), error,
     "got an already-finished continulet", ()),
    ("permute-foreign", lambda: permute(continulet(lambda c: None), _foreign_continulet()), error,
     "inter-thread support is missing", ()),
    ("first-switch-value", lambda: continulet(lambda c: None).switch(5), TypeError,
     "can't send non-None value to a just-started continulet", ()),
    ("to-not-continulet", lambda: continulet(lambda c: None).switch(to=5), TypeError,
     "'_continuation.continulet' object expected, got 'int' instead", ()),
    ("permute-not-continulet", lambda: permute(continulet(lambda c: None), 5), TypeError,
     "'_continuation.continulet' object expected, got 'int' instead", ()),
    ("throw-bad-tb", lambda: continulet(lambda c: None).throw(ValueError, None, 5), TypeError,
     "throw() third argument must be a traceback object", ()),
    ("pickle", _c_pickle, NotImplementedError, "continulet's pickle support is currently disabled", ()),
    ("setstate", _c_setstate, NotImplementedError, "continulet's pickle support is currently disabled", ()),
    # --- §2 greenlet
    ("g-run-after-start", _run_after_start, AttributeError, "run cannot be set after the start of the greenlet",
     ("pypy-oracle",)),
    ("g-main-run", lambda: __import__("greenlet").getcurrent().run, AttributeError,
     "Main greenlets do not have a run attribute.", ("pypy-oracle",)),
    ("g-main-parent", lambda: setattr(__import__("greenlet").getcurrent(), "parent", _g()), AttributeError,
     "cannot set the parent of a main greenlet", ("pypy-oracle",)),
    ("g-parent-type", lambda: setattr(_g(), "parent", 5), TypeError,
     "GreenletChecker: Expected any type of greenlet, not int", ("pypy-oracle",)),
    ("g-parent-cycle", lambda: (lambda g: setattr(g, "parent", g))(_g()), ValueError, "cyclic parent chain",
     ("pypy-oracle",)),
    ("g-parent-thread", _g_foreign_parent, ValueError, "parent cannot be on a different thread", ("pypy-oracle",)),
    ("g-parent-gc", _g_parent_root_not_main, ValueError, "parent must not be garbage collected",
     ("pypy-oracle",)),
    ("g-del-parent", lambda: delattr(_g(), "parent"), AttributeError, "can't delete attribute", ("pypy-oracle",)),
    ("g-context-type", _set_gr_context, TypeError, "greenlet context must be a contextvars.Context or None", ()),
    ("g-del-context", lambda: delattr(_g(), "gr_context"), AttributeError, "can't delete context attribute",
     ("pypy-oracle",)),
    ("g-throw-instance-value", lambda: _g_started().throw(ValueError("x"), 1), TypeError,
     "instance exception may not have a separate value", ()),
    ("g-throw-str", lambda: _g_started().throw("x"), TypeError,
     "exceptions must be classes, or instances, not str", ("pypy-oracle",)),
    ("g-throw-bad-tb", lambda: _g_started().throw(ValueError, None, 5), TypeError,
     "throw() third argument must be a traceback object", ()),
    ("g-throw-kwargs", lambda: _g_started().throw(typ=ValueError), TypeError,
     "throw() takes no keyword arguments", ("pypy-oracle",)),
    ("g-init-3-args", lambda: __import__("greenlet").greenlet(None, None, None), TypeError,
     "green() takes at most 2 arguments (3 given)", ("pypy-oracle",)),
    ("g-getstate", lambda: __import__("copy").copy(_g()), TypeError, "cannot serialize 'greenlet.greenlet' object",
     ("pypy-oracle",)),
    ("g-del-dict", _g_del_dict, TypeError, "__dict__ may not be deleted", ("pypy-oracle",)),
    ("g-set-dict", _g_set_dict, TypeError, "__dict__ must be a dictionary", ("pypy-oracle",)),
    # --- §3 stackless
    ("t-bind-not-callable", lambda: __import__("stackless").tasklet(5), TypeError,
     "tasklet function must be a callable or None", ("pypy-oracle",)),
    ("t-bind-current", lambda: __import__("stackless").getcurrent().bind(lambda: None), RuntimeError,
     "can't (re)bind the current tasklet", ("pypy-oracle",)),
    ("t-setup-alive", lambda: __import__("stackless").tasklet(lambda: None)().setup(), RuntimeError,
     "tasklet is alive", ("pypy-oracle",)),
    ("t-setup-unbound", lambda: __import__("stackless").tasklet().setup(), RuntimeError,
     "the tasklet was not bound to a function", ("pypy-oracle",)),
    ("t-run-dead", lambda: __import__("stackless").tasklet().insert(), RuntimeError,
     "You cannot run an unbound(dead) tasklet", ()),
    ("t-remove-current", lambda: __import__("stackless").getcurrent().remove(), RuntimeError,
     "The current tasklet cannot be removed.", ()),
    ("t-switch-foreign", _tasklet_foreign_switch, RuntimeError, "can't switch to a different thread.",
     ("pypy-oracle",)),
    ("t-switch-no-thread", lambda: _tasklet_no_thread("switch"), RuntimeError, "tasklet has no thread",
     ("pypy-oracle",)),
    ("t-run-no-thread", lambda: _tasklet_no_thread("run"), RuntimeError, "tasklet has no thread",
     ("pypy-oracle",)),
    ("t-rebind-with-stack", _tasklet_rebind_started, RuntimeError, "tasklet has C state on its stack",
     ("pypy-oracle",)),
    ("t-throw-dead", lambda: __import__("stackless").tasklet().throw(ValueError), RuntimeError,
     "You cannot throw to a dead tasklet", ("pypy-oracle",)),
    ("ch-preference", lambda: setattr(__import__("stackless").channel(), "preference", "x"), TypeError,
     "preference must be set to an integer", ("pypy-oracle",)),
    ("ch-callback", lambda: __import__("stackless").set_channel_callback(5), TypeError,
     "channel callback must be callable", ("pypy-oracle",)),
]

BUGS = {}  # rows of ours still marked as a bug (none left)


def _param(row):
    name, fn, exc, msg, dev = row
    marks = []
    ours = tuple(i for i in dev if i != "pypy-oracle")
    if ours:
        marks.append(differs(*ours, reason=BUGS[name]))
    if "pypy-oracle" in dev:
        marks.append(differs("pypy-oracle", reason=ORACLE_S if name[:2] in ("t-", "ch") else ORACLE_G))
    return pytest.param(fn, exc, msg, id=name, marks=marks)


@pytest.mark.parametrize("fn, exc, msg", [_param(r) for r in CATALOGUE])
def test_misuse(fn, exc, msg):
    with pytest.raises(exc) as ei:
        fn()
    assert type(ei.value) is exc
    assert str(ei.value) == msg
