"""PEP 517 backend of the ``greenlet`` drop-in distribution (standard library only).

Builds ``greenlet-<greenlet API>+continulet.<ours>-py3-none-any.whl`` from ``pylib/greenlet``
(in a checkout) or ``./greenlet`` (in an sdist).  The version is ``greenlet.__version__`` from
that source, e.g. ``3.5.0+continulet.0.1.0``: the greenlet API level we implement, then a PEP 440
*local* label naming us (PyPI refuses local versions, so this can never pass for an upstream
release).  It requires ``continulet==<ours>``.  See ARCHITECTURE.md, "Drop-in greenlet".
"""

import os
import re

import purewheel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
NAME = "greenlet"
SUMMARY = "continulet's pure-Python greenlet (drop-in for greenlet's users; not the greenlet project's release)"


def _greenlet_src():
    in_checkout = os.path.join(ROOT, "pylib", "greenlet")
    if os.path.exists(os.path.join(in_checkout, "__init__.py")) and os.path.exists(
        os.path.join(ROOT, "pyproject.toml")
    ):
        return in_checkout
    return os.path.join(HERE, "greenlet")  # sdist


def _version():
    version = purewheel.read_assignment(os.path.join(_greenlet_src(), "__init__.py"), "__version__")
    m = re.fullmatch(r"(\d+(?:\.\d+)*)\+continulet\.(\d+(?:\.\d+)*)", version)
    if not m:
        raise RuntimeError("greenlet.__version__ %r is not <greenlet API>+continulet.<ours>" % version)
    ours = m.group(2)
    root_pyproject = os.path.join(ROOT, "pyproject.toml")
    if os.path.exists(root_pyproject) and _greenlet_src() != os.path.join(HERE, "greenlet"):
        core = purewheel.read_assignment(root_pyproject, "version")
        if core != ours:
            raise RuntimeError(
                "greenlet.__version__ %r names continulet %s but pyproject.toml has %s" % (version, ours, core)
            )
    return version, ours


def _metadata():
    version, ours = _version()
    desc = purewheel.read_text(os.path.join(HERE, "README.md"))
    return purewheel.metadata_text(
        NAME, version, SUMMARY, requires=["continulet==" + ours], requires_python=">=3.9", description=desc
    )


def _dist_info():
    return "%s-%s.dist-info" % (NAME, _version()[0])


TWIN_README = """\
A copy of the metadata of continulet's greenlet drop-in.  Where the interpreter ships its own
greenlet in its standard library (PyPy), _continulet_greenlet.py puts this directory before the
standard library on sys.path so that pip sees this greenlet; its RECORD lists every installed
file, so `pip uninstall greenlet` removes them all (this directory too).
"""


def _twin_files():
    """A copy of our METADATA plus a RECORD listing every installed file, relative to the twin dir."""
    info = _dist_info()
    twin = "continulet-greenlet-metadata/" + info
    installed = [
        "../greenlet/__init__.py",
        "../_continulet_greenlet.py",
        "../continulet-greenlet.pth",
    ] + ["../%s/%s" % (info, f) for f in ("METADATA", "WHEEL", "RECORD", "INSTALLER", "REQUESTED", "direct_url.json")]
    record = "\n".join(installed + ["README.txt", info + "/METADATA", info + "/RECORD"]) + "\n"
    return {
        "continulet-greenlet-metadata/README.txt": TWIN_README.encode(),
        twin + "/METADATA": _metadata().encode(),
        twin + "/RECORD": record.encode(),
    }


def _files():
    files = purewheel.package_files(_greenlet_src(), "greenlet")
    hook = purewheel.read_text(os.path.join(HERE, "_continulet_greenlet.py"))
    files["_continulet_greenlet.py"] = hook.replace("__OUR_DIST_INFO__", _dist_info()).encode()
    files["continulet-greenlet.pth"] = b"import _continulet_greenlet\n"
    files.update(_twin_files())
    return files


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return purewheel.write_metadata_dir(metadata_directory, NAME, _version()[0], _metadata())


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return purewheel.write_wheel(wheel_directory, NAME, _version()[0], "py3-none-any", _files(), _metadata())


def build_sdist(sdist_directory, config_settings=None):
    import io
    import tarfile

    version = _version()[0]
    base = "greenlet-%s" % version
    members = {"PKG-INFO": _metadata().encode()}
    for fn in ("pyproject.toml", "backend.py", "purewheel.py", "_continulet_greenlet.py", "README.md"):
        with open(os.path.join(HERE, fn), "rb") as f:
            members[fn] = f.read()
    members.update(purewheel.package_files(_greenlet_src(), "greenlet"))
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for arcname, data in sorted(members.items()):
            ti = tarfile.TarInfo(base + "/" + arcname)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return name
