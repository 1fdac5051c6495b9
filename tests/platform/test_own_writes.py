"""flash.platform.own_writes: which changes `flash run` takes for the project's own writes."""

from __future__ import annotations

import os
from pathlib import Path

from flash.platform.own_writes import SETTLE_S, OwnWrites, Restart


def _write(path: Path, at: float) -> frozenset[Path]:
    """Write ``path`` as if at ``at`` (its modification time); the batch that shows it."""
    path.write_text(f"written at {at}\n")
    os.utime(path, (at, at))
    return frozenset({path})


def test_only_a_file_written_as_each_restart_starts_is_the_projects_own(tmp_path: Path) -> None:
    log, worker = tmp_path / "app.log", tmp_path / "worker.py"
    own = OwnWrites()
    # Saved while each reload built (before it restarted anything), however often: edits.
    for began in (100.0, 200.0, 300.0, 400.0):
        assert not own.found(_write(worker, began - 1), Restart(began, began + 5))
    # Written as what the reload before restarted starts, or soon after it is ready, the
    # same file and nothing else, reloads in a row: the project's own at the third; a save
    # long after a restart was ready is an edit, which breaks the run.
    assert not own.found(_write(log, 501), Restart(500, None))
    assert not own.found(_write(log, 601), Restart(600, None))
    assert not own.found(_write(worker, 700 + 5 + SETTLE_S + 1), Restart(700, 705))
    assert not own.found(_write(log, 801), Restart(800, None))
    assert not own.found(_write(log, 901), Restart(900, None))
    assert own.found(_write(log, 1006), Restart(1000, 1005)) == {log}
    assert own.files == {log}
    # Another file among them is no such repeat.
    assert not own.found(_write(worker, 1101) | _write(log, 1101), Restart(1100, None))
    assert not own.found(frozenset({tmp_path / "gone.db-journal"}), Restart(1200, None))


def test_source_the_build_reads_as_code_is_never_the_projects_own(tmp_path: Path) -> None:
    # A user saving a module quickly after each reload (each save in the window a restart
    # leaves) had that module muted: its next saves never reloaded.
    own = OwnWrites()
    for name in ("worker.py", "requirements.txt", "pyproject.toml"):
        path = tmp_path / name
        for began in (100.0, 200.0, 300.0, 400.0):
            assert not own.found(_write(path, began + 1), Restart(began, began + 5)), name
    assert own.files == frozenset()
