"""PEP 517 backend of the ``continulet`` distribution (the repository root's pyproject.toml).

* CPython: every hook is maturin's (the Rust extension ``continulet._native`` plus
  ``_continuation``/``stackless``/``continulet`` from ``pylib``), unchanged.
* PyPy: nothing to compile (PyPy has ``_continuation`` built in), so a pure wheel
  ``continulet-<v>-pp<XY>-none-any.whl`` of ``pylib/continulet`` (without ``_native``) and
  ``pylib/stackless`` is written with the standard library (``packaging/greenlet/purewheel.py``);
  maturin is not even downloaded.

The ``greenlet`` drop-in is a separate distribution, ``packaging/greenlet``.
"""

import os
import platform
import sys

import purewheel

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
IS_PYPY = platform.python_implementation() == "PyPy"

if not IS_PYPY:
    import maturin as _maturin

    def get_requires_for_build_wheel(config_settings=None):
        return _maturin.get_requires_for_build_wheel(config_settings)

    def get_requires_for_build_sdist(config_settings=None):
        return _maturin.get_requires_for_build_sdist(config_settings)

    def get_requires_for_build_editable(config_settings=None):
        return _maturin.get_requires_for_build_editable(config_settings)

    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        return _maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)

    def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
        return _maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        return _maturin.build_wheel(wheel_directory, config_settings, metadata_directory)

    def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
        return _maturin.build_editable(wheel_directory, config_settings, metadata_directory)

    def build_sdist(sdist_directory, config_settings=None):
        return _maturin.build_sdist(sdist_directory, config_settings)

else:

    def _project():
        text = purewheel.read_text(os.path.join(ROOT, "pyproject.toml"))
        project = text.split("[project]", 1)[1].split("\n[", 1)[0]

        def field(name):
            import re

            return re.search(r'^%s\s*=\s*"([^"]*)"' % name, project, re.M).group(1)

        return field("name"), field("version"), field("description"), field("requires-python")

    def _metadata():
        name, version, summary, requires_python = _project()
        return purewheel.metadata_text(name, version, summary, requires_python=requires_python)

    def _files():
        files = purewheel.package_files(os.path.join(ROOT, "pylib", "continulet"), "continulet")
        files.update(purewheel.package_files(os.path.join(ROOT, "pylib", "stackless"), "stackless"))
        return files

    def _tag():
        return "pp%d%d-none-any" % sys.version_info[:2]

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def get_requires_for_build_sdist(config_settings=None):
        return ["maturin>=1.7,<2"]

    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
        name, version = _project()[:2]
        return purewheel.write_metadata_dir(metadata_directory, name, version, _metadata())

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name, version = _project()[:2]
        return purewheel.write_wheel(wheel_directory, name, version, _tag(), _files(), _metadata())

    def build_sdist(sdist_directory, config_settings=None):
        import maturin  # the sdist is the same on every interpreter: maturin's

        return maturin.build_sdist(sdist_directory, config_settings)
