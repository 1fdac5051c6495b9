"""What a failed build tells the user to do, for project layouts Python imports otherwise
than the user meant."""

import tarfile
from pathlib import Path

import pytest
from tests.build.test_build_refusals import build_error
from tests.build.test_scanner import write

from flash.build.collect import ALWAYS_EXCLUDED, ALWAYS_EXCLUDED_FOLDERS, always_excluded_why
from flash.build.pipeline import BuildOptions, build_project

CPU = 'from flash import CpuLiveServerless, remote\n\ncfg = CpuLiveServerless(name="cpu")\n'


def remote_importing(line: str) -> str:
    """An @remote module whose first import is ``line``."""
    return f"{line}\n{CPU}\n@remote(cfg)\ndef f() -> int:\n    return 1\n"


def hint_of(text: str) -> str:
    """The advice after a failed import's report."""
    return text.rsplit("ModuleNotFoundError: ", 1)[1].split("\n", 1)[1]


# --- a package named like an always-excluded folder -------------------------------------


@pytest.mark.parametrize("folder", ["build", "dist"])
def test_a_package_named_like_a_build_output_folder_is_to_be_renamed(
    tmp_path: Path, folder: str
) -> None:
    files = {
        f"{folder}/__init__.py": "",
        f"{folder}/util.py": "def helper() -> int:\n    return 1\n",
        "app.py": remote_importing(f"from {folder}.util import helper"),
        # What the user might try first: no `!` line re-includes such a folder.
        ".flashignore": f"!{folder}/\n",
    }
    hint = hint_of(str(build_error(tmp_path, files)))
    assert f"'{folder}' is the project's {folder}/" in hint, hint
    assert "always leaves out" in hint and "build outputs" in hint
    assert "rename the package" in hint
    assert "!" not in hint and "archive it" not in hint


# --- a module imported as top-level from its own subpackage -----------------------------


def test_a_sibling_module_imported_as_top_level_gets_the_import_to_write(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/workers/__init__.py": "",
        "app/workers/utils.py": "def helper() -> int:\n    return 1\n",
        "app/workers/job.py": remote_importing("from utils import helper"),
    }
    hint = hint_of(str(build_error(tmp_path, files)))
    assert "app/workers/utils.py sits next to app/workers/job.py" in hint, hint
    assert "`from .utils import helper`" in hint
    assert "`from app.workers.utils import helper`" in hint
    assert "dependencies" not in hint and ".flashignore" not in hint


def test_a_plain_import_of_a_sibling_module_gets_the_package_import(tmp_path: Path) -> None:
    files = {
        "src/app/__init__.py": "",
        "src/app/utils.py": "def helper() -> int:\n    return 1\n",
        "src/app/job.py": remote_importing("import utils"),
        "pyproject.toml": '[project]\nname = "p"\nversion = "0"\n',
    }
    hint = hint_of(str(build_error(tmp_path, files)))
    assert "src/app/utils.py sits next to src/app/job.py" in hint, hint
    assert "`from . import utils`" in hint and "`from app import utils`" in hint


def test_a_missing_top_level_module_still_gets_the_dependency_hint(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/job.py": remote_importing("from nowhere_to_be_found import helper"),
    }
    hint = hint_of(str(build_error(tmp_path, files)))
    assert "declare that package" in hint, hint


# --- a folder without __init__.py named like a standard-library module ------------------


def test_a_stdlib_named_folder_without_init_is_said_to_be_unimportable(tmp_path: Path) -> None:
    files = {"code/a.py": "X = 1\n", "app.py": remote_importing("import os")}
    text = str(build_error(tmp_path, files))
    assert text.startswith("code/: "), text
    assert "no __init__.py" in text and "'code'" in text
    assert "`import code.a` can never reach" in text and "rename the folder" in text
    assert "would hide" not in text


def test_a_stdlib_named_folder_of_data_only_builds(tmp_path: Path) -> None:
    write(tmp_path, {"code/notes.txt": "data\n", "app.py": remote_importing("import os")})
    result = build_project(BuildOptions(project_dir=tmp_path))
    with tarfile.open(result.archive) as tar:
        assert "code/notes.txt" in tar.getnames()


# --- a module next to a package of the same name ----------------------------------------


@pytest.mark.parametrize("where", ["", "app/"])
def test_a_remote_module_beside_a_package_of_its_name_is_refused(
    tmp_path: Path, where: str
) -> None:
    files = {
        f"{where}utils.py": remote_importing("import os"),  # @remote f, at line 6
        f"{where}utils/__init__.py": "",
        "app/__init__.py": "",
        "job.py": "X = 1\n",
    }
    text = str(build_error(tmp_path, files))
    assert text.startswith(f"{where}utils.py:6: "), text
    assert f"package {where}utils/ ({where}utils/__init__.py)" in text
    dotted = f"{where.replace('/', '.')}utils"
    assert f"`import {dotted}` gets the package" in text
    assert f"no worker could reach its @remote {dotted}.f" in text
    assert "rename the module or the package" in text


@pytest.mark.parametrize("where", ["", "app/"])
def test_a_plain_module_beside_a_package_of_its_name_builds_with_a_warning(
    tmp_path: Path, where: str
) -> None:
    # A leftover or a script run by path: such projects built before.
    files = {
        f"{where}utils.py": "def helper() -> int:\n    return 1\n",
        f"{where}utils/__init__.py": "",
        "app/__init__.py": "",
        "job.py": remote_importing("import os"),
    }
    write(tmp_path, files)
    result = build_project(BuildOptions(project_dir=tmp_path))
    said = [str(w) for w in result.warnings if "sits next to the package" in w.message]
    assert len(said) == 1, result.warnings
    assert said[0].startswith(
        f"{where}utils.py: module {where}utils.py sits next to the package "
        f"{where}utils/ ({where}utils/__init__.py)"
    ), said
    assert "never imported" in said[0]
    # Said again by a build the cache answers.
    again = build_project(BuildOptions(project_dir=tmp_path))
    assert again.skipped and [str(w) for w in again.warnings] == [str(w) for w in result.warnings]


@pytest.mark.parametrize(
    "files",
    [
        # A folder without __init__.py: `import utils` gets utils.py, as meant.
        {"utils.py": remote_importing("import os"), "utils/data.py": "X = 1\n"},
        # The module is left out of the build.
        {
            "utils.py": "X = 1\n",
            "utils/__init__.py": "",
            ".flashignore": "/utils.py\n",
            "job.py": remote_importing("import os"),
        },
    ],
    ids=["namespace-folder", "flashignored-module"],
)
def test_a_module_beside_a_folder_it_does_not_clash_with_is_not_said(
    tmp_path: Path, files: dict[str, str]
) -> None:
    write(tmp_path, files)
    result = build_project(BuildOptions(project_dir=tmp_path))
    assert not [w for w in result.warnings if "sits next to" in w.message], result.warnings


# --- a missing-module hint after a note on unset secrets --------------------------------


def test_the_sibling_module_hint_survives_a_note_on_an_unset_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_SECRET_nope", raising=False)
    job = remote_importing("from utils import helper").replace(
        'name="cpu")', 'name="cpu", env={"X": "{{ RUNPOD_SECRET_nope }}"})'
    )
    files = {
        "app/__init__.py": "",
        "app/workers/__init__.py": "",
        "app/workers/utils.py": "def helper() -> int:\n    return 1\n",
        "app/workers/job.py": job,
    }
    text = str(build_error(tmp_path, files))
    assert "X (names RUNPOD_SECRET_nope)" in text, text
    assert "`from .utils import helper`" in hint_of(text), text


# --- why a folder is always left out ----------------------------------------------------


def test_every_always_excluded_folder_has_a_reason() -> None:
    folders = [p for p in ALWAYS_EXCLUDED if p.endswith("/") and not p.startswith("!")]
    assert folders and set(folders) == set(ALWAYS_EXCLUDED_FOLDERS)
    assert all(ALWAYS_EXCLUDED_FOLDERS[p] for p in folders)
    for pattern, why in ALWAYS_EXCLUDED_FOLDERS.items():
        example = pattern.strip("/").replace("*", "x")
        assert always_excluded_why(f"{example}/__init__.py") == why, pattern
