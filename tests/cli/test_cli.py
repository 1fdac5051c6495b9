"""The `flash` command as users run it: a real process, its exit code and its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The sources next to these tests, not whichever checkout the interpreter has installed.
SRC = str(Path(__file__).resolve().parents[2] / "src")


def flash(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flash.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": SRC},
    )


def test_init_then_build_prints_summary(tmp_path: Path) -> None:
    init = flash("init", "demo", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "demo" / "workers" / "classifier.py").is_file()

    built = flash("build", "demo", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    for word in ("gpu-worker", "cpu-worker", "classifier", "sha256", "archive.tar.gz"):
        assert word in built.stdout

    again = flash("build", "demo", "--json", cwd=tmp_path)
    summary = json.loads(again.stdout)
    assert summary["skipped"] is True
    assert summary["functions"] == 5
    assert summary["endpoints"]["cpu-worker"] == [
        "workers.cpu_worker.embed_documents",
        "workers.cpu_worker.preprocess",
    ]


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert flash("init", "p", cwd=tmp_path).returncode == 0
    again = flash("init", "p", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert flash("init", "p", "--force", cwd=tmp_path).returncode == 0


def test_user_error_is_one_message_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from flash import remote, LiveServerless\n\n"
        "@remote(LiveServerless(name='g', workersMin=5, workersMax=1))\n"
        "def f():\n    pass\n"
    )
    failed = flash("build", ".", cwd=tmp_path)
    assert failed.returncode == 1
    assert "app.py:3" in failed.stderr and "workersMin" in failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout
    verbose = flash("build", ".", "--verbose", cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_project_without_remote_functions_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("x = 1\n")
    failed = flash("build", ".", cwd=tmp_path)
    assert failed.returncode == 1 and "no @remote" in failed.stderr
    assert not (tmp_path / ".flash" / "archive.tar.gz").exists()


def test_bad_build_options_are_one_message_without_traceback(tmp_path: Path) -> None:
    assert flash("init", "p", cwd=tmp_path).returncode == 0
    assert flash("build", "p", cwd=tmp_path).returncode == 0
    key = (tmp_path / "p" / ".flash" / "secrets" / "signing_key").read_bytes()
    (tmp_path / "p" / ".flash" / "old.tar.gz").mkdir()
    cases = [
        (("--max-size", "nan"), "--max-size must be a positive number"),
        (("--max-size", "inf"), "--max-size must be a positive number"),
        (("--max-size", "0"), "--max-size must be a positive number"),
        (("-o", "old.tar.gz"), "existing folder"),
        (("-o", "flash_manifest.json"), "must end in .tar.gz or .tgz"),
        (("-o", "secrets"), "must end in .tar.gz or .tgz"),
        (("-o", "jobs.db"), "must end in .tar.gz or .tgz"),  # a platform's job store
    ]
    for args, message in cases:
        failed = flash("build", "p", *args, cwd=tmp_path)
        assert failed.returncode == 1, args
        assert message in failed.stderr and "Traceback" not in failed.stderr, args
    assert (tmp_path / "p" / ".flash" / "secrets" / "signing_key").read_bytes() == key


def test_init_where_a_file_is_in_the_way_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "workers").write_text("also mine")
    for target, blocker in (("afile", "afile"), ("afile/sub", "afile"), ("proj", "proj/workers")):
        for extra in ((), ("--force",)):
            failed = flash("init", target, *extra, cwd=tmp_path)
            assert failed.returncode == 1
            assert failed.stderr.strip() == (
                f"Error: {blocker} is a file, not a folder; choose another directory"
            )
    assert (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["workers"]


def test_a_port_out_of_range_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    for args, option, port in (
        (("serve", "archive.tar.gz", "--port", "99999"), "--port", 99999),
        (("serve", "archive.tar.gz", "--port", "-1"), "--port", -1),
        (("run", "app", "--port", "65536"), "--port", 65536),
        (("run", "app", "--app-port", "70000"), "--app-port", 70000),
    ):
        failed = flash(*args, cwd=tmp_path)
        assert failed.returncode == 1
        assert failed.stderr.strip() == (
            f"Error: {option} must be a port number from 0 to 65535, got {port}"
        )
    assert not (tmp_path / ".flash").exists()  # refused before any state was made
