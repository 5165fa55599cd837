"""Crash scenarios (issue 8), each in a subprocess (STYLE 13): ``conformance/crash/*.py``.

Every scenario the docs warn about must end in a clear Python error or a documented clean
exit -- never a segfault or a fatal error.  We assert the exit status, the last line(s) of
stdout and what stderr may contain.
"""
import os
import signal
import subprocess
import sys

import pytest

from conftest import only_on

CRASH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash")
NEVER = ("Fatal Python error", "Segmentation fault", "core dumped", "SystemError", "panicked",
         "Aborted", "internal error")

pytestmark = only_on("cpython", "cpython-pure", "pypy",
                     reason="scenarios use our greenlet/stackless APIs (lib_pypy has no per-thread scheduler)")


def run(script, *args, timeout=120):
    r = subprocess.run([sys.executable, os.path.join(CRASH, script)] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    for bad in NEVER:
        assert bad not in r.stderr, r.stderr
    assert r.returncode >= 0 or r.returncode == -signal.SIGINT, (r.returncode, r.stderr)
    return r


def test_switch_from_signal_handler():
    r = run("signal_handler_switch.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["handler ran True", "ok"]
    assert r.stderr == ""


def test_recursion_at_the_limit_in_continulet_and_greenlet():
    r = run("recursion_limit.py")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "continulet yielded from-limit"
    assert lines[1] == "continulet returned ('after', 'back')"
    assert lines[2] == "greenlet yielded from-limit"
    assert lines[3] == "greenlet returned back"
    assert lines[4:] == ["main RecursionError at limit 200", "ok"]
    assert r.stderr == ""


def test_create_and_start_at_the_recursion_limit():
    r = run("recursion_limit.py", "create")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[4:] == ["create at limit: 1", "greenlet at limit: 2",
                                         "main RecursionError at limit 200", "ok"]
    assert r.stderr == ""


def test_keyboard_interrupt_mid_switch_is_caught_and_state_stays_usable():
    r = run("keyboard_interrupt.py", "caught", "greenlet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["KeyboardInterrupt caught 20", "ok"]


def test_keyboard_interrupt_mid_switch_with_tasklets():
    # the pure core (PyPy, pure mode) survives it at any bytecode: stackless/_core.py's I5
    r = run("keyboard_interrupt.py", "caught", "stackless", timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["KeyboardInterrupt caught 20", "ok"]


@pytest.mark.parametrize("what", ["greenlet", "stackless"])
def test_keyboard_interrupt_uncaught_exits_by_sigint(what):
    r = run("keyboard_interrupt.py", "uncaught", what)
    assert r.returncode in (130, -signal.SIGINT), (r.returncode, r.stderr)
    assert r.stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt", r.stderr


def test_switching_during_interpreter_shutdown():
    r = run("shutdown_switch.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main done", "atexit ok"]
    assert r.stderr == "", r.stderr


def test_switching_in_a_del_at_exit_with_nothing_else_suspended():
    # The switches' entry asks pyo3 to attach the thread; at that point pyo3 refuses (the
    # interpreter is finalizing) and the call must still run (it aborted once).
    r = run("shutdown_del_alone.py")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "main done"
    if sys.implementation.name == "cpython":
        assert lines[1:] == ["del 42 42 [3]"], r.stdout
    else:  # PyPy need not finalize the cycle at exit; if it does, the switches work
        assert lines[1:] in ([], ["del 42 42 [3]"]), r.stdout
    assert r.stderr == "", r.stderr
