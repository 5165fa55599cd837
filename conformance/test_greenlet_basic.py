"""greenlet 3.x core behaviour: module surface, switching, value packing, run, dead/bool, repr.

Every expectation here was checked against greenlet 3.5.6 on CPython 3.11 (the reference).
"""
import copy
import gc
import pickle
import re
import subprocess
import sys
import weakref

import pytest

import greenlet
from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as G

from conftest import differs, only_on


# ------------------------------------------------------------------ module surface

@differs("pypy-oracle", reason="lib_pypy greenlet has no __all__")
def test_public_names():
    for name in ("__version__", "GreenletExit", "error", "getcurrent", "greenlet", "gettrace", "settrace"):
        assert hasattr(greenlet, name), name
    assert set(["GreenletExit", "error", "getcurrent", "greenlet", "gettrace", "settrace"]) <= set(greenlet.__all__)


def test_greenlet_exit_is_base_exception_not_exception():
    assert issubclass(GreenletExit, BaseException)
    assert not issubclass(GreenletExit, Exception)
    assert issubclass(greenlet.error, Exception)


def test_error_is_continuation_error():
    _continuation = pytest.importorskip("_continuation")
    assert greenlet.error is _continuation.error


@differs("pypy-oracle", reason="lib_pypy greenlet reports __version__ 0.4.13")
def test_version_is_3x():
    major = int(greenlet.__version__.split(".")[0])
    assert major >= 3


@only_on("pypy", "cpython", "cpython-pure", reason="our own marker attribute")
def test_implementation_marker():
    assert greenlet.__implementation__ == "continulet"
    assert "continulet" in greenlet.__version__


def test_use_flags():
    assert greenlet.GREENLET_USE_GC
    assert greenlet.GREENLET_USE_TRACING
    assert greenlet.GREENLET_USE_CONTEXT_VARS


def test_missing_module_attribute_is_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        greenlet.no_such_name
    with pytest.raises(AttributeError, match="_C_API"):
        greenlet._C_API  # no C API capsule: C extensions built against greenlet's headers fail


@pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version_info < (3, 11),
                    reason="CPython's specializing interpreter (3.11+)")
def test_module_attribute_lookups_specialize():
    # greenlet.greenlet / greenlet.getcurrent in users' loops: a module-level __getattr__ would
    # keep CPython from specializing them (LOAD_ATTR_MODULE), as the C greenlet's module allows.
    import dis

    def loop():
        for _ in range(64):
            greenlet.greenlet
            greenlet.getcurrent

    loop()
    loop()
    ops = [i.opname for i in dis.get_instructions(loop, adaptive=True) if i.argval in ("greenlet", "getcurrent")
           and "ATTR" in i.opname]
    assert ops and all(op == "LOAD_ATTR_MODULE" for op in ops), ops


@only_on("pypy", "cpython", "cpython-pure", reason="our own message for gevent's compiled modules")
def test_c_api_message_when_gevent_imports_us():
    code = (
        "import sys, types; sys.modules['gevent'] = types.ModuleType('gevent')\n"
        "import greenlet\n"
        "try:\n    greenlet._C_API\nexcept AttributeError as e:\n    print(e)\n"
        "try:\n    greenlet.other\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=120).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("module 'greenlet' has no attribute '_C_API': this greenlet is continulet's"), out
    assert "GEVENT_PURE_PYTHON=1" in lines[0], out
    assert lines[1] == "module 'greenlet' has no attribute 'other'", out


def test_class_attributes():
    assert G.getcurrent() is getcurrent()
    assert G.error is greenlet.error
    assert G.GreenletExit is GreenletExit


@differs("pypy-oracle", reason="lib_pypy greenlet lacks greenlet.settrace/gettrace class attributes")
def test_class_trace_attributes():
    assert G.gettrace() is greenlet.gettrace()
    prev = G.settrace(None)
    try:
        assert greenlet.gettrace() is None
    finally:
        greenlet.settrace(prev)


def test_no_gr_main_attribute():
    assert not hasattr(getcurrent(), "gr_main")


# ------------------------------------------------------------------ main greenlet

def test_main_greenlet_properties():
    main = getcurrent()
    assert main.parent is None
    assert not main.dead
    assert bool(main)
    assert main.gr_frame is None  # it is running
    assert getcurrent() is main


@differs("pypy-oracle", reason="lib_pypy main greenlet has no run and the plain AttributeError message")
def test_main_run_attribute():
    main = getcurrent()
    with pytest.raises(AttributeError) as ei:
        main.run
    assert str(ei.value) == "Main greenlets do not have a run attribute."
    with pytest.raises(AttributeError) as ei:
        main.run = lambda: None
    assert str(ei.value) == "Main greenlets do not have a run attribute."


# ------------------------------------------------------------------ switching and packing

def _echo_receiver():
    """A greenlet that reports every value it receives back to the main greenlet."""
    main = getcurrent()

    def run(*args, **kwargs):
        value = (args, kwargs)
        while True:
            value = main.switch(value)

    g = G(run)
    return g


def test_start_receives_args_and_kwargs():
    g = _echo_receiver()
    assert g.switch(1, 2, a=3) == ((1, 2), {"a": 3})


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((), {}, ()),
        ((1,), {}, 1),
        (((1,),), {}, (1,)),
        ((1, 2), {}, (1, 2)),
        ((None,), {}, None),
        ((), {"a": 1}, {"a": 1}),
        ((1,), {"a": 1}, ((1,), {"a": 1})),
        ((1, 2), {"a": 1}, ((1, 2), {"a": 1})),
    ],
)
def test_switch_value_packing(args, kwargs, expected):
    g = _echo_receiver()
    g.switch()
    assert g.switch(*args, **kwargs) == expected


def test_switch_back_to_main_packs_too():
    main = getcurrent()
    seen = []

    def run():
        seen.append(main.switch())
        seen.append(main.switch())

    g = G(run)
    assert g.switch() == ()
    assert g.switch() == ()
    assert g.switch(1, 2, k=3) is None  # run returned None
    assert seen == [(), ((1, 2), {"k": 3})]


def test_return_value_is_single_value():
    assert G(lambda: (1,)).switch() == (1,)
    assert G(lambda: (1, 2)).switch() == (1, 2)
    assert G(lambda: None).switch() is None
    assert G(lambda: 42).switch() == 42


def test_switch_to_self_returns_value():
    main = getcurrent()
    assert main.switch(5) == 5
    assert main.switch() == ()
    assert main.switch(1, 2) == (1, 2)
    assert main.switch(a=1) == {"a": 1}

    def run():
        me = getcurrent()
        return me.switch("x"), me.switch()

    assert G(run).switch() == ("x", ())


def test_switch_to_dead_goes_to_parent():
    g = G(lambda: "done")
    assert g.switch() == "done"
    assert g.dead
    # the switch lands in g's parent (us), packed as usual
    assert g.switch(1) == 1
    assert g.switch(1, 2) == (1, 2)
    assert g.switch() == ()


def test_ping_pong_between_siblings():
    main = getcurrent()
    log = []

    def ping():
        for i in range(3):
            log.append(("ping", i))
            pong.switch(i)
        return "ping-done"

    def pong(i):
        while True:
            log.append(("pong", i))
            i = gping.switch()

    gping = G(ping)
    pong = G(pong)
    assert gping.switch() == "ping-done"
    assert log == [("ping", 0), ("pong", 0), ("ping", 1), ("pong", 1), ("ping", 2), ("pong", 2)]
    assert gping.dead and not pong.dead
    assert pong.parent is main


def test_nested_greenlets_return_to_parent_chain():
    def inner():
        return "inner"

    def outer():
        g = G(inner)
        return ("outer", g.switch())

    assert G(outer).switch() == ("outer", "inner")


def test_deep_chain_of_greenlets():
    def make(n):
        if n == 0:
            return lambda: 0
        return lambda: G(make(n - 1)).switch() + 1

    assert G(make(100)).switch() == 100


def test_many_sequential_greenlets():
    total = 0
    for i in range(2000):
        total += G(lambda i=i: i * 2).switch()
    assert total == 2 * sum(range(2000))


def test_recursion_inside_greenlet():
    def rec(n):
        return 0 if n == 0 else rec(n - 1) + 1

    assert G(rec).switch(500) == 500


def test_generator_pattern():
    main = getcurrent()

    def gen():
        for i in range(5):
            main.switch(i)

    g = G(gen)
    out = []
    while True:
        v = g.switch()
        if g.dead:
            break
        out.append(v)
    assert out == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ exceptions out of run

def test_exception_propagates_to_parent():
    class Boom(Exception):
        pass

    def run():
        raise Boom("x")

    g = G(run)
    with pytest.raises(Boom) as ei:
        g.switch()
    assert str(ei.value) == "x"
    assert g.dead


@differs("pypy-oracle", reason="lib_pypy permutes with the dead parent: _continuation.error 'got an already-finished continulet'")
def test_exception_propagates_through_dead_parents():
    def child():
        raise KeyError("k")

    def middle():
        return "middle-done"

    m = G(middle)
    m.switch()
    assert m.dead
    c = G(child, parent=m)
    with pytest.raises(KeyError):
        c.switch()


def test_traceback_contains_raising_frame():
    def deep_raiser():
        raise ValueError("tb")

    with pytest.raises(ValueError) as ei:
        G(deep_raiser).switch()
    names = [e.name for e in ei.traceback]
    assert "deep_raiser" in names


def test_greenlet_exit_is_returned_as_value():
    def run():
        raise GreenletExit("bye")

    r = G(run).switch()
    assert isinstance(r, GreenletExit)
    assert r.args == ("bye",)


def test_greenlet_exit_subclass_is_returned():
    class MyExit(GreenletExit):
        pass

    r = G(lambda: (_ for _ in ()).throw(MyExit(1, 2))).switch()
    assert type(r) is MyExit
    assert r.args == (1, 2)


def test_exc_info_is_per_greenlet():
    seen = []

    def run():
        seen.append(sys.exc_info())
        try:
            raise KeyError("inner")
        except KeyError:
            getcurrent().parent.switch()
            seen.append(sys.exc_info()[0])

    g = G(run)
    try:
        raise ValueError("outer")
    except ValueError:
        g.switch()
        assert sys.exc_info()[0] is ValueError
        g.switch()
        assert sys.exc_info()[0] is ValueError
    assert seen == [(None, None, None), KeyError]


# ------------------------------------------------------------------ run attribute and __init__

@differs("pypy-oracle", reason="lib_pypy greenlet keeps run after start")
def test_run_readable_before_start_and_gone_after():
    def f():
        getcurrent().parent.switch()

    g = G(f)
    assert g.run is f
    g.switch()
    with pytest.raises(AttributeError) as ei:
        g.run
    assert str(ei.value) == "run"
    g.throw()
    assert g.dead
    with pytest.raises(AttributeError):
        g.run


@differs("pypy-oracle", reason="lib_pypy greenlet allows setting run after start")
def test_run_cannot_be_set_after_start():
    g = G(lambda: getcurrent().parent.switch())
    g.switch()
    with pytest.raises(AttributeError) as ei:
        g.run = lambda: None
    assert str(ei.value) == "run cannot be set after the start of the greenlet"
    with pytest.raises(AttributeError) as ei:
        g.__init__(lambda: None)
    assert str(ei.value) == "run cannot be set after the start of the greenlet"
    g.throw()


def test_run_set_before_start():
    g = G()
    g.run = lambda *a: ("set", a)
    assert g.switch(1) == ("set", (1,))


def test_reinit_before_start_rebinds():
    g = G(lambda: 1)
    g.__init__(lambda: 2)
    assert g.switch() == 2


@differs("pypy-oracle", reason="lib_pypy greenlet drops run=None (no run attribute at all)")
def test_run_none_is_kept():
    g = G(run=None)
    assert g.run is None
    with pytest.raises(TypeError) as ei:
        g.switch()
    assert "'NoneType' object is not callable" in str(ei.value)


def test_no_run_attribute_error_on_switch():
    g = G()
    with pytest.raises(AttributeError) as ei:
        g.run
    assert "run" in str(ei.value)
    with pytest.raises(AttributeError) as ei:
        g.switch()
    assert "run" in str(ei.value)


def test_start_reads_run_through_the_class_attribute_hooks():
    # The start reads ``run`` as an attribute: a subclass's __getattribute__ or __getattr__
    # is called (CPython's native start reads the field directly only for the plain class).
    seen = []

    class Hooked(G):
        def __getattribute__(self, name):
            if name == "run":
                seen.append("getattribute")
                return lambda: "from hook"
            return G.__getattribute__(self, name)

    class Fallback(G):
        def __getattr__(self, name):
            seen.append("getattr " + name)
            if name == "run":
                return lambda: "from fallback"
            raise AttributeError(name)

    assert Hooked(lambda: "from field").switch() == "from hook"
    assert Fallback().switch() == "from fallback"
    assert Fallback(lambda: "from field").switch() == "from field"
    assert seen == ["getattribute", "getattr run"]


@only_on("pypy", "cpython-pure", reason="greenlet.py's _transfer runs only where switches are Python code")
def test_exception_before_the_switch_leaves_the_state_usable():
    # An asynchronous exception (KeyboardInterrupt) can land between any two steps of
    # greenlet.py's _transfer on PyPy and in pure mode: it must leave the current greenlet,
    # the contextvars context and the target as they were (greenlet.py's I4).  A trace
    # function raising at each line of _transfer stands in for the signal.
    import contextvars
    import inspect

    var = contextvars.ContextVar("var")
    transfer = greenlet._transfer
    src, first = inspect.getsourcelines(transfer)
    start = next(i for i, l in enumerate(src) if "ts.origin = cur" in l)
    stop = next(i for i, l in enumerate(src) if "arg = op(cc, arg, to=tc)" in l)
    main = getcurrent()
    for line in range(first + start, first + stop + 1):
        seen = []

        def body():
            var.set("in g")
            while True:
                seen.append(var.get())
                main.switch("from g")

        g = G(body)
        var.set("main")
        assert g.switch() == "from g"
        fired = []

        def tracer(frame, event, arg):
            if frame.f_code is not transfer.__code__:
                return None
            if event == "line" and frame.f_lineno == line and not fired:
                fired.append(line)
                raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            with pytest.raises(KeyboardInterrupt):
                g.switch()
        finally:
            sys.settrace(None)
        assert fired == [line]
        assert getcurrent() is main, line
        assert var.get() == "main", line
        assert g.switch() == "from g", line
        assert seen == ["in g", "in g"], line
        assert var.get() == "main"
        g.throw()
        assert g.dead


def _die_scenario(parent_started, raise_at):
    """A greenlet ``g`` dies (returns) into its parent ``p``, started and suspended or not yet
    started; with ``raise_at`` (a code object and line), a KeyboardInterrupt is raised there
    once, as an asynchronous one (a signal) could be on PyPy or in pure mode.  Returns the
    lines of greenlet.py's ``_die``/``_bootstrap`` run while ``g`` died, and checks that the
    state is usable afterwards, whatever the KeyboardInterrupt interrupted (greenlet.py's I5)."""
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    codes = (greenlet._die.__code__, greenlet._bootstrap.__code__)
    main = getcurrent()
    armed, ran, fired, log = [], [], [], []

    def tracer(frame, event, arg):
        if frame.f_code not in codes:
            return None
        if armed and event == "line":
            ran.append((frame.f_code, frame.f_lineno))
            if (frame.f_code, frame.f_lineno) == raise_at and not fired:
                fired.append(raise_at)
                raise KeyboardInterrupt
        return tracer

    def g_body():
        var.set("g")
        main.switch("g suspended")
        return "g result"

    def p_body(v=None):
        var.set("p")
        if v is None:  # started by us: start g, which comes back to us when it dies
            try:
                v = g.switch()
            except KeyboardInterrupt:
                v = "KeyboardInterrupt in p"
        while v != "stop":
            log.append((v, var.get()))
            v = main.switch("p back")
        return "p done"

    var.set("main")
    sys.settrace(tracer)
    try:
        g = G(g_body)
        p = G(p_body)
        g.parent = p
        assert (p if parent_started else g).switch() == "g suspended"
        armed.append(True)
        try:
            out = g.switch()  # g returns: it dies into p, which logs and switches back to us
        except KeyboardInterrupt:
            out = "KeyboardInterrupt in main"
        del armed[:]
    finally:
        sys.settrace(None)
    if raise_at is None:
        assert out == "p back"
        assert log == [("g result", "p")]
    else:
        assert fired == [raise_at], raise_at
        assert out in ("p back", "KeyboardInterrupt in main"), (raise_at, out)
    assert getcurrent() is main, raise_at
    assert var.get() == "main", raise_at
    assert g.dead, raise_at
    if not p.dead:  # interrupted before it ran, suspended in its loop, or (unstarted) run anew
        assert p.switch("again") == "p back", raise_at
        assert log[-1] == ("again", "p"), (raise_at, log)
        assert var.get() == "main", raise_at
        assert p.switch("stop") == "p done", raise_at
    assert p.dead, raise_at
    assert G(lambda: 5).switch() == 5
    assert getcurrent() is main and var.get() == "main", raise_at
    return ran


@pytest.mark.parametrize(
    "parent_started",
    [
        pytest.param(True, marks=only_on(
            "pypy", "cpython-pure", reason="a greenlet dies into a started parent natively on CPython")),
        pytest.param(False, marks=only_on("cpython", "cpython-pure", "pypy", reason="greenlet.py's internals")),
    ],
    ids=["parent started", "parent unstarted"],
)
def test_exception_while_dying_leaves_the_state_usable(parent_started):
    # An asynchronous exception (KeyboardInterrupt) can land between any two steps of a
    # greenlet's death into its parent (greenlet.py's _bootstrap and _die) on PyPy and in
    # pure mode — and on CPython when the parent is not started yet (greenlet.py's _die).
    # A trace function raising at each line stands in for the signal (I5).
    lines = _die_scenario(parent_started, None)
    assert greenlet._die.__code__ in {code for code, _ in lines}
    for raise_at in sorted(set(lines), key=lambda cl: (cl[0].co_name, cl[1])):
        _die_scenario(parent_started, raise_at)


def test_del_run_before_start():
    g = G(lambda: 1)
    del g.run
    with pytest.raises(AttributeError):
        g.run


@differs("pypy-oracle", reason="lib_pypy greenlet has a plain __init__(run, parent) signature")
def test_too_many_init_arguments():
    with pytest.raises(TypeError) as ei:
        G(lambda: 1, getcurrent(), 3)
    assert str(ei.value) == "green() takes at most 2 arguments (3 given)"


def test_keyword_arguments_to_constructor():
    main = getcurrent()
    g = G(run=lambda: "kw", parent=main)
    assert g.parent is main
    assert g.switch() == "kw"


# ------------------------------------------------------------------ dead / bool / gr_frame

def test_states_dead_and_bool():
    main = getcurrent()
    states = []

    def run():
        me = getcurrent()
        states.append((me.dead, bool(me)))
        main.switch()

    g = G(run)
    assert (g.dead, bool(g)) == (False, False)  # not started
    g.switch()
    assert states == [(False, True)]  # running
    assert (g.dead, bool(g)) == (False, True)  # suspended
    g.switch()
    assert (g.dead, bool(g)) == (True, False)  # finished


def test_gr_frame_states():
    main = getcurrent()

    def suspended_here():
        main.switch()

    g = G(suspended_here)
    assert g.gr_frame is None  # not started
    g.switch()
    f = g.gr_frame
    assert f is not None
    assert f.f_code.co_name == "suspended_here"
    g.switch()
    assert g.gr_frame is None  # dead

    def look_at_self():
        return getcurrent().gr_frame

    assert G(look_at_self).switch() is None  # running


def test_gr_frame_of_suspended_main():
    def run():
        return main_frame_info(getcurrent().parent.gr_frame)

    def main_frame_info(f):
        return f.f_code.co_name

    assert G(run).switch() == "test_gr_frame_of_suspended_main"


def test_gr_frame_nested_calls():
    main = getcurrent()

    def leaf():
        main.switch()

    def middle():
        leaf()

    g = G(middle)
    g.switch()
    f = g.gr_frame
    assert f.f_code.co_name == "leaf"
    assert f.f_back.f_code.co_name == "middle"
    g.switch()


@differs("pypy", "pypy-oracle",
         reason="PyPy keeps the hidden continulet bootstrap frames (and a detached f_back cycle) "
                "below a suspended greenlet's frames; they cannot be cut from pure Python")
@differs("cpython-pure", reason="in pure mode the greenlet's run frame f_back is greenlet.py's _bootstrap frame (not None); "
         "CPython's native start calls run with no frame of ours below it")
def test_gr_frame_bottom_f_back_is_none():
    main = getcurrent()

    def bottom():
        main.switch()

    g = G(bottom)
    g.switch()
    f = g.gr_frame
    assert f.f_code.co_name == "bottom"
    assert f.f_back is None
    g.switch()


# ------------------------------------------------------------------ subclassing, __dict__, weakref

def test_subclass_with_run_method():
    class MyG(G):
        def run(self, x):
            return ("run", x, type(self).__name__)

    assert MyG().switch(3) == ("run", 3, "MyG")


def test_run_assigned_to_a_subclass_later_is_used():
    # the native start remembers the last class whose run is greenlet's own (pystate::cast
    # K2): a run assigned afterwards is seen
    class Late(G):
        pass

    assert Late(lambda: 1).switch() == 1
    assert Late(lambda: 2).switch() == 2
    Late.run = lambda self: "late"
    assert Late().switch() == "late"


def test_subclass_without_super_init():
    class MyG(G):
        def __init__(self, value):
            self.value = value

        def run(self):
            return self.value * 2

    g = MyG(21)
    assert g.parent is getcurrent()
    assert g.switch() == 42


def test_subclass_overriding_switch():
    class Counting(G):
        switches = 0

        def switch(self, *args, **kwargs):
            type(self).switches += 1
            return G.switch(self, *args, **kwargs)

    main = getcurrent()
    g = Counting(lambda: main.switch("a") + "b")
    assert g.switch() == "a"
    assert g.switch("x") == "xb"
    assert Counting.switches == 2


@differs("pypy-oracle", reason="lib_pypy greenlet stores run/parent in the instance __dict__")
def test_instance_dict_starts_empty():
    g = G(lambda: None)
    assert g.__dict__ == {}
    g.x = 1
    assert g.__dict__ == {"x": 1}


def test_instance_attributes():
    g = G(lambda: getcurrent().tag)
    g.tag = "tagged"
    assert g.switch() == "tagged"


def test_weakref_to_greenlet():
    g = G(lambda: None)
    r = weakref.ref(g)
    assert r() is g
    g.switch()
    del g
    gc.collect()
    assert r() is None


@differs("pypy-oracle", reason="lib_pypy greenlet's __new__ is continulet's, which does not check")
def test_abstract_subclass_is_refused():
    # object.__new__'s check, kept by the native tp_new (it calls object.__new__ for these)
    import abc

    class Abstract(G, metaclass=abc.ABCMeta):
        @abc.abstractmethod
        def step(self):
            pass

    with pytest.raises(TypeError) as ei:
        Abstract(lambda: None)
    assert "abstract" in str(ei.value) and "Abstract" in str(ei.value)

    class Concrete(Abstract):
        def step(self):
            return 1

    g = Concrete(lambda: 7)
    assert g.parent is getcurrent()
    assert g.switch() == 7 and g.dead


def test_new_without_init():
    g = G.__new__(G)
    assert g.parent is getcurrent()
    assert not g and not g.dead
    with pytest.raises(AttributeError):
        g.run
    g.run = lambda: 5
    assert g.switch() == 5


@only_on("cpython", reason="the native base's tp_new")
def test_native_new_is_raw_with_eager_dict():
    # pystate::slots (N1): the raw tp_new is installed on every supported CPython; on 3.11 and
    # 3.12 it makes the instance __dict__ at once, as object.__new__ does there
    from continulet import _native

    assert _native.greenlet_new_is_raw()
    g = G(lambda: None)
    if (3, 11) <= sys.version_info[:2] <= (3, 12):
        assert any(type(r) is dict for r in gc.get_referents(g))
    g.a = 1
    assert g.__dict__ == {"a": 1}


# ------------------------------------------------------------------ pickling, repr, _stack_saved

@differs("pypy-oracle", reason="lib_pypy greenlet raises continulet's NotImplementedError")
@pytest.mark.parametrize("op", [pickle.dumps, copy.copy, copy.deepcopy])
def test_cannot_serialize(op):
    with pytest.raises(TypeError) as ei:
        op(G(lambda: None))
    assert str(ei.value) == "cannot serialize 'greenlet.greenlet' object"


@differs("pypy-oracle", reason="lib_pypy greenlet raises continulet's NotImplementedError")
def test_getstate_message():
    with pytest.raises(TypeError) as ei:
        getcurrent().__getstate__()
    assert str(ei.value) == "cannot serialize 'greenlet.greenlet' object"


_ADDR = r"0x[0-9a-f]+"


@differs("pypy-oracle", reason="lib_pypy greenlet has the default object repr")
def test_repr_states():
    main = getcurrent()
    g = G(lambda: main.switch())
    assert re.match(r"^<greenlet\.greenlet object at %s \(otid=0x\(nil\)\) pending>$" % _ADDR, repr(g)), repr(g)
    g.switch()
    assert re.match(r"^<greenlet\.greenlet object at %s \(otid=%s\) suspended active started>$" % (_ADDR, _ADDR),
                    repr(g)), repr(g)
    assert re.match(r"^<greenlet\.greenlet object at %s \(otid=%s\) current active started main>$" % (_ADDR, _ADDR),
                    repr(main)), repr(main)
    g.switch()
    assert re.match(r"^<greenlet\.greenlet object at %s \(otid=%s\) dead>$" % (_ADDR, _ADDR), repr(g)), repr(g)
    inner = []
    G(lambda: inner.append(repr(getcurrent()))).switch()
    assert re.match(r"^<greenlet\.greenlet object at %s \(otid=%s\) current active started>$" % (_ADDR, _ADDR),
                    inner[0]), inner[0]


@differs("pypy-oracle", reason="lib_pypy greenlet has the default object repr")
def test_repr_otid_is_shared_by_thread():
    main = getcurrent()
    g = G(lambda: main.switch())
    g.switch()
    otid = re.search(r"otid=(\w+)", repr(main)).group(1)
    assert "otid=%s" % otid in repr(g)
    g.switch()


@differs("pypy-oracle", reason="lib_pypy greenlet has the default object repr")
def test_repr_subclass_uses_class_name():
    class Sub(G):
        pass

    assert re.match(r"^<Sub object at %s \(otid=0x\(nil\)\) pending>$" % _ADDR, repr(Sub()))


@differs("pypy-oracle", reason="lib_pypy greenlet has no _stack_saved")
def test_stack_saved():
    main = getcurrent()
    assert main._stack_saved == 0
    g = G(lambda: main.switch())
    assert g._stack_saved == 0
    g.switch()
    assert isinstance(g._stack_saved, int) and g._stack_saved >= 0
    g.switch()
    assert g._stack_saved == 0


@only_on("cpython", "cpython-pure", reason="PyPy's continulets do not report a saved stack size (0)")
def test_stack_saved_of_a_suspended_greenlet_is_its_saved_c_stack():
    main = getcurrent()
    g = G(lambda: main.switch())
    g.switch()
    assert g._stack_saved > 0
    assert getcurrent()._stack_saved == 0  # running
    g.switch()
    assert g._stack_saved == 0  # dead
