"""Safe extraction of a build archive into a private, content-addressed directory."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from flash.build.archive import file_sha256
from flash.platform.manifest import MANIFEST, PlatformError

_COMPLETE = ".flash-extracted"


def extract_archive(archive: Path, root: Path, *, sha256: str | None = None) -> Path:
    """Extract ``archive`` (a .tar.gz) under ``root/<sha256>/`` once and return that directory.

    ``sha256`` is the archive's, when the caller has it already (the build's result).

    Refuses members with absolute paths, ``..`` components, links that point outside the
    directory, and anything that is not a regular file, directory or in-tree link.
    """
    if not archive.is_file():
        raise PlatformError(f"{archive}: archive not found")
    dest = root / (sha256 or file_sha256(archive))
    if (dest / _COMPLETE).is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, member)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.10.12: our own checks above are the guard
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise PlatformError(f"{archive}: cannot extract: {err}") from None
        if not (tmp / MANIFEST).is_file():
            raise PlatformError(f"{archive}: no {MANIFEST} at the top of the archive")
        (tmp / _COMPLETE).write_text(archive.name)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    where = f"{archive}: member {member.name!r}"
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        raise PlatformError(f"{where} has an absolute path")
    if ".." in name.parts:
        raise PlatformError(f"{where} has a '..' component")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        base = name.parent if member.issym() else PurePosixPath()
        if target.is_absolute() or _escapes(base / target):
            raise PlatformError(f"{where} links outside the archive ({member.linkname!r})")
    elif not (member.isfile() or member.isdir()):
        raise PlatformError(f"{where} is not a regular file, directory or link")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
