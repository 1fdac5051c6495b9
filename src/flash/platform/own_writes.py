"""The project's own writes, for ``flash run``'s loop: a file that its web app or a worker
writes in the project whenever it starts (a log, a SQLite database) is a change, which
rebuilds and restarts them, which write it again, for ever. Told from a user's edits by
when it is written: right after each reload restarted what serves, the same files and
nothing else, several reloads in a row (a save lands there by chance, not every time)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPEATS", "SETTLE_S", "OwnWrites", "Restart"]

# A file written this long after what a reload restarted was ready is still its doing (a
# worker, or a web app's first request, writing a little after).
SETTLE_S = 2.0
# This many reloads in a row for such writes of the same files: the project's own.
REPEATS = 3


@dataclass(frozen=True)
class Restart:
    """When a reload restarted what serves: ``began`` once its build was done, ``settled``
    once what it started was ready or failed (None: still starting). Wall clock, as the
    times of files are."""

    began: float
    settled: float | None

    def wrote(self, changed: Iterable[Path]) -> bool:
        """Whether ``changed`` were all written (those still there, one at least) from this
        restart's beginning to SETTLE_S after it settled."""
        times = [written for written in map(_written, changed) if written is not None]
        end = math.inf if self.settled is None else self.settled + SETTLE_S
        return bool(times) and all(self.began <= written <= end for written in times)


# What the build reads as code or as its dependencies: a user's edit, whenever it comes
# (a project writes its logs and data as it starts, not its modules).
_SOURCE_SUFFIXES = frozenset({".py", ".pyi", ".whl"})
_SOURCE_NAMES = frozenset({"requirements.txt", "pyproject.toml", "uv.lock"})


def _is_source(path: Path) -> bool:
    return path.suffix in _SOURCE_SUFFIXES or path.name in _SOURCE_NAMES


def _written(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None  # gone: a database's journal, say


class OwnWrites:
    """The files found to be the project's own writes (``files``), from each batch of
    changes and what the reload before it restarted."""

    def __init__(self) -> None:
        self.files: frozenset[Path] = frozenset()
        self._repeated: frozenset[Path] = frozenset()  # the files of the repeats so far
        self._repeats = 0

    def found(self, changed: frozenset[Path], last: Restart | None) -> frozenset[Path]:
        """Note the batch ``changed``, ``last`` the restart of the reload before it (None:
        it restarted nothing); the files it shows to be the project's own, else none."""
        if last is None or any(map(_is_source, changed)) or not last.wrote(changed):
            self._repeated, self._repeats = frozenset(), 0
            return frozenset()
        self._repeats = self._repeats + 1 if changed == self._repeated else 1
        self._repeated = changed
        if self._repeats < REPEATS:
            return frozenset()
        self.files |= changed
        self._repeated, self._repeats = frozenset(), 0
        return changed
