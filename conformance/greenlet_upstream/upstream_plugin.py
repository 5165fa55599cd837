"""pytest plugin: greenlet's own test suite (the greenlet sdist's ``src/greenlet/tests``), run
unmodified against OUR greenlet.  Loaded by ``ci/greenlet-upstream`` with ``-p upstream_plugin``.

The upstream tests are the package ``greenlet.tests``; ``ci/greenlet-upstream`` extracts it as
``<scratch>/tests`` and pytest imports it as ``tests``.  This plugin, and nothing in the
extracted files, makes that work:

* ``greenlet.tests`` is an alias of that ``tests`` package (``test_interpreter_shutdown.py``
  imports ``from greenlet.tests import TestCase``).
* ``greenlet._greenlet`` (the C extension module; ``tests/__init__.py`` imports two functions
  from it, which the ``TestCase`` base class calls in every ``setUp``/``tearDown``) is a
  stand-in module: ``get_pending_cleanup_count()`` and ``get_total_main_greenlets()`` return 0
  (there is no cross-thread cleanup queue or main-greenlet counter to read), the optional
  cleanup switches are greenlet's own module-level ones.  Anything else of ``_greenlet``
  (``UnswitchableGreenlet``, ``get_tstate_trash_delete_nesting``, ...) is absent, and the tests
  that use it are in ``skips.txt``.
* ``skips.txt`` (next to this file) is applied: ``skip`` entries become skip markers, ``xfail``
  entries strict xfail markers; a whole-module ``skip`` entry replaces the module by one skipped
  item per ``test*`` method found in its source (the module itself is not imported: it needs
  a C extension).  An entry that matches no test is an error (the list cannot go stale).
* The run fails at start-up unless ``import greenlet`` is continulet's.

The refcount checks that upstream wraps around every test method are turned off with
upstream's own switch, ``GREENLET_SKIP_LEAKCHECKS=1`` (set by ``ci/greenlet-upstream``).
"""

import ast
import fnmatch
import os
import sys
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SKIPS = os.path.join(HERE, "skips.txt")
ACTIONS = ("skip", "xfail")
IMPL = "pypy" if sys.implementation.name == "pypy" else "cpython"


class Entry(object):
    def __init__(self, action, category, pattern, reason, where):
        self.action, self.category, self.pattern = action, category, pattern
        self.reason, self.where, self.used = reason, where, 0

    def matches(self, nodeid):
        # Patterns are relative to the tests/ package: "test_x.py::Class::test_y", globs allowed.
        # A pattern without "::" names whole modules.
        rel = nodeid.split("/", 1)[-1]
        return fnmatch.fnmatchcase(rel if "::" in self.pattern else rel.split("::", 1)[0], self.pattern)

    def label(self):
        return "[%s] %s" % (self.category, self.reason)


def load_entries(path=SKIPS, impl=IMPL):
    """``<skip|xfail>[@cpython|@pypy] <category> <pattern>: <reason>``, one a line; ``#`` starts
    a comment.  Entries for the other interpreter are left out."""
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if not line:
                continue
            head, sep, reason = line.partition(": ")
            words = head.split()
            action, _, only = words[0].partition("@") if words else ("", "", "")
            if (not sep or len(words) != 3 or action not in ACTIONS or only not in ("", "cpython", "pypy")
                    or not reason.strip()):
                raise pytest.UsageError(
                    "%s:%d: expected '<skip|xfail>[@cpython|@pypy] <category> <pattern>: <reason>'" % (path, n))
            if only in ("", impl):
                entries.append(Entry(action, words[1], words[2], reason.strip(), "%s:%d" % (path, n)))
    return entries


def first_match(entries, nodeid):
    for e in entries:
        if e.matches(nodeid):
            return e
    return None


def check_ours():
    import greenlet

    if getattr(greenlet, "__implementation__", None) != "continulet":
        raise pytest.UsageError("import greenlet gives %s (%s), not continulet's" % (
            greenlet.__file__, getattr(greenlet, "__version__", "?")))
    return greenlet


def install_shims(greenlet, scratch):
    shim = types.ModuleType("greenlet._greenlet", "stand-in for greenlet's C module (upstream_plugin.py)")
    shim.get_pending_cleanup_count = lambda: 0
    shim.get_total_main_greenlets = lambda: 0
    shim.enable_optional_cleanup = greenlet.enable_optional_cleanup
    shim.get_clocks_used_doing_optional_cleanup = greenlet.get_clocks_used_doing_optional_cleanup
    shim.CLOCKS_PER_SEC = greenlet.CLOCKS_PER_SEC
    sys.modules["greenlet._greenlet"] = shim
    greenlet._greenlet = shim
    if scratch not in sys.path:
        sys.path.insert(0, scratch)
    import tests  # the extracted upstream package

    sys.modules["greenlet.tests"] = tests
    greenlet.tests = tests


def pytest_configure(config):
    greenlet = check_ours()
    scratch = os.path.abspath(str(config.rootpath))
    if not os.path.isfile(os.path.join(scratch, "tests", "__init__.py")):
        raise pytest.UsageError("run with --rootdir=<dir holding the extracted tests/ package>")
    if os.environ.get("GREENLET_SKIP_LEAKCHECKS") != "1":
        raise pytest.UsageError("set GREENLET_SKIP_LEAKCHECKS=1 (refcount checks are out of scope)")
    install_shims(greenlet, scratch)
    config._upstream_entries = load_entries()
    config._upstream_category = {}


def pytest_report_header(config):
    import greenlet

    return "greenlet under test: %s %s (%s)" % (greenlet.__version__, greenlet.__implementation__,
                                                 greenlet.__file__)


class SkippedTest(pytest.Item):
    def __init__(self, *, entry, **kw):
        super().__init__(**kw)
        self.add_marker(pytest.mark.skip(reason=entry.label()))

    def runtest(self):  # never reached: skipped
        raise AssertionError("skipped module item ran")

    def reportinfo(self):
        return self.path, 0, self.name


class SkippedModule(pytest.File):
    """A module listed whole in skips.txt: one skipped item per test method in its source."""

    def __init__(self, *, entry, **kw):
        super().__init__(**kw)
        self.entry = entry

    def collect(self):
        tree = ast.parse(self.path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                meths = [m.name for m in node.body
                         if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")]
                for m in meths:
                    yield SkippedTest.from_parent(self, name="%s::%s" % (node.name, m), entry=self.entry)
            elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                yield SkippedTest.from_parent(self, name=node.name, entry=self.entry)


def pytest_pycollect_makemodule(module_path, parent):
    entries = parent.config._upstream_entries
    name = module_path.name
    for e in entries:
        if e.action == "skip" and "::" not in e.pattern and fnmatch.fnmatchcase(name, e.pattern):
            return SkippedModule.from_parent(parent, path=module_path, entry=e)
    return None


def pytest_collection_modifyitems(session, config, items):
    entries = config._upstream_entries
    for item in items:
        e = first_match(entries, item.nodeid)
        if e is None:
            continue
        e.used += 1
        config._upstream_category[item.nodeid] = e.category
        if isinstance(item, SkippedTest):
            continue
        if e.action == "skip":
            item.add_marker(pytest.mark.skip(reason=e.label()))
        else:
            item.add_marker(pytest.mark.xfail(strict=True, reason=e.label()))
    stale = [e for e in entries if not e.used]
    whole_run = not config.getoption("keyword") and not config.getoption("markexpr") and all(
        "::" not in a and os.path.isdir(a) for a in config.args)
    if stale and whole_run:
        raise pytest.UsageError("skips.txt entries that match no test:\n" + "\n".join(
            "  %s %s" % (e.where, e.pattern) for e in stale))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cats = getattr(config, "_upstream_category", {})
    for kind in ("skipped", "xfailed"):
        counts = {}
        for rep in terminalreporter.stats.get(kind, []):
            cat = cats.get(rep.nodeid, "upstream's own skip" if kind == "skipped" else "?")
            counts[cat] = counts.get(cat, 0) + 1
        terminalreporter.write_line("greenlet upstream (%s), %s by category: %s" % (IMPL, kind, ", ".join(
            "%s %d" % (c, counts[c]) for c in sorted(counts)) or "none"))
