"""`_continuation` module surface: exports, docs, the continulet type, __init__, pickling.

SPEC §1.1, §1.3, §1.9, §1.11.  Every expected value below was observed on PyPy 3.9 (7.3.11).
"""

import copy
import pickle

import pytest

from conftest import differs

import _continuation
from _continuation import continulet, error

MODULE_DOC = """\
This module exposes 'one-shot continuation containers'.

A 'continulet' object from this module is a container that stores a
one-shot continuation.  It is similar in purpose to the 'f_back'
attribute of frames, which points to where execution should continue
after this frame finishes.  The difference is that it will be changed
(often repeatedly) before the frame actually returns.

To make a continulet object, call 'continulet' with a callable and
optional extra arguments.  Later, the first time you switch() to the
continulet, the callable is invoked with the same continulet object as
the extra first argument.

At this point, the one-shot continuation stored in the continulet points
to the caller of switch().  When switch() is called again, this one-shot
continuation is exchanged with the current one; it means that the caller
of switch() is suspended, its continuation stored in the container, and
the old continuation from the continulet object is resumed.

Continulets are internally implemented using stacklets.  Stacklets
are a bit more primitive (they are really one-shot continuations), but
that idea only works in C, not in Python, notably because of exceptions.

The most primitive API is actually 'permute()', which just permutes the
one-shot continuation stored in two (or more) continulets.
"""

PICKLE_MSG = "continulet's pickle support is currently disabled"


def ret1(c):
    return 1


# ---------------------------------------------------------------------------------------------
# Module


def test_module_public_names():
    names = sorted(n for n in dir(_continuation) if not (n.startswith("__") and n.endswith("__")))
    assert names == ["_p", "continulet", "error", "generator", "permute"]


def test_module_name():
    assert _continuation.__name__ == "_continuation"


def test_module_doc_is_verbatim():
    assert _continuation.__doc__ == MODULE_DOC


def test_genlet_is_not_a_module_attribute():
    assert not hasattr(_continuation, "genlet")


# ---------------------------------------------------------------------------------------------
# error


def test_error_is_exception_subclass():
    assert error.__mro__ == (error, Exception, BaseException, object)


def test_error_module_name_qualname():
    assert (error.__module__, error.__name__, error.__qualname__) == ("_continuation", "error", "error")


def test_error_doc():
    assert error.__doc__ == "Usage error of the _continuation module."


def test_error_str_and_args():
    e = error("continulet already finished")
    assert e.args == ("continulet already finished",)
    assert str(e) == "continulet already finished"


# ---------------------------------------------------------------------------------------------
# continulet type


def test_continulet_type_names():
    assert (continulet.__module__, continulet.__name__, continulet.__qualname__) == (
        "_continuation",
        "continulet",
        "continulet",
    )


def test_continulet_doc_is_none():
    assert continulet.__doc__ is None


def test_continulet_bases():
    assert continulet.__mro__ == (continulet, object)


@pytest.mark.parametrize(
    "name", ["__new__", "__init__", "switch", "throw", "is_pending", "__reduce__", "__setstate__", "_get_frame"]
)
def test_continulet_method_present(name):
    assert name in vars(continulet)


def test_continulet_no_extra_public_attributes():
    public = sorted(n for n in vars(continulet) if not n.startswith("__"))
    assert public == ["_get_frame", "is_pending", "switch", "throw"]


@differs("cpython-3.13", reason="CPython 3.13's own AttributeError message adds \"and no __dict__ for setting new attributes\"")
def test_continulet_base_has_no_dict():
    c = continulet(ret1)
    with pytest.raises(AttributeError) as ei:
        c.x = 1
    assert str(ei.value) == "'_continuation.continulet' object has no attribute 'x'"
    assert not hasattr(c, "__dict__")


def test_continulet_subclass_gets_dict():
    class Sub(continulet):
        pass

    s = Sub(ret1)
    s.x = 5
    assert s.__dict__ == {"x": 5}
    assert s.switch() == 1


def test_continulet_subclass_init_and_type_of_first_arg():
    class Sub(continulet):
        def __init__(self, *args, **kwds):
            self.extra = "yes"
            continulet.__init__(self, *args, **kwds)

    s = Sub(lambda c, a: (type(c).__name__, c.extra, a), 7)
    assert s.switch() == ("Sub", "yes", 7)
    assert isinstance(s, continulet)


def test_continulet_subclass_can_override_switch():
    class Sub(continulet):
        def switch(self, value=None, to=None):
            return ("wrapped", continulet.switch(self, value, to))

    s = Sub(lambda c: "r")
    assert s.switch() == ("wrapped", "r")


def test_continulet_hashable_by_identity():
    a = continulet(ret1)
    b = continulet(ret1)
    assert hash(a) == hash(a)
    assert a == a
    assert a != b
    assert {a: 1, b: 2}[a] == 1


def test_continulet_base_not_weakrefable():
    import weakref

    with pytest.raises(TypeError) as ei:
        weakref.ref(continulet(ret1))
    assert str(ei.value) == "cannot create weak reference to '_continuation.continulet' object"


def test_continulet_subclass_weakrefable():
    import weakref

    class Sub(continulet):
        pass

    s = Sub(ret1)
    assert weakref.ref(s)() is s


def test_continulet_default_repr():
    c = continulet(ret1)
    r = repr(c)
    assert r.startswith("<_continuation.continulet object at 0x")
    assert r.endswith(">")


# ---------------------------------------------------------------------------------------------
# __new__ / __init__


def test_init_requires_callable():
    with pytest.raises(TypeError) as ei:
        continulet()
    assert str(ei.value) == "__init__() missing 1 required positional argument: 'callable'"


def test_init_callable_keyword_after_a_positional_one_goes_to_the_callable():
    # PyPy binds `callable` positionally; a `callable=` keyword then belongs to **kwds
    c = continulet(lambda c, *a, **k: (a, k), 1, callable=2)
    assert c.switch() == ((1,), {"callable": 2})


def test_init_callable_keyword_with_other_keywords():
    c = continulet(callable=lambda c, *a, **k: (a, k), x=1)
    assert c.switch() == ((), {"x": 1})


def test_uninitialized_init_requires_callable():
    with pytest.raises(TypeError) as ei:
        continulet.__new__(continulet).__init__()
    assert str(ei.value) == "__init__() missing 1 required positional argument: 'callable'"


def test_init_callable_keyword():
    c = continulet(callable=lambda c: "kw")
    assert c.switch() == "kw"


def test_init_passes_args_and_kwds():
    c = continulet(lambda c, *a, **k: (a, k), 1, 2, x=3)
    assert c.switch() == ((1, 2), {"x": 3})


def test_callable_receives_continulet_first():
    seen = []
    c = continulet(lambda cc: seen.append(cc))
    c.switch()
    assert seen == [c]


def test_callable_not_called_by_init():
    called = []
    c = continulet(lambda cc: called.append(1))
    assert called == []
    assert c.is_pending()


def test_init_does_not_check_callability():
    c = continulet(5)
    assert c.is_pending()
    with pytest.raises(TypeError) as ei:
        c.switch()
    assert str(ei.value) == "'int' object is not callable"
    assert not c.is_pending()


def test_new_ignores_arguments_and_returns_uninitialized():
    c = continulet.__new__(continulet, 1, 2, x=3)
    assert type(c) is continulet
    assert c.is_pending() is False
    assert c._get_frame() is False


def test_late_init():
    c = continulet.__new__(continulet)
    c.__init__(lambda c, n: n * 2, 21)
    assert c.is_pending()
    assert c.switch() == 42


def test_reinit_pending_fails():
    c = continulet(ret1)
    with pytest.raises(error) as ei:
        c.__init__(ret1)
    assert str(ei.value) == "continulet already __init__ialized"
    assert c.switch() == 1


def test_reinit_finished_fails():
    c = continulet(ret1)
    c.switch()
    with pytest.raises(error) as ei:
        c.__init__(ret1)
    assert str(ei.value) == "continulet already __init__ialized"


def test_reinit_running_fails():
    def f(c):
        try:
            c.__init__(ret1)
        except error as e:
            return str(e)

    assert continulet(f).switch() == "continulet already __init__ialized"


def test_reinit_checked_before_callable():
    c = continulet(ret1)
    with pytest.raises(error) as ei:
        c.__init__(None)
    assert str(ei.value) == "continulet already __init__ialized"


# ---------------------------------------------------------------------------------------------
# _p


def test_p_makes_uninitialized_instance():
    c = _continuation._p(continulet)
    assert type(c) is continulet
    assert c.is_pending() is False
    assert c._get_frame() is False


def test_p_with_subclass():
    class Sub(continulet):
        pass

    c = _continuation._p(Sub)
    assert type(c) is Sub
    c.__init__(lambda c: "late")
    assert c.switch() == "late"


def test_p_requires_subtype():
    with pytest.raises(TypeError) as ei:
        _continuation._p()
    assert str(ei.value) == "_p() missing 1 required positional argument: 'subtype'"


def test_p_rejects_non_subtype():
    with pytest.raises(TypeError) as ei:
        _continuation._p(int)
    assert str(ei.value) == "continulet.__new__(int): int is not a subtype of continulet"


def test_p_doc():
    assert _continuation._p.__doc__ == "Pickle support."


# ---------------------------------------------------------------------------------------------
# Pickling (disabled on py3)


def _pickle_cases():
    class Sub(continulet):
        pass

    fresh = continulet(ret1)
    finished = continulet(ret1)
    finished.switch()
    return {
        "fresh": fresh,
        "finished": finished,
        "uninit": continulet.__new__(continulet),
        "subclass": Sub(ret1),
    }


@pytest.mark.parametrize("which", ["fresh", "finished", "uninit", "subclass"])
@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda c: c.__reduce__(), id="reduce"),
        pytest.param(lambda c: c.__reduce_ex__(2), id="reduce_ex"),
        pytest.param(lambda c: c.__setstate__(None), id="setstate"),
        pytest.param(lambda c: pickle.dumps(c), id="pickle"),
        pytest.param(lambda c: pickle.dumps(c, protocol=0), id="pickle0"),
        pytest.param(copy.copy, id="copy"),
        pytest.param(copy.deepcopy, id="deepcopy"),
    ],
)
def test_pickle_disabled(which, op):
    c = _pickle_cases()[which]
    with pytest.raises(NotImplementedError) as ei:
        op(c)
    assert str(ei.value) == PICKLE_MSG


def test_pickle_disabled_from_inside_running():
    def f(c):
        try:
            pickle.dumps(c)
        except NotImplementedError as e:
            return str(e)

    assert continulet(f).switch() == PICKLE_MSG


def test_pickle_failure_does_not_disturb_continulet():
    def f(c):
        return c.switch("a") + "b"

    c = continulet(f)
    assert c.switch() == "a"
    with pytest.raises(NotImplementedError):
        copy.copy(c)
    assert c.switch("x") == "xb"
