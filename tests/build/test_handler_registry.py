"""What the generated handlers register: the @remote objects the scan found, or a build error
at their definition; and the advice for a project module an ignore file leaves out."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.integration.projects import write_files

from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, build_project

HEAD = """\
from flash import CpuLiveServerless, remote

cpu = CpuLiveServerless(name="cpu")
"""


def project(tmp_path: Path, main: str, **files: str) -> Path:
    root = tmp_path / "proj"
    write_files(root, {"main.py": HEAD + textwrap.dedent(main), **files})
    return root


def build_error(root: Path) -> BuildError:
    with pytest.raises(BuildError) as info:
        build_project(BuildOptions(project_dir=root))
    assert not (root / ".flash" / "archive.tar.gz").exists()
    return info.value


def test_a_remote_name_rebound_later_fails_the_build_at_its_definition(tmp_path: Path) -> None:
    # The endpoint would serve the plain fallback (returning -1) in place of the @remote def.
    root = project(
        tmp_path,
        """
        @remote(resource_config=cpu)
        def predict(x: int) -> int:
            return x + 1

        remote_predict = predict

        def predict(x: int) -> int:  # local fallback
            return -1
        """,
    )
    error = build_error(root)
    assert (error.path, error.line) == ("main.py", 6)
    assert str(error).startswith("main.py:6")
    assert "'predict' is rebound later in main.py" in error.message
    assert "a function, not the @remote one" in error.message
    assert "give the @remote one or the other a name of its own" in error.message


def test_a_remote_name_rebound_to_another_remote_function_fails_the_build(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        """
        @remote(resource_config=cpu)
        def double(x: int) -> int:
            return 2 * x

        @remote(resource_config=cpu)
        def predict(x: int) -> int:
            return x + 1

        predict = double
        """,
    )
    error = build_error(root)
    assert (error.path, error.line) == ("main.py", 10)
    assert "'predict' is rebound later in main.py" in error.message
    assert "the @remote main.double" in error.message


def test_a_remote_def_only_under_a_condition_fails_the_build_at_its_definition(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        """
        try:
            import not_installed_here  # noqa: F401
            HAS_IT = True
        except ImportError:
            HAS_IT = False

        if HAS_IT:
            @remote(resource_config=cpu)
            def gpu_sum(n: int) -> float:
                return float(n)

        @remote(resource_config=cpu)
        def cpu_sum(n: int) -> float:
            return float(n)
        """,
    )
    error = build_error(root)
    assert (error.path, error.line) == ("main.py", 13)
    assert "'gpu_sum' is not defined when main.py is imported" in error.message
    assert "conditional definition" in error.message
    assert "define it unconditionally" in error.message
    assert "AttributeError" not in error.message


def test_a_project_that_keeps_its_remote_names_builds_and_serves_them(tmp_path: Path) -> None:
    # A decorator under @remote that does not copy the name (no functools.wraps) is no
    # rebinding: the build still goes through.
    root = project(
        tmp_path,
        """
        def logged(fn):
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)
            return wrapper

        @remote(resource_config=cpu)
        def predict(x: int) -> int:
            return x + 1

        @remote(resource_config=cpu)
        @logged
        def plain(x):
            return x

        alias = predict  # another name for it changes nothing
        """,
    )
    build_project(BuildOptions(project_dir=root, keep_build=True))
    build = root / ".flash" / ".build"
    handler = (build / "handler_cpu.py").read_text()
    assert len(handler.splitlines()) <= 25
    # Imported as a worker would: the registry holds the @remote objects.
    script = (
        "import handler_cpu, main\n"
        "assert handler_cpu.FUNCTION_REGISTRY['predict'] is main.predict\n"
        "assert handler_cpu.FUNCTION_REGISTRY['main.plain'] is main.plain\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=build, check=True)


def test_a_namespace_package_an_ignore_file_leaves_out_names_that_folder(
    tmp_path: Path,
) -> None:
    # GitHub's Python .gitignore has lib/: a folder without __init__.py is still the
    # project's package (a namespace package), not one to declare in dependencies.
    root = project(
        tmp_path,
        """
        from lib.helpers import double

        @remote(resource_config=cpu)
        def f(x: int) -> int:
            return double(x)
        """,
        **{".gitignore": "lib/\n", "lib/helpers.py": "def double(x):\n    return 2 * x\n"},
    )
    error = build_error(root)
    assert error.message.endswith(
        "'lib' is the project's lib/, which .gitignore leaves out of the build (no worker "
        "would have it either): archive it, or stop importing it"
    )
    assert "dependencies" not in error.message


def test_a_folder_of_data_is_no_namespace_package(tmp_path: Path) -> None:
    # An ignored folder without Python files is no module: the advice stays "declare it".
    root = project(
        tmp_path,
        """
        import lib  # noqa: F401

        @remote(resource_config=cpu)
        def f(x: int) -> int:
            return x
        """,
        **{".gitignore": "lib/\n", "lib/data.csv": "a,b\n"},
    )
    error = build_error(root)
    assert "declare that package in @remote(..., dependencies=[...])" in error.message


def test_jupyter_checkpoint_copies_are_not_built(tmp_path: Path) -> None:
    code = """
        @remote(resource_config=cpu)
        def embed(x: int) -> int:
            return x + 1
        """
    root = project(
        tmp_path,
        code,
        **{".ipynb_checkpoints/main-checkpoint.py": HEAD + textwrap.dedent(code)},
    )
    result = build_project(BuildOptions(project_dir=root))
    assert result.manifest.function_registry == {"main.embed": "cpu"}
