"""Write a pure-Python wheel with the standard library only (PEP 427 / PEP 376 RECORD).

Shared by the two in-tree PEP 517 backends: ``packaging/greenlet/backend.py`` (the ``greenlet``
drop-in) and ``packaging/continulet_backend.py`` (the ``continulet`` core on PyPy, where there is
no extension to build).  No build dependency is downloaded for either.
"""

import base64
import hashlib
import os
import re
import zipfile

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same wheel bytes


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_assignment(path, name):
    """The string literal assigned to ``name`` at the start of a line of ``path`` (version etc.)."""
    m = re.search(r'^%s\s*=\s*"([^"]+)"' % re.escape(name), read_text(path), re.M)
    if not m:
        raise RuntimeError("no %s = \"...\" in %s" % (name, path))
    return m.group(1)


def package_files(src_dir, arc_prefix):
    """``{arcname: bytes}`` for the ``.py`` files under ``src_dir`` (no caches, no binaries)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(src_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith(".py") or fn == "py.typed":
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, src_dir).replace(os.sep, "/")
                with open(full, "rb") as f:
                    out[arc_prefix + "/" + rel] = f.read()
    return out


def metadata_text(name, version, summary, requires=(), requires_python=None, description=None):
    lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version, "Summary: " + summary]
    if requires_python:
        lines.append("Requires-Python: " + requires_python)
    lines += ["Requires-Dist: " + r for r in requires]
    text = "\n".join(lines) + "\n"
    if description:
        text += "Description-Content-Type: text/markdown\n\n" + description
    return text


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "sha256=%s,%d" % (digest, len(data))


def write_wheel(wheel_directory, name, version, tag, files, metadata):
    """Write ``<name>-<version>-<tag>.whl`` holding ``files`` plus its .dist-info; return the basename."""
    dist = "%s-%s" % (re.sub(r"[-_.]+", "_", name), version)
    info = dist + ".dist-info"
    files = dict(files)
    files[info + "/METADATA"] = metadata.encode()
    files[info + "/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: continulet purewheel\nRoot-Is-Purelib: true\nTag: %s\n" % tag
    ).encode()
    record = [name_ + "," + record_hash(data) for name_, data in files.items()]
    record.append(info + "/RECORD,,")
    files[info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    basename = "%s-%s.whl" % (dist, tag)
    with zipfile.ZipFile(os.path.join(wheel_directory, basename), "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zi = zipfile.ZipInfo(arcname, _EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return basename


def write_metadata_dir(metadata_directory, name, version, metadata):
    """PEP 517 ``prepare_metadata_for_build_wheel``: just the METADATA file."""
    info = "%s-%s.dist-info" % (re.sub(r"[-_.]+", "_", name), version)
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    with open(os.path.join(metadata_directory, info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(metadata)
    return info
