"""How flash build reads what a project says about its dependencies beyond the requirements:
--exclude names, file: URLs, constraints files, hashed requirements, lock files and
requires-python. Real uv resolutions against wheels built on the fly (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.wheelhouse import build_wheel

from flash.build.dependencies import DependencyOptions, ResolvedDependencies, vendor_dependencies
from flash.build.errors import BuildError


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wheels")
    build_wheel(d, "alpha", "1.0")
    build_wheel(d, "alpha", "2.0")
    build_wheel(d, "beta", "1.0", requires=["gamma"])  # gamma: needed by beta only
    build_wheel(d, "gamma", "1.0")
    build_wheel(d, "tinyc", "1.0", requires=['gamma; extra == "fast"'], extras=["fast"])
    build_wheel(d, "asks-tinyc", "1.0", requires=["tinyc[quick]"])  # a dependency's typo
    return d


def _vendor(project: Path, wheels: Path, cache: Path, **options: object) -> ResolvedDependencies:
    opts = DependencyOptions(
        python_version="3.11",
        find_links=(str(wheels),),
        no_index=True,
        **options,  # type: ignore[arg-type]
    )
    return vendor_dependencies(project, [], opts, cache)


def _project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _messages(resolved: ResolvedDependencies) -> list[str]:
    return [str(warning) for warning in resolved.warnings]


def test_misspelled_exclude_is_warned_about(tmp_path: Path, wheels: Path) -> None:
    project = _project(tmp_path / "p", {"requirements.txt": "alpha\nbeta\n"})
    resolved = _vendor(project, wheels, tmp_path / "cache", exclude=("betta",))
    assert "beta==1.0" in resolved.pins  # the package it meant is vendored after all
    assert any(
        "--exclude betta matches no package the dependencies resolve to" in m
        for m in _messages(resolved)
    )


def test_exclude_of_a_dependency_only_excluded_packages_need_is_no_mistake(
    tmp_path: Path, wheels: Path
) -> None:
    # gamma is required by beta alone: neither a requirement nor in what is installed.
    project = _project(tmp_path / "p", {"requirements.txt": "alpha\nbeta\n"})
    resolved = _vendor(project, wheels, tmp_path / "cache", exclude=("beta", "Gamma"))
    assert resolved.pins == ("alpha==2.0",)
    assert not [m for m in _messages(resolved) if "--exclude" in m]


def test_an_extra_the_package_does_not_have_is_warned_about_where_it_is_asked_for(
    tmp_path: Path, wheels: Path
) -> None:
    # uv drops it with a warning of its own, which the build did not show: a misspelt
    # extra silently left out what it would add.
    project = _project(tmp_path / "p", {"requirements.txt": "alpha\ntinyc[fast]\n"})
    opts = DependencyOptions(python_version="3.11", find_links=(str(wheels),), no_index=True)
    declared = [("tinyc[fats]", "main.py:5 (endpoint 'cpu')")]
    for _ in range(2):  # the second from the cached resolution
        resolved = vendor_dependencies(project, declared, opts, tmp_path / "cache")
        assert "gamma==1.0" in resolved.pins  # the real extra is vendored
        [warning] = [m for m in _messages(resolved) if "extra" in m]
        assert "tinyc 1.0 has no extra named 'fats'" in warning
        assert "tinyc[fats] (main.py:5 (endpoint 'cpu'))" in warning
        assert "its extras: fast" in warning


def test_an_extra_a_dependency_asks_for_is_not_the_projects_to_spell(
    tmp_path: Path, wheels: Path
) -> None:
    project = _project(tmp_path / "p", {"requirements.txt": "asks-tinyc\n"})
    [warning] = [m for m in _messages(_vendor(project, wheels, tmp_path / "c")) if "extra" in m]
    assert "tinyc 1.0 has no extra named 'quick'" in warning
    assert "a dependency asks for it; its extras: fast" in warning
    assert "spelling" not in warning


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ('[tool.uv.sources]\nalpha = { path = "../alpha" }\n', 5),
        ('[[tool.uv.index]]\nname = "private"\nurl = "https://pypi.example/simple"\n', 5),
    ],
)
def test_uv_package_source_tables_are_warned_about(
    tmp_path: Path, wheels: Path, table: str, line: int
) -> None:
    # uv runs without the project's configuration: where alpha comes from is the build's
    # --index-url/--find-links, not the table's.
    pyproject = f'[project]\nname = "p"\ndependencies = ["alpha"]\n\n{table}'
    project = _project(tmp_path / "p", {"pyproject.toml": pyproject})
    resolved = _vendor(project, wheels, tmp_path / "cache")
    [warning] = resolved.warnings
    header = table.split("\n", 1)[0]
    assert (warning.path, warning.line) == ("pyproject.toml", line)
    assert warning.message.startswith(f"{header} is uv's own table; flash build does not read it")
    assert "--index-url" in warning.message and "--find-links" in warning.message


@pytest.mark.parametrize(
    "setting",
    [
        'override-dependencies = ["alpha==1.0"]',
        'find-links = ["../wheels"]',
        "prerelease = 'allow'",
    ],
)
def test_uv_resolution_settings_are_warned_about(
    tmp_path: Path, wheels: Path, setting: str
) -> None:
    pyproject = f'[project]\nname = "p"\ndependencies = ["alpha"]\n\n[tool.uv]\n{setting}\n'
    project = _project(tmp_path / "p", {"pyproject.toml": pyproject})
    [warning] = _vendor(project, wheels, tmp_path / "cache").warnings
    key = setting.split(" ", 1)[0]
    assert (warning.path, warning.line) == ("pyproject.toml", 6)
    assert warning.message.startswith(f"{key} in [tool.uv] is uv's own setting")
    assert "-c files" in warning.message


def test_a_conflict_with_a_constraints_file_names_its_line(tmp_path: Path, wheels: Path) -> None:
    project = _project(
        tmp_path / "p",
        {
            "requirements.txt": "-c reqs/constraints.txt\n",
            "reqs/constraints.txt": "alpha<2\n",
            "pyproject.toml": '[project]\nname = "p"\nversion = "0.1"\n'
            'dependencies = ["alpha==2.0"]\n',
        },
    )
    with pytest.raises(BuildError) as caught:
        _vendor(project, wheels, tmp_path / "cache")
    message = str(caught.value)
    assert "alpha==2.0: pyproject.toml:4" in message
    assert "constrained by:\n  alpha<2: reqs/constraints.txt:1" in message


def test_hashed_requirements_say_how_to_export_without_hashes(tmp_path: Path) -> None:
    digest = "0" * 64
    project = _project(
        tmp_path / "p",
        {
            "requirements.txt": f"alpha==1.0 \\\n    --hash=sha256:{digest}\n"
            f"beta==1.0 \\\n    --hash=sha256:{digest} \\\n    --hash=sha256:{digest}\n",
        },
    )
    with pytest.raises(BuildError) as caught:
        _vendor(project, tmp_path, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("requirements.txt:1:")
    assert "2 requirements carry hashes" in message
    assert "uv export --no-hashes" in message and "--generate-hashes" in message


UV_LOCK = """\
version = 1
requires-python = ">=3.10"

[[package]]
name = "alpha"
version = "1.0"
source = { registry = "wheels" }
"""


def test_a_lock_file_the_build_does_not_follow_is_warned_about(
    tmp_path: Path, wheels: Path
) -> None:
    pyproject = '[project]\nname = "p"\nversion = "0.1"\ndependencies = ["alpha"]\n'
    project = _project(tmp_path / "p", {"pyproject.toml": pyproject, "uv.lock": UV_LOCK})
    resolved = _vendor(project, wheels, tmp_path / "cache")
    assert resolved.pins == ("alpha==2.0",)
    [warning] = [m for m in _messages(resolved) if "uv.lock" in m]
    assert "alpha 2.0 (uv.lock: 1.0)" in warning
    assert "uv export --no-hashes -o requirements.txt" in warning

    # Exported to requirements.txt, the lock's versions are vendored: nothing to say.
    (project / "requirements.txt").write_text("alpha==1.0\n", encoding="utf-8")
    resolved = _vendor(project, wheels, tmp_path / "cache")
    assert resolved.pins == ("alpha==1.0",)
    assert not [m for m in _messages(resolved) if "uv.lock" in m]


@pytest.mark.parametrize(
    ("requires", "warned"), [(">=3.12", True), ("~=3.11.4", False), (">=3.10", False)]
)
def test_requires_python_that_excludes_the_target_is_warned_about(
    tmp_path: Path, wheels: Path, requires: str, warned: bool
) -> None:
    pyproject = (
        f'[project]\nname = "p"\nversion = "0.1"\nrequires-python = "{requires}"\n'
        'dependencies = ["alpha"]\n'
    )
    project = _project(tmp_path / "p", {"pyproject.toml": pyproject})
    found = [m for m in _messages(_vendor(project, wheels, tmp_path / "cache")) if "requires" in m]
    expected = f"pyproject.toml:4: [project] requires-python '{requires}' excludes the target"
    assert [m.startswith(expected) for m in found] == ([True] if warned else [])
