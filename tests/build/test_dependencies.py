"""Dependency gathering, resolution and vendoring against wheels built on the fly (no network)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import SixFailsIndex, serve_http
from tests.wheelhouse import LINUX_X86_64_CP311_TAG, MACOS_ARM64_CP311_TAG, build_wheel

from flash.build import dependencies
from flash.build.dependencies import (
    DependencyOptions,
    gather_requirements,
    install,
    package_sizes,
    resolve,
    vendor_dependencies,
)
from flash.build.errors import BuildError

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(d, "alpha", "1.0", requires=["beta>=1"])
    build_wheel(d, "beta", "1.0")
    build_wheel(d, "beta", "2.0", requires=['gamma; python_version >= "3.12"'])
    build_wheel(d, "gamma", "0.1")
    build_wheel(d, "fast-lib", "1.0", tag=LINUX_X86_64_CP311_TAG)
    build_wheel(d, "fast-lib", "1.0", tag=MACOS_ARM64_CP311_TAG)
    build_wheel(d, "mac-only", "1.0", tag=MACOS_ARM64_CP311_TAG)
    build_wheel(d, "needs-missing", "1.0", requires=["zeta>=1"])
    build_wheel(d, "big", "1.0", files={"big/__init__.py": "", "big/blob.bin": b"x" * 50_000})
    build_wheel(d, "small", "1.0", files={"small/__init__.py": "", "small/blob.bin": b"x" * 5_000})
    build_wheel(
        d,
        "tool",
        "1.0",
        files={
            "tool/__init__.py": "def main() -> None:\n    print('tool')\n",
            "tool/__pycache__/__init__.cpython-311.pyc": b"stale bytecode",
            "tool/legacy.pyc": b"stale bytecode",
            "tool-1.0.dist-info/entry_points.txt": "[console_scripts]\ntool = tool:main\n",
            "tool-1.0.data/scripts/tool-sh": "#!/bin/sh\necho tool\n",
        },
    )
    return d


@pytest.fixture
def own_wheelhouse(wheelhouse: Path, tmp_path: Path) -> Path:
    """A private copy that a test may delete."""
    return Path(shutil.copytree(wheelhouse, tmp_path / "own-wheels"))


def _options(wheels: Path, **changes: Any) -> DependencyOptions:
    base = DependencyOptions(
        python_version="3.11",
        platform="x86_64-manylinux_2_28",
        find_links=(str(wheels),),
        no_index=True,
    )
    return replace(base, **changes)


def _python_in(site_dir: Path, code: str) -> str:
    """Run ``code`` in a fresh interpreter that sees only ``site_dir`` as extra packages.

    ``-B`` keeps the interpreter from writing bytecode into the cached site directory.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-B",
            "-c",
            f"import sys; sys.path.insert(0, {str(site_dir)!r})\n{code}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


# --------------------------------------------------------------------------- gathering


def test_gather_unions_all_sources_follows_includes_and_dedupes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        textwrap.dedent(
            """\
            # production deps

            requests>=2.0  # http
            -r extra/more.txt
            Pillow[tiff,jpeg] \\
                >=10
            """
        )
    )
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "more.txt").write_text(
        "numpy>=1.20\n--requirement=../requirements.txt\nscipy\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\ndependencies = ["NumPy >= 1.20", "rich"]\n'
    )
    got = gather_requirements(tmp_path, ["torch==2.3.0", "requests >=2.0", "numpy<2"])
    assert got == [
        "numpy<2",
        "numpy>=1.20",
        "pillow[jpeg,tiff]>=10",
        "requests>=2.0",
        "rich",
        "scipy",
        "torch==2.3.0",
    ]


def test_utf16_requirements_files_are_read_by_their_byte_order_mark(tmp_path: Path) -> None:
    # pip reads them (Windows editors write them): the build must too, includes and all.
    (tmp_path / "requirements.txt").write_bytes("rich\n-r more.txt\n".encode("utf-16"))
    (tmp_path / "more.txt").write_bytes("scipy\n".encode("utf-8-sig"))
    assert gather_requirements(tmp_path, []) == ["rich", "scipy"]
    (tmp_path / "more.txt").write_bytes(b"scipy \xff\n")  # no mark, and not UTF-8 either
    with pytest.raises(BuildError, match="cannot read requirements file"):
        gather_requirements(tmp_path, [])


def test_gather_with_no_sources_is_empty(tmp_path: Path) -> None:
    assert gather_requirements(tmp_path, []) == []


def test_bad_requirement_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-r sub/more.txt\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("# ok\nnumpy\nnot a requirement!\n")
    with pytest.raises(BuildError) as info:
        gather_requirements(tmp_path, [])
    assert (info.value.path, info.value.line) == ("sub/more.txt", 3)
    assert str(info.value).startswith("sub/more.txt:3: invalid requirement 'not a requirement!'")


def test_missing_include_names_the_including_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n-r nowhere.txt\n")
    with pytest.raises(BuildError, match=r"nowhere\.txt") as info:
        gather_requirements(tmp_path, [])
    assert (info.value.path, info.value.line) == ("requirements.txt", 2)


def test_bad_pyproject_dependency_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\ndependencies = [\n  "rich",\n  "bad spec here",\n]\n'
    )
    with pytest.raises(BuildError, match="bad spec here") as info:
        gather_requirements(tmp_path, [])
    assert (info.value.path, info.value.line) == ("pyproject.toml", 5)


def test_invalid_pyproject_toml_is_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["a"\n')
    with pytest.raises(BuildError, match="invalid TOML") as info:
        gather_requirements(tmp_path, [])
    assert info.value.path == "pyproject.toml"


def test_a_pyproject_toml_nested_too_deeply_is_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(BuildError, match="nested too deeply") as info:
        gather_requirements(tmp_path, [])
    assert info.value.path == "pyproject.toml"


def test_bad_declared_dependency_says_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"'numpy>>1' in @remote\(dependencies=\.\.\.\)"):
        gather_requirements(tmp_path, ["numpy>>1"])


def test_gather_without_packaging_installed(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("Requests >= 2.0\nPillow[tiff, jpeg]\n")
    code = textwrap.dedent(
        f"""\
        import sys
        sys.modules["packaging"] = None  # as if the package were not installed
        sys.path.insert(0, {str(SRC)!r})
        from pathlib import Path
        from flash.build.dependencies import gather_requirements
        from flash.build.errors import BuildError
        print(gather_requirements(Path({str(tmp_path)!r}), ["requests>=2.0", "x; os_name=='nt'"]))
        try:
            gather_requirements(Path({str(tmp_path)!r}), ["not a requirement!"])
        except BuildError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed, error = result.stdout.splitlines()
    assert listed == "['pillow[jpeg,tiff]', 'requests>=2.0', \"x; os_name=='nt'\"]"
    assert "invalid requirement 'not a requirement!'" in error


# ------------------------------------------------------------------ requirements-file options


def _simple_index(wheels: Path, dest: Path) -> str:
    """A PEP 503 index of ``wheels`` in ``dest``, as a file:// URL (uv reads those)."""
    for wheel in wheels.glob("*.whl"):
        project = dest / wheel.name.split("-")[0].replace("_", "-")
        project.mkdir(parents=True, exist_ok=True)
        with (project / "index.html").open("a") as page:
            page.write(f'<a href="{wheel.resolve().as_uri()}">{wheel.name}</a>\n')
    return dest.resolve().as_uri()


def _project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_constraints_files_limit_versions_as_pip_install_r_does(
    wheelhouse: Path, tmp_path: Path
) -> None:
    root = _project(
        tmp_path,
        {
            "project/requirements.txt": "-c ../shared/cons.txt\nalpha\n",
            # A constraint only limits versions: gamma is never installed for it.
            "shared/cons.txt": "--requirement more-cons.txt\ngamma==0.1\n",
            # Included from a constraints file, so constraints too.
            "shared/more-cons.txt": "Beta==1.0\n",
        },
    )
    project, cache = root / "project", tmp_path / "cache"
    options = _options(wheelhouse)
    result = vendor_dependencies(project, ["beta"], options, cache)
    assert result.requirements == ("alpha", "beta")
    assert result.pins == ("alpha==1.0", "beta==1.0")  # 2.0 without the constraint
    assert result.site_dir is not None
    assert _python_in(result.site_dir, "import beta; print(beta.VERSION)") == "1.0"
    # A changed constraints file is a new resolution, not the cached one.
    (root / "shared" / "more-cons.txt").write_text("beta>=2\n")
    assert vendor_dependencies(project, ["beta"], options, cache).pins == (
        "alpha==1.0",
        "beta==2.0",
    )


def test_a_constraint_that_conflicts_fails_naming_the_package(
    wheelhouse: Path, tmp_path: Path
) -> None:
    project = _project(
        tmp_path, {"requirements.txt": "--constraint=cons.txt\n", "cons.txt": "beta<1"}
    )
    with pytest.raises(BuildError, match=r"(?s)for beta>=2 .*beta") as info:
        vendor_dependencies(project, ["beta>=2"], _options(wheelhouse), tmp_path / "cache")
    assert "\x1b[" not in str(info.value)


def test_index_options_in_requirements_files_are_applied(wheelhouse: Path, tmp_path: Path) -> None:
    index = _simple_index(wheelhouse, tmp_path / "simple")
    project = _project(
        tmp_path / "project",
        {
            # -f is read relative to the file that names it, as pip reads it.
            "requirements.txt": f"-i {index}\n-r reqs/more.txt\nalpha\n",
            "reqs/more.txt": "--find-links ../wheels\nsmall\n",
        },
    )
    shutil.copytree(wheelhouse, project / "wheels")
    # The build itself names no package source at all.
    options = DependencyOptions(python_version="3.11")
    result = vendor_dependencies(project, [], options, tmp_path / "cache")
    assert result.pins == ("alpha==1.0", "beta==2.0", "small==1.0")


def test_no_index_and_pre_in_a_requirements_file_are_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_wheel(tmp_path / "wheels", "preview", "1.0")
    build_wheel(tmp_path / "wheels", "preview", "2.0rc1")
    wheels = tmp_path / "wheels"
    project = _project(tmp_path / "project", {"requirements.txt": "preview\n"})
    # An index nothing listens on: uv reaching it would fail the build.
    options = DependencyOptions(python_version="3.11", index_url="http://127.0.0.1:9/simple")
    (project / "requirements.txt").write_text(f"--no-index\n-f {wheels}\npreview\n")
    result = vendor_dependencies(project, [], options, tmp_path / "cache")
    assert result.pins == ("preview==1.0",)
    (project / "requirements.txt").write_text(f"--no-index\n-f{wheels}\n--pre\npreview\n")
    result = vendor_dependencies(project, [], options, tmp_path / "cache")
    assert result.pins == ("preview==2.0rc1",)
    # A variable is not expanded: its value (a token, often) would show in uv's messages.
    monkeypatch.setenv("INDEX_TOKEN", "s3cret")
    (project / "requirements.txt").write_text(
        "--extra-index-url https://idx.example/${INDEX_TOKEN}/simple\npreview\n"
    )
    with pytest.raises(BuildError, match=r"does not expand \$\{\.\.\.\}") as info:
        vendor_dependencies(project, [], options, tmp_path / "cache")
    assert (info.value.path, info.value.line) == ("requirements.txt", 1)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-e .", "--editable is not supported by flash build: an editable install"),
        ("--editable=./lib", "--editable is not supported"),
        ("--no-binary :all:", "--no-binary is not supported by flash build: flash build installs"),
        ("--require-hashes", "--require-hashes is not supported"),
        ("--trusted-host pypi.example", "--trusted-host is not supported"),
        ("--use-feature=truststore", "--use-feature in a requirements file is not supported"),
        ("-x", "-x in a requirements file is not supported"),
        ("--", "-- in a requirements file is not supported"),
        ("-- alpha", "-- alpha in a requirements file is not supported"),
        ("-r ${STAGE}.txt", "--requirement ${STAGE}.txt: flash build does not expand"),
        ("alpha==1.0 --hash=sha256:abc", "options after a requirement are not supported"),
        ("--pre --no-index", "--pre takes no value (one option a line)"),
        ("--index-url", "--index-url needs a value"),
        ("-c nowhere.txt", "included constraints file 'nowhere.txt' does not exist"),
        ("-f nowhere", "--find-links 'nowhere' does not exist"),
    ],
)
def test_requirements_file_options_that_cannot_be_applied_are_errors(
    tmp_path: Path, line: str, message: str
) -> None:
    # Included, so the line is also counted in the right file.
    _project(tmp_path, {"requirements.txt": "-r sub/more.txt\n", "sub/more.txt": f"rich\n{line}\n"})
    with pytest.raises(BuildError) as info:
        gather_requirements(tmp_path, [])
    assert str(info.value).startswith(f"sub/more.txt:2: {message}"), str(info.value)


def test_an_index_url_in_a_file_must_agree_with_the_build(wheelhouse: Path, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "alpha\n--index-url https://u:tok@a.example/simple\n"
    )
    options = _options(wheelhouse, index_url="https://b.example/simple")
    with pytest.raises(BuildError) as info:
        vendor_dependencies(tmp_path, [], options, tmp_path / "cache")
    # Index URLs are masked after their host: a token may be in their path.
    assert str(info.value) == (
        "requirements.txt:2: --index-url 'https://****@a.example/****' differs from the "
        "build's --index-url 'https://b.example/****'; keep one"
    )
    # Told apart where the masking shows the two alike.
    options = _options(wheelhouse, index_url="https://a.example/other/simple")
    with pytest.raises(BuildError) as info:
        vendor_dependencies(tmp_path, [], options, tmp_path / "cache")
    assert str(info.value) == (
        "requirements.txt:2: --index-url 'https://****@a.example/****' differs after their "
        "host (masked here) from the build's --index-url 'https://a.example/****'; keep one"
    )


# --------------------------------------------------------------------------- resolving


def test_resolve_pins_transitive_dependencies_for_the_target_python(
    wheelhouse: Path, tmp_path: Path
) -> None:
    assert resolve(["alpha"], _options(wheelhouse), tmp_path) == ["alpha==1.0", "beta==2.0"]
    # beta 2.0 needs gamma only on Python 3.12+: markers are evaluated for the target.
    pins = resolve(["alpha"], _options(wheelhouse, python_version="3.12"), tmp_path)
    assert pins == ["alpha==1.0", "beta==2.0", "gamma==0.1"]


def test_resolve_respects_specifiers(wheelhouse: Path, tmp_path: Path) -> None:
    pins = resolve(["alpha", "beta<2"], _options(wheelhouse), tmp_path)
    assert pins == ["alpha==1.0", "beta==1.0"]


def test_no_deps_keeps_only_direct_requirements(wheelhouse: Path, tmp_path: Path) -> None:
    options = _options(wheelhouse, no_deps=True, python_version="3.12")
    assert resolve(["alpha", "small"], options, tmp_path) == ["alpha==1.0", "small==1.0"]


def test_exclude_drops_package_and_what_only_it_needs(wheelhouse: Path, tmp_path: Path) -> None:
    options = _options(wheelhouse, python_version="3.12", exclude=("beta",))
    assert resolve(["alpha", "small"], options, tmp_path) == ["alpha==1.0", "small==1.0"]


def test_empty_requirements_resolve_to_nothing_without_uv(tmp_path: Path) -> None:
    # No find-links at all: running uv would have nothing to resolve against.
    assert resolve([], DependencyOptions(no_index=True), tmp_path) == []
    assert not (tmp_path / "uv").exists()


def test_missing_requirement_is_named(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        resolve(["alpha", "nonexistent-pkg>=2"], _options(wheelhouse), tmp_path)
    message = str(info.value)
    assert message.startswith(
        "cannot resolve dependencies for nonexistent-pkg>=2 (Python 3.11 on x86_64-manylinux_2_28)"
    )
    assert "nonexistent-pkg was not found" in message
    assert "\x1b[" not in message
    assert not (tmp_path / "resolve").exists()  # failures are not cached


def test_missing_transitive_requirement_names_both(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="for needs-missing ") as info:
        resolve(["needs-missing", "small"], _options(wheelhouse), tmp_path)
    assert "zeta" in str(info.value)


def test_platform_specific_wheel_is_chosen_for_the_target(wheelhouse: Path, tmp_path: Path) -> None:
    for platform, expected_tag in [
        ("x86_64-manylinux_2_28", LINUX_X86_64_CP311_TAG),
        ("aarch64-apple-darwin", MACOS_ARM64_CP311_TAG),
    ]:
        options = _options(wheelhouse, platform=platform)
        pins = resolve(["fast-lib"], options, tmp_path)
        assert pins == ["fast-lib==1.0"]
        site = install(pins, options, tmp_path)
        assert _python_in(site, "import fast_lib; print(fast_lib.TAG)") == expected_tag


def test_wheel_only_for_another_platform_fails_naming_the_package(
    wheelhouse: Path, tmp_path: Path
) -> None:
    with pytest.raises(BuildError) as info:
        resolve(["alpha", "mac-only"], _options(wheelhouse), tmp_path)
    message = str(info.value)
    assert message.startswith("cannot resolve dependencies for mac-only (")
    assert "macosx_11_0_arm64" in message


def test_wheel_for_another_python_fails(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"(?s)for fast-lib \(Python 3\.12 .*cp311"):
        resolve(["fast-lib"], _options(wheelhouse, python_version="3.12"), tmp_path)


def test_uv_settings_from_the_shell_are_ignored(
    wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_FIND_LINKS", str(wheelhouse))
    # With UV_FIND_LINKS honoured this would resolve; options name no package source.
    with pytest.raises(BuildError, match="alpha"):
        resolve(["alpha"], DependencyOptions(python_version="3.11", no_index=True), tmp_path)


def test_invalid_python_version_is_rejected(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="python_version 'py3'"):
        resolve(["alpha"], _options(wheelhouse, python_version="py3"), tmp_path)


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("3.14", "python_version '3.14' is newer than 3.13: the Flash runtime in the archive"),
        ("4.0", "python_version '4.0' is newer than 3.13"),
        ("3.9", "python_version '3.9' is older than 3.10"),
        ("3.9\n", r"python_version '3.9\\n' is not a Python version"),  # no way round the floor
    ],
)
def test_a_python_version_outside_the_runtimes_range_is_rejected(
    wheelhouse: Path, tmp_path: Path, version: str, says: str
) -> None:
    with pytest.raises(BuildError, match=f"^{says}"):
        resolve(["alpha"], _options(wheelhouse, python_version=version), tmp_path)
    with pytest.raises(BuildError, match=f"^{says}"):
        install(["alpha==1.0"], _options(wheelhouse, python_version=version), tmp_path)


def test_resolution_cache_hit_does_not_run_uv(
    own_wheelhouse: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    cache = tmp_path / "cache"
    options = _options(own_wheelhouse)
    first = resolve(["alpha"], options, cache)
    # Remove every package source uv could use; only the resolution cache can answer now.
    shutil.rmtree(own_wheelhouse)
    shutil.rmtree(cache / "uv")
    assert resolve(["alpha"], options, cache) == first
    # The same call without that cache fails, so the answer above came from the cache.
    with pytest.raises(BuildError):
        resolve(["alpha"], options, tmp_path / "fresh")
    # Different inputs are a different key.
    with pytest.raises(BuildError):
        resolve(["alpha"], replace(options, python_version="3.12"), cache)


def test_the_resolution_cache_keeps_no_index_token(own_wheelhouse: Path, tmp_path: Path) -> None:
    # The URL is never contacted (--no-index); a token in it must not be written down either.
    secret = "https://user:s3cret-token@127.0.0.1:9/simple"
    in_path = "https://127.0.0.1:9/path-token-123/simple"  # where no masking finds it
    options = _options(own_wheelhouse, index_url=secret, extra_index_urls=(in_path,))
    cache = tmp_path / "cache"
    pins = resolve(["alpha"], options, cache)
    (record,) = (cache / "resolve").glob("*.json")
    assert "s3cret-token" not in record.read_text()
    assert "path-token-123" not in record.read_text()
    assert resolve(["alpha"], options, cache) == pins  # and it is still the cache's answer


# --------------------------------------------------------------------------- installing


def test_install_is_importable_and_stripped(wheelhouse: Path, tmp_path: Path) -> None:
    options = _options(wheelhouse)
    site = install(["alpha==1.0", "beta==2.0", "tool==1.0"], options, tmp_path)
    assert _python_in(site, "import alpha, beta, tool; print(alpha.VERSION, beta.VERSION)") == (
        "1.0 2.0"
    )
    names = {p.relative_to(site).as_posix() for p in site.rglob("*")}
    assert not (site / "bin").exists()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.endswith("uv_cache.json") or n == ".lock"]
    assert {"tool-1.0.dist-info/METADATA", "tool-1.0.dist-info/entry_points.txt"} <= names
    # RECORD lists exactly the files that ship.
    record = (site / "tool-1.0.dist-info" / "RECORD").read_text()
    listed = {line.split(",")[0] for line in record.splitlines()}
    assert listed == {n for n in names if n.startswith("tool") and (site / n).is_file()}


def test_install_is_byte_identical_across_fresh_caches(wheelhouse: Path, tmp_path: Path) -> None:
    options = _options(wheelhouse)
    pins = ["alpha==1.0", "beta==2.0", "tool==1.0"]
    first = install(pins, options, tmp_path / "one")
    second = install(pins, options, tmp_path / "two")

    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert tree(first) == tree(second)


def test_install_cache_hit_does_not_run_uv(own_wheelhouse: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    options = _options(own_wheelhouse)
    site = install(["alpha==1.0", "beta==2.0"], options, cache)
    shutil.rmtree(own_wheelhouse)
    shutil.rmtree(cache / "uv")
    assert install(["beta==2.0", "alpha==1.0"], options, cache) == site
    assert _python_in(site, "import alpha; print(alpha.VERSION)") == "1.0"
    with pytest.raises(BuildError, match=r"^cannot install "):
        install(["alpha==1.0", "beta==2.0"], options, tmp_path / "fresh")


def test_failed_install_leaves_no_cache_entry(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"^cannot install alpha==9\.9 \(Python 3\.11"):
        install(["alpha==9.9"], _options(wheelhouse), tmp_path)
    assert list((tmp_path / "site").iterdir()) == []


def test_package_sizes_largest_first(wheelhouse: Path, tmp_path: Path) -> None:
    site = install(["alpha==1.0", "big==1.0", "small==1.0"], _options(wheelhouse), tmp_path)
    sizes = package_sizes(site)
    assert [name for name, _ in sizes] == ["big", "small", "alpha"]
    for name, size in sizes:
        files = [
            p
            for p in site.rglob("*")
            if p.is_file() and p.relative_to(site).parts[0].startswith(name)
        ]
        assert size == sum(p.stat().st_size for p in files)
    assert 50_000 < dict(sizes)["big"] < 52_000


# --------------------------------------------------------------------------- pipeline entry


def test_vendor_dependencies_end_to_end(wheelhouse: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("alpha\n")
    options = _options(wheelhouse, python_version="3.12", exclude=("Beta",))
    result = vendor_dependencies(project, ["small", "alpha"], options, tmp_path / "cache")
    assert result.requirements == ("alpha", "small")
    assert result.pins == ("alpha==1.0", "small==1.0")
    assert result.excluded == ("beta",)
    assert result.site_dir is not None
    assert _python_in(result.site_dir, "import alpha, small; print('ok')") == "ok"
    assert not (result.site_dir / "beta").exists()


def test_vendor_dependencies_with_nothing_to_vendor(tmp_path: Path) -> None:
    result = vendor_dependencies(tmp_path, [], DependencyOptions(), tmp_path / "cache")
    assert result.pins == ()
    assert result.site_dir is None


# ------------------------------------------------------------ secrets in package sources

TOKEN = "SECRET_PATHTOKEN_7777"


@pytest.fixture
def token_index(wheelhouse: Path, tmp_path: Path) -> Iterator[str]:
    """The wheelhouse as a PEP 503 index over HTTP at a path holding a token, as
    Cloudsmith's are: yields ``http://127.0.0.1:PORT/<TOKEN>``, whose ``simple/`` is the
    index and ``files/`` a find-links page. A request for ``six`` fails with a 500."""
    served = tmp_path / "served"
    files = Path(shutil.copytree(wheelhouse, served / TOKEN / "files"))
    for wheel in files.glob("*.whl"):
        page = served / TOKEN / "simple" / wheel.name.split("-")[0].replace("_", "-")
        page.mkdir(parents=True, exist_ok=True)
        with (page / "index.html").open("a") as html:
            html.write(f'<a href="../../files/{wheel.name}">{wheel.name}</a>\n')

    with serve_http(partial(SixFailsIndex, directory=str(served))) as port:
        yield f"http://127.0.0.1:{port}/{TOKEN}"


def _recording_uv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run uv through a script that writes down its command line, as `ps` shows it."""
    log = tmp_path / "uv-argv.log"
    script = tmp_path / "uv-recorded"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(dependencies._uv_binary())} "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setattr(dependencies, "_uv_binary", lambda: str(script))
    return log


def test_package_sources_reach_uv_off_its_command_line(
    token_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _recording_uv(monkeypatch, tmp_path)
    project = _project(
        tmp_path / "project",
        {
            "requirements.txt": f"""\
                --extra-index-url {token_index}/simple/
                --find-links {token_index}/files/
                alpha
            """
        },
    )
    options = DependencyOptions(python_version="3.11", index_url=f"{token_index}/simple/")
    result = vendor_dependencies(project, ["small"], options, tmp_path / "cache")
    assert result.pins == ("alpha==1.0", "beta==2.0", "small==1.0")
    assert result.site_dir is not None
    assert _python_in(result.site_dir, "import alpha, small; print('ok')") == "ok"
    argv = log.read_text()
    assert "pip\ncompile\n" in argv and "pip\ninstall\n" in argv  # both ran through it
    assert TOKEN not in argv and "127.0.0.1" not in argv


def test_index_order_and_find_links_are_kept_through_uv_environment(tmp_path: Path) -> None:
    build_wheel(tmp_path / "one", "beta", "1.0")
    build_wheel(tmp_path / "two", "beta", "2.0")
    first = _simple_index(tmp_path / "one", tmp_path / "index-one")
    second = _simple_index(tmp_path / "two", tmp_path / "index two")  # a space: uv's separator
    (tmp_path / "empty").mkdir()
    base = DependencyOptions(python_version="3.11", index_url=(tmp_path / "empty").as_uri())
    # uv's first-index strategy: the first extra index that has beta gives it.
    for extras, pin in (((first, second), "beta==1.0"), ((second, first), "beta==2.0")):
        options = replace(base, extra_index_urls=extras)
        assert resolve(["beta"], options, tmp_path / "cache") == [pin]
    # Several find-links, one with uv's separator for them in its path.
    build_wheel(tmp_path / "w,1", "gamma", "0.1")
    build_wheel(tmp_path / "w2", "small", "1.0")
    options = DependencyOptions(
        python_version="3.11",
        no_index=True,
        find_links=(str(tmp_path / "w,1"), str(tmp_path / "w2")),
    )
    assert resolve(["gamma", "small"], options, tmp_path / "cache") == ["gamma==0.1", "small==1.0"]


def test_find_links_need_a_uv_that_reads_several_from_its_environment(
    wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older uv would take two find-links for one, or none: resolving from PyPI instead.
    monkeypatch.setattr(dependencies, "_uv_version", lambda: "0.5.16")
    with pytest.raises(
        BuildError, match=r"--find-links needs uv 0\.5\.17 or newer \(this is uv 0\.5\.16\)"
    ):
        resolve(["alpha"], _options(wheelhouse), tmp_path / "cache")


def test_index_urls_are_masked_in_what_uv_says(
    token_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # the 500 at once, not after uv's retries
    host = token_index.removesuffix(f"/{TOKEN}")
    options = DependencyOptions(python_version="3.11", index_url=f"{token_index}/simple/")
    with pytest.raises(BuildError) as info:
        resolve(["six"], options, tmp_path / "cache")
    # uv names the page it failed to fetch: shown by its host only.
    assert f"Failed to fetch: {host}/****" in info.value.message
    assert TOKEN not in str(info.value)
    # So does a requirements file's index option, with a token in its query.
    project = _project(
        tmp_path / "project",
        {"requirements.txt": f"--extra-index-url {host}/simple/?token={TOKEN}\nsix\n"},
    )
    options = DependencyOptions(python_version="3.11", index_url=(tmp_path / "project").as_uri())
    with pytest.raises(BuildError) as info:
        vendor_dependencies(project, [], options, tmp_path / "cache")
    assert f"{host}/****" in info.value.message and TOKEN not in str(info.value)


def test_a_file_url_on_another_host_than_the_index_is_cut_after_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private index whose page sends uv to a signed CDN link (here: the same server under
    # another host name), which fails: uv names that URL, query and all.
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    served = tmp_path / "served"
    page = served / TOKEN / "simple" / "beta"
    page.mkdir(parents=True)
    with serve_http(partial(SixFailsIndex, directory=str(served))) as port:
        signed = f"http://localhost:{port}/cdn/SIGNED_PATH_42/beta-1.0-py3-none-any.whl"
        (page / "index.html").write_text(f'<a href="{signed}?X-Amz-Signature=SIG_99">b</a>\n')
        index = f"http://127.0.0.1:{port}/{TOKEN}/simple/"
        with pytest.raises(BuildError) as info:
            resolve(["beta"], DependencyOptions(python_version="3.11", index_url=index), tmp_path)
    shown = str(info.value)
    assert "SIGNED_PATH_42" not in shown and "SIG_99" not in shown and TOKEN not in shown
    assert f"http://localhost:{port}/****/beta-1.0-py3-none-any.whl" in shown


def test_uv_cache_is_private_to_its_owner_even_one_made_before(
    token_index: str, tmp_path: Path
) -> None:
    # uv keeps the URLs it fetched in its cache, path tokens included.
    cache = tmp_path / "cache"
    (cache / "uv").mkdir(parents=True, mode=0o755)
    for folder in (cache, cache / "uv"):
        folder.chmod(0o755)
    options = DependencyOptions(python_version="3.11", index_url=f"{token_index}/simple/")
    assert resolve(["small"], options, cache) == ["small==1.0"]
    for folder in (cache, cache / "uv"):
        assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("spelling", ["127.1", "0x7f000001", "127.0.0.1.", "[0:0::1]"])
def test_an_index_is_masked_however_its_host_is_spelt(
    spelling: str, token_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uv prints the host as it normalises it (127.0.0.1, [::1]); the token is masked all the
    # same, and the package uv asked for is still named.
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    port = token_index.rsplit(":", 1)[1].split("/")[0]
    index = f"http://{spelling}:{port}/{TOKEN}/simple/"
    with pytest.raises(BuildError) as info:
        resolve(["six"], DependencyOptions(python_version="3.11", index_url=index), tmp_path)
    assert TOKEN not in str(info.value)
    shown = "[::1]" if spelling.startswith("[") else "127.0.0.1"
    assert f"Failed to fetch: http://{shown}:{port}/****/six/" in info.value.message


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("tinypkg @ https://pkgs.example.com/{t}/t.whl --hash=sha256:ab", "options after"),
        ("tiny pkg @ https://pkgs.example.com/{t}/t.whl", "invalid requirement"),
    ],
)
def test_a_refused_requirement_line_is_quoted_with_its_urls_cut(
    tmp_path: Path, line: str, says: str
) -> None:
    # A direct URL's path may hold a token: the error says where the line is instead.
    (tmp_path / "requirements.txt").write_text("rich\n" + line.format(t=TOKEN) + "\n")
    with pytest.raises(BuildError, match=says) as info:
        gather_requirements(tmp_path, [])
    assert (info.value.path, info.value.line) == ("requirements.txt", 2)
    assert TOKEN not in str(info.value)
    assert "https://pkgs.example.com/****" in info.value.message


@pytest.mark.parametrize(
    ("files", "declared", "where"),
    [
        ({"requirements.txt": "rich\ntinypkg @ {url}\n"}, [], ("requirements.txt", 2)),
        (
            {"requirements.txt": "-c cons.txt\n", "cons.txt": "tinypkg @ {url}\n"},
            [],
            ("cons.txt", 1),
        ),
        (
            {"pyproject.toml": '[project]\nname = "a"\ndependencies = [\n "tinypkg @ {url}"]'},
            [],
            ("pyproject.toml", 4),
        ),
        ({}, ["tinypkg @ {url}"], (None, None)),
    ],
)
def test_a_variable_in_a_requirement_is_refused_where_it_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    declared: list[str],
    where: tuple[str | None, int | None],
) -> None:
    # uv would expand it, and print the token in its messages: refused, as in an option line.
    monkeypatch.setenv("MYTOK", TOKEN)
    url = "http://127.0.0.1:9/${MYTOK}/tinypkg-1.0-py3-none-any.whl"
    project = _project(tmp_path, {k: v.replace("{url}", url) for k, v in files.items()})
    declared = [d.replace("{url}", url) for d in declared]
    with pytest.raises(BuildError, match=r"does not expand \$\{\.\.\.\} in requirements") as info:
        vendor_dependencies(project, declared, DependencyOptions(no_index=True), tmp_path / "cache")
    assert (info.value.path, info.value.line) == where
    assert "${MYTOK}" in info.value.message and TOKEN not in str(info.value)
    if not files:
        assert "in @remote(dependencies=...)" in info.value.message
