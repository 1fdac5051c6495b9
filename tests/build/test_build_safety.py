"""Builds that must not ship secrets, hide modules, race each other or lose a mode."""

import errno
import fcntl
import gzip
import json
import os
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.projects import write_files
from tests.wheelhouse import build_wheel

from flash.build.dependencies import DependencyOptions
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, BuildResult, build_project
from flash.cli.init import write_starter
from flash.platform.local import lock_state_dir

# Not a real key: a BEGIN line, a base64 body and the matching END line, as a key file holds.
PEM_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----\n"
)
OPENAI_KEY = "sk-proj-" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4"

ENDPOINT = """
    {head}
    from flash import CpuLiveServerless, remote

    cpu = CpuLiveServerless(name="cpu")


    @remote(cpu, dependencies={deps})
    def work(x: int) -> int:
        return x
"""


def starter(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write_starter(root)
    return root


def names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def wheels(tmp_path: Path) -> Path:
    where = tmp_path / "wheels"
    build_wheel(where, "tinylib", "2.0")
    build_wheel(where, "needslib", "1.0", requires=["tinylib>=2"])
    build_wheel(where, "modlib", "1.0", files={"modlib.py": "X = 1\n"})
    build_wheel(where, "fastext", "1.0", files={"fastext.cpython-311-x86_64-linux-gnu.so": ""})
    return where


def offline(where: Path, **kw: object) -> DependencyOptions:
    return DependencyOptions(find_links=(str(where),), no_index=True, **kw)  # type: ignore[arg-type]


def test_private_keys_stay_out_and_tokens_in_sources_are_warned_about(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(
        root,
        {
            "deploy_key.pem": PEM_KEY,
            ".ssh/id_rsa": PEM_KEY,
            "workers/settings.py": f'OPENAI_API_KEY = "{OPENAI_KEY}"\n',
            # Source is kept (code importing it would fail on the worker) and warned about.
            "workers/keys.py": f"KEY = {PEM_KEY.replace('u1SU1L', 'inpy')!r}\n",
        },
    )
    result = build_project(BuildOptions(project_dir=root))
    listing = names(result.archive)
    assert "deploy_key.pem" not in listing and ".ssh/id_rsa" not in listing
    assert "workers/settings.py" in listing and "workers/keys.py" in listing
    content = gzip.decompress(result.archive.read_bytes())
    assert b"u1SU1L" not in content
    left_out, tokens = (str(w) for w in result.warnings)
    assert left_out.startswith("2 files left out of the archive as secret")
    assert "  .ssh/id_rsa: in a .ssh folder" in left_out
    assert "  deploy_key.pem: holds a private key" in left_out
    assert "  workers/settings.py:1: looks like an OpenAI-style API key" in tokens
    assert "  workers/keys.py:1: looks like a private key" in tokens
    assert OPENAI_KEY not in left_out + tokens and "MIIEow" not in left_out
    # An up-to-date build says it again; a changed key file rebuilds, and stays out.
    again = build_project(BuildOptions(project_dir=root))
    assert again.skipped and again.warnings == result.warnings
    (root / "deploy_key.pem").write_text(PEM_KEY.replace("u1SU1L", "other"))
    changed = build_project(BuildOptions(project_dir=root))
    assert not changed.skipped and "deploy_key.pem" not in names(changed.archive)
    # Named exactly in .flashignore, the user's choice: archived.
    write_files(root, {".flashignore": "!deploy_key.pem\n"})
    chosen = build_project(BuildOptions(project_dir=root))
    assert "deploy_key.pem" in names(chosen.archive)
    assert "deploy_key.pem" not in str(chosen.warnings[0])


def test_a_file_holding_the_apps_key_or_a_runpod_secret_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook's saved output of `env`: whoever held the archive could sign pickled calls
    # (run code on its workers). It was archived with no word.
    root = starter(tmp_path)
    assert build_project(BuildOptions(project_dir=root)).archive.is_file()
    archive = root / ".flash" / "archive.tar.gz"
    before = archive.read_bytes()
    key = (root / ".flash" / "secrets" / "signing_key").read_text().strip()
    monkeypatch.setenv("RUNPOD_SECRET_hf", "hf-secret-value-123")
    notebook = json.dumps({"cells": [{"outputs": [{"text": [f"FLASH_SIGNING_KEY={key}"]}]}]})
    write_files(
        root,
        {
            "explore.ipynb": notebook,
            "notes/setup.md": "# Set-up\n\nexport HF=hf-secret-value-123\n",
            ".flashignore": "!explore.ipynb\n",  # chosen: still never the key
        },
    )
    with pytest.raises(BuildError) as failed:
        build_project(BuildOptions(project_dir=root))
    message = str(failed.value)
    assert "explore.ipynb:1: the app's signing key" in message, message
    assert "notes/setup.md:3: the value of $RUNPOD_SECRET_hf" in message, message
    assert key not in message and "hf-secret-value-123" not in message
    assert archive.read_bytes() == before  # the last good archive, untouched
    # A notebook with plots is over the size read as text, and a database holds NULs:
    # both are searched all the same, the key across two blocks of the search included.
    (root / "explore.ipynb").unlink()
    (root / "notes" / "setup.md").unlink()
    plots = "x" * ((1 << 20) - 10) + f"key={key}\n" + "y" * 100
    write_files(root, {"plots.ipynb": plots})
    (root / "state.db").write_bytes(b"\0" * 100 + b"\nFLASH_SIGNING_KEY=" + key.encode())
    with pytest.raises(BuildError) as failed:
        build_project(BuildOptions(project_dir=root))
    assert "  plots.ipynb:1: the app's signing key" in str(failed.value), str(failed.value)
    assert "  state.db:2: the app's signing key" in str(failed.value), str(failed.value)
    (root / "plots.ipynb").unlink()
    (root / "state.db").unlink()
    # A build up to date is checked again when the environment names a new secret.
    write_files(root, {"notes.txt": "token = hf-secret-other-456\n"})
    monkeypatch.delenv("RUNPOD_SECRET_hf")
    assert build_project(BuildOptions(project_dir=root)).archive == archive
    monkeypatch.setenv("RUNPOD_SECRET_hf", "hf-secret-other-456")
    with pytest.raises(BuildError, match=r"notes\.txt:1: the value of \$RUNPOD_SECRET_hf"):
        build_project(BuildOptions(project_dir=root))


def _git_status(repo: Path) -> list[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    shown = subprocess.run(
        ["git", "status", "--porcelain", "-uall"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.splitlines()


def test_a_git_repository_never_sees_the_flash_folder_and_its_key(tmp_path: Path) -> None:
    # A project not made by `flash init` has no .gitignore naming .flash/: `git add -A`
    # committed .flash/secrets/signing_key, which signs pickled calls.
    root = write_files(tmp_path / "proj", {"main.py": ENDPOINT.format(head="", deps="[]")})
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    build_project(BuildOptions(project_dir=root))
    assert (root / ".flash" / "secrets" / "signing_key").is_file()
    assert _git_status(root) == ["?? main.py"]
    # A user's own .flash/.gitignore is theirs: kept as it is, by builds and key creation.
    (root / ".flash" / ".gitignore").write_text("secrets/\n")
    (root / ".flash" / "secrets" / "signing_key").unlink()
    build_project(BuildOptions(project_dir=root, force=True))
    assert (root / ".flash" / ".gitignore").read_text() == "secrets/\n"
    assert "?? .flash/archive.tar.gz" in _git_status(root)


def test_a_state_folder_flash_makes_is_left_out_of_git_but_a_users_own_is_not(
    tmp_path: Path,
) -> None:
    made, own = tmp_path / "state", tmp_path / "mine"  # flash serve --state-dir
    own.mkdir()
    for folder in (made, own):
        os.close(lock_state_dir(folder))
    assert (made / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not (own / ".gitignore").exists()


@pytest.mark.parametrize(
    ("files", "path", "what"),
    [
        ({"tinylib.py": "X = 'mine'\n"}, "tinylib.py", "module 'tinylib'"),
        ({"modlib/extra.py": "def mine(): ...\n"}, "modlib/", "package 'modlib'"),
        ({"fastext.py": ""}, "fastext.py", "module 'fastext'"),
        # src/ is a sys.path entry of its own: the regular package wins over the portion.
        ({"src/needslib/extra.py": ""}, "src/needslib/", "package 'needslib'"),
    ],
)
def test_a_project_module_with_a_dependencys_import_name_is_an_error(
    tmp_path: Path, files: dict[str, str], path: str, what: str
) -> None:
    root = tmp_path / "proj"
    main = "src/app/main.py" if path.startswith("src/") else "main.py"
    deps = '["needslib", "modlib", "fastext"]'
    write_files(root, {main: ENDPOINT.format(head="", deps=deps)})
    options = BuildOptions(project_dir=root, dependencies=offline(wheels(tmp_path)))
    good = build_project(options)
    write_files(root, files)
    with pytest.raises(BuildError) as info:
        build_project(options)
    assert info.value.path == path
    assert what in info.value.message
    dist = what.split("'")[1]
    assert f"vendored distribution {dist!r}" in info.value.message
    assert good.archive.read_bytes() == (root / ".flash" / "archive.tar.gz").read_bytes()


def test_project_folders_merge_with_a_dependencys_folders_of_the_same_name(
    tmp_path: Path,
) -> None:
    # A wheel shipping a top-level tests/ package, a namespace package: nothing is hidden.
    where = tmp_path / "wheels"
    build_wheel(
        where,
        "sloppy",
        "1.0",
        files={"sloppy/__init__.py": "", "tests/__init__.py": "", "tests/test_sloppy.py": ""},
    )
    build_wheel(where, "acme-utils", "1.0", files={"acme/utils/__init__.py": "U = 1\n"})
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "main.py": ENDPOINT.format(
                head="import acme.service, acme.utils", deps='["sloppy", "acme-utils"]'
            ),
            "tests/test_main.py": "def test_x(): ...\n",
            "acme/service/__init__.py": "S = 1\n",
        },
    )
    result = build_project(BuildOptions(project_dir=root, dependencies=offline(where)))
    listing = names(result.archive)
    for path in ("tests/test_main.py", "tests/test_sloppy.py", "acme/service/__init__.py"):
        assert path in listing
    assert "acme/utils/__init__.py" in listing


def test_making_a_file_executable_rebuilds_with_its_new_mode(tmp_path: Path) -> None:
    root = starter(tmp_path)
    write_files(root, {"start.sh": "echo hi\n"})
    first = build_project(BuildOptions(project_dir=root))
    (root / "start.sh").chmod(0o755)
    second = build_project(BuildOptions(project_dir=root))
    assert not second.skipped and second.sha256 != first.sha256
    with tarfile.open(second.archive) as tar:
        assert tar.getmember("start.sh").mode == 0o755


@pytest.mark.parametrize(
    ("pyproject", "line", "says"),
    [
        (
            '[project]\nname = "p"\nversion = "1"\ndynamic = ["dependencies"]\n',
            4,
            '[project] dynamic = ["dependencies"]',
        ),
        (
            '[tool.poetry]\nname = "p"\n\n[tool.poetry.dependencies]\npython = "^3.11"\n'
            'numpy = "^1.26"\n',
            4,
            "[tool.poetry.dependencies] (numpy)",
        ),
        (  # the line of the key, not of a comment naming it
            '[project]\nname = "p"\n# dynamic fields come from setuptools\n'
            'dynamic = ["dependencies"]\n',
            4,
            '[project] dynamic = ["dependencies"]',
        ),
        (  # Poetry 2: only the names [project] does not list are unread
            '[project]\nname = "p"\ndependencies = ["tinylib"]\n\n'
            '[tool.poetry.dependencies]\ntinylib = { source = "private" }\nnumpy = "^1.26"\n',
            5,
            "[tool.poetry.dependencies] (numpy)",
        ),
    ],
)
def test_dependencies_the_build_does_not_read_are_warned_about(
    tmp_path: Path, pyproject: str, line: int, says: str
) -> None:
    root = tmp_path / "proj"
    write_files(root, {"main.py": ENDPOINT.format(head="", deps="[]")})
    (root / "pyproject.toml").write_text(pyproject)
    options = BuildOptions(project_dir=root, dependencies=offline(wheels(tmp_path)))
    result = build_project(options)
    (warning,) = result.warnings
    assert warning.path == "pyproject.toml" and warning.line == line
    assert warning.message.startswith(says)
    assert "requirements.txt" in warning.message and "dependencies=[...]" in warning.message


@pytest.mark.parametrize(
    "pyproject",
    [
        '[project]\nname = "p"\nversion = "1"\ndynamic = ["dependencies"]\n\n'
        '[tool.setuptools.dynamic]\ndependencies = {file = ["requirements.txt"]}\n',
        '[project]\nname = "p"\ndynamic = ["dependencies"]\n\n'
        '[tool.setuptools.dynamic]\ndependencies = {file = ["./requirements.txt"]}\n',
        # the hatch-requirements-txt hook
        '[project]\nname = "p"\ndynamic = ["dependencies"]\n\n'
        '[tool.hatch.metadata.hooks.requirements_txt]\nfiles = ["requirements.txt"]\n',
        # Poetry 2 naming a source for what [project] lists
        '[project]\nname = "p"\ndependencies = ["tinylib>=2"]\n\n'
        '[tool.poetry.dependencies]\nTinyLib = { source = "private" }\n',
    ],
)
def test_dependencies_the_build_reads_are_not_warned_about(tmp_path: Path, pyproject: str) -> None:
    root = tmp_path / "proj"
    write_files(root, {"main.py": ENDPOINT.format(head="", deps="[]"), "requirements.txt": ""})
    (root / "pyproject.toml").write_text(pyproject)
    options = BuildOptions(project_dir=root, dependencies=offline(wheels(tmp_path)))
    assert build_project(options).warnings == ()


def test_a_missing_excluded_package_is_named_as_excluded(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write_files(root, {"main.py": ENDPOINT.format(head="import tinylib", deps='["needslib"]')})
    options = offline(wheels(tmp_path), exclude=("tinylib",))
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=options))
    message = info.value.message
    assert "ModuleNotFoundError: No module named 'tinylib'" in message
    assert message.endswith(
        "'tinylib' is excluded (--exclude: provided by the base image), so the build imports "
        "it from this environment, where it is not installed; install it here to have the "
        "handlers checked, or stop excluding it"
    )


def test_a_missing_module_says_to_declare_its_package(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write_files(root, {"main.py": ENDPOINT.format(head="import tinylib.sub", deps="[]")})
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.message.endswith(
        "if 'tinylib' comes from a package, declare that package in "
        "@remote(..., dependencies=[...]) or requirements.txt: the build vendors only what "
        "is declared"
    )


def test_a_missing_module_from_an_excluded_package_of_another_name_names_the_excluded(
    tmp_path: Path,
) -> None:
    # The import name (fastjson) need not be the distribution's (py-fastjson).
    where = wheels(tmp_path)
    build_wheel(where, "py-fastjson", "1.0", files={"fastjson/__init__.py": ""})
    root = tmp_path / "proj"
    write_files(root, {"main.py": ENDPOINT.format(head="import fastjson", deps='["py-fastjson"]')})
    options = offline(where, exclude=("py-fastjson",))
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=options))
    assert info.value.message.endswith(
        "; if it comes from one of the --exclude'd (py-fastjson), the build imports that from "
        "this environment, where it is not installed: install it here"
    )


@pytest.mark.parametrize(
    ("ignore_file", "pattern", "rel"),
    [
        (".gitignore", "local_settings.py", "local_settings.py"),
        (".flashignore", "local_settings/", "local_settings/__init__.py"),
        ("local_settings/.gitignore", "*", "local_settings/__init__.py"),  # its own
    ],
)
def test_a_missing_project_module_an_ignore_file_leaves_out_names_that_file(
    tmp_path: Path, ignore_file: str, pattern: str, rel: str
) -> None:
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "main.py": ENDPOINT.format(head="import local_settings", deps="[]"),
            rel: "A = 1\n",
            ignore_file: pattern + "\n",
        },
    )
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert info.value.message.endswith(
        f"'local_settings' is the project's {rel}, which {ignore_file} leaves out of the "
        "build (no worker would have it either): archive it, or stop importing it"
    )


def test_a_file_system_without_locks_builds_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some network file systems refuse flock (ENOLCK): a build goes on without the lock.
    def refuse(fd: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    root = starter(tmp_path)
    monkeypatch.setattr(fcntl, "flock", refuse)
    stages: list[str] = []
    result = build_project(BuildOptions(project_dir=root), progress=lambda s, d: stages.append(s))
    assert not result.skipped and result.archive.is_file()
    assert "lock" in stages
    assert (root / ".flash" / "build.lock").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("output", [".tar.gz", ".tgz"])
def test_an_output_name_that_is_only_an_extension_is_refused(tmp_path: Path, output: str) -> None:
    root = starter(tmp_path)
    with pytest.raises(BuildError, match="must name the archive"):
        build_project(BuildOptions(project_dir=root, output=output))
    assert not (root / ".flash" / output).exists()


def _in_thread(target: Callable[[], BuildResult]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_second_build_waits_for_the_first_and_both_succeed(tmp_path: Path) -> None:
    # The first build's import check stops in a project module until the test lets it go
    # (FIFOs: no sleeps); meanwhile a second build of the same project starts. Only the first
    # import to create the `first` marker stops.
    sync = tmp_path / "sync"
    sync.mkdir()
    started, go = sync / "started", sync / "go"
    os.mkfifo(started)
    os.mkfifo(go)
    gate = f"""
        import os

        try:
            os.close(os.open({str(sync / "first")!r}, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            open({str(started)!r}, "w").close()  # the test knows the first build is here
            open({str(go)!r}).read()  # until the test lets it go
    """
    root = tmp_path / "proj"
    write_files(root, {"gate.py": gate, "main.py": ENDPOINT.format(head="import gate", deps="[]")})
    options = BuildOptions(project_dir=root, force=True)
    first, first_outcome = _in_thread(lambda: build_project(options))
    open(started).close()  # the first build is importing the project

    waiting = threading.Event()

    def progress(stage: str, detail: str) -> None:
        if stage == "waiting":
            waiting.set()

    second, second_outcome = _in_thread(lambda: build_project(options, progress=progress))
    try:
        # The second build either waits, or (without a lock) runs to its end meanwhile.
        while not waiting.wait(0.05) and second.is_alive():
            pass
        assert waiting.is_set(), f"the second build did not wait: {second_outcome}"
    finally:
        open(go, "w").close()  # let the first build go on
        first.join()
        second.join()
    assert all(isinstance(outcome[0], BuildResult) for outcome in (first_outcome, second_outcome))
    last = second_outcome[0]
    assert isinstance(last, BuildResult)
    flash_dir = root / ".flash"
    with tarfile.open(last.archive) as tar:
        inside = tar.extractfile("flash_manifest.json").read()  # type: ignore[union-attr]
    assert inside == (flash_dir / "flash_manifest.json").read_bytes()
    stamp = json.loads((flash_dir / "build_stamp.json").read_text())
    assert stamp["sha256"] == last.sha256
    assert not (flash_dir / ".build").exists()
    assert build_project(BuildOptions(project_dir=root)).skipped


def test_a_dependency_conflict_names_where_each_requirement_is_asked_for(
    tmp_path: Path,
) -> None:
    where = wheels(tmp_path)
    build_wheel(where, "tinylib", "1.0")
    root = tmp_path / "proj"
    write_files(
        root,
        {
            "requirements.txt": "tinylib<2\n",
            "main.py": """
                from flash import CpuLiveServerless, remote

                a = CpuLiveServerless(name="a")
                b = CpuLiveServerless(name="b")


                @remote(a, dependencies=["tinylib<2"])
                def one() -> None: ...


                @remote(b, dependencies=["needslib"])
                def two() -> None: ...
            """,
        },
    )
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root, dependencies=offline(where)))
    message = info.value.message
    assert message.startswith("cannot resolve dependencies for needslib, tinylib<2 (")
    assert message.endswith(
        "asked for by:\n"
        "  needslib: main.py:11 (endpoint 'b')\n"  # the @remote's line, not the def's
        "  tinylib<2: requirements.txt:1, main.py:7 (endpoint 'a')"
    )
