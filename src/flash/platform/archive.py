"""Safe extraction of a build archive into a private, content-addressed directory.

Copies live under ``root/<sha256>/`` (``.flash/serve``). A process serving a copy holds a
shared ``flock`` on ``root/<sha256>.lock``; ``prune_copies`` removes every copy whose lock
nobody holds, so a copy is never removed under a process that extracted it and still uses
it, whichever process prunes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from flash.build.archive import file_sha256
from flash.build.target import (
    WORKER_PLATFORM,
    builds_for_this_machine,
    minor_version,
    platform_for_this_machine,
    this_machine,
)
from flash.platform.manifest import PlatformError
from flash.runtime.protocol import MANIFEST_FILENAME

_COMPLETE = ".flash-extracted"
_LOCK_SUFFIX = ".lock"
# Held (exclusive) while an archive is extracted; never removed.
_EXTRACT_LOCK = ".extracting.lock"
# Unfinished extractions are named after their sha, so pruning can tell whose they are.
_TMP_PREFIX = ".extract-"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class ServedCopy:
    """An extracted copy and the open descriptor of its shared lock: the copy stays until
    ``release``. Whoever holds it releases it once; a platform that ``adopt``s it releases
    it when no worker runs there any more."""

    path: Path
    lock_fd: int
    _adopted: bool = False
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        """Let the copy go; later calls do nothing (never close a descriptor twice)."""
        self._close(adopted_too=True)

    def adopt(self) -> bool:
        """Take the lock over (the platform does); False when it was released already."""
        with self._guard:
            self._adopted = self.lock_fd >= 0
            return self._adopted

    def release_unless_adopted(self) -> None:
        """``release``, for a caller whose hand-over may or may not have happened."""
        self._close(adopted_too=False)

    def _close(self, *, adopted_too: bool) -> None:
        with self._guard:  # checked and taken at once: adopt() may run on another thread
            if self._adopted and not adopted_too:
                return
            fd, self.lock_fd = self.lock_fd, -1
        if fd >= 0:
            os.close(fd)


def copies_dir(state_dir: Path) -> Path:
    """Where the platform whose state folder is ``state_dir`` keeps its extracted copies."""
    return state_dir / "serve"


def extract_for_serving(archive: Path, root: Path, *, sha256: str | None = None) -> ServedCopy:
    """``extract_archive``, holding the copy's lock from before it is looked at."""
    _require_file(archive)
    sha256 = sha256 or file_sha256(archive)
    lock_fd = _hold(root, sha256)
    try:
        return ServedCopy(extract_archive(archive, root, sha256=sha256), lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def prune_copies(root: Path) -> list[Path]:
    """Remove every copy under ``root`` that no process holds; the copies removed."""
    if not root.is_dir():
        return []
    return [root / sha for sha in sorted(_copy_shas(root)) if _remove_if_unheld(root, sha)]


def extract_archive(archive: Path, root: Path, *, sha256: str | None = None) -> Path:
    """Extract ``archive`` (a .tar.gz) under ``root/<sha256>/`` once and return that directory.

    ``sha256`` is the archive's, when the caller has it already (the build's result). This
    takes no copy lock: under a platform's ``copies_dir`` use ``extract_for_serving``, or the
    platform removes the copy as unused.

    Refuses members with absolute paths, ``..`` components, links that point outside the
    directory, and anything that is not a regular file, directory or in-tree link.
    """
    _require_file(archive)
    sha256 = sha256 or file_sha256(archive)
    dest = root / sha256
    if (dest / _COMPLETE).is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    # One extraction at a time in this folder, across processes: a copy without its marker
    # is then never one that another process is about to finish.
    with _exclusive(root / _EXTRACT_LOCK):
        if (dest / _COMPLETE).is_file():
            return dest  # another process extracted the same archive meanwhile
        _extract(archive, root, sha256)
    return dest


def target_mismatch(app_dir: Path) -> str | None:
    """A warning when the build in ``app_dir`` was made for another Python or platform than
    this machine's (on macOS, and on a Linux that is not x86-64, the default build is one):
    its vendored packages with compiled code may not import here. None when it was made for
    this machine, or its manifest names no target."""
    target = _built_for(app_dir)
    if target is None:
        return None
    python, built_platform = target
    if builds_for_this_machine(python, built_platform):
        return None
    host = this_machine()
    workers = " (RunPod's Linux x86-64 workers)" if built_platform == WORKER_PLATFORM else ""
    return (
        f"archive built for Python {python} on {built_platform}{workers}; this machine runs "
        f"Python {host.python} on {host.system} {host.processor}, so its vendored packages "
        "with compiled code may not import here (pure-Python ones do); "
        + _how_to_serve_here(python, built_platform)
    )


def _built_for(app_dir: Path) -> tuple[str, str] | None:
    """The Python version and platform the manifest in ``app_dir`` says it was built for."""
    try:
        manifest = json.loads((app_dir / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # reading the manifest for serving reports that
    target = manifest.get("target") if isinstance(manifest, dict) else None
    if not isinstance(target, dict):
        return None
    python, built_platform = target.get("python_version"), target.get("platform")
    if not isinstance(python, str) or not isinstance(built_platform, str):
        return None
    return python, built_platform


def _how_to_serve_here(python: str, built_platform: str) -> str:
    """What builds an archive whose packages import here: only `flash build` takes a target."""
    own_platform = platform_for_this_machine()
    if own_platform is None:
        return "Flash's workers run Linux: serve it on Linux to import them as they would"
    host = this_machine()
    options = []
    if minor_version(python) != host.python:
        options.append(f"--python-version {host.python}")
    if not builds_for_this_machine(host.python, built_platform):
        options.append(f"--platform {own_platform}")
    return f"to serve a build for this machine: flash build {' '.join(options)}, then serve that"


def _extract(archive: Path, root: Path, sha256: str) -> None:
    dest = root / sha256
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{sha256}-", dir=root))
    try:
        try:
            with _open_tar(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, member)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.10.12: our own checks above are the guard
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise PlatformError(f"{archive}: cannot extract: {err}") from None
        if not (tmp / MANIFEST_FILENAME).is_file():
            raise PlatformError(f"{archive}: no {MANIFEST_FILENAME} at the top of the archive")
        (tmp / _COMPLETE).write_text(archive.name)
        if dest.exists():
            shutil.rmtree(dest)  # left without its marker: a removal or extraction cut short
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except tarfile.ReadError:  # its message lists every method tried, one per line
        raise PlatformError(
            f"{archive}: not an archive `flash build` writes (a tar file, gzipped)"
        ) from None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing lets the lock go


def check_archive(archive: Path) -> None:
    """Raise PlatformError unless ``archive`` is a gzipped tar file (only its first entry is
    read): checked before anything is written for it (a key, a state folder, a copy)."""
    _require_file(archive)
    try:
        with _open_tar(archive) as tar:
            tar.next()
    except (tarfile.TarError, EOFError, OSError) as exc:  # cut short, or not gzip after all
        raise PlatformError(f"{archive}: cannot read it as an archive: {exc}") from None


def _require_file(archive: Path) -> None:
    if archive.is_dir():
        raise PlatformError(
            f"{archive}: a folder, not an archive: serve the archive `flash build` writes "
            f"({archive / '.flash' / 'archive.tar.gz'}), or build and serve the project "
            f"with `flash run {archive}`"
        )
    if not archive.is_file():
        raise PlatformError(f"{archive}: archive not found")


def _hold(root: Path, sha256: str) -> int:
    """A descriptor holding a shared lock on the copy's lock file."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f"{sha256}{_LOCK_SUFFIX}"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _is_file_at(fd, lock):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # a pruner removed this lock file while we waited: lock the new one


def _remove_if_unheld(root: Path, sha256: str) -> bool:
    lock = root / f"{sha256}{_LOCK_SUFFIX}"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live process serves it (or is extracting it)
        if not _is_file_at(fd, lock):
            return False  # another pruner got there first
        # The marker goes first: a removal cut short leaves a copy that is re-extracted, never
        # one that looks complete with files missing.
        (root / sha256 / _COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(root / sha256, ignore_errors=True)
        for unfinished in root.glob(f"{_TMP_PREFIX}{sha256}-*"):
            shutil.rmtree(unfinished, ignore_errors=True)
        lock.unlink()
        return True
    finally:
        os.close(fd)


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one unlinked since it was opened)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)


def _copy_shas(root: Path) -> set[str]:
    """The archives with a copy, a lock or an unfinished extraction under ``root``."""
    shas = set()
    for entry in root.iterdir():
        name = entry.name.removesuffix(_LOCK_SUFFIX)
        if name.startswith(_TMP_PREFIX):
            name = name[len(_TMP_PREFIX) :].split("-", 1)[0]
        if _SHA256.fullmatch(name):
            shas.add(name)
    return shas


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
