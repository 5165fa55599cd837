"""greenlet.throw(): semantics, argument forms and greenlet 3.x's exact argument errors."""
import sys

import pytest

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as G

from conftest import differs


def _suspended(body=None):
    """A started greenlet suspended in main.switch(); body(exc) runs if something is thrown."""
    main = getcurrent()

    def run():
        try:
            main.switch("ready")
        except BaseException as e:
            if body is None:
                raise
            return body(e)

    g = G(run)
    assert g.switch() == "ready"
    return g


def test_default_throw_kills_with_greenlet_exit():
    g = _suspended()
    r = g.throw()
    assert isinstance(r, GreenletExit)
    assert g.dead


def test_throw_caught_inside_returns_value():
    g = _suspended(lambda e: ("caught", type(e).__name__, e.args))
    assert g.throw(ValueError, "v") == ("caught", "ValueError", ("v",))
    assert g.dead


def test_throw_uncaught_propagates_to_caller():
    g = _suspended()
    with pytest.raises(KeyError) as ei:
        g.throw(KeyError("k"))
    assert ei.value.args == ("k",)
    assert g.dead


def test_throw_then_switch_back():
    main = getcurrent()

    def run():
        while True:
            try:
                main.switch("waiting")
            except ValueError as e:
                main.switch(("got", str(e)))

    g = G(run)
    g.switch()
    assert g.throw(ValueError, "one") == ("got", "one")
    assert g.switch() == "waiting"
    assert g.throw(ValueError("two")) == ("got", "two")
    g.throw()


@pytest.mark.parametrize(
    "args, expected_type, expected_args",
    [
        ((ValueError,), ValueError, ()),
        ((ValueError, "x"), ValueError, ("x",)),
        ((ValueError, ("a", "b")), ValueError, ("a", "b")),
        ((ValueError("inst"),), ValueError, ("inst",)),
        ((ValueError, ValueError("same")), ValueError, ("same",)),
        ((ValueError("n"), None), ValueError, ("n",)),
    ],
)
def test_throw_argument_forms(args, expected_type, expected_args):
    g = _suspended(lambda e: e)
    e = g.throw(*args)
    assert type(e) is expected_type
    assert e.args == expected_args


def test_throw_with_traceback():
    try:
        raise IndexError("with tb")
    except IndexError:
        tb = sys.exc_info()[2]
    g = _suspended(lambda e: e)
    e = g.throw(IndexError, IndexError("with tb"), tb)
    assert isinstance(e, IndexError)
    frames = []
    t = e.__traceback__
    while t is not None:
        frames.append(t.tb_frame.f_code.co_name)
        t = t.tb_next
    assert "test_throw_with_traceback" in frames


def test_throw_none_traceback_is_accepted():
    g = _suspended(lambda e: e)
    assert type(g.throw(ValueError, None, None)) is ValueError


def test_throw_into_unstarted_does_not_run():
    called = []
    g = G(lambda: called.append(1))
    with pytest.raises(ValueError):
        g.throw(ValueError)
    assert called == []
    assert g.dead
    assert not g


def test_greenlet_exit_into_unstarted_returns_it():
    called = []
    g = G(lambda: called.append(1))
    r = g.throw()
    assert isinstance(r, GreenletExit)
    assert called == []
    assert g.dead


def test_throw_to_dead_greenlet_exit_is_returned():
    g = G(lambda: None)
    g.switch()
    r = g.throw()
    assert isinstance(r, GreenletExit)
    r = g.throw(GreenletExit("explicit"))
    assert r.args == ("explicit",)


def test_throw_to_dead_other_exception_goes_to_parent():
    g = G(lambda: None)
    g.switch()
    with pytest.raises(ValueError):
        g.throw(ValueError("to parent"))


def test_throw_into_current_raises_here():
    with pytest.raises(ZeroDivisionError):
        getcurrent().throw(ZeroDivisionError)

    def run():
        try:
            getcurrent().throw(KeyError("self"))
        except KeyError as e:
            return ("self-caught", e.args)

    assert G(run).switch() == ("self-caught", ("self",))


def test_greenlet_exit_subclass_thrown_is_returned():
    class Stop(GreenletExit):
        pass

    g = _suspended()
    r = g.throw(Stop, "s")
    assert type(r) is Stop and r.args == ("s",)


def test_throw_finally_runs():
    log = []
    main = getcurrent()

    def run():
        try:
            main.switch()
        finally:
            log.append("finally")

    g = G(run)
    g.switch()
    g.throw()
    assert log == ["finally"]


def test_throw_from_sibling_greenlet_returns_to_parent():
    main = getcurrent()
    victim = _suspended(lambda e: ("victim-got", type(e).__name__))

    def attacker():
        return ("attacker", victim.throw(KeyError))

    # victim's parent is main, so victim's result goes to main, not to the attacker
    assert G(attacker).switch() == ("victim-got", "KeyError")


# ------------------------------------------------------------------ argument errors

def test_bad_traceback_message():
    g = _suspended()
    with pytest.raises(TypeError) as ei:
        g.throw(ValueError, None, 5)
    assert str(ei.value) == "throw() third argument must be a traceback object"
    assert not g.dead
    g.throw()


@differs("pypy-oracle", reason="lib_pypy greenlet reports PyPy's generic raise message")
def test_not_an_exception_message():
    g = _suspended()
    with pytest.raises(TypeError) as ei:
        g.throw("not an exception")
    assert str(ei.value) == "exceptions must be classes, or instances, not str"
    with pytest.raises(TypeError) as ei:
        g.throw(42)
    assert str(ei.value) == "exceptions must be classes, or instances, not int"
    g.throw()


def test_instance_with_value_message():
    g = _suspended()
    with pytest.raises(TypeError) as ei:
        g.throw(ValueError("a"), "b")
    assert str(ei.value) == "instance exception may not have a separate value"
    g.throw()


@differs("pypy-oracle", reason="lib_pypy greenlet's throw accepts keyword arguments")
def test_throw_takes_no_keywords():
    g = _suspended()
    with pytest.raises(TypeError) as ei:
        g.throw(typ=ValueError)
    assert "takes no keyword arguments" in str(ei.value)
    g.throw()


def test_bad_arguments_leave_target_untouched():
    g = _suspended(lambda e: "ok")
    for args in [(ValueError, None, 5), (ValueError("a"), "b"), (3,)]:
        with pytest.raises(TypeError):
            g.throw(*args)
    assert not g.dead
    assert g.throw(ValueError) == "ok"
