"""Shared fixtures for the conformance suite.

One suite, run unchanged on every interpreter and mode.  The *implementation under test* is
named by the environment variable ``CONTINULET_IMPL`` (set by ``ci/conformance``) or detected:

==================  =====================================================================
impl                what runs
==================  =====================================================================
``cpython``         CPython + our ``_continuation`` extension + ``pylib`` (native scheduler
                    when present)
``cpython-pure``    the same, with ``CONTINULET_PURE=1`` (pure-Python ``stackless``)
``pypy``            PyPy 3.9 + its builtin ``_continuation`` + our ``pylib``
``pypy-oracle``     PyPy 3.9 + its own ``lib_pypy`` greenlet.py / stackless.py (reference
                    column: where we are better than lib_pypy, tests may fail there)
==================  =====================================================================

``cpython`` and ``cpython-pure`` may carry a version suffix (``cpython-3.12``,
``cpython-pure-3.10``: one matrix column per CPython minor).  In ``differs``/``only_on``,
``"cpython"`` names every CPython version and ``"cpython-3.12"`` only that one.

Deviations are declared on the test, never by weakening it::

    @differs("pypy-oracle", reason="lib_pypy greenlet does not check parent cycles")
    def test_parent_cycle(): ...

``differs`` turns into ``xfail(strict=True)`` on the named impls, so an unexpected pass fails.
"""

import functools
import os
import subprocess
import platform
import re
import sys

import pytest

IMPLS = ("cpython", "cpython-pure", "pypy", "pypy-oracle")
IS_PYPY = platform.python_implementation() == "PyPy"
_VERSIONED = re.compile(r"^(cpython|cpython-pure)-3\.\d+$")


def _known(impl):
    return impl in IMPLS or _VERSIONED.match(impl) is not None


def _named(impl, names):
    """Whether ``impl`` is one of ``names``, ``"cpython"`` covering ``"cpython-3.x"`` too."""
    return impl in names or (_VERSIONED.match(impl) is not None and impl.rsplit("-", 1)[0] in names)


def _detect_impl():
    impl = os.environ.get("CONTINULET_IMPL")
    if impl:
        if not _known(impl):
            raise RuntimeError("CONTINULET_IMPL=%r is not one of %r" % (impl, IMPLS))
        return impl
    if IS_PYPY:
        import greenlet

        return "pypy-oracle" if "lib_pypy" in greenlet.__file__ or "/pypy3" in greenlet.__file__ else "pypy"
    return "cpython-pure" if os.environ.get("CONTINULET_PURE") else "cpython"


IMPL = _detect_impl()


def differs(*impls, reason):
    """Mark a test as a documented deviation on ``impls`` (strict xfail there)."""
    for impl in impls:
        if not _known(impl):
            raise ValueError("unknown impl %r" % (impl,))
    return pytest.mark.differs(impls=impls, reason=reason)


def only_on(*impls, reason):
    """Skip a test except on ``impls`` (for tests of a feature one side does not have)."""
    return pytest.mark.skipif(not _named(IMPL, impls), reason=reason)


def pytest_configure(config):
    config.addinivalue_line("markers", "differs(impls, reason): documented deviation, strict xfail")
    config.addinivalue_line("markers", "leakcheck: CPython-only refcount/memory checks")
    config.addinivalue_line("markers", "slow: long-running")
    config.addinivalue_line(
        "markers",
        "fresh_interpreter_on_pypy: run in a new PyPy process (finalizer timing depends on JIT warmth)",
    )


def pytest_report_header(config):
    return "continulet impl: %s (%s %s)" % (IMPL, platform.python_implementation(), sys.version.split()[0])


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("differs"):
            if _named(IMPL, mark.kwargs["impls"]):
                item.add_marker(pytest.mark.xfail(strict=True, reason=mark.kwargs["reason"]))
        if item.get_closest_marker("leakcheck") and IS_PYPY:
            item.add_marker(pytest.mark.skip(reason="refcount/leak checks are CPython-only"))
        expected_to_fail = any(_named(IMPL, m.kwargs["impls"]) for m in item.iter_markers("differs"))
        if (
            IS_PYPY
            and item.get_closest_marker("fresh_interpreter_on_pypy")
            and not expected_to_fail
            and not os.environ.get("CONTINULET_FRESH_CHILD")
        ):
            item.runtest = functools.partial(_runtest_in_fresh_interpreter, item)


def _runtest_in_fresh_interpreter(item):
    """Run one test alone in a new interpreter and fail with its output if it fails there.

    On PyPy a warm JIT can keep a dropped object reachable from a forced frame for a while, so
    *when* a finalizer runs (e.g. greenlet's GreenletExit-on-collection) depends on what ran
    before in the process.  The behaviour is still checked, exactly, in a process of its own.
    """
    config = item.config
    env = dict(os.environ, CONTINULET_FRESH_CHILD="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           "--rootdir", str(config.rootpath), "-c", str(config.inipath), item.nodeid]
    proc = subprocess.run(cmd, cwd=str(config.rootpath), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)
    if proc.returncode != 0:
        raise AssertionError("failed in a fresh interpreter:\n" + proc.stdout.decode("utf-8", "replace")[-4000:])


@pytest.fixture
def impl():
    return IMPL


@pytest.fixture(autouse=True)
def clean_stackless_scheduler(request):
    """For the stackless tests, and any other once ``stackless`` is imported (the misuse
    catalogue's entries): no callbacks before or after, leftover tasklets run off, and on the
    oracle lib_pypy's single global queue reset (a failed xfail test may corrupt it)."""
    if request.module.__name__.startswith("test_stackless"):
        stackless = pytest.importorskip("stackless")
        stackless.set_schedule_callback(None)
        stackless.set_channel_callback(None)
    yield
    stackless = sys.modules.get("stackless")
    if stackless is None:
        return
    stackless.set_schedule_callback(None)
    stackless.set_channel_callback(None)
    for _ in range(10):
        if stackless.getruncount() <= 1:
            break
        try:
            stackless.run()
        except BaseException:
            pass
    if IMPL == "pypy-oracle":
        stackless._run_calls[:] = []
        stackless._init()
