"""The `flash` command as users run it: a real process, its exit code and its output."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.helpers import WEB_APP_AT, printed_url, processes_under
from tests.wheelhouse import build_wheel

from flash.cli.serve import app_signing_key
from flash.runtime.signing import generate_key
from flash.sdk.keys import KEY_ENV_VAR, ensure_signing_key, key_to_text

# The sources next to these tests, not whichever checkout the interpreter has installed.
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": SRC}
APP = """from flash import remote, LiveServerless


@remote(LiveServerless(name="g"))
def f():
    pass
"""
WEB_APP = "from starlette.applications import Starlette\n\napp = Starlette()\n"


def flash(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flash.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
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
    # A failed build says why on stdout too, as JSON, for the script that asked for JSON.
    (tmp_path / "demo" / "workers" / "broken.py").write_text("def f(:\n")
    failed = flash("build", "demo", "--json", cwd=tmp_path)
    assert failed.returncode == 1 and "broken.py" in json.loads(failed.stdout)["error"]
    assert "Error:" in failed.stderr


def test_a_cross_target_build_says_what_it_did_not_check(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "app.py").write_text(
        APP + "\n\n@remote(LiveServerless(name='g'))\ndef add(a: int, b: int = 5) -> int:\n"
        "    return a + b\n"
    )
    host = "{}.{}".format(*sys.version_info[:2])
    other = "3.12" if host != "3.12" else "3.11"
    built = flash("build", "p", "--python-version", other, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "1 handler generated, not import-checked" in built.stdout
    assert "checked, " not in built.stdout and "callable with JSON" not in built.stdout
    (warning,) = [line for line in built.stderr.splitlines() if line.startswith("Warning:")]
    assert warning.startswith(f"Warning: cross-target build (Python {other} on ")
    # The typed function is named, the untyped one (pickle-only by design) is not.
    assert "1 function with type hints (add) takes signed pickled calls only" in warning
    if sys.platform.startswith("linux"):
        assert f"or build for this machine: --python-version {host} --platform " in warning
    # Said again when the build is skipped.
    again = flash("build", "p", "--python-version", other, "--json", cwd=tmp_path)
    summary = json.loads(again.stdout)
    assert summary["skipped"] and summary["warnings"] == [warning.removeprefix("Warning: ")]


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
    assert "async def embed(texts: list[str]) -> list[list[float]]" in failed.stderr
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


def test_brackets_in_messages_and_paths_are_printed_as_they_are(tmp_path: Path) -> None:
    # Rich markup would drop "[red]" and "[project]", and fail with a traceback on "[/]".
    project = tmp_path / "p[" / "]"  # the user types "p[/]"
    project.mkdir(parents=True)
    (project / "[red]x.py").write_text("x = (\n")
    failed = flash("build", "p[/]", cwd=tmp_path)
    assert failed.returncode == 1 and "[red]x.py:1:5: syntax error" in failed.stderr
    (project / "[red]x.py").unlink()
    (project / "app.py").write_text(APP)
    for name, text, message in (
        ("requirements.txt", "foo[/]\n", "invalid requirement 'foo[/]'"),
        ("pyproject.toml", '[project]\ndependencies = "x"\n', "[project].dependencies must"),
    ):
        (project / name).write_text(text)
        failed = flash("build", "p[/]", cwd=tmp_path)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr + failed.stdout
        (project / name).unlink()
    built = flash("build", "p[/]", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert f"built {project.resolve() / '.flash' / 'archive.tar.gz'} (" in built.stdout


def test_init_prints_a_directory_with_brackets_as_it_is(tmp_path: Path) -> None:
    init = flash("init", "my[/]proj", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "Created 9 files in my[/]proj" in init.stdout
    assert "cd 'my[/]proj' && flash build" in init.stdout  # quoted: [ is a shell glob
    assert (tmp_path / "my[" / "]proj" / "main.py").is_file()


def test_a_file_named_flash_in_the_project_is_one_line(tmp_path: Path) -> None:
    # .flash holds the builds, the signing key and the job store: it must be a folder.
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".flash").write_text("mine")
    (tmp_path / "state").write_text("mine too")
    message = "is a file, not a folder: Flash keeps its state there; move the file away"
    for args, path in (
        (("build", "p"), "p/.flash"),
        (("run", "p", "--port", "0"), str(tmp_path.resolve() / "p" / ".flash")),
        (("serve", "archive.tar.gz", "--state-dir", "state"), "state"),
    ):
        failed = flash(*args, cwd=tmp_path)
        assert failed.returncode == 1, args
        assert failed.stderr.strip() == f"Error: {path} {message}", args
    # flash init writes nothing under .flash, so it does not mind.
    assert flash("init", "p", cwd=tmp_path).returncode == 0
    assert (tmp_path / "p" / ".flash").read_text() == "mine"


def test_a_project_folder_that_is_missing_or_a_file_is_one_line_and_makes_nothing(
    tmp_path: Path,
) -> None:
    # `flash run app.py`, as `modal run app.py` is typed; or a folder name mistyped.
    (tmp_path / "app.py").write_text(APP)
    for command, *options in (("build",), ("run", "--no-watch")):
        missing = flash(command, "nowhere", *options, cwd=tmp_path)
        assert missing.returncode == 1, missing
        assert missing.stderr.strip() == "Error: project directory not found: nowhere"
        a_file = flash(command, "app.py", *options, cwd=tmp_path)
        assert a_file.returncode == 1, a_file
        assert a_file.stderr.strip() == (
            f"Error: app.py is a file, not a project directory: give the folder that holds "
            f"the project (`flash {command} .`)"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.py"]  # no state made


def test_a_line_number_in_a_message_is_printed_as_it_is(tmp_path: Path) -> None:
    # Rich would print ":100:" as an emoji, losing the line an editor jumps to.
    (tmp_path / "app.py").write_text("\n" * 99 + "x = (\n")
    failed = flash("build", ".", cwd=tmp_path)
    assert failed.returncode == 1
    assert "app.py:100:5: syntax error" in failed.stderr, failed.stderr


def test_max_workers_below_one_is_one_line(tmp_path: Path) -> None:
    # The platform would take 0 as every core and -1 as one worker.
    (tmp_path / "app").mkdir()
    for command in (("serve", "archive.tar.gz"), ("run", "app")):
        for workers in ("0", "-1"):
            failed = flash(*command, "--max-workers", workers, cwd=tmp_path)
            assert failed.returncode == 1
            assert (
                failed.stderr.strip() == f"Error: --max-workers must be at least 1, got {workers}"
            )
    assert not (tmp_path / ".flash").exists()
    assert not (tmp_path / "app" / ".flash").exists()


def test_run_fails_when_the_web_app_cannot_start(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "app.py").write_text(APP)
    (project / "main.py").write_text(WEB_APP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = flash("run", "proj", "--port", "0", "--app-port", str(port), cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        f"Error: cannot serve main.py's web app on 127.0.0.1 port {port} (--app-port): "
        "Address already in use"
    )
    assert "Web app (main.py) on" not in failed.stdout

    # An app that fails while starting (here on import) ends the command the same way.
    (project / "main.py").write_text("raise RuntimeError('boom')\n" + WEB_APP)
    failed = flash("run", "proj", "--port", "0", "--app-port", "0", cwd=tmp_path)
    assert failed.returncode == 1
    assert "RuntimeError: boom" in failed.stderr  # uvicorn's own report
    app_url = printed_url(failed.stdout, WEB_APP_AT)  # the port it found
    assert app_url is not None, failed.stdout
    assert failed.stderr.strip().splitlines()[-1] == (
        f"Error: main.py's web app (--app-port {urlsplit(app_url).port}) exited with code 1 "
        "while starting; its output is above"
    )
    assert not processes_under(project)


def test_a_second_run_of_a_project_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    first = subprocess.Popen(
        [sys.executable, "-m", "flash.cli", "run", ".", "--port", "0", "--no-watch"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    try:
        assert first.stdout is not None
        lines = []
        for line in first.stdout:  # serving once its address is printed
            lines.append(line)
            if "Flash platform on" in line:
                break
        else:
            raise AssertionError("".join(lines))
        second = flash("run", ".", "--port", "0", cwd=tmp_path)
        assert second.returncode == 1
        state = tmp_path.resolve() / ".flash"
        assert second.stderr.strip() == (
            f"Error: another Flash platform (flash run or flash serve) is serving from {state}: "
            "stop it first, or give a flash serve its own state folder with --state-dir"
        )
        assert first.poll() is None  # the first serves on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


STOP_FROM_ANOTHER_THREAD = """
import signal, threading, time
from flash.cli._output import wait_for_stop

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
started = threading.Event()


def other_thread():
    started.wait()
    main = f"/proc/self/task/{threading.main_thread().native_id}/stat"
    while open(main).read().rsplit(")", 1)[1].split()[0] != "S":
        time.sleep(0.001)  # until the main thread sleeps in its wait
    # The kernel may deliver a process's SIGTERM to any thread: here, to this one.
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)


threading.Thread(target=other_thread).start()
started.set()
wait_for_stop(stop)
print("stopped")
"""


def test_serve_stops_on_a_sigterm_another_thread_received() -> None:
    # A plain Event.wait() in the main thread never returned: flash serve ignored SIGTERM.
    done = subprocess.run(
        [sys.executable, "-c", STOP_FROM_ANOTHER_THREAD],
        capture_output=True,
        text=True,
        env=ENV,  # this tree's flash, not whichever is installed
        timeout=15,
    )
    assert done.stdout.strip() == "stopped", done.stderr


def test_a_second_server_of_a_project_signs_with_the_projects_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    project_key = ensure_signing_key(tmp_path / "proj" / ".flash")
    archive = tmp_path / "proj" / ".flash" / "archive.tar.gz"
    # Its own --state-dir (as the README advises for a second server), the project's key:
    # the project's clients can call it.
    key, source = app_signing_key(archive, tmp_path / "second")
    assert key == project_key and source.endswith("signing_key")
    assert not (tmp_path / "second" / "secrets").exists()
    # An archive away from any project: the state folder's own key.
    (tmp_path / "elsewhere.tar.gz").write_bytes(b"")
    key, source = app_signing_key(tmp_path / "elsewhere.tar.gz", tmp_path / "third")
    assert key != project_key and source == str(tmp_path / "third" / "secrets" / "signing_key")
    monkeypatch.setenv(KEY_ENV_VAR, key_to_text(generate_key()))
    assert app_signing_key(archive, tmp_path / "second")[1] == KEY_ENV_VAR


def test_init_into_the_current_directory_says_just_flash_build(tmp_path: Path) -> None:
    for args, where in (((), "a"), ((".",), "b")):
        (tmp_path / where).mkdir()
        init = flash("init", *args, cwd=tmp_path / where)
        assert init.returncode == 0, init.stderr
        assert "Next: flash build" in init.stdout
        assert "cd ." not in init.stdout
    elsewhere = flash("init", "c", cwd=tmp_path)
    assert "Next: cd c && flash build" in elsewhere.stdout
    # As a shell takes it: the name quoted when it must be.
    spaced = flash("init", "my app's folder", cwd=tmp_path)
    assert """Next: cd 'my app'"'"'s folder' && flash build""" in spaced.stdout, spaced.stdout


def test_init_conflicts_are_listed_in_good_grammar_with_a_count(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "README.md").write_text("mine")
    one = flash("init", cwd=here)
    assert one.returncode == 1
    assert one.stderr.strip() == "Error: README.md already exists; use --force to overwrite"
    (here / ".gitignore").write_text("mine")
    two = flash("init", ".", cwd=here)
    assert two.stderr.strip() == (
        "Error: README.md and .gitignore already exist; use --force to overwrite"
    )
    assert sorted(p.name for p in here.iterdir()) == [".gitignore", "README.md"]
    assert flash("init", "p", cwd=tmp_path).returncode == 0
    all_nine = flash("init", "p", cwd=tmp_path)
    assert all_nine.stderr.strip() == (
        "Error: p/README.md, p/.flashignore, p/.gitignore and 6 more already exist; "
        "use --force to overwrite"
    )


def test_build_reports_a_dot_name_at_the_name(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "app.py").write_text(APP.replace('name="g"', 'name=".."'))
    failed = flash("build", "p", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: app.py:4:29: LiveServerless name '..' is")
    assert "relative path step" in failed.stderr


def test_build_takes_gpu_groups_as_the_readme_spells_them(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "app.py").write_text(
        APP.replace('name="g"', 'name="g", gpus=["ANY", "ampere_80"]')
    )
    built = flash("build", "p", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    manifest = json.loads((tmp_path / "p" / ".flash" / "flash_manifest.json").read_text())
    [resource] = manifest["resources"].values()
    assert resource["config"]["gpus"] == ["any", "AMPERE_80"]


def test_build_warns_of_a_literal_secret_and_takes_package_sources_from_the_environment(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "1.0")
    project = tmp_path / "p"
    project.mkdir()
    (project / "app.py").write_text(
        "from flash import remote, LiveServerless\n\n"
        'cfg = LiveServerless(name="w", env={"HF_TOKEN": "hf_not_for_logs"})\n\n\n'
        '@remote(cfg, dependencies=["tinydep"])\ndef f():\n    pass\n'
    )
    # Out of the command line, where `ps` would show a token in the URL.
    env = {**ENV, "FLASH_FIND_LINKS": str(wheels)}
    built = subprocess.run(
        [sys.executable, "-m", "flash.cli", "build", "p", "--no-index"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    assert "Warning:" in built.stderr and "app.py:3" in built.stderr
    assert "HF_TOKEN" in built.stderr and "RUNPOD_SECRET" in built.stderr
    assert "hf_not_for_logs" not in built.stderr + built.stdout
    manifest = json.loads((project / ".flash" / "flash_manifest.json").read_text())
    assert manifest["dependencies"]["pins"] == ["tinydep==1.0"]


def test_serve_with_a_signing_key_that_is_no_key_is_one_error_line(tmp_path: Path) -> None:
    served = subprocess.run(
        [sys.executable, "-m", "flash.cli", "serve", "archive.tar.gz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, KEY_ENV_VAR: "zz"},
    )
    assert served.returncode == 1
    assert served.stderr.startswith("Error: ") and KEY_ENV_VAR in served.stderr
    assert "Traceback" not in served.stderr and "zz" not in served.stderr


def test_a_value_of_the_wrong_type_is_one_line(tmp_path: Path) -> None:
    # Typer's check of the type, as the commands' own checks of the value: one Error: line.
    (tmp_path / "app").mkdir()
    for args, option in (
        (("build", "app", "--max-size", "abc"), "--max-size"),
        (("serve", "archive.tar.gz", "--port", "abc"), "--port"),
        (("serve", "archive.tar.gz", "--max-workers", "1.5"), "--max-workers"),
        (("run", "app", "--port", "x"), "--port"),
        (("run", "app", "--app-port", ""), "--app-port"),
        (("run", "app", "--max-workers", "many"), "--max-workers"),
    ):
        failed = flash(*args, cwd=tmp_path)
        assert failed.returncode == 1, (args, failed.stderr)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1, (args, failed.stderr)
        assert lines[0].startswith(f"Error: Invalid value for '{option}': "), args
    assert not (tmp_path / ".flash").exists()
    assert not (tmp_path / "app" / ".flash").exists()


def test_usage_mistakes_and_help_stay_typers(tmp_path: Path) -> None:
    unknown = flash("build", "--nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "No such option: --nope" in unknown.stderr
    assert "Usage:" in unknown.stderr and "build [OPTIONS]" in unknown.stderr
    missing = flash("serve", cwd=tmp_path)
    assert missing.returncode == 2 and "Missing argument" in missing.stderr
    helped = flash("build", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--max-size" in helped.stdout


def test_build_and_run_in_a_package_folder_of_a_project_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    package = root / "w"
    package.mkdir(parents=True)
    (root / "requirements.txt").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(APP)
    for command in ("build", "run"):
        refused = flash(command, cwd=package)
        assert refused.returncode == 1, refused.stderr
        said = " ".join(refused.stderr.split())
        assert f"project at {root}" in said and f"flash {command} ." in said
        assert not (package / ".flash").exists()  # no key of its own, nothing built
    # From the root, the functions have their project's names.
    built = flash("build", "--json", cwd=root)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["endpoints"]["g"] == ["w.a.f"]
    # Passed explicitly, the folder builds as a project of its own.
    alone = flash("build", ".", "--json", cwd=package)
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["endpoints"]["g"] == ["a.f"]
    # Built so once, it is a project of its own: no PROJECT_DIR needed any more.
    again = flash("build", "--json", cwd=package)
    assert again.returncode == 0, again.stderr
    # A project root that is a package too (with __init__.py) is not refused.
    (root / "__init__.py").write_text("")
    assert flash("build", cwd=root).returncode == 0


def test_the_command_line_starts_without_loading_what_its_commands_use() -> None:
    # `flash --help` took a second when the CLI imported the build, the platform and the
    # call path (pydantic, asyncio, the HTTP client) before parsing anything.
    heavy = (
        "pydantic",
        "asyncio",
        "cloudpickle",
        "packaging",
        "flash.build.pipeline",
        "flash.platform.local",
        "flash.runtime.client",
    )
    code = f"import sys, flash.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_the_sdk_loads_on_first_use_with_its_json_codecs() -> None:
    # `import flash` is cheap, yet `from flash import remote` is the whole SDK: what it
    # decorates is called as typed JSON where it can, with the codecs it installs.
    code = (
        "import sys, flash\n"
        "from flash.runtime import client\n"
        "print('flash.sdk.remote' in sys.modules, client._json_codec_factory is not None)\n"
        "from flash import remote\n"
        "print(remote.__module__, client._json_codec_factory is not None)\n"
        "print(sorted(set(flash.__all__) - set(dir(flash))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True
    )
    assert out.stdout.splitlines() == ["False False", "flash.sdk.remote True", "[]"]
