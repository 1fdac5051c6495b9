"""Stage 7: a deterministic, atomically written ``.tar.gz``.

Same entries in, same bytes out: sorted names, one fixed mtime, owner 0, normalised modes,
and a gzip header without a timestamp or file name.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flash.build.errors import BuildError

# 1980-01-01: the earliest time zip can hold too, a common choice for reproducible builds.
DEFAULT_MTIME = 315532800


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its content comes from ``source`` or ``data``."""

    name: str
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        try:
            return self.source.stat().st_size
        except FileNotFoundError:
            raise SourceChanged(self.source) from None


class SourceChanged(BuildError):
    """An entry's file changed after the build listed it: deleted, or cut short while the
    archive was being written (its entry's size taken, its bytes not all there)."""

    def __init__(
        self, source: Path, what: str = "deleted while the project was being built"
    ) -> None:
        self.source = source
        super().__init__(f"{source}: {what}")


class _Packed:
    """A source file as tarfile reads it, its entry's size taken: tarfile asks for exactly
    that many bytes, so a read that comes back short is the file cut short since (a log
    rotated, an editor saving), not a bare 'unexpected end of data'."""

    def __init__(self, fh: BinaryIO, source: Path) -> None:
        self._fh = fh
        self._source = source

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if size > 0 and len(data) < size:
            raise SourceChanged(self._source, "cut short while the archive was being written")
        return data


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    sha256: str
    size: int
    files: int


# 9999-12-31T23:59:59Z: a larger value is a mistake (milliseconds, say) that no datetime
# can hold.
MAX_MTIME = 253402300799


def source_date_epoch() -> int:
    """The archive's mtime: ``SOURCE_DATE_EPOCH`` when set (empty counts as unset), else
    DEFAULT_MTIME. Anything but plain digits is an error, not a silent fallback: whoever sets
    it wants that time in the archive."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return DEFAULT_MTIME
    # Not str.isdigit alone: it accepts "²³", which int() refuses, and other scripts' digits.
    plain = value.isascii() and value.isdigit()
    # Length first: int() refuses strings of over 4300 digits.
    if not plain or len(value.lstrip("0")) > len(str(MAX_MTIME)) or int(value) > MAX_MTIME:
        raise BuildError(
            "SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 UTC, "
            f"digits 0-9 only, at most {MAX_MTIME} (9999-12-31), e.g. 1700000000; "
            f"got {value!r}"
        )
    return int(value)


def write_archive(
    entries: Iterable[Entry],
    dest: Path,
    *,
    mtime: int | None = None,
    check: Callable[[], None] | None = None,
) -> ArchiveInfo:
    """Pack ``entries`` into ``dest``.

    Written to a temporary file and renamed: an error or interruption leaves any previous
    ``dest`` intact and no partial file behind. ``check`` runs once the file is written,
    before it replaces ``dest``: raising, it keeps the previous one.
    """
    mtime = source_date_epoch() if mtime is None else mtime
    ordered = sorted(entries, key=lambda e: e.name)
    _check_unique(ordered)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for entry in ordered:
                    _add(tar, entry, mtime)
            raw.flush()
            os.fsync(raw.fileno())
        if check is not None:
            check()
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return ArchiveInfo(
        path=dest, sha256=file_sha256(dest), size=dest.stat().st_size, files=len(ordered)
    )


def _check_unique(ordered: list[Entry]) -> None:
    """Refuse two entries of one name: a tar keeps both, and which one an extraction (or
    ``flash serve``) gets is nobody's choice."""
    for before, entry in itertools.pairwise(ordered):
        if before.name == entry.name:
            raise BuildError(
                f"the archive would hold two files named {entry.name!r} (the project's, a "
                "generated one or a dependency's): rename or drop one"
            )


def _add(tar: tarfile.TarFile, entry: Entry, mtime: int) -> None:
    info = tarfile.TarInfo(entry.name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.data is not None:
        info.size = len(entry.data)
        info.mode = 0o755 if entry.executable else 0o644
        tar.addfile(info, io.BytesIO(entry.data))
        return
    assert entry.source is not None
    try:
        fh = open(entry.source, "rb")  # noqa: SIM115  - closed below
    except FileNotFoundError:
        raise SourceChanged(entry.source) from None
    with fh:
        stat = os.fstat(fh.fileno())  # the file opened: its size is that file's
        info.size = stat.st_size
        info.mode = 0o755 if (entry.executable or stat.st_mode & 0o111) else 0o644
        tar.addfile(info, _Packed(fh, entry.source))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
