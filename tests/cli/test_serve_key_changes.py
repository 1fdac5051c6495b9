"""`flash serve` (and `flash run`) follow the key file they sign with: a new key written
there while they serve (a deleted file that another `flash build` made again) is the key of
their new workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.test_cli_fixes import _script_call
from tests.cli.test_run_devloop import FlashRun
from tests.cli.test_run_first_build import api_base
from tests.helpers import PLATFORM_AT, CollectedProcess, wait_for

from flash.cli.init import write_starter

SERVING = "Pickled calls are signed"  # the last line once it serves
NEW_KEY = "holds a new signing key"


class FlashServe(CollectedProcess):
    """`flash serve` of ``archive`` from ``cwd``, its output collected as it comes."""

    def __init__(self, archive: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if k not in ("FLASH_SIGNING_KEY", "COLUMNS")}
        super().__init__(
            [sys.executable, "-m", "flash.cli", "serve", str(archive), "--port", "0"],
            cwd=cwd,
            env={**base, **(env or {}), "NO_COLOR": "1"},
        )

    def url(self) -> str:
        self.wait_for_output(SERVING, timeout=120)
        return self.printed_url(PLATFORM_AT)


def _build(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flash.cli", "build", str(project)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _built_starter(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "proj"
    write_starter(project)
    _build(project)
    return project, project / ".flash" / "secrets" / "signing_key"


def _call_ok(project: Path, url: str, **env: str) -> None:
    called = _script_call(project, url, **env)
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "['a b']", called.stdout


def test_serve_takes_up_a_new_key_that_another_build_wrote(tmp_path: Path) -> None:
    project, key_file = _built_starter(tmp_path)
    old = key_file.read_text().strip()
    serve = FlashServe(project / ".flash" / "archive.tar.gz", cwd=project)
    try:
        url = serve.url()
        _call_ok(project, url)  # a worker with the old key is up now, idle
        # The key deleted; another process's build makes a new one while serve goes on.
        shutil.rmtree(key_file.parent)
        _build(project)
        new = key_file.read_text().strip()
        assert new != old
        # A script reads the new key from the file: the workers must check with it.
        _call_ok(project, url)
        _call_ok(project, url)
        wait_for(lambda: NEW_KEY in serve.text(), 30, f"{NEW_KEY!r} in:\n{serve.text()}")
    finally:
        serve.end()
    output = serve.text()
    assert output.count(NEW_KEY) == 1, output  # said once
    assert str(key_file) in output, output
    assert old not in output and new not in output  # never the key itself


def test_serve_given_flash_signing_key_keeps_it_whatever_the_key_file_holds(
    tmp_path: Path,
) -> None:
    project, key_file = _built_starter(tmp_path)
    given = os.urandom(32).hex()
    serve = FlashServe(
        project / ".flash" / "archive.tar.gz", cwd=project, env={"FLASH_SIGNING_KEY": given}
    )
    try:
        url = serve.url()
        _call_ok(project, url, FLASH_SIGNING_KEY=given)
        shutil.rmtree(key_file.parent)
        _build(project)
        assert key_file.read_text().strip() != given
        _call_ok(project, url, FLASH_SIGNING_KEY=given)
        refused = _script_call(project, url)  # the file's key is not the one served
        assert refused.returncode != 0 and "SignatureRejected" in refused.stderr, refused.stderr
    finally:
        serve.end()
    output = serve.text()
    assert NEW_KEY not in output, output
    assert given not in output


def test_run_takes_up_a_new_key_written_to_its_key_file_and_keeps_it(tmp_path: Path) -> None:
    # As flash serve does. (A key file deleted is written again with the served key by
    # flash run, see test_cli_fixes: no build of its own makes a new one.)
    project = tmp_path / "proj"
    write_starter(project)
    key_file = project / ".flash" / "secrets" / "signing_key"
    run = FlashRun(project)
    try:
        run.wait_for_output("Scripts reach these endpoints", timeout=120)
        url = api_base(run.text())
        old = key_file.read_text().strip()
        _call_ok(project, url)
        new = os.urandom(32).hex()
        written = key_file.with_name("new_key")
        written.write_text(new + "\n")
        written.chmod(0o600)
        os.replace(written, key_file)  # as a tool writes a file: whole, in one step
        # Looked at twice a second: a script started at once may beat that to its worker.
        wait_for(lambda: NEW_KEY in run.text(), 15, f"{NEW_KEY!r} in:\n{run.text()}")
        _call_ok(project, url)
        worker = project / "workers" / "cpu_worker.py"
        run.edit(worker, worker.read_text() + "\n# edited\n", "Reloaded")
        assert key_file.read_text().strip() == new  # not the old one written back
        _call_ok(project, url)
    finally:
        run.end()
    output = run.text()
    assert output.count(NEW_KEY) == 1, output
    assert old not in output and new not in output
