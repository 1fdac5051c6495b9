"""Build tiny wheels on the fly so dependency tests never need a package index.

A wheel is just a zip with a ``.dist-info`` directory; writing it directly keeps tests fast and
free of build backends.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

PURE_TAG = "py3-none-any"
LINUX_X86_64_CP311_TAG = "cp311-cp311-manylinux_2_17_x86_64"
MACOS_ARM64_CP311_TAG = "cp311-cp311-macosx_11_0_arm64"

# A fixed timestamp makes every wheel byte-identical across runs.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _snake(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    tag: str = PURE_TAG,
    files: Mapping[str, str | bytes] | None = None,
    extras: Sequence[str] = (),
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``dest`` and return its path.

    Without ``files`` the wheel holds one importable package named after the distribution whose
    ``__init__.py`` records the version and tag, so tests can tell which wheel was installed.
    ``extras`` are the extras it provides (``Provides-Extra``), for ``requires`` with an
    ``extra == "..."`` marker.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = _snake(name)
    if files is None:
        files = {f"{dist}/__init__.py": f"VERSION = {version!r}\nTAG = {tag!r}\n"}
    dist_info = f"{dist}-{version}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {name}\n",
            f"Version: {version}\n",
            *(f"Provides-Extra: {extra}\n" for extra in extras),
            *(f"Requires-Dist: {req}\n" for req in requires),
        ]
    )
    wheel_meta = (
        "Wheel-Version: 1.0\n"
        "Generator: tests.wheelhouse\n"
        f"Root-Is-Purelib: {'true' if tag == PURE_TAG else 'false'}\n"
        f"Tag: {tag}\n"
    )
    entries: dict[str, bytes] = {
        path: content.encode() if isinstance(content, str) else content
        for path, content in files.items()
    }
    entries[f"{dist_info}/METADATA"] = metadata.encode()
    entries[f"{dist_info}/WHEEL"] = wheel_meta.encode()
    record_path = f"{dist_info}/RECORD"
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in entries.items())
    entries[record_path] = (record + f"{record_path},,\n").encode()

    wheel_path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel_path
