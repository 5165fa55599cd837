#!/usr/bin/env python3
"""Conformance matrix from JUnit reports.

    python3 ci/matrix.py reports/

Reads every ``conformance-<impl>.xml`` in the directory (as written by ``ci/conformance``) and
prints a Markdown table: one row per test (``module::name``), one column per impl, cells
``pass`` / ``FAIL`` / ``xfail`` / ``skip`` / ``-`` (not run there), and a totals row.  The same
table is written to ``<dir>/matrix.md``.  Standard library only; any Python 3.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

KNOWN_ORDER = ("cpython", "cpython-pure", "pypy", "pypy-oracle")
CELLS = ("pass", "FAIL", "xfail", "skip")
# when one test id occurs more than once in a report, the worst outcome wins
SEVERITY = {"pass": 0, "skip": 1, "xfail": 2, "FAIL": 3}
REPORT_RE = re.compile(r"^conformance-(.+)\.xml$")


def outcome(case):
    failed = case.find("failure") is not None or case.find("error") is not None
    if failed:
        return "FAIL"
    skipped = case.find("skipped")
    if skipped is not None:
        if (skipped.get("type") or "") == "pytest.xfail":
            return "xfail"
        return "skip"
    return "pass"


def test_id(case):
    classname = case.get("classname") or ""
    name = case.get("name") or "?"
    return "%s::%s" % (classname, name) if classname else name


def read_report(path):
    """Return {test_id: cell} for one JUnit file."""
    results = {}
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        tid = test_id(case)
        cell = outcome(case)
        old = results.get(tid)
        if old is None or SEVERITY[cell] > SEVERITY[old]:
            results[tid] = cell
    return results


VERSIONED_RE = re.compile(r"^(.+)-3\.(\d+)$")


def impl_sort_key(impl):
    if impl in KNOWN_ORDER:
        return (0, KNOWN_ORDER.index(impl), 0, impl)
    m = VERSIONED_RE.match(impl)  # cpython-3.12: beside cpython, by minor version
    if m and m.group(1) in KNOWN_ORDER:
        return (0, KNOWN_ORDER.index(m.group(1)), int(m.group(2)), impl)
    return (1, 0, 0, impl)


def md_escape(text):
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def build_table(columns):
    impls = sorted(columns, key=impl_sort_key)
    tests = sorted(set().union(*(set(columns[i]) for i in impls))) if impls else []
    lines = [
        "| test | " + " | ".join(impls) + " |",
        "|---|" + "---|" * len(impls),
    ]
    for tid in tests:
        row = [columns[i].get(tid, "-") for i in impls]
        lines.append("| " + md_escape(tid) + " | " + " | ".join(row) + " |")
    totals = []
    for i in impls:
        counts = dict((c, 0) for c in CELLS)
        for cell in columns[i].values():
            counts[cell] += 1
        totals.append(", ".join("%d %s" % (counts[c], c) for c in CELLS))
    lines.append("| **total (%d tests)** | " % len(tests) + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: %s REPORTS_DIR\n" % os.path.basename(argv[0]))
        return 2
    directory = argv[1]
    if not os.path.isdir(directory):
        sys.stderr.write("matrix.py: %s is not a directory\n" % directory)
        return 2
    columns = {}
    broken = []
    for fname in sorted(os.listdir(directory)):
        m = REPORT_RE.match(fname)
        if not m:
            continue
        path = os.path.join(directory, fname)
        try:
            columns[m.group(1)] = read_report(path)
        except (ET.ParseError, OSError) as e:
            broken.append("%s: %s" % (path, e))
    for msg in broken:
        sys.stderr.write("matrix.py: unreadable report %s\n" % msg)
    if not columns:
        sys.stderr.write("matrix.py: no conformance-<impl>.xml reports in %s\n" % directory)
        return 1
    table = build_table(columns)
    sys.stdout.write(table)
    with open(os.path.join(directory, "matrix.md"), "w") as f:
        f.write(table)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
