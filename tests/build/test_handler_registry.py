"""What the generated handlers register: the @remote objects the scan found, or a build error
at their definition; and the advice for a project module an ignore file leaves out."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.integration.projects import write_files

from flash.build.errors import BuildError
from flash.build.pipeline import BuildOptions, _left_out_module, build_project

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


@pytest.mark.parametrize(
    ("module", "path"),
    [("lib.helpers", "lib/helpers.py"), ("lib.tools.helpers", "lib/tools/helpers.py")],
)
def test_a_namespace_package_an_ignore_file_leaves_out_names_that_folder(
    tmp_path: Path, module: str, path: str
) -> None:
    # GitHub's Python .gitignore has lib/: a folder without __init__.py is still the
    # project's package (a namespace package, Python directly in it or in a subfolder), not
    # one to declare in dependencies.
    root = project(
        tmp_path,
        f"""
        from {module} import double

        @remote(resource_config=cpu)
        def f(x: int) -> int:
            return double(x)
        """,
        **{".gitignore": "lib/\n", path: "def double(x):\n    return 2 * x\n"},
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


DECORATORS = """\
import functools


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        raise AssertionError("the endpoint runs the @remote function, not what wraps it")
    return wrapper


class Traced:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def retry(fn):
    return functools.update_wrapper(Traced(fn), fn)


class Counter:
    # A decorator returning a module-level callable: its __qualname__ is no closure's.
    def __init__(self, fn):
        self.fn = fn
        self.__qualname__ = "Counter"

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)
"""


def test_decorators_above_and_under_remote_are_no_rebinding_and_are_served(
    tmp_path: Path,
) -> None:
    # @logged above @remote (functools.wraps: __wrapped__ leads to the @remote object); a
    # decorator object under it; one whose __qualname__ is its class's, not a closure's.
    root = project(
        tmp_path,
        """
        from decos import Counter, logged, retry

        @logged
        @remote(resource_config=cpu)
        def outer(n: int) -> int:
            return n + 1

        @remote(resource_config=cpu)
        @retry
        def inner(n: int) -> int:
            return n + 2

        @remote(resource_config=cpu)
        @Counter
        def counted(n: int) -> int:
            return n + 3

        @remote(resource_config=cpu)
        class Model:
            def predict(self, x: int) -> int:
                return x + 4

        Alias = Model
        """,
        **{"decos.py": DECORATORS},
    )
    build_project(BuildOptions(project_dir=root, keep_build=True))
    build = root / ".flash" / ".build"
    # Imported and called as a worker would: the registry holds the @remote objects, and a
    # job runs the function under @remote, not the decorator above it.
    script = textwrap.dedent(
        """
        import asyncio, handler_cpu, main
        from flash.runtime.serialization import deserialize, serialize

        registry = handler_cpu.FUNCTION_REGISTRY
        assert registry["main.outer"] is main.outer.__wrapped__, registry
        assert registry["main.inner"] is main.inner
        assert registry["main.counted"] is main.counted
        assert registry["main.Model"] is main.Model

        def call(name, n):
            job = {"id": "j", "input": {"function_name": name, "args": [serialize(n)]}}
            answer = asyncio.run(handler_cpu.handler(job))
            assert answer["success"], answer
            return deserialize(answer["result"])

        assert call("main.outer", 1) == 2
        assert call("main.inner", 1) == 3
        assert call("main.counted", 1) == 4
        """
    )
    env = {**os.environ, "FLASH_ALLOW_UNSIGNED": "1"}
    env.pop("FLASH_SIGNING_KEY", None)
    subprocess.run([sys.executable, "-c", script], cwd=build, check=True, env=env)


def test_a_remote_name_rebound_to_a_decorated_other_remote_fails_the_build(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        """
        from decos import logged

        @remote(resource_config=cpu)
        def double(x: int) -> int:
            return 2 * x

        @remote(resource_config=cpu)
        def predict(x: int) -> int:
            return x + 1

        predict = logged(double)
        """,
        **{"decos.py": DECORATORS},
    )
    error = build_error(root)
    assert (error.path, error.line) == ("main.py", 12)
    assert "'predict' is rebound later in main.py" in error.message
    assert "the @remote main.double" in error.message


def test_an_ignored_folder_of_saved_code_is_no_namespace_package(tmp_path: Path) -> None:
    # wandb keeps a copy of the code it ran under wandb/run-*/files/code/: a missing
    # `import wandb` is a package to declare, not the project's wandb/.
    root = project(
        tmp_path,
        """
        import wandb  # noqa: F401

        @remote(resource_config=cpu)
        def f(x: int) -> int:
            return x
        """,
        **{
            ".gitignore": "wandb/\n",
            "wandb/run-20240101_000000-abc/files/code/train.py": "x = 1\n",
        },
    )
    error = build_error(root)
    assert "declare that package in @remote(..., dependencies=[...])" in error.message
    assert "leaves out of the build" not in error.message


def test_a_missing_submodule_names_an_ignored_folder_only_when_its_own_path_is_there(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    write_files(
        root,
        {
            ".gitignore": "lib/\nwandb/\n",
            "lib/helpers.py": "",
            "lib/models/net.py": "",
            "wandb/run-1/files/code/train.py": "",
        },
    )
    assert _left_out_module(root, False, "lib.helpers") == ("lib/", ".gitignore")
    assert _left_out_module(root, False, "lib.models") == ("lib/", ".gitignore")
    assert _left_out_module(root, False, "lib") == ("lib/", ".gitignore")
    assert _left_out_module(root, False, "lib.other") is None
    assert _left_out_module(root, False, "wandb") is None
    assert _left_out_module(root, False, "wandb.sdk") is None
