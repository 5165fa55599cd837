"""continulet.switch / throw / is_pending / _get_frame / permute, and the thread rules.

SPEC §1.2-§1.7, §1.11.  Every expected value below was observed on PyPy 3.9 (7.3.11).
"""

import sys
import threading

import pytest

from conftest import differs

from _continuation import continulet, error, permute

NOT_CONT_INT = "'_continuation.continulet' object expected, got 'int' instead"
NOT_CONT_STR = "'_continuation.continulet' object expected, got 'str' instead"
JUST_STARTED = "can't send non-None value to a just-started continulet"


def ret1(c):
    return 1


def uninit():
    return continulet.__new__(continulet)


def finished():
    c = continulet(ret1)
    c.switch()
    return c


def suspended(value="s"):
    """A started continulet suspended in c.switch(value); on resume it returns ('r', got)."""
    c = continulet(lambda c: ("r", c.switch(value)))
    assert c.switch() == value
    return c


def in_thread(fn):
    box = {}

    def run():
        box["v"] = fn()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box["v"]


@pytest.fixture
def foreign_fresh():
    return in_thread(lambda: continulet(ret1))


@pytest.fixture
def foreign_suspended():
    """A suspended continulet of a thread that has exited."""
    return in_thread(lambda: suspended())


@pytest.fixture
def live_foreign_suspended():
    """A suspended continulet of another thread, which stays alive during the test."""
    box, made, done = {}, threading.Event(), threading.Event()

    def run():
        box["c"] = suspended()
        made.set()
        done.wait(30)

    t = threading.Thread(target=run)
    t.start()
    made.wait(30)
    yield box["c"]
    done.set()
    t.join()


# ---------------------------------------------------------------------------------------------
# basic switching


def test_first_switch_runs_callable_and_returns_result():
    c = continulet(lambda c: "result")
    assert c.switch() == "result"
    assert not c.is_pending()


def test_first_switch_with_explicit_none():
    assert continulet(lambda c: "ok").switch(None) == "ok"
    assert continulet(lambda c: "ok").switch(value=None) == "ok"


def test_first_switch_non_none_is_type_error_and_finishes():
    called = []
    c = continulet(lambda c: called.append(1))
    with pytest.raises(TypeError) as ei:
        c.switch(5)
    assert str(ei.value) == JUST_STARTED
    assert called == []
    assert c.is_pending() is False
    assert c._get_frame() is None
    with pytest.raises(error) as ei:
        c.switch()
    assert str(ei.value) == "continulet already finished"


def test_ping_pong_values():
    def f(c, start):
        x = start
        while x < 100:
            x = c.switch(x) * 2
        return ("end", x)

    c = continulet(f, 3)
    assert c.switch() == 3
    assert c.switch(4) == 8
    assert c.switch(30) == 60
    assert c.switch(50) == ("end", 100)
    assert not c.is_pending()


def test_switch_from_deep_inside_callable():
    def deep(c, n):
        if n == 0:
            return c.switch("bottom")
        return deep(c, n - 1)

    c = continulet(lambda c: ("back", deep(c, 50)))
    assert c.switch() == "bottom"
    assert c.switch("v") == ("back", "v")


def test_switch_keyword_names():
    c = continulet(lambda c: c.switch(value="kw"))
    assert c.switch(value=None, to=None) == "kw"
    assert c.switch(value="back") == "back"


def test_switch_unexpected_keyword():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).switch(foo=1)
    assert str(ei.value) == "switch() got an unexpected keyword argument 'foo'"


def test_switch_too_many_args():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).switch(1, 2, 3)
    assert str(ei.value) == "switch() takes from 1 to 3 positional arguments but 4 were given"


def test_returns_objects_identically():
    obj = object()
    c = continulet(lambda c: c.switch(obj))
    assert c.switch() is obj
    assert c.switch(obj) is obj


def test_switch_finished():
    c = finished()
    with pytest.raises(error) as ei:
        c.switch()
    assert str(ei.value) == "continulet already finished"
    with pytest.raises(error) as ei:
        c.switch(5)
    assert str(ei.value) == "continulet already finished"


def test_exception_in_callable_propagates_and_finishes():
    def f(c):
        raise ValueError("boom")

    c = continulet(f)
    with pytest.raises(ValueError) as ei:
        c.switch()
    assert ei.value.args == ("boom",)
    assert not c.is_pending()


def test_exception_after_resume_propagates_to_latest_switcher():
    def f(c):
        c.switch(1)
        raise KeyError("late")

    c = continulet(f)
    assert c.switch() == 1
    with pytest.raises(KeyError) as ei:
        c.switch()
    assert ei.value.args == ("late",)
    assert not c.is_pending()


def test_switch_to_self_from_inside_returns_to_caller():
    log = []

    def f(c):
        log.append("a")
        v = c.switch("first")
        log.append(("b", v))
        v = c.switch("second")
        log.append(("c", v))
        return "third"

    c = continulet(f)
    assert c.switch() == "first"
    assert c.switch(1) == "second"
    assert c.switch(2) == "third"
    assert log == ["a", ("b", 1), ("c", 2)]


# ---------------------------------------------------------------------------------------------
# `to=` argument checks and no-op cases


@pytest.mark.parametrize("bad", [5, "x", 1.5, None.__class__])
def test_to_must_be_continulet(bad):
    with pytest.raises(TypeError) as ei:
        continulet(ret1).switch(to=bad)
    assert str(ei.value) == "'_continuation.continulet' object expected, got '%s' instead" % type(bad).__name__


def test_to_positional():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).switch(None, 5)
    assert str(ei.value) == NOT_CONT_INT


def test_to_type_checked_before_uninitialized_self():
    with pytest.raises(TypeError) as ei:
        uninit().switch(to="x")
    assert str(ei.value) == NOT_CONT_STR


def test_to_type_checked_before_finished_self():
    with pytest.raises(TypeError) as ei:
        finished().switch(to=5)
    assert str(ei.value) == NOT_CONT_INT


def test_uninitialized_self_switch_is_noop():
    c0 = uninit()
    assert c0.switch() is None
    assert c0.switch(42) == 42
    obj = object()
    assert c0.switch(obj) is obj
    assert c0.is_pending() is False


def test_uninitialized_self_throw_raises_immediately():
    with pytest.raises(KeyError) as ei:
        uninit().throw(KeyError("k"))
    assert ei.value.args == ("k",)


def test_uninitialized_self_and_uninitialized_to_is_noop():
    assert uninit().switch(4, to=uninit()) == 4


def test_uninitialized_self_with_to_switches_to_to():
    c = suspended()
    assert uninit().switch("v", to=c) == ("r", "v")
    assert not c.is_pending()


def test_uninitialized_self_with_finished_to():
    with pytest.raises(error) as ei:
        uninit().switch(4, to=finished())
    assert str(ei.value) == "continulet already finished"


def test_uninitialized_to_is_treated_as_none():
    c = continulet(lambda c: ("ran", c.switch("x")))
    assert c.switch(None, to=uninit()) == "x"
    assert c.switch("y", to=uninit()) == ("ran", "y")


def test_self_is_to_is_noop():
    c = continulet(ret1)
    assert c.switch(9, to=c) == 9
    assert c.is_pending()
    assert c.switch() == 1


def test_self_is_to_noop_from_inside():
    def f(c):
        return ("in", c.switch("v", to=c))

    assert continulet(f).switch() == ("in", "v")


def test_throw_self_is_to_raises_immediately():
    c = continulet(ret1)
    with pytest.raises(KeyError):
        c.throw(KeyError, to=c)
    assert c.is_pending()
    assert c.switch() == 1


def test_self_is_to_finished():
    c = finished()
    with pytest.raises(error) as ei:
        c.switch(to=c)
    assert str(ei.value) == "continulet already finished"


def test_to_finished():
    c = continulet(ret1)
    with pytest.raises(error) as ei:
        c.switch(to=finished())
    assert str(ei.value) == "continulet already finished"
    assert c.is_pending()
    assert c.switch() == 1


def test_finished_self_checked_before_to():
    with pytest.raises(error) as ei:
        finished().switch(to=finished())
    assert str(ei.value) == "continulet already finished"


# ---------------------------------------------------------------------------------------------
# double switch


def test_double_switch_semantics():
    log = []

    def a(c):
        log.append("a1")
        r = c.switch("from a")
        log.append(("a2", r))
        return "a-ret"

    def b(c):
        log.append("b1")
        r = c.switch("from b")
        log.append(("b2", r))
        return "b-ret"

    ca = continulet(a)
    cb = continulet(b)
    assert ca.switch() == "from a"
    assert cb.switch() == "from b"
    # main -> ca, a's continuation -> cb, resume b with 'x'; b returns into a; a returns to main.
    assert ca.switch("x", to=cb) == "a-ret"
    assert log == ["a1", "b1", ("b2", "x"), ("a2", "b-ret")]
    assert not ca.is_pending()
    assert not cb.is_pending()


def test_double_switch_is_not_to_switch():
    def a(c):
        return ("a got", c.switch("a1"))

    def b(c):
        return ("b got", c.switch("b1"))

    ca, cb = continulet(a), continulet(b)
    ca.switch()
    cb.switch()
    # main -> ca; a's continuation -> cb; b resumed with 'x' and returns into cb's holder (a)
    res = ca.switch("x", to=cb)
    assert res == ("a got", ("b got", "x"))


def test_double_switch_then_switch_back_through_to():
    log = []

    def b(c):
        v = c.switch("b-ready")
        log.append(("b", v))
        w = c.switch("to-a")  # cb now holds a's continuation
        log.append(("b", w))
        return "b-done"

    def a(c):
        v = c.switch("a-ready")
        log.append(("a", v))
        return "a-done"

    ca, cb = continulet(a), continulet(b)
    assert ca.switch() == "a-ready"
    assert cb.switch() == "b-ready"
    assert ca.switch("go", to=cb) == "a-done"
    assert log == [("b", "go"), ("a", "to-a")]
    # b is still suspended, now stored in cb; cb's stored continuation resumed a, so b's own
    # continuation went into cb: switching cb resumes b.
    assert cb.is_pending()
    assert cb.switch("again") == "b-done"
    assert log[-1] == ("b", "again")


def test_double_switch_into_fresh_to_with_suspended_self():
    # ca suspended, cb fresh: cb's start receives 'x' (not None) -> TypeError inside cb's start,
    # which propagates to cb's stored continuation, i.e. ca's suspended switch().
    def a(c):
        try:
            c.switch("a-ready")
        except TypeError as e:
            return ("a caught", str(e))

    ca = continulet(a)
    cb = continulet(ret1)
    ca.switch()
    assert ca.switch("x", to=cb) == ("a caught", JUST_STARTED)
    assert not cb.is_pending()
    assert not ca.is_pending()


def test_double_switch_corner_case_result_into_fresh_start_non_none():
    log = []
    c2 = continulet(lambda c: log.append(("c2", c.switch("c2s"))) or "non-none")
    assert c2.switch() == "c2s"
    c1 = continulet(lambda c: "c1-ret")
    with pytest.raises(TypeError) as ei:
        c1.switch("a", to=c2)
    assert str(ei.value) == JUST_STARTED
    assert log == [("c2", "a")]
    assert not c1.is_pending()
    assert not c2.is_pending()


def test_double_switch_corner_case_result_into_fresh_start_none():
    log = []
    c2 = continulet(lambda c: log.append(("c2", c.switch("c2s"))))
    assert c2.switch() == "c2s"
    c1 = continulet(lambda c: "c1-ret")
    assert c1.switch("a", to=c2) == "c1-ret"
    assert log == [("c2", "a")]
    assert not c1.is_pending()
    assert not c2.is_pending()


def test_double_switch_fresh_to_fresh():
    c1 = continulet(lambda c: "c1")
    c2 = continulet(lambda c: "c2")
    with pytest.raises(TypeError) as ei:
        c1.switch(None, to=c2)
    assert str(ei.value) == JUST_STARTED
    assert not c1.is_pending()
    assert not c2.is_pending()


def test_double_switch_from_inside():
    # inside a, switch to b while leaving a's continuation in ca
    log = []

    def b(c):
        v = c.switch("b-ready")
        log.append(("b", v))
        return "b-ret"

    cb = continulet(b)
    assert cb.switch() == "b-ready"

    def a(c):
        r = c.switch("go-b", to=cb)
        log.append(("a", r))
        return "a-ret"

    ca = continulet(a)
    # main -> ca (start of a); a: current(a) -> ca, ca's old (main) -> cb, resume b with 'go-b';
    # b returns 'b-ret' to cb's stored continuation = main.
    assert ca.switch() == "b-ret"
    assert log == [("b", "go-b")]
    assert ca.is_pending()
    assert not cb.is_pending()
    assert ca.switch("resume-a") == "a-ret"
    assert log == [("b", "go-b"), ("a", "resume-a")]


# ---------------------------------------------------------------------------------------------
# throw


def test_throw_into_suspended_class_and_value():
    def f(c):
        try:
            c.switch("s")
        except ValueError as e:
            return ("caught", e.args)

    c = continulet(f)
    c.switch()
    assert c.throw(ValueError, "v") == ("caught", ("v",))


def test_throw_class_only():
    def f(c):
        try:
            c.switch()
        except ValueError as e:
            return ("caught", e.args)

    c = continulet(f)
    c.switch()
    assert c.throw(ValueError) == ("caught", ())


def test_throw_instance():
    exc = ValueError("inst")

    def f(c):
        try:
            c.switch()
        except ValueError as e:
            return e

    c = continulet(f)
    c.switch()
    assert c.throw(exc) is exc


def test_throw_class_and_instance():
    exc = ValueError("v2")

    def f(c):
        try:
            c.switch()
        except ValueError as e:
            return e

    c = continulet(f)
    c.switch()
    assert c.throw(ValueError, exc) is exc


def test_throw_class_and_tuple_value():
    def f(c):
        try:
            c.switch()
        except ValueError as e:
            return e.args

    c = continulet(f)
    c.switch()
    assert c.throw(ValueError, (1, 2)) == (1, 2)


def test_throw_keyword_type():
    with pytest.raises(ValueError):
        continulet(ret1).throw(type=ValueError)


def test_throw_with_traceback():
    try:
        raise IndexError("i")
    except IndexError:
        tb = sys.exc_info()[2]

    def f(c):
        try:
            c.switch()
        except ValueError as e:
            t = e.__traceback__
            names = []
            while t is not None:
                names.append(t.tb_frame.f_code.co_name)
                t = t.tb_next
            return names

    c = continulet(f)
    c.switch()
    assert c.throw(ValueError, None, tb) == ["f", "test_throw_with_traceback"]
    c = continulet(f)
    c.switch()
    assert c.throw(ValueError) == ["f"]


def test_throw_uncaught_propagates_back_and_finishes():
    c = suspended()
    with pytest.raises(KeyError) as ei:
        c.throw(KeyError("x"))
    assert ei.value.args == ("x",)
    assert not c.is_pending()


def test_throw_into_fresh_does_not_call_callable():
    called = []
    c = continulet(lambda c: called.append(1))
    with pytest.raises(KeyError) as ei:
        c.throw(KeyError("x"))
    assert ei.value.args == ("x",)
    assert called == []
    assert not c.is_pending()
    assert c._get_frame() is None


def test_throw_into_finished():
    with pytest.raises(error) as ei:
        finished().throw(ValueError)
    assert str(ei.value) == "continulet already finished"


def test_throw_bad_type_raised_in_caller():
    c = suspended()
    with pytest.raises(TypeError) as ei:
        c.throw(5)
    assert str(ei.value) == "exceptions must derive from BaseException, not int"
    assert c.is_pending()
    assert c.switch("ok") == ("r", "ok")


def test_throw_str_type():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).throw("x")
    assert str(ei.value) == "exceptions must derive from BaseException, not str"


def test_throw_bad_traceback_raised_in_caller():
    c = suspended()
    with pytest.raises(TypeError) as ei:
        c.throw(ValueError, None, 5)
    assert str(ei.value) == "throw() third argument must be a traceback object"
    assert c.switch("ok") == ("r", "ok")


def test_throw_instance_with_value():
    c = continulet(ret1)
    with pytest.raises(TypeError) as ei:
        c.throw(ValueError("a"), "b")
    assert str(ei.value) == "instance exception may not have a separate value"
    assert c.is_pending()


def test_throw_requires_type():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).throw()
    assert str(ei.value) == "throw() missing 1 required positional argument: 'type'"


def test_throw_unexpected_keyword():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).throw(ValueError, value="v")
    assert str(ei.value) == "throw() got an unexpected keyword argument 'value'"


def test_throw_keyword_names_are_pypys():
    # PyPy's interp2app names: type, val, tb, to
    def f(c):
        try:
            c.switch()
        except ValueError as e:
            return ("caught", e.args, e.__traceback__ is not None)

    c = continulet(f)
    c.switch()
    assert c.throw(type=ValueError, val="v", tb=None) == ("caught", ("v",), True)


def test_throw_to_must_be_continulet():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).throw(ValueError, to=3)
    assert str(ei.value) == NOT_CONT_INT


def test_throw_double_switch():
    def a(c):
        return ("a got", c.switch("a1"))

    def b(c):
        try:
            c.switch("b1")
        except KeyError as e:
            return ("b caught", e.args)

    ca, cb = continulet(a), continulet(b)
    ca.switch()
    cb.switch()
    assert ca.throw(KeyError, "k", None, cb) == ("a got", ("b caught", ("k",)))


def test_throw_from_inside_to_main():
    def f(c):
        c.throw(KeyError("to-main"))
        return "resumed"

    c = continulet(f)
    with pytest.raises(KeyError) as ei:
        c.switch()
    assert ei.value.args == ("to-main",)
    assert c.is_pending()
    assert c.switch() == "resumed"


def test_throw_base_exception_subclasses():
    for exc in (SystemExit, KeyboardInterrupt, GeneratorExit):
        c = suspended()
        with pytest.raises(exc):
            c.throw(exc)
        assert not c.is_pending()


# ---------------------------------------------------------------------------------------------
# is_pending / _get_frame


def test_is_pending_lifecycle():
    states = []

    def f(c):
        states.append(c.is_pending())
        c.switch()
        states.append(c.is_pending())

    c = continulet(f)
    states.append(c.is_pending())
    c.switch()
    states.append(c.is_pending())
    c.switch()
    states.append(c.is_pending())
    assert states == [True, True, True, True, False]


def test_is_pending_uninitialized():
    assert uninit().is_pending() is False


def test_is_pending_returns_bools():
    assert continulet(ret1).is_pending() is True
    assert finished().is_pending() is False


def test_is_pending_takes_no_args():
    with pytest.raises(TypeError) as ei:
        continulet(ret1).is_pending(1)
    assert str(ei.value) == "is_pending() takes 1 positional argument but 2 were given"


@pytest.mark.parametrize("call, message", [
    (lambda c: c.is_pending(x=1), "is_pending() got an unexpected keyword argument 'x'"),
    (lambda c: c.is_pending(1, x=2), "is_pending() got an unexpected keyword argument 'x'"),
    (lambda c: c._get_frame(1), "_get_frame() takes 1 positional argument but 2 were given"),
    (lambda c: c.throw(ValueError, 1, 2, 3, 4), "throw() takes from 2 to 5 positional arguments but 6 were given"),
    # PyPy reports keyword problems first, and a keyword naming a parameter that a positional
    # argument already filled is "unexpected", not "multiple values"
    (lambda c: c.throw(ValueError, 1, 2, 3, 4, foo=2), "throw() got an unexpected keyword argument 'foo'"),
    (lambda c: c.throw(ValueError, type=ValueError), "throw() got an unexpected keyword argument 'type'"),
    (lambda c: c.throw(foo=1, bar=2), "throw() got 2 unexpected keyword arguments"),
    (lambda c: c.throw(val=1), "throw() missing 1 required positional argument: 'type'"),
])
def test_argument_errors_are_pypys(call, message):
    c = continulet(ret1)
    with pytest.raises(TypeError) as ei:
        call(c)
    assert str(ei.value) == message
    assert c.is_pending()


def test_throw_all_keywords():
    c = continulet(ret1)
    with pytest.raises(ValueError) as ei:
        c.throw(type=ValueError, val=1, tb=None, to=None)
    assert ei.value.args == (1,)
    assert not c.is_pending()


def test_get_frame_uninitialized_is_false():
    assert uninit()._get_frame() is False


def test_get_frame_finished_is_none():
    assert finished()._get_frame() is None


def test_get_frame_fresh_is_start():
    f = continulet(ret1)._get_frame()
    assert f.f_code.co_name == "start"


def test_get_frame_suspended_is_start():
    c = suspended()
    assert c._get_frame().f_code.co_name == "start"


def test_get_frame_running_is_start():
    def f(c):
        return c._get_frame().f_code.co_name

    assert continulet(f).switch() == "start"


def test_get_frame_same_object_while_pending():
    c = continulet(lambda c: c.switch())
    f1 = c._get_frame()
    c.switch()
    assert c._get_frame() is f1


# ---------------------------------------------------------------------------------------------
# permute


def test_permute_no_args():
    assert permute() is None


def test_permute_one_arg_noop():
    c = continulet(ret1)
    assert permute(c) is None
    assert c.switch() == 1


def test_permute_ignores_uninitialized():
    assert permute(uninit(), uninit()) is None
    c = suspended()
    assert permute(c, uninit()) is None
    assert c.switch("v") == ("r", "v")


def test_permute_non_continulet():
    with pytest.raises(TypeError) as ei:
        permute(continulet(ret1), 5)
    assert str(ei.value) == NOT_CONT_INT


def test_permute_finished():
    with pytest.raises(error) as ei:
        permute(continulet(ret1), finished())
    assert str(ei.value) == "got an already-finished continulet"


def test_permute_no_keywords():
    with pytest.raises(TypeError) as ei:
        permute(x=1)
    assert str(ei.value) == "permute() got an unexpected keyword argument 'x'"


def test_permute_two_swaps():
    ca = continulet(lambda c: ("A", c.switch("a2")))
    cb = continulet(lambda c: ("B", c.switch("b2")))
    ca.switch()
    cb.switch()
    permute(ca, cb)
    # ca now holds B's continuation and cb holds A's.  Main goes into ca and resumes B; B's
    # callable returns into what is stored in cb (A); A returns into ca (main).
    assert ca.switch("to-b") == ("A", ("B", "to-b"))
    assert not ca.is_pending()
    assert not cb.is_pending()


def test_permute_twice_restores():
    ca = continulet(lambda c: ("A", c.switch("a2")))
    cb = continulet(lambda c: ("B", c.switch("b2")))
    ca.switch()
    cb.switch()
    permute(ca, cb)
    permute(ca, cb)
    assert ca.switch("x") == ("A", "x")
    assert cb.switch("y") == ("B", "y")


def test_permute_then_switch_out_of_resumed():
    # B resumed through ca switches back through its own continulet cb, which holds A: A runs.
    log = []

    def a(c):
        log.append(("A", c.switch("a-ready")))
        return "A-done"

    def b(c):
        log.append(("B", c.switch("b-ready")))
        log.append(("B2", c.switch("b-mid")))
        return "B-done"

    ca, cb = continulet(a), continulet(b)
    ca.switch()
    cb.switch()
    permute(ca, cb)
    # main -> ca, resume B('go'); B: cb.switch('b-mid') stores B in cb, resumes A with 'b-mid';
    # A returns 'A-done' into ca's stored continuation (main).
    assert ca.switch("go") == "A-done"
    assert log == [("B", "go"), ("A", "b-mid")]
    assert cb.is_pending()
    assert cb.switch("last") == "B-done"
    assert log[-1] == ("B2", "last")


def test_permute_three_cycles():
    cs = [continulet(lambda c, n=n: (n, c.switch())) for n in range(3)]
    for c in cs:
        c.switch()
    permute(*cs)
    # c0 gets c2's continuation, c1 gets c0's, c2 gets c1's: switching c0 resumes task 2, whose
    # result goes to what c2 holds (task 1), whose result goes to what c1 holds (task 0),
    # whose result goes to what c0 holds (main).
    assert cs[0].switch("x") == (0, (1, (2, "x")))
    assert [c.is_pending() for c in cs] == [False, False, False]


def test_permute_three_rotation_single_step():
    cs = [continulet(lambda c, n=n: c.switch(("first", n)) and (n, "end")) for n in range(3)]
    for n, c in enumerate(cs):
        assert c.switch() == ("first", n)
    permute(*cs)
    # a switch into cs[1] resumes task 0 (c1 got c0's continuation); task 0 returns (0,'end')
    # into what cs[0] holds now: task 2's continuation.
    assert cs[1].switch("v") == (1, "end")


def test_permute_greenlet_style_return_to_parent():
    # lib_pypy greenlet's trick: permute(self, parent) then return => result goes to parent
    log = []

    def parent_fn(c):
        v = c.switch("parent-ready")
        log.append(("parent got", v))
        return "parent-done"

    parent = continulet(parent_fn)
    assert parent.switch() == "parent-ready"

    def child_fn(c):
        permute(c, parent)
        return "child-result"

    child = continulet(child_fn)
    assert child.switch() == "parent-done"
    assert log == [("parent got", "child-result")]
    assert not child.is_pending()
    assert not parent.is_pending()


# ---------------------------------------------------------------------------------------------
# threads


def test_cross_thread_fresh(foreign_fresh):
    with pytest.raises(error) as ei:
        foreign_fresh.switch()
    assert str(ei.value) == "cannot switch to a different thread"


def test_cross_thread_suspended(foreign_suspended):
    with pytest.raises(error) as ei:
        foreign_suspended.switch()
    assert str(ei.value) == "cannot switch to a different thread"
    assert foreign_suspended.is_pending()


def test_cross_thread_throw(foreign_suspended):
    with pytest.raises(error) as ei:
        foreign_suspended.throw(ValueError)
    assert str(ei.value) == "cannot switch to a different thread"


def test_cross_thread_double_switch(foreign_suspended):
    with pytest.raises(error) as ei:
        continulet(ret1).switch(to=foreign_suspended)
    assert str(ei.value) == "cross-thread double switch"
    with pytest.raises(error) as ei:
        foreign_suspended.switch(to=continulet(ret1))
    assert str(ei.value) == "cross-thread double switch"


def test_cross_thread_double_switch_checked_before_finished_to(foreign_suspended):
    with pytest.raises(error) as ei:
        foreign_suspended.switch(to=finished())
    assert str(ei.value) == "cross-thread double switch"


def test_finished_self_checked_before_thread():
    c = in_thread(finished)
    with pytest.raises(error) as ei:
        c.switch()
    assert str(ei.value) == "continulet already finished"


def test_cross_thread_self_is_to_noop(foreign_suspended):
    assert foreign_suspended.switch(7, to=foreign_suspended) == 7


def test_uninitialized_self_to_foreign(foreign_suspended):
    with pytest.raises(error) as ei:
        uninit().switch(to=foreign_suspended)
    assert str(ei.value) == "cannot switch to a different thread"


def test_cross_thread_permute(foreign_suspended):
    with pytest.raises(error) as ei:
        permute(continulet(ret1), foreign_suspended)
    assert str(ei.value) == "inter-thread support is missing"


def test_cross_thread_queries_allowed(live_foreign_suspended):
    assert live_foreign_suspended.is_pending() is True
    assert live_foreign_suspended._get_frame().f_code.co_name == "start"


@differs("pypy", "pypy-oracle", reason="PyPy keeps the frames of a suspended continulet whose thread "
         "exited (never freed); ours are cleared when the thread exits (no code runs in them)")
def test_exited_thread_continulet_frames_are_cleared(foreign_suspended):
    assert foreign_suspended.is_pending() is True  # (its status stays: see the switch errors)
    assert foreign_suspended._get_frame() is None


def test_cross_thread_init_binds_to_initializing_thread():
    c = uninit()
    in_thread(lambda: c.__init__(ret1))
    with pytest.raises(error) as ei:
        c.switch()
    assert str(ei.value) == "cannot switch to a different thread"


def test_continulets_in_many_threads():
    results = {}

    def worker(n):
        def f(c, k):
            total = 0
            for i in range(k):
                total += c.switch(i)
            return total

        c = continulet(f, 50)
        got = c.switch()
        acc = []
        while c.is_pending():
            acc.append(got)
            got = c.switch(got * n)
        results[n] = (acc, got)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(1, 9):
        acc, total = results[n]
        assert acc == list(range(50))
        assert total == sum(i * n for i in range(50))
