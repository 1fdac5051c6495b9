"""Rules the build applies to what it vendors that depend on the target Python or on the
project's lock files: standard-library names of the target's (modules removed from it are
PyPI's to provide), lock files with several versions of a package, lock files as inputs of
the dependency stage. Real builds against wheels built on the fly (no network)."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest
from tests.integration.projects import ONE_FUNCTION_APP, write_files
from tests.wheelhouse import build_wheel

from flash.build.dependencies import DependencyOptions, _lock_warnings
from flash.build.errors import BuildError
from flash.build.pipeline import (
    BuildOptions,
    BuildResult,
    _stdlib_names,
    build_project,
    dependency_input_paths,
)

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
APP = ONE_FUNCTION_APP


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheels")
    build_wheel(where, "audioop-lts", "0.2.1", files={"audioop/__init__.py": "X = 1\n"})
    build_wheel(where, "needs-audioop", "1.0", requires=["audioop-lts"])
    build_wheel(where, "alpha", "1.0")
    build_wheel(where, "alpha", "2.0")
    # Two distributions that ship one file, as opencv-python and opencv-python-headless
    # both ship cv2/: with other contents, or the same.
    build_wheel(where, "tinya", "1.0", files={"tinya/__init__.py": "WHO = 'tinya'\n"})
    build_wheel(
        where,
        "tinyclash",
        "1.0",
        files={"tinya/__init__.py": "WHO = 'tinyclash'\n", "tinyclash/__init__.py": ""},
    )
    build_wheel(where, "needs-clash", "1.0", requires=["tinyclash"])
    build_wheel(
        where,
        "tinysame",
        "1.0",
        files={"tinya/__init__.py": "WHO = 'tinya'\n", "tinysame/__init__.py": ""},
    )
    # A namespace package two distributions share, each declaring it in its own words (as
    # backports.tarfile and backports.asyncio.queue do).
    for name, init in (
        ("a", "__path__ = __import__('pkgutil').extend_path(__path__, __name__)  # ns\n"),
        (
            "b",
            "# a namespace\nfrom pkgutil import extend_path\n"
            "__path__ = extend_path(__path__, __name__)\n",
        ),
    ):
        files = {"nsx/__init__.py": init, f"nsx/{name}/__init__.py": f"WHO = {name!r}\n"}
        build_wheel(where, f"nsx-{name}", "1.0", files=files)
    return where


def _build(root: Path, wheels: Path, requirements: str, python_version: str) -> BuildResult:
    write_files(root, {"app.py": APP, "requirements.txt": requirements})
    return _build_again(root, wheels, python_version)


def _build_again(root: Path, wheels: Path, python_version: str) -> BuildResult:
    deps = DependencyOptions(
        python_version=python_version, find_links=(str(wheels),), no_index=True
    )
    return build_project(BuildOptions(project_dir=root, dependencies=deps))


def _refused(root: Path, wheels: Path, requirements: str, python_version: str) -> str:
    with pytest.raises(BuildError) as info:
        _build(root, wheels, requirements, python_version)
    return str(info.value)


# --------------------------------------------------------------------------- standard library


def test_a_target_without_a_removed_stdlib_module_vendors_its_backport(
    tmp_path: Path, wheels: Path
) -> None:
    # audioop left the standard library in 3.13: discord.py needs audioop-lts there.
    built = _build(tmp_path, wheels, "audioop-lts\n", "3.13")
    with tarfile.open(built.archive) as tar:
        assert "audioop/__init__.py" in tar.getnames()


def test_a_target_with_the_stdlib_module_refuses_its_backport(tmp_path: Path, wheels: Path) -> None:
    text = _refused(tmp_path, wheels, "audioop-lts\n", "3.11")
    assert "installs audioop/" in text and "hide the standard library's 'audioop'" in text
    assert "Python 3.11 has 'audioop' built in" in text
    assert "drop audioop-lts, or add a marker: `audioop-lts; python_version < '3.11'`" in text
    assert not (tmp_path / ".flash" / "archive.tar.gz").exists()


def test_a_backport_another_package_requires_is_told_to_be_excluded(
    tmp_path: Path, wheels: Path
) -> None:
    text = _refused(tmp_path, wheels, "needs-audioop\n", "3.12.1")
    assert "required by needs_audioop (audioop-lts)" in text
    assert "Python 3.12.1 has 'audioop' built in, so leave audioop-lts out with " in text
    assert "--exclude audioop-lts" in text


def test_the_target_stdlib_names_follow_the_removals() -> None:
    assert {"audioop", "imghdr", "lib2to3", "imp"}.isdisjoint(_stdlib_names("3.13"))
    assert {"audioop", "imghdr"} <= _stdlib_names("3.12") and "imp" not in _stdlib_names("3.12")
    assert {"audioop", "imp", "distutils", "asyncore"} <= _stdlib_names("3.11.4")
    assert {"enum", "typing", "json"} <= _stdlib_names("3.13")


def test_a_project_module_named_like_a_removed_stdlib_module_builds_for_a_later_target(
    tmp_path: Path, wheels: Path
) -> None:
    write_files(tmp_path, {"imghdr.py": "X = 1\n"})
    built = _build(tmp_path, wheels, "", "3.13")
    with tarfile.open(built.archive) as tar:
        assert "imghdr.py" in tar.getnames()


# --------------------------------------------------------------------------- shared files


def test_a_file_two_distributions_ship_with_other_contents_is_refused(
    tmp_path: Path, wheels: Path
) -> None:
    # Which one the archive held depended on uv's install order: archives of the same
    # inputs differed.
    first = _build(tmp_path, wheels, "tinya==1.0\n", PY)
    before = first.archive.read_bytes()
    text = _refused(tmp_path, wheels, "tinya==1.0\ntinyclash\n", PY)
    assert "'tinya/__init__.py'" in text
    assert "tinyclash==1.0" in text and "tinya==1.0" in text
    # What to do, spelled out for either one kept.
    assert (
        "to keep tinya==1.0's, drop tinyclash from the dependencies or build with "
        "`flash build --exclude tinyclash`; to keep tinyclash==1.0's, drop tinya from the "
        "dependencies or build with `flash build --exclude tinya`" in text
    )
    assert first.archive.read_bytes() == before


def test_a_shared_file_of_a_package_another_requires_is_told_to_be_excluded(
    tmp_path: Path, wheels: Path
) -> None:
    # Dropping tinyclash from the requirements would not do: needs-clash brings it back.
    text = _refused(tmp_path, wheels, "tinya==1.0\nneeds-clash\n", PY)
    assert (
        "to keep tinya==1.0's, build with `flash build --exclude tinyclash` (needs-clash "
        "requires it)" in text
    )
    # The advice followed, the build holds tinya's file.
    deps = DependencyOptions(
        python_version=PY, find_links=(str(wheels),), no_index=True, exclude=("tinyclash",)
    )
    built = build_project(BuildOptions(project_dir=tmp_path, dependencies=deps))
    with tarfile.open(built.archive) as tar:
        member = tar.extractfile("tinya/__init__.py")
        assert member is not None and member.read() == b"WHO = 'tinya'\n"


def test_a_file_two_distributions_ship_with_the_same_contents_builds(
    tmp_path: Path, wheels: Path
) -> None:
    built = _build(tmp_path, wheels, "tinya==1.0\ntinysame\n", PY)
    with tarfile.open(built.archive) as tar:
        member = tar.extractfile("tinya/__init__.py")
        assert member is not None and member.read() == b"WHO = 'tinya'\n"


def test_a_namespace_package_two_distributions_share_builds_one_way(
    tmp_path: Path, wheels: Path
) -> None:
    # Its __init__.py is either distribution's, by install order: written anew instead.
    inits = []
    for folder, requirements in (("one", "nsx-a\nnsx-b\n"), ("two", "nsx-b\nnsx-a\n")):
        built = _build(tmp_path / folder, wheels, requirements, PY)
        with tarfile.open(built.archive) as tar:
            assert {"nsx/a/__init__.py", "nsx/b/__init__.py"} <= set(tar.getnames())
            init = tar.extractfile("nsx/__init__.py")
            assert init is not None
            inits.append(init.read())
    assert inits[0] == inits[1] and b"extend_path(__path__, __name__)" in inits[0]


# --------------------------------------------------------------------------- lock files

FORKED_LOCK = """\
version = 1
requires-python = ">=3.10"
resolution-markers = ["python_full_version < '3.12'", "python_full_version >= '3.12'"]

[[package]]
name = "alpha"
version = "1.0"
source = { registry = "wheels" }
resolution-markers = ["python_full_version < '3.12'"]

[[package]]
name = "Alpha"
version = "2.0"
source = { registry = "wheels" }
resolution-markers = ["python_full_version >= '3.12'"]
"""


def test_a_lock_with_several_versions_of_a_package_accepts_any_of_them(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text(FORKED_LOCK, encoding="utf-8")
    assert _lock_warnings(tmp_path, ["alpha==2.0"]) == []
    assert _lock_warnings(tmp_path, ["alpha==1.0"]) == []
    [warning] = _lock_warnings(tmp_path, ["alpha==3.0"])
    assert "alpha 3.0 (uv.lock: 1.0 or 2.0)" in str(warning)


def test_lock_files_are_dependency_inputs(tmp_path: Path) -> None:
    write_files(tmp_path, {"requirements.txt": "alpha\n", "uv.lock": FORKED_LOCK})
    inputs = {path.name for path in dependency_input_paths(tmp_path)}
    assert {"requirements.txt", "uv.lock"} <= inputs


def test_editing_the_lock_file_rebuilds_with_its_warning(tmp_path: Path, wheels: Path) -> None:
    # An ignored uv.lock is not collected: without it among the dependency inputs, a
    # build after an edit to it was "up to date", and the stamp's stale warning stayed.
    lock = FORKED_LOCK.replace('"2.0"', '"1.5"')
    write_files(tmp_path, {".flashignore": "uv.lock\n", "uv.lock": lock})
    first = _build(tmp_path, wheels, "alpha==2.0\n", PY)
    assert [w for w in first.warnings if "uv.lock" in str(w)]
    (tmp_path / "uv.lock").write_text(FORKED_LOCK, encoding="utf-8")
    second = _build_again(tmp_path, wheels, PY)  # the project's files untouched
    assert not second.skipped
    assert not [w for w in second.warnings if "uv.lock" in str(w)], second.warnings
