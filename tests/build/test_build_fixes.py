"""Builds of real projects against wheels written on the fly (no network): dependency
references, --force, nested ignore files, the target's grammar, vendored .pth files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.integration.projects import write_files as _project
from tests.wheelhouse import build_wheel

from flash.build.dependencies import DependencyOptions
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, BuildResult, build_project

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _app(deps: str = "[]", body: str = "return x") -> str:
    return f"""
        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="cpu")


        @remote(
            resource_config=cpu,
            dependencies={deps},
        )
        def f(x: int) -> int:
            {body}
        """


def _build(root: Path, wheels: Path, **options: Any) -> BuildResult:
    deps = DependencyOptions(python_version=PY, find_links=(str(wheels),), no_index=True)
    return build_project(BuildOptions(project_dir=root, dependencies=deps, **options))


def _archived(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


# --------------------------------------------------------------------------- 1: relative paths


def test_a_relative_path_reference_is_refused_where_it_is_written(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    root = _project(
        tmp_path / "proj", {"main.py": _app('["alpha @ ./local/alpha-1.0-py3-none-any.whl"]')}
    )
    build_wheel(root / "local", "alpha", "1.0")
    for _ in range(2):  # the second build must not find a cached bad pin either
        with pytest.raises(BuildError) as caught:
            _build(root, wheels)
        error = caught.value
        assert (error.path, error.line, error.col) == ("main.py", 8, 19)
        assert "a direct reference to a path" in error.message and "./local/alpha" in error.message
        assert "--find-links" in error.message
    assert not list((root / ".flash" / "cache" / "resolve").glob("*.json"))


@pytest.mark.parametrize(
    ("reference", "said"),
    [
        ("./local/alpha-1.0-py3-none-any.whl", "a direct reference to a path"),
        # A relative file: URL was read from the folder the build ran in.
        ("file:local/alpha-1.0-py3-none-any.whl", "a direct reference to a relative file: URL"),
    ],
)
def test_a_relative_path_reference_in_requirements_txt_is_refused_at_its_line(
    tmp_path: Path, reference: str, said: str
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    root = _project(
        tmp_path / "proj",
        {"main.py": _app(), "requirements.txt": f"# deps\nalpha @ {reference}\n"},
    )
    build_wheel(root / "local", "alpha", "1.0")
    with pytest.raises(BuildError) as caught:
        _build(root, wheels)
    assert (caught.value.path, caught.value.line) == ("requirements.txt", 2)
    assert said in caught.value.message and reference in caught.value.message
    assert "--find-links" in caught.value.message
    assert not list((root / ".flash" / "cache" / "resolve").glob("*.json"))


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("./local/alpha-1.0-py3-none-any.whl", "put its folder on --find-links"),
        ("local/alpha-1.0-py3-none-any.whl", "put its folder on --find-links"),
        (".[gpu]", "[project.optional-dependencies]"),
        (".", "the project's own files are archived as they are"),
    ],
)
def test_a_path_line_pip_takes_in_requirements_txt_gets_advice(
    tmp_path: Path, line: str, said: str
) -> None:
    # pip installs a wheel or a project folder given by its path; the build said only that
    # a package name was expected.
    root = _project(tmp_path / "proj", {"main.py": _app(), "requirements.txt": f"{line}\n"})
    with pytest.raises(BuildError) as caught:
        _build(root, tmp_path)
    assert (caught.value.path, caught.value.line) == ("requirements.txt", 1)
    message = caught.value.message
    assert f"{line!r} is a path" in message and said in message, message


# --------------------------------------------------------------------------- 2: --force


def test_force_picks_up_a_newer_version_and_a_rewritten_wheel(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "alpha", "1.0", files={"alpha/__init__.py": "WHICH = 'first'\n"})
    root = _project(tmp_path / "proj", {"main.py": _app('["alpha"]')})
    first = _build(root, wheels)
    assert first.manifest.dependencies.pins == ["alpha==1.0"]

    # The same version, rewritten: only a reinstall sees it.
    (wheels / "alpha-1.0-py3-none-any.whl").unlink()
    build_wheel(wheels, "alpha", "1.0", files={"alpha/__init__.py": "WHICH = 'second'\n"})
    again = _build(root, wheels, force=True)
    assert _archived(again.archive, "alpha/__init__.py") == b"WHICH = 'second'\n"

    # A newer version: only a new resolution sees it.
    build_wheel(wheels, "alpha", "2.0")
    newer = _build(root, wheels, force=True)
    assert newer.manifest.dependencies.pins == ["alpha==2.0"]
    assert b"2.0" in _archived(newer.archive, "alpha/__init__.py")
    # ... and the refreshed results are what a later build without --force uses.
    (root / "main.py").write_text((root / "main.py").read_text() + "\n# changed\n")
    later = _build(root, wheels)
    assert later.manifest.dependencies.pins == ["alpha==2.0"]


@pytest.mark.parametrize(
    "where", ["proj/wheels", "proj/dist", "mylib/dist", "proj/gitignored", "proj/named"]
)
def test_a_wheel_rebuilt_under_its_version_is_vendored_anew(tmp_path: Path, where: str) -> None:
    # `pip wheel ./mylib -w wheels` in a loop: the build saw the project change, but
    # vendored the old wheel's files, cached under the same pins; and with the wheel out of
    # the archived files (dist/, another folder, an ignored one) it saw no change at all.
    files = {"main.py": _app('["alpha"]'), ".gitignore": "gitignored/\n"}
    if where == "proj/named":  # found through requirements.txt, not an option
        files["requirements.txt"] = "--find-links named\n"
    root = _project(tmp_path / "proj", files)
    wheels = tmp_path / where
    found_by = tmp_path / "none" if where == "proj/named" else wheels
    found_by.mkdir(parents=True, exist_ok=True)
    build_wheel(wheels, "alpha", "1.0", files={"alpha/__init__.py": "WHICH = 'first'\n"})
    first = _build(root, found_by)
    assert _archived(first.archive, "alpha/__init__.py") == b"WHICH = 'first'\n"

    build_wheel(wheels, "alpha", "1.0", files={"alpha/__init__.py": "WHICH = 'second'\n"})
    again = _build(root, found_by)
    assert not again.skipped
    assert _archived(again.archive, "alpha/__init__.py") == b"WHICH = 'second'\n"
    assert _build(root, found_by).skipped  # unchanged since: up to date


def test_a_wheel_rebuilt_with_a_new_dependency_vendors_it(tmp_path: Path) -> None:
    # The rebuilt wheel's METADATA requires another package of the wheelhouse: the cached
    # resolution, made from the old METADATA, left it out until `flash build --force`.
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "alpha", "1.0")
    build_wheel(wheels, "beta", "1.0")
    root = _project(tmp_path / "proj", {"main.py": _app('["alpha"]')})
    assert _build(root, wheels).manifest.dependencies.pins == ["alpha==1.0"]

    build_wheel(wheels, "alpha", "1.0", requires=["beta"])
    again = _build(root, wheels)
    assert again.manifest.dependencies.pins == ["alpha==1.0", "beta==1.0"]
    assert "beta/__init__.py" in _names(again.archive)
    assert _build(root, wheels).skipped  # unchanged since: up to date
    # With the wheels unchanged, a rebuild takes the cached resolution: uv resolves nothing.
    resolutions = root / ".flash" / "cache" / "resolve"
    made = {path: path.stat().st_mtime_ns for path in resolutions.iterdir()}
    (root / "main.py").write_text((root / "main.py").read_text() + "\n# changed\n")
    assert not _build(root, wheels).skipped
    assert {path: path.stat().st_mtime_ns for path in resolutions.iterdir()} == made


def test_force_is_documented_as_refreshing_dependencies() -> None:
    from typer.testing import CliRunner

    from flash.cli.main import app

    result = CliRunner().invoke(app, ["build", "--help"], env={"COLUMNS": "200"})
    assert "re-resolve" in result.output and "reinstall" in result.output


# --------------------------------------------------------------------------- 3: nested ignores

_IGNORE_CASES: dict[str, str] = {
    ".flashignore": "*.log\nbuild/\ntmp\n",
    "a/.flashignore": "!c/\n!keep.log\n",
    "a/c/f.log": "x",
    "a/c/g.py": "x = 1\n",
    "a/keep.log": "x",
    "a/other.log": "x",
    "a/tmp/t.py": "x = 1\n",
    "build/b.py": "x = 1\n",
    "main.py": "x = 1\n",
}


def test_nested_ignore_files_follow_git(tmp_path: Path) -> None:
    from flash.build.collect import collect_files, is_ignored

    root = _project(tmp_path / "proj", _IGNORE_CASES)
    files = [name for name in _IGNORE_CASES if not name.endswith(".flashignore")]
    expected_ignored = {"a/c/f.log", "a/other.log", "a/tmp/t.py", "build/b.py"}
    collected = set(collect_files(root))
    assert {name for name in files if name not in collected} == expected_ignored
    assert {name for name in files if is_ignored(root, name)} == expected_ignored
    git = shutil.which("git")
    if git is None:
        return
    # The same answers as git's, with the same patterns in .gitignore files.
    repo = tmp_path / "repo"
    _project(repo, {k.replace(".flashignore", ".gitignore"): v for k, v in _IGNORE_CASES.items()})
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    checked = subprocess.run(
        [git, "-C", str(repo), "check-ignore", "--no-index", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert set(checked.stdout.split()) == expected_ignored


# --------------------------------------------------------------------------- 4: target grammar


@pytest.mark.skipif(sys.version_info < (3, 11), reason="this Python cannot parse except* itself")
def test_syntax_the_target_python_cannot_run_is_refused_at_its_place(tmp_path: Path) -> None:
    body = "\n            ".join(
        ["try:", "    y = x", "except* ValueError:", "    y = 0", "return y"]
    )
    root = _project(tmp_path / "proj", {"main.py": _app(body=body)})
    options = BuildOptions(project_dir=root, dependencies=DependencyOptions(python_version="3.10"))
    with pytest.raises(BuildError) as caught:
        build_project(options)
    error = caught.value
    # Where CPython's parser says: the first line of the except* block.
    assert (error.path, error.line, error.col) == ("main.py", 15, 5)
    assert str(error).startswith("main.py:15:5: syntax error for Python 3.10")
    assert "Python 3.10" in error.message and "Exception groups" in error.message
    # The same project builds for a target that runs it.
    built = build_project(replace(options, dependencies=DependencyOptions(python_version=PY)))
    assert "main.py" in _names(built.archive)


# --------------------------------------------------------------------------- 5: flash, transitively


def test_a_dependency_that_requires_flash_builds_without_it(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "needsflash", "1.0", requires=["flash>=1"])
    build_wheel(wheels, "flash", "9.9", requires=["onlyflash"])
    build_wheel(wheels, "onlyflash", "1.0")
    root = _project(tmp_path / "proj", {"main.py": _app('["needsflash"]')})
    result = _build(root, wheels)
    assert result.manifest.dependencies.pins == ["needsflash==1.0"]
    archived = _names(result.archive)
    assert "needsflash/__init__.py" in archived and "onlyflash/__init__.py" not in archived
    stub = _archived(result.archive, "flash/__init__.py")
    assert b"9.9" not in stub  # the archive's own Flash, not the wheel's


def test_a_dependency_shipping_a_handler_file_is_named_in_the_error(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "intruder", "1.0", files={"handler_cpu.py": "x = 1\n"})
    root = _project(tmp_path / "proj", {"main.py": _app('["intruder"]')})
    with pytest.raises(BuildError) as caught:
        _build(root, wheels)
    message = caught.value.message
    assert "'intruder'" in message and "handler_cpu.py" in message
    assert "project file" not in message and "--exclude intruder" in message


# --------------------------------------------------------------------------- 7: .pth files


def test_a_vendored_pth_file_puts_its_folder_on_the_workers_path(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(
        wheels,
        "pthpkg",
        "1.0",
        files={"pthpkg.pth": "pthpkg_lib\n", "pthpkg_lib/realmod.py": "VALUE = 42\n"},
    )
    app = "import realmod\n" + textwrap.dedent(_app('["pthpkg"]', "return realmod.VALUE + x"))
    root = _project(tmp_path / "proj", {"main.py": app})
    result = _build(root, wheels)  # the build imports the handler: realmod must load
    extracted = tmp_path / "extracted"
    with tarfile.open(result.archive) as tar:
        tar.extractall(extracted, filter="data")
    # As a worker runs it: the archive alone on sys.path, no site-packages.
    code = (
        f"import sys; sys.path.insert(0, {str(extracted)!r}); import handler_cpu, realmod; "
        "print(realmod.VALUE)"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "42"


# --------------------------------------------------------------------------- 8: small ones


def test_a_file_url_dependency_leaves_no_path_of_this_machine_in_what_it_vendors(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "somewhere-on-this-machine"
    wheel = build_wheel(wheels, "alpha", "1.0")
    url = wheel.as_uri()
    root = _project(tmp_path / "proj", {"main.py": _app(f'["alpha @ {url}"]')})
    (tmp_path / "empty").mkdir()
    result = _build(root, tmp_path / "empty")
    assert result.manifest.dependencies.pins == [f"alpha @ {url}"]
    archive = result.archive
    assert "alpha/__init__.py" in _names(archive)
    # The project's own text names the URL (main.py, the manifest); nothing vendored does.
    with tarfile.open(archive) as tar:
        leaking = [
            member.name
            for member in tar.getmembers()
            if member.isfile()
            and member.name not in ("main.py", "flash_manifest.json")
            and str(wheels).encode() in tar.extractfile(member).read()  # type: ignore[union-attr]
        ]
    assert leaking == []


def test_asked_for_by_names_the_remote_decorators_line(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    root = _project(tmp_path / "proj", {"main.py": _app('["nowhere-to-be-found"]')})
    with pytest.raises(BuildError) as caught:
        _build(root, wheels)
    # The decorator starts on line 6 (its options span lines 6 to 9), the def on line 10.
    assert "asked for by" in caught.value.message
    assert "main.py:6 (endpoint 'cpu')" in caught.value.message
