"""`flash build` and `flash run` as users met them: stop signals, help, targets, messages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_cli import ENV, WEB_APP, flash
from tests.cli.test_run_devloop import FlashRun, starter_whose_worker_starts_with
from tests.cli.test_run_first_build import api_base
from tests.helpers import PLATFORM_AT, CollectedProcess, processes_under, wait_for

from flash import __version__ as flash_version
from flash.cli.init import write_starter

SLEEPS_AT_IMPORT = "import time\n\ntime.sleep(600)\n"
SERVING = "Scripts reach these endpoints"


def import_check_running(project: Path) -> list[int]:
    """The build's import check (cwd .flash/.build) is running: the "handlers" stage."""
    return processes_under(project / ".flash" / ".build")


def test_sigterm_during_the_first_builds_import_check_ends_flash_run_at_once(
    tmp_path: Path,
) -> None:
    project = starter_whose_worker_starts_with(tmp_path, SLEEPS_AT_IMPORT)
    run = FlashRun(project)
    try:
        wait_for(lambda: import_check_running(project), 60, "the import check")
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)  # the process alone, not its group
        code = run.exit_code(timeout=30)
        took = time.monotonic() - sent
    finally:
        run.end()
    assert code == 128 + signal.SIGTERM, run.text()
    assert took < 5, f"took {took:.1f} s"
    assert "Interrupted during the first build" in run.text(), run.text()
    assert "Traceback" not in run.text() and "failed to import" not in run.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_sigterm_during_a_reloads_import_check_ends_flash_run_at_once(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    run = FlashRun(project)
    try:
        run.wait_for_output(SERVING)
        worker.write_text(SLEEPS_AT_IMPORT + worker.read_text())
        wait_for(lambda: import_check_running(project), 60, "the reload's import check")
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        code = run.exit_code(timeout=30)
        took = time.monotonic() - sent
    finally:
        run.end()
    assert code == 0, run.text()
    assert took < 5, f"took {took:.1f} s"
    for unwanted in ("Traceback", "Reloaded", "Build failed"):
        assert unwanted not in run.text(), run.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_sigterm_during_flash_builds_import_check_ends_it_without_an_archive(
    tmp_path: Path,
) -> None:
    project = starter_whose_worker_starts_with(tmp_path, SLEEPS_AT_IMPORT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flash.cli", "build", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        wait_for(lambda: import_check_running(project), 60, "the import check")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert took < 5, f"took {took:.1f} s"
    assert "Interrupted during the build" in err, err
    assert not (project / ".flash" / "archive.tar.gz").exists()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_help_shows_the_whole_argument_help_and_no_value_for_flags(tmp_path: Path) -> None:
    for command, verb in (("build", "built"), ("run", "run")):
        shown = flash(command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        text = " ".join(shown.stdout.replace("│", " ").split())  # its lines wrapped in a box
        wanted = "(default: the current folder; refused in a package folder of a project, "
        assert f"{wanted}whose root is to be {verb} instead)" in text, text
        assert "<bool>" not in text and "list[str]" not in text, text
    build_help = flash("build", "--help", cwd=tmp_path).stdout
    assert "--exclude NAME" in " ".join(build_help.split()), build_help
    top = flash("--help", cwd=tmp_path).stdout
    assert "--version" in top and "<bool>" not in top, top


def test_version_is_printed(tmp_path: Path) -> None:
    shown = flash("--version", cwd=tmp_path)
    assert (shown.returncode, shown.stdout) == (0, f"flash {flash_version}\n"), shown


def test_build_refuses_a_platform_workers_do_not_run_naming_the_choices(tmp_path: Path) -> None:
    write_starter(tmp_path / "proj")
    for platform in ("windows", "macos", "x86_64-apple-darwin", "foo"):
        built = flash("build", "proj", "--platform", platform, cwd=tmp_path)
        assert built.returncode == 1, built.stdout + built.stderr
        lines = built.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: --platform"), built.stderr
        assert repr(platform) in lines[0] and "x86_64-manylinux_2_28" in lines[0], lines[0]
        assert "possible values" not in built.stderr and "pyodide" not in built.stderr
        assert not (tmp_path / "proj" / ".flash" / "archive.tar.gz").exists()


ONE_FUNCTION = """from flash import remote, LiveServerless


@remote(LiveServerless(name="g"))
def f(x: int) -> int:
    return x
"""


def test_build_stages_count_one_thing_in_the_singular(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "app.py").write_text(ONE_FUNCTION)
    built = flash("build", "proj", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "1 file\n" in built.stdout and "0 packages" in built.stdout, built.stdout
    assert "1 function on 1 endpoint" in built.stdout, built.stdout
    assert "1 handler checked, 1 function callable with JSON" in built.stdout, built.stdout


EXTRA_ENDPOINT = ONE_FUNCTION.replace('name="g"', 'name="extra"')


def test_a_reload_names_the_endpoints_it_added_and_removed(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    run = FlashRun(project)
    try:
        run.wait_for_output(SERVING)
        url = run.text().split("FLASH_API_BASE=", 1)[1].split()[0].rstrip(".")
        extra = project / "workers" / "extra.py"
        run.edit(extra, EXTRA_ENDPOINT, "Reloaded")
        run.wait_for_output(f"added endpoint extra at {url}/v2/extra")
        seen = run.count("Reloaded")
        extra.unlink()
        run.wait_for_output("Reloaded", seen + 1)
        run.wait_for_output("removed endpoint extra")
    finally:
        run.end()
    assert "added endpoint cpu-worker" not in run.text(), run.text()


def test_run_refuses_a_busy_port_before_building(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "app.py").write_text(ONE_FUNCTION)
    (project / "main.py").write_text(WEB_APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for option, others in (("--port", ["--app-port", "0"]), ("--app-port", ["--port", "0"])):
            failed = flash("run", "proj", option, str(port), *others, cwd=tmp_path)
            assert failed.returncode == 1, failed.stdout + failed.stderr
            error = failed.stderr.strip()
            assert error.startswith("Error: ") and "\n" not in error, error
            assert f"{option} {port}" in error or f"port {port} ({option})" in error, error
            assert "collect" not in failed.stdout, failed.stdout  # no build was started
            assert not (project / ".flash" / "archive.tar.gz").exists()


def test_run_refuses_one_port_for_the_platform_and_the_web_app_before_building(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "app.py").write_text(ONE_FUNCTION)
    (project / "main.py").write_text(WEB_APP)
    # Said whether or not the port is free (here it is taken): no port found free, then
    # taken meanwhile, can make it another error.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        failed = flash("run", "proj", "--port", str(port), "--app-port", str(port), cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.strip() == (
        f"Error: --port and --app-port are both {port}: main.py's web app needs a port of its own"
    )
    assert "collect" not in failed.stdout, failed.stdout  # no build was started


def test_serve_checks_the_archive_and_the_host_before_writing_anything(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_text("not an archive\n")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "app.py").write_text(ONE_FUNCTION)
    assert flash("build", "proj", cwd=tmp_path).returncode == 0
    archive = tmp_path / "proj" / ".flash" / "archive.tar.gz"
    here = tmp_path / "elsewhere"
    here.mkdir()
    cases = [
        (("serve", str(tmp_path / "junk.tar.gz")), "not an archive `flash build` writes"),
        (("serve", str(tmp_path / "proj")), "a folder, not an archive: serve the archive"),
        (("serve", str(archive), "--host", "999.1.1.1", "--port", "0"), "999.1.1.1 port 0"),
    ]
    for args, said in cases:
        failed = flash(*args, cwd=here)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert failed.stderr.startswith("Error: ") and said in failed.stderr, failed.stderr
        # No key made, no copy extracted, no lock left: in the user's folder, nor the project's.
        assert list(here.iterdir()) == [], list(here.iterdir())
    assert not (archive.parent / "serve").exists()


def test_build_names_every_symbolic_link_at_once(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "app.py").write_text(ONE_FUNCTION)
    (project / "copy.py").symlink_to("app.py")
    (project / "gone.txt").symlink_to("nowhere.txt")
    (tmp_path / "shared").mkdir()
    (project / "shared").symlink_to(tmp_path / "shared")
    built = flash("build", "proj", cwd=tmp_path)
    assert built.returncode == 1, built.stdout + built.stderr
    error = built.stderr
    assert error.startswith("Error: ") and "3 symbolic links" in error, error
    for link, where in (
        ("copy.py", "app.py"),
        ("gone.txt", "nowhere.txt, which does not exist"),
        ("shared", f"{tmp_path / 'shared'}, outside the project"),
    ):
        assert f"{link}: a symbolic link to {where}" in error, error
    assert "list the links in .flashignore" in error, error


def test_a_key_file_that_holds_no_key_is_one_error_saying_what_to_do(tmp_path: Path) -> None:
    write_starter(tmp_path / "proj")
    secrets = tmp_path / "proj" / ".flash" / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    (secrets / "signing_key").write_text("hello\n")
    (secrets / "signing_key").chmod(0o600)
    for command in (("build", "proj"), ("run", "proj", "--no-watch", "--port", "0")):
        done = flash(*command, cwd=tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith(f"Error: {secrets / 'signing_key'} must be 64 hexadecimal"), error
        assert "Delete it and the next `flash build`" in error, error
        assert "hello" not in done.stderr  # never echoed: it might be a real key, mangled
    assert not (tmp_path / "proj" / ".flash" / "archive.tar.gz").exists()


PICKLED_CALL = (
    "import asyncio\n"
    "from workers.cpu_worker import preprocess\n"
    "print(asyncio.run(preprocess.options(serialization='pickle')(['  a   b '])))\n"
)


def _script_call(project: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A signed pickled call from a script in the project, as a user runs one."""
    base = {k: v for k, v in os.environ.items() if k != "FLASH_SIGNING_KEY"}
    return subprocess.run(
        [sys.executable, "-c", PICKLED_CALL],
        cwd=project,
        env={**base, "FLASH_API_BASE": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_signs_with_flash_signing_key_when_it_is_set(tmp_path: Path) -> None:
    # As flash serve and the scripts do; before, flash run used the project's key file, and
    # every call from a shell exporting the variable was refused.
    project = tmp_path / "proj"
    write_starter(project)
    key = os.urandom(32).hex()
    run = FlashRun(project, env={"FLASH_SIGNING_KEY": key})
    try:
        run.wait_for_output(SERVING, timeout=120)
        assert "signed with the key in $FLASH_SIGNING_KEY" in run.text(), run.text()
        assert key not in run.text()
        called = _script_call(project, api_base(run.text()), FLASH_SIGNING_KEY=key)
        assert called.returncode == 0, called.stderr
        assert called.stdout.strip() == "['a b']", called.stdout
    finally:
        run.end()
    bad = subprocess.run(
        [sys.executable, "-m", "flash.cli", "run", str(project), "--no-watch", "--port", "0"],
        env={**ENV, "FLASH_SIGNING_KEY": "hello"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.strip().startswith("Error: FLASH_SIGNING_KEY must be 64 hexadecimal")


def test_a_key_file_deleted_while_flash_run_serves_comes_back_with_the_served_key(
    tmp_path: Path,
) -> None:
    # The rebuild would make a new key, which the workers do not have: the project's
    # scripts, which read the file, were refused until flash run restarted.
    project = tmp_path / "proj"
    write_starter(project)
    key_file = project / ".flash" / "secrets" / "signing_key"
    run = FlashRun(project)
    try:
        run.wait_for_output(SERVING, timeout=120)
        served = key_file.read_text()
        shutil.rmtree(key_file.parent)
        worker = project / "workers" / "cpu_worker.py"
        worker.write_text(worker.read_text() + "\n# edited\n")
        run.wait_for_output("Reloaded", timeout=120)
        assert key_file.read_text() == served
        called = _script_call(project, api_base(run.text()))
        assert called.returncode == 0, called.stderr
        assert called.stdout.strip() == "['a b']", called.stdout
    finally:
        run.end()


def test_serve_and_run_refuse_an_api_key_no_caller_could_send(tmp_path: Path) -> None:
    # An empty FLASH_API_KEY (a CI secret that resolved to nothing) let every request in
    # without a word; one with spaces around it could never be matched.
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "app.py").write_text(ONE_FUNCTION)
    assert flash("build", "proj", cwd=tmp_path).returncode == 0
    archive = str(tmp_path / "proj" / ".flash" / "archive.tar.gz")
    here = tmp_path / "elsewhere"
    here.mkdir()
    cases = [
        (("serve", archive, "--api-key", ""), "is empty"),
        (("serve", archive, "--api-key", "  "), "is empty"),
        (("serve", archive, "--api-key", " key "), "begins or ends with whitespace"),
        (("serve", archive, "--api-key", "k\u00e9y"), "non-ASCII"),
        (("run", str(tmp_path / "proj"), "--api-key", ""), "is empty"),
    ]
    for args, said in cases:
        failed = flash(*args, "--port", "0", cwd=here)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        error = failed.stderr.strip()
        assert error.startswith("Error: --api-key (or FLASH_API_KEY) ") and said in error, error
        assert "collect" not in failed.stdout, failed.stdout  # flash run built nothing
        assert list(here.iterdir()) == [], list(here.iterdir())
    empty = subprocess.run(
        [sys.executable, "-m", "flash.cli", "serve", archive, "--port", "0"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=120,
        env={**ENV, "FLASH_API_KEY": ""},
    )
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert "Error: --api-key (or FLASH_API_KEY) is empty" in empty.stderr, empty.stderr


def test_init_names_the_project_as_packaging_tools_read_names(tmp_path: Path) -> None:
    # "_under_" made name = "_under_", which uv and pip refuse (a name starts and ends with
    # a letter or digit).
    import re

    import tomllib

    for folder, expected in (("_under_", "under"), ("__", "flash-project"), ("a_b.c", "a_b.c")):
        write_starter(tmp_path / folder)
        name = tomllib.loads((tmp_path / folder / "pyproject.toml").read_text())["project"]["name"]
        assert name == expected, (folder, name)
        assert re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name), name


def test_a_host_that_cannot_be_served_names_host_and_ipv6_loopback_is_served(
    tmp_path: Path,
) -> None:
    # ::1 was "Address family for hostname not supported (--port)": the platform bound
    # IPv4 sockets only, and the error blamed the port.
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "app.py").write_text(ONE_FUNCTION)
    assert flash("build", "proj", cwd=tmp_path).returncode == 0
    archive = str(tmp_path / "proj" / ".flash" / "archive.tar.gz")
    failed = flash("serve", archive, "--host", "203.0.113.7", "--port", "0", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.startswith("Error: cannot serve the platform on 203.0.113.7 port 0"), (
        failed.stderr
    )
    assert "(--host)" in failed.stderr, failed.stderr
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return  # no IPv6 loopback here
    # "::" serves IPv4 too: a port taken there is refused before anything is built.
    with socket.create_server(("0.0.0.0", 0)) as taken:
        busy = str(taken.getsockname()[1])
        refused = flash("serve", archive, "--host", "::", "--port", busy, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"port {busy} (--port)" in refused.stderr, refused.stderr
    serving = CollectedProcess(
        [sys.executable, "-m", "flash.cli", "serve", archive, "--host", "::1", "--port", "0"],
        cwd=tmp_path,
        env=ENV,
    )
    try:
        url = serving.printed_url(PLATFORM_AT)
        assert url.startswith("http://[::1]:"), serving.text()
        import httpx

        body = {"input": {"function": "f", "kwargs": {"x": 4}}}
        answer = httpx.post(f"{url}/v2/g/runsync", json=body, timeout=60)
        assert answer.json()["output"]["result"] == 4, answer.text
    finally:
        serving.proc.send_signal(signal.SIGINT)
        serving.exit_code()
