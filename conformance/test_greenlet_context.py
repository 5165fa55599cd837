"""gr_context: every greenlet runs in its own contextvars.Context (greenlet 3.x contextvars.rst)."""
import contextvars

import pytest

from greenlet import getcurrent
from greenlet import greenlet as G

from conftest import differs

VAR = contextvars.ContextVar("VAR", default="default")


def test_new_greenlet_starts_with_empty_context():
    VAR.set("main value")
    g = G(lambda: VAR.get())
    assert g.gr_context is None
    assert g.switch() == "default"
    assert VAR.get() == "main value"


def test_values_are_isolated_between_greenlets():
    main = getcurrent()
    VAR.set("main")

    def run():
        VAR.set("in g")
        main.switch(VAR.get())
        return VAR.get()

    g = G(run)
    assert g.switch() == "in g"
    assert VAR.get() == "main"
    VAR.set("main changed")
    assert g.switch() == "in g"
    assert VAR.get() == "main changed"


def test_share_context_by_assignment_before_start():
    VAR.set("shared")
    g = G(lambda: VAR.get())
    g.gr_context = getcurrent().gr_context
    assert g.switch() == "shared"


def test_copy_context_before_start():
    VAR.set("copied")
    ctx = contextvars.copy_context()
    VAR.set("later")

    def run():
        v = VAR.get()
        VAR.set("written in g")
        return v

    g = G(run)
    g.gr_context = ctx
    assert g.switch() == "copied"
    assert ctx[VAR] == "written in g"
    assert VAR.get() == "later"


def test_gr_context_of_suspended_greenlet():
    main = getcurrent()

    def run():
        VAR.set("suspended value")
        main.switch()

    g = G(run)
    g.switch()
    ctx = g.gr_context
    assert isinstance(ctx, contextvars.Context)
    assert ctx[VAR] == "suspended value"
    g.switch()


def test_replace_context_of_suspended_greenlet():
    main = getcurrent()

    def run():
        main.switch()
        return VAR.get()

    g = G(run)
    g.switch()
    new = contextvars.Context()
    new.run(VAR.set, "replaced")
    g.gr_context = new
    assert g.switch() == "replaced"


def test_gr_context_of_current_is_thread_context():
    VAR.set("current")
    ctx = getcurrent().gr_context
    assert isinstance(ctx, contextvars.Context)
    assert ctx[VAR] == "current"

    def run():
        VAR.set("inside")
        me = getcurrent()
        return me.gr_context[VAR]

    assert G(run).switch() == "inside"


def test_setting_current_context_takes_effect_immediately():
    def run():
        VAR.set("before")
        c = contextvars.Context()
        c.run(VAR.set, "after")
        getcurrent().gr_context = c
        return VAR.get()

    assert G(run).switch() == "after"


def test_main_context_seen_from_greenlet():
    VAR.set("main's")
    main = getcurrent()
    assert G(lambda: main.gr_context[VAR]).switch() == "main's"


def test_context_type_error():
    g = G(lambda: None)
    with pytest.raises(TypeError) as ei:
        g.gr_context = {}
    assert str(ei.value) == "greenlet context must be a contextvars.Context or None"
    g.gr_context = None
    assert g.gr_context is None


@differs("pypy-oracle", reason="lib_pypy greenlet: gr_context is a property without deleter ('can't delete attribute')")
def test_context_cannot_be_deleted():
    g = G(lambda: None)
    with pytest.raises(AttributeError) as ei:
        del g.gr_context
    assert str(ei.value) == "can't delete context attribute"


def test_context_run_inside_greenlet():
    def run():
        c = contextvars.copy_context()
        return c.run(lambda: (VAR.set("in run"), VAR.get())[1]), VAR.get()

    assert G(run).switch() == ("in run", "default")


def test_context_survives_many_switches():
    main = getcurrent()
    vals = []

    def worker(name):
        VAR.set(name)
        for _ in range(3):
            main.switch()
            vals.append((name, VAR.get()))

    gs = [G(worker) for _ in range(3)]
    for i, g in enumerate(gs):
        g.switch("w%d" % i)
    for _ in range(3):
        for g in gs:
            g.switch()
    assert vals == [("w%d" % (i % 3), "w%d" % (i % 3)) for i in range(9)]
