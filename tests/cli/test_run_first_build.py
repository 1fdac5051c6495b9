"""`flash run` whose first build fails: it reports the error and waits for a fix, as dev
servers do; --no-watch still exits."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.cli.test_run import preprocess
from tests.cli.test_run_devloop import FlashRun
from tests.helpers import processes_under, wait_for

from flash.cli.init import write_starter

WAITING = "flash run waits for a change to the project to build again (Ctrl+C stops)"
SERVING = "Scripts reach these endpoints"


def starter_with_a_syntax_error(folder: Path) -> tuple[Path, Path, str]:
    """The starter project in ``folder``/proj whose cpu worker cannot be parsed: the
    project, the worker's file and its good text."""
    project = folder / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    good = worker.read_text()
    worker.write_text("def broken(:\n" + good)
    return project, worker, good


def api_base(output: str) -> str:
    """The FLASH_API_BASE that flash run printed once serving."""
    found = re.search(r"FLASH_API_BASE=(\S+?)\.?\s", output)
    assert found is not None, output
    return found.group(1)


def test_run_waits_after_a_failed_first_build_and_serves_once_fixed(tmp_path: Path) -> None:
    project, worker, good = starter_with_a_syntax_error(tmp_path)
    flash = FlashRun(project)
    try:
        flash.wait_for_output(WAITING)
        assert "Error:" in flash.text() and "cpu_worker.py" in flash.text(), flash.text()
        assert flash.proc.poll() is None, flash.text()

        # While it waits it holds the project: a second flash run is refused at once.
        second = subprocess.run(
            [sys.executable, "-m", "flash.cli", "run", str(project), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second
        assert "another Flash platform" in second.stderr and "collect" not in second.stdout

        # A change that still fails is reported, and it waits on.
        errors = flash.count("Error:")
        flash.edit(worker, "def still_broken(:\n" + good, WAITING)
        assert flash.count("Error:") == errors + 1, flash.text()
        assert flash.proc.poll() is None, flash.text()

        # The fix: it serves, as a good first build would.
        flash.edit(worker, good, SERVING)
        assert preprocess(api_base(flash.text())) == ["a b"]
        flash.proc.send_signal(signal.SIGTERM)
        assert flash.exit_code() == 0, flash.text()
    finally:
        flash.end()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_a_fix_saved_while_the_failed_first_build_runs_is_built(tmp_path: Path) -> None:
    # The worker, imported by the build's import check, says so, then fails once told:
    # the fix is saved while that build runs, before flash run starts watching.
    project = tmp_path / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    good = worker.read_text()
    importing, go = tmp_path / "importing", tmp_path / "go"
    worker.write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(importing)!r}).touch()\n"
        "deadline = time.monotonic() + 60\n"
        f"while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "raise RuntimeError('failed at import')\n" + good
    )
    flash = FlashRun(project)
    try:
        wait_for(importing.exists, 60, f"the build to import the worker:\n{flash.text()}")
        worker.write_text(good)
        go.touch()
        # No other edit: the fix made while it failed is what it builds and serves. The
        # build failed after the fix was saved: it starts over at once, the failure being
        # the file's that changed, rather than report it and wait for the next save.
        flash.wait_for_output(SERVING, timeout=120)
        assert "workers/cpu_worker.py while building: building again" in flash.text()
        assert "failed at import" not in flash.text(), flash.text()
        assert preprocess(api_base(flash.text())) == ["a b"]
    finally:
        flash.end()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_run_waiting_for_a_fix_stops_if_the_project_folder_goes(tmp_path: Path) -> None:
    for gone in ("moved", "deleted"):
        project, _, _ = starter_with_a_syntax_error(tmp_path / gone)
        flash = FlashRun(project)
        try:
            flash.wait_for_output(WAITING)
            if gone == "moved":
                project.rename(tmp_path / gone / "elsewhere")
            else:
                shutil.rmtree(project)
            assert flash.exit_code() == 1, flash.text()
        finally:
            flash.end()
        assert f"the project folder {project} is gone" in flash.text(), flash.text()
        assert "Traceback" not in flash.text(), flash.text()
        assert not project.exists()  # not recreated (its state folder, to wait on)


def test_run_no_watch_exits_after_a_failed_first_build(tmp_path: Path) -> None:
    project, _, _ = starter_with_a_syntax_error(tmp_path)
    command = [sys.executable, "-m", "flash.cli", "run", str(project), "--port", "0"]
    failed = subprocess.run(
        [*command, "--app-port", "0", "--no-watch"], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1, failed
    assert "Error:" in failed.stderr and "cpu_worker.py" in failed.stderr, failed.stderr
    assert WAITING not in failed.stdout + failed.stderr


def test_ctrl_c_while_waiting_for_a_fix_exits_as_interrupted(tmp_path: Path) -> None:
    project, _, _ = starter_with_a_syntax_error(tmp_path)
    flash = FlashRun(project)
    try:
        flash.wait_for_output(WAITING)
    finally:
        flash.signal_group(signal.SIGINT)  # Ctrl-C: the terminal signals the group
    assert flash.exit_code() == 128 + signal.SIGINT, flash.text()
    assert "Interrupted during the wait for a change to build again" in flash.text()
    assert "Traceback" not in flash.text(), flash.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")
