"""_continuation.generator / genlet (PyPy's app_continuation.py).  SPEC §1.8.

Expected values observed on PyPy 3.9 (7.3.11).  Deliberate difference: PyPy 3's `genlet.send`
is the builtin `next` (so `g.send(v)` raises "'int' object is not an iterator"); ours works.
"""

import pytest

from conftest import differs

import _continuation
from _continuation import continulet, error, generator


@generator
def counter(g, n):
    for i in range(n):
        g.switch(i)


def test_generator_is_a_class_in_module():
    assert isinstance(generator, type)
    assert (generator.__module__, generator.__name__, generator.__qualname__) == (
        "_continuation",
        "generator",
        "generator",
    )
    assert generator.__doc__ is None


def test_generator_instance_attributes():
    def f(g):
        pass

    d = generator(f)
    assert type(d) is generator
    assert vars(d) == {"__func__": f}
    assert d.__func__ is f


def test_generator_does_not_check_callable():
    assert generator(5).__func__ == 5


@differs("cpython-3.13", reason="CPython 3.13 adds __firstlineno__ and __static_attributes__ to every class body's namespace")
def test_generator_class_dict():
    assert sorted(vars(generator)) == [
        "__call__",
        "__dict__",
        "__doc__",
        "__get__",
        "__init__",
        "__module__",
        "__weakref__",
    ]


def test_genlet_type():
    g = counter(1)
    t = type(g)
    assert (t.__module__, t.__name__, t.__qualname__) == ("_continuation", "genlet", "genlet")
    assert t.__mro__ == (t, continulet, object)
    assert t.__doc__ is None


@differs("cpython-3.13", reason="CPython 3.13 adds __firstlineno__ and __static_attributes__ to every class body's namespace")
def test_genlet_class_dict():
    t = type(counter(1))
    assert sorted(vars(t)) == ["__dict__", "__doc__", "__iter__", "__module__", "__next__", "__weakref__", "send"]


def test_genlet_next_signature():
    t = type(counter(1))
    assert t.__next__.__code__.co_varnames[:2] == ("self", "value")
    assert t.__next__.__defaults__ == (None,)


def test_genlet_is_weakrefable():
    import weakref

    g = counter(1)
    assert weakref.ref(g)() is g


def test_genlet_has_dict():
    g = counter(1)
    g.attr = 1
    assert g.__dict__ == {"attr": 1}


def test_genlet_is_own_iterator():
    g = counter(2)
    assert iter(g) is g


def test_list_of_generator():
    assert list(counter(5)) == [0, 1, 2, 3, 4]


def test_empty_generator():
    assert list(counter(0)) == []


def test_next_and_stop_iteration():
    g = counter(2)
    assert next(g) == 0
    assert g.__next__() == 1
    with pytest.raises(StopIteration):
        next(g)
    assert not g.is_pending()


def test_next_after_exhaustion_is_continulet_error():
    g = counter(1)
    assert list(g) == [0]
    with pytest.raises(error) as ei:
        next(g)
    assert str(ei.value) == "continulet already finished"


def test_next_with_value():
    @generator
    def echo(g):
        x = g.switch("first")
        while True:
            x = g.switch(("got", x))

    e = echo()
    assert next(e) == "first"
    assert e.__next__(5) == ("got", 5)
    assert e.__next__(6) == ("got", 6)
    assert e.__next__() == ("got", None)


def test_first_next_with_non_none_value():
    g = counter(3)
    with pytest.raises(TypeError) as ei:
        g.__next__(5)
    assert str(ei.value) == "can't send non-None value to a just-started continulet"
    assert not g.is_pending()


def test_yield_from_any_depth():
    @generator
    def f(gen, n):
        gen.switch(n + 1)
        f2(gen, n + 2)
        gen.switch(n + 3)

    def f2(gen, m):
        gen.switch(m * 2)

    assert list(f(10)) == [11, 24, 13]


def test_return_non_none_is_type_error():
    @generator
    def bad(g):
        g.switch(1)
        return 5

    b = bad()
    assert next(b) == 1
    with pytest.raises(TypeError) as ei:
        next(b)
    assert str(ei.value) == "_continuation.generator must return None"
    assert not b.is_pending()


def test_return_non_none_immediately():
    @generator
    def bad(g):
        return "x"

    with pytest.raises(TypeError) as ei:
        list(bad())
    assert str(ei.value) == "_continuation.generator must return None"


def test_exception_propagates_from_next():
    @generator
    def raiser(g):
        g.switch(1)
        raise ValueError("vv")

    r = raiser()
    assert next(r) == 1
    with pytest.raises(ValueError) as ei:
        next(r)
    assert ei.value.args == ("vv",)
    assert not r.is_pending()


def test_args_and_kwargs():
    @generator
    def f(g, a, b=0, *rest, **kw):
        g.switch((a, b, rest, kw))

    assert list(f(1, 2, 3, x=4)) == [(1, 2, (3,), {"x": 4})]


def test_method_form():
    class K:
        def __init__(self, tag):
            self.tag = tag

        @generator
        def m(self, g, n):
            for i in range(n):
                g.switch((self.tag, i))

    assert list(K("t").m(3)) == [("t", 0), ("t", 1), ("t", 2)]
    assert type(K.m) is generator
    assert type(K("x").m) is generator


def test_get_on_class_binds_nothing():
    class K:
        @generator
        def m(g, n):
            g.switch(n)

    assert list(K.m(7)) == [7]


def test_generator_call_returns_fresh_genlet():
    g1 = counter(2)
    g2 = counter(2)
    assert g1 is not g2
    assert next(g1) == 0
    assert list(g2) == [0, 1]
    assert list(g1) == [1]


def test_genlet_throw():
    @generator
    def f(g):
        try:
            g.switch(1)
        except KeyError:
            g.switch("caught")

    x = f()
    assert next(x) == 1
    assert x.throw(KeyError) == "caught"
    with pytest.raises(StopIteration):
        next(x)


def test_genlet_in_for_loop_with_break():
    seen = []
    g = counter(10)
    for v in g:
        seen.append(v)
        if v == 3:
            break
    assert seen == [0, 1, 2, 3]
    assert g.is_pending()
    assert next(g) == 4


def test_nested_generators():
    @generator
    def outer(g):
        for v in counter(3):
            g.switch(v * 10)

    assert list(outer()) == [0, 10, 20]


def test_genlet_pickle_disabled():
    import pickle

    with pytest.raises(NotImplementedError) as ei:
        pickle.dumps(counter(1))
    assert str(ei.value) == "continulet's pickle support is currently disabled"


@differs("pypy", "pypy-oracle", reason="PyPy 3's genlet.send is builtin next(); ours is __next__")
def test_send_works():
    @generator
    def echo(g):
        x = g.switch("first")
        while True:
            x = g.switch(("got", x))

    e = echo()
    assert e.send(None) == "first"
    assert e.send(5) == ("got", 5)


@differs("pypy", "pypy-oracle", reason="PyPy 3's genlet.send is builtin next(); ours is __next__")
def test_send_stop_iteration():
    g = counter(1)
    assert g.send(None) == 0
    with pytest.raises(StopIteration):
        g.send(None)
