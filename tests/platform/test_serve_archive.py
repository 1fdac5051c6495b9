"""``flash serve``: safe archive extraction, serving, and a clean stop on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
import runpod
from tests.helpers import PLATFORM_AT, CollectedProcess, group_alive, group_members, wait_for
from tests.platform.apps import BASIC, LOOPS, use_client, write_app

from flash.platform import archive as archive_module
from flash.platform.archive import extract_archive, extract_for_serving, prune_copies
from flash.platform.local import LocalPlatform
from flash.platform.manifest import PlatformError


def _tar(path: Path, app: Path | None = None, extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if app is not None:
            for item in sorted(app.rglob("*")):
                tar.add(item, arcname=item.relative_to(app).as_posix(), recursive=False)
        for info in extra or []:
            data = b"x" if info.isfile() else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "link", "message"),
    [
        ("../evil.py", tarfile.REGTYPE, "", "'..' component"),
        ("/etc/evil.py", tarfile.REGTYPE, "", "absolute path"),
        ("escape", tarfile.SYMTYPE, "../../outside", "links outside the archive"),
        ("abslink", tarfile.SYMTYPE, "/etc/passwd", "links outside the archive"),
        ("fifo", tarfile.FIFOTYPE, "", "not a regular file"),
    ],
)
def test_unsafe_archive_members_are_refused(
    tmp_path: Path, name: str, kind: bytes, link: str, message: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    archive = _tar(tmp_path / "bad.tar.gz", extra=[info])
    with pytest.raises(PlatformError, match=message) as caught:
        extract_archive(archive, tmp_path / "serve")
    assert name in str(caught.value)
    assert not (tmp_path / "evil.py").exists()


def test_extraction_is_content_addressed_and_reused(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    archive = _tar(tmp_path / "a.tar.gz", app)
    first = extract_archive(archive, tmp_path / "serve")
    assert (first / "flash_manifest.json").is_file()
    (first / "marker").write_text("still here")
    assert extract_archive(archive, tmp_path / "serve") == first
    assert (first / "marker").read_text() == "still here"


def test_archive_without_manifest_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("readme.txt")
    archive = _tar(tmp_path / "x.tar.gz", extra=[info])
    with pytest.raises(PlatformError, match=r"no flash_manifest\.json"):
        extract_archive(archive, tmp_path / "serve")


def _serve_in_subprocess(archive: Path, state: Path, **popen: Any) -> CollectedProcess:
    """`flash serve ARCHIVE` on any free port in a child process, its output collected."""
    code = "import typer; from flash.cli.serve import serve; typer.run(serve)"
    args = [str(archive), "--port", "0", "--state-dir", str(state)]
    return CollectedProcess([sys.executable, "-c", code, *args], **popen)


def _serve_basic_app(tmp_path: Path, **popen: Any) -> tuple[CollectedProcess, int]:
    """`flash serve` of a one-endpoint archive in a child process, once it serves; and the
    pid of the worker that ran a first job (its process group holds what it started)."""
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    archive = _tar(tmp_path / "app.tar.gz", app)
    served = _serve_in_subprocess(archive, tmp_path / "state", **popen)
    try:
        runpod.api_key = "any"
        runpod.endpoint_url_base = f"{served.printed_url(PLATFORM_AT)}/v2"
        worker_pid = runpod.Endpoint("basic").run_sync({"action": "pid"}, timeout=60)["pid"]
    except BaseException:
        served.proc.kill()
        raise
    return served, int(worker_pid)


def test_serve_runs_an_archive_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    served, worker_pid = _serve_basic_app(tmp_path)
    try:
        served.proc.send_signal(signal.SIGTERM)
        assert served.exit_code(30) == 0, served.text()
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    assert "basic" in served.text() and "/v2/basic" in served.text()  # the endpoints table
    assert not group_alive(worker_pid)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_killed_platform_leaves_no_worker_process_behind(tmp_path: Path, loop: str) -> None:
    # SIGKILL gives the platform no chance to stop its workers. They must still go, with
    # what they started (the runpod SDK's loop forks a heartbeat process in each worker).
    served, worker_pid = _serve_basic_app(tmp_path, env={**os.environ, "FLASH_WORKER_LOOP": loop})
    proc = served.proc
    try:
        if loop == "runpod":
            wait_for(lambda: len(group_members(worker_pid)) > 1, 30, "the SDK's heartbeat")
        proc.kill()
        proc.wait(30)
        wait_for(lambda: not group_alive(worker_pid), 30, "every worker process to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in group_members(worker_pid):
            os.kill(pid, signal.SIGKILL)  # a failed run must not leak them into later tests


def test_serve_reports_a_missing_archive(tmp_path: Path) -> None:
    refused = _serve_in_subprocess(tmp_path / "nope.tar.gz", tmp_path)
    assert refused.exit_code() == 1
    assert "nope.tar.gz: archive not found" in refused.text()
    # No signing key was made for it: a stray key would sign later calls from below here.
    assert not (tmp_path / "secrets").exists()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _copies(serve_root: Path) -> set[str]:
    return {p.name for p in serve_root.iterdir() if p.is_dir() and not p.name.startswith(".")}


def test_replaced_copies_are_removed_and_the_served_one_stays(tmp_path: Path) -> None:
    state = tmp_path / "state"
    archives = {
        # Different settings make different archives, so different copies.
        name: _tar(tmp_path / f"{name}.tar.gz", write_app(tmp_path / name, {"basic": (BASIC, cfg)}))
        for name, cfg in {
            "first": {"workersMax": 1},
            "second": {"workersMax": 2},
            "third": {"workersMax": 3},
        }.items()
    }
    platform = LocalPlatform(state, echo=None)
    platform.start()
    try:
        url = f"{platform.url}/v2/basic"
        for name in ("first", "second", "third"):
            platform.load_copy(extract_for_serving(archives[name], platform.copies_root))
            job = requests.post(f"{url}/runsync", json={"input": {"value": name}}, timeout=60)
            assert job.json()["output"] == {"echo": name}  # a worker ran in this copy
        served = platform.app_dir
        assert served is not None
        wait_for(lambda: _copies(state / "serve") == {served.name}, 30, "the replaced copies to go")
        job = requests.post(f"{url}/runsync", json={"input": {"value": 1}}, timeout=60)
        assert job.json()["output"] == {"echo": 1}
    finally:
        platform.stop()


def test_a_second_platform_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    # Both would share the job store, and each would rerun the jobs the other is running.
    state = tmp_path / "state"
    archive = _tar(tmp_path / "app.tar.gz", write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    first = _serve_in_subprocess(archive, state)
    try:
        health = f"{first.printed_url(PLATFORM_AT)}/v2/basic/health"
        second = LocalPlatform(state, echo=None)
        with pytest.raises(PlatformError, match=r"another Flash platform .* is serving from"):
            second.start()
        # `flash serve` says so too, and exits.
        refused = _serve_in_subprocess(archive, state)
        assert refused.exit_code() != 0 and "another Flash platform" in refused.text()
        assert _answers(health)  # the first serves on
    finally:
        first.proc.send_signal(signal.SIGTERM)
        first.exit_code(30)
    again = LocalPlatform(state, echo=None)  # free once the first has stopped
    again.start()
    again.stop()


def test_a_removal_cut_short_leaves_a_copy_that_is_extracted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    archive = _tar(tmp_path / "app.tar.gz", app)
    root = tmp_path / "serve"
    copy = extract_for_serving(archive, root)
    copy.release()
    handler = copy.path / "handler_basic.py"

    def dies_half_way(path: Path, ignore_errors: bool = False) -> None:
        handler.unlink()  # some files gone, then the pruning process is killed
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(archive_module.shutil, "rmtree", dies_half_way)
        with pytest.raises(KeyboardInterrupt):
            prune_copies(root)
    again = extract_for_serving(archive, root)
    try:
        assert again.path == copy.path and handler.is_file()  # whole again, not reused as is
    finally:
        again.release()


def test_a_copy_whose_deploy_fails_is_let_go_once(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    archive = _tar(tmp_path / "app.tar.gz", app)
    platform = LocalPlatform(tmp_path / "state", echo=None)
    platform.start()
    try:
        assert platform.supervisor is not None

        def refuse(*_: object) -> None:
            raise RuntimeError("deploy refused")

        platform.supervisor.deploy = refuse  # type: ignore[method-assign]
        copy = extract_for_serving(archive, platform.copies_root)
        with pytest.raises(RuntimeError, match="deploy refused"):
            platform.load_copy(copy)
        # The descriptor number the copy's lock had is free again: a file opened now may get
        # it, and must keep working after the platform has tidied its copies.
        with open(tmp_path / "unrelated", "w") as unrelated:
            wait_for(lambda: not copy.path.exists(), 30, "the unused copy to be removed")
            unrelated.write("still open")
            unrelated.flush()
            os.fstat(unrelated.fileno())
    finally:
        platform.stop()


def test_a_copy_whose_deploy_fails_half_way_stays_while_its_workers_run(tmp_path: Path) -> None:
    # "a" is deployed (its worker starts in the copy), then "b" fails: the copy is the
    # platform's now, and no pruning may remove it under that worker.
    app = write_app(tmp_path / "app", {"a": (BASIC, {"workersMin": 1}), "b": (BASIC, {})})
    archive = _tar(tmp_path / "app.tar.gz", app)
    platform = LocalPlatform(tmp_path / "state", echo=None)
    platform.start()
    try:
        assert platform.supervisor is not None
        deploy = platform.supervisor.deploy

        def fails_for_b(spec: Any, app_dir: Path) -> None:
            if spec.name == "b":
                raise RuntimeError("deploy refused")
            deploy(spec, app_dir)

        platform.supervisor.deploy = fails_for_b  # type: ignore[method-assign]
        copy = extract_for_serving(archive, platform.copies_root)
        with pytest.raises(RuntimeError, match="deploy refused"):
            platform.load_copy(copy)
        use_client(platform, "any")
        answer = runpod.Endpoint("a").run_sync({"action": "echo", "value": 1}, timeout=60)
        assert answer == {"echo": 1}  # a worker runs in the copy
        prune_copies(platform.copies_root)  # as any pruner would
        assert copy.path.is_dir()
    finally:
        platform.stop()


@pytest.mark.parametrize("port", [99999, -1])
def test_a_port_out_of_range_is_a_platform_error(tmp_path: Path, port: int) -> None:
    # The CLI checks its options first; an API caller gets the same one-line error kind
    # (not an OverflowError traceback), and the state folder is free again.
    with pytest.raises(PlatformError, match=f"cannot listen on 127.0.0.1:{port}"):
        LocalPlatform(tmp_path / "state", port=port).start()
    platform = LocalPlatform(tmp_path / "state", port=0)
    platform.start()
    platform.stop()


@pytest.mark.parametrize("workers", [0, -1])
def test_a_platform_of_no_workers_is_refused_before_any_state(tmp_path: Path, workers: int) -> None:
    # 0 used to mean every core, and -1 one worker.
    with pytest.raises(PlatformError, match=f"max_workers must be at least 1, got {workers}"):
        LocalPlatform(tmp_path / "state", max_workers=workers)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("key", ["", " ", "key\n"])
def test_an_api_key_no_caller_could_send_is_refused_before_any_state(
    tmp_path: Path, key: str
) -> None:
    # An empty key let every request in that sent no Authorization header.
    with pytest.raises(PlatformError, match=r"^api_key (is empty|begins or ends with whitespace)"):
        LocalPlatform(tmp_path / "state", api_key=key)
    assert not (tmp_path / "state").exists()


def test_a_file_that_is_no_archive_is_one_line_naming_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not an archive\n")
    with pytest.raises(PlatformError) as raised:
        extract_archive(readme, tmp_path / "serve")
    assert (
        str(raised.value) == f"{readme}: not an archive `flash build` writes (a tar file, gzipped)"
    )
