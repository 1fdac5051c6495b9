"""Names in the archive that would break the worker: a vendored module with a standard
library name, a dependency's cloudpickle of another major version, a dependency's
flash_manifest.json, a project's own flash.py or cloudpickle.py, two entries of one name."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import cloudpickle
import pytest
from tests.integration.projects import ONE_FUNCTION_APP, write_files
from tests.wheelhouse import build_wheel

from flash.build.archive import Entry, write_archive
from flash.build.dependencies import DependencyOptions
from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, BuildResult, build_project
from flash.build.schemas import check_handlers_and_derive_schemas

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
OUR_MAJOR = int(cloudpickle.__version__.split(".")[0])
APP = ONE_FUNCTION_APP


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheels")
    broken = "raise ImportError('the vendored copy was imported')\n"
    build_wheel(where, "enum34", "1.1.10", files={"enum/__init__.py": broken})
    build_wheel(where, "typing", "3.7.4.3", files={"typing.py": broken})
    build_wheel(where, "needs-typing", "1.0", requires=["typing"])
    build_wheel(where, "man-clash", "1.0", files={"flash_manifest.json": "{}\n"})
    # The real cloudpickle's code under other versions: the handlers import it.
    source = Path(cloudpickle.__file__).parent
    files: dict[str, str | bytes] = {
        f"cloudpickle/{p.name}": p.read_text() for p in source.glob("*.py")
    }
    build_wheel(where, "cloudpickle", f"{OUR_MAJOR - 1}.1.0", files=files)
    build_wheel(where, "cloudpickle", f"{OUR_MAJOR}.99.0", files=files)
    build_wheel(where, "needs-old-cp", "1.0", requires=[f"cloudpickle<{OUR_MAJOR}"])
    return where


def _build(root: Path, wheels: Path, requirements: str) -> BuildResult:
    write_files(root, {"app.py": APP, "requirements.txt": requirements})
    deps = DependencyOptions(python_version=PY, find_links=(str(wheels),), no_index=True)
    return build_project(BuildOptions(project_dir=root, dependencies=deps))


def _refused(root: Path, wheels: Path, requirements: str) -> str:
    with pytest.raises(BuildError) as info:
        _build(root, wheels, requirements)
    return str(info.value)


# --------------------------------------------------------------------------- standard library


def test_a_dependency_installing_a_standard_library_package_is_refused(
    tmp_path: Path, wheels: Path
) -> None:
    text = _refused(tmp_path, wheels, "enum34\n")
    assert "'enum34'" in text and "required directly: enum34" in text
    assert "installs enum/" in text and "hide the standard library's 'enum'" in text
    assert "enum34; python_version < " in text
    assert not (tmp_path / ".flash" / "archive.tar.gz").exists()


def test_a_standard_library_module_required_by_another_package_names_that_package(
    tmp_path: Path, wheels: Path
) -> None:
    text = _refused(tmp_path, wheels, "needs-typing\n")
    assert "'typing'" in text and "installs typing," in text
    assert "required by needs_typing (typing)" in text


def test_the_import_check_puts_the_build_first_on_sys_path_as_the_worker_does(
    tmp_path: Path,
) -> None:
    # enum is one the child's own imports (json, re) load: with the build's paths added
    # after them, the vendored enum went unseen while every worker imported it.
    build = tmp_path / "build"
    write_files(build, {"enum/__init__.py": "raise ImportError('vendored enum')\n"})
    write_files(build, {"handler_x.py": "X = 1\n"})
    with pytest.raises(BuildError) as info:
        check_handlers_and_derive_schemas(build, None, ["handler_x"], [], self_contained=True)
    assert "vendored enum" in str(info.value)


# --------------------------------------------------------------------------- cloudpickle


def test_a_dependency_cloudpickle_of_another_major_version_is_a_warning(
    tmp_path: Path, wheels: Path
) -> None:
    old = f"{OUR_MAJOR - 1}.1.0"
    built = _build(tmp_path, wheels, f"cloudpickle=={old}\n")
    said = [str(w) for w in built.warnings if "cloudpickle" in str(w)]
    assert len(said) == 1, built.warnings
    assert f"cloudpickle {old} (required directly: cloudpickle=={old})" in said[0]
    assert "JSON calls are unaffected" in said[0] and "VersionMismatch" in said[0]
    with tarfile.open(built.archive) as tar:  # the dependency's is the one archived
        assert "cloudpickle-" + old + ".dist-info/METADATA" in tar.getnames()


def test_a_transitive_cloudpickle_pin_names_the_package_that_pins_it(
    tmp_path: Path, wheels: Path
) -> None:
    built = _build(tmp_path, wheels, "needs-old-cp\n")
    said = [str(w) for w in built.warnings if "cloudpickle" in str(w)]
    assert len(said) == 1 and f"required by needs_old_cp (cloudpickle<{OUR_MAJOR})" in said[0]


def test_a_dependency_cloudpickle_of_the_same_major_version_says_nothing(
    tmp_path: Path, wheels: Path
) -> None:
    built = _build(tmp_path, wheels, f"cloudpickle=={OUR_MAJOR}.99.0\n")
    assert not [w for w in built.warnings if "cloudpickle" in str(w)], built.warnings


# --------------------------------------------------------------------------- reserved names


def test_a_dependency_shipping_flash_manifest_json_is_refused(tmp_path: Path, wheels: Path) -> None:
    text = _refused(tmp_path, wheels, "man-clash\n")
    assert "'man-clash'" in text and "'flash_manifest.json'" in text
    assert "the name of the manifest flash build puts in the archive" in text


@pytest.mark.parametrize("name", ["flash.py", "cloudpickle.py", "src/flash.py"])
def test_a_project_module_named_like_the_vendored_runtime_is_refused(
    tmp_path: Path, name: str
) -> None:
    files = {"app.py": APP, name: "X = 1\n"}
    if name.startswith("src/"):
        files = {"src/app.py": APP, name: "X = 1\n"}
    write_files(tmp_path, files)
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=tmp_path))
    text = str(info.value)
    assert text.startswith(name) and "top-level module named" in text
    assert "shadow the runtime" in text


def test_the_archive_refuses_two_entries_of_one_name(tmp_path: Path) -> None:
    dest = tmp_path / "a.tar.gz"
    entries = [Entry(name="x.json", data=b"1"), Entry(name="x.json", data=b"2")]
    with pytest.raises(BuildError, match=r"two files named 'x\.json'"):
        write_archive(entries, dest)
    assert list(tmp_path.iterdir()) == []
