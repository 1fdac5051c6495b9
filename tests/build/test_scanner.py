"""The AST scanner: small projects written to disk, scanned without importing them."""

from __future__ import annotations

import hashlib
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from flash.build.errors import BuildError
from flash.build.scanner import RemoteSpec, ScanResult, sanitize_resource_name, scan_project
from flash.build.secrets import secret_env_entries

HEADER = "from flash import remote, LiveServerless, CpuLiveServerless\n"


def write(root: Path, files: Mapping[str, str | bytes]) -> list[str]:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def scan(root: Path, files: Mapping[str, str | bytes]) -> ScanResult:
    return scan_project(root, write(root, files))


def scan_error(root: Path, files: Mapping[str, str | bytes]) -> BuildError:
    with pytest.raises(BuildError) as info:
        scan(root, files)
    return info.value


def only(result: ScanResult) -> RemoteSpec:
    assert len(result.functions) == 1, result.functions
    return result.functions[0]


# --- what is found ---------------------------------------------------------------------


def test_finds_async_function_with_module_level_config(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": """\
                from flash import remote, LiveServerless

                gpu = LiveServerless(name="gpu-worker", workersMax=5)

                @remote(resource_config=gpu, dependencies=["numpy"])
                async def embed(texts: list[str]) -> list[list[float]]:
                    return [[0.0] for _ in texts]
            """,
        },
    )
    assert list(result.resources) == ["gpu-worker"]
    resource = result.resources["gpu-worker"]
    assert resource.type == "LiveServerless"
    assert resource.config["name"] == "gpu-worker"
    assert resource.config["workersMax"] == 5
    assert resource.config["gpus"] == ["any"]  # defaults filled in by validation
    assert (resource.path, resource.line, resource.col) == ("main.py", 3, 7)
    fn = only(result)
    assert fn.name == "embed"
    assert fn.module == "main"
    assert fn.qualified_name == "main.embed"
    assert fn.resource == "gpu-worker"
    assert fn.is_async and not fn.is_class and not fn.is_generator
    assert fn.dependencies == ("numpy",)
    assert fn.system_dependencies == ()
    assert (fn.path, fn.line, fn.col) == ("main.py", 6, 1)


@pytest.mark.parametrize(
    ("imports", "decorator"),
    [
        ("from flash import remote", "@remote(cfg)"),
        ("from flash import remote", "@remote(resource_config=cfg)"),
        ("import flash", "@flash.remote(cfg)"),
        ("from flash import remote as r", "@r(resource_config=cfg)"),
        ("import flash as f", "@f.remote(cfg)"),
        ("from flash.sdk import remote", "@remote(cfg)"),
        ("from flash.runtime.remote import remote", "@remote(cfg)"),
        ("from flash.sdk.remote import remote", "@remote(cfg)"),
        ("import flash.sdk", "@flash.sdk.remote(cfg)"),
        ("from flash import *", "@remote(cfg)"),
        ("try:\n    from flash import remote\nexcept ImportError:\n    pass", "@remote(cfg)"),
    ],
)
def test_decorator_spellings(tmp_path: Path, imports: str, decorator: str) -> None:
    source = (
        f"{imports}\nfrom flash import CpuLiveServerless\n"
        f'cfg = CpuLiveServerless(name="cpu")\n\n{decorator}\ndef work(x):\n    return x\n'
    )
    fn = only(scan(tmp_path, {"main.py": source}))
    assert (fn.qualified_name, fn.resource, fn.is_async) == ("main.work", "cpu", False)


def test_decorator_stored_in_a_variable_is_found(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": """\
                from flash import CpuLiveServerless, remote

                on_cpu = remote(resource_config=CpuLiveServerless(name="cpu"), dependencies=["a"])

                @on_cpu
                def first(x):
                    return x

                @on_cpu
                async def second(x):
                    return x
            """,
        },
    )
    found = [(f.qualified_name, f.resource, f.dependencies, f.line) for f in result.functions]
    assert found == [("main.first", "cpu", ("a",), 6), ("main.second", "cpu", ("a",), 10)]


def test_decorator_imported_under_another_name_is_found(tmp_path: Path) -> None:
    files = {
        "common.py": "from flash import CpuLiveServerless, remote as endpoint\n"
        'cpu = CpuLiveServerless(name="cpu")\n'
        "on_cpu = endpoint(cpu)\n",
        # Never spells the decorator's real name.
        "jobs.py": "from common import cpu, endpoint, on_cpu\n\n"
        "@endpoint(cpu)\ndef first(x):\n    return x\n\n"
        "@on_cpu\ndef second(x):\n    return x\n",
    }
    assert "remote" not in files["jobs.py"]
    result = scan(tmp_path, files)
    assert [(f.qualified_name, f.resource) for f in result.functions] == [
        ("jobs.first", "cpu"),
        ("jobs.second", "cpu"),
    ]


def test_stored_decorator_with_a_bad_config_names_where_it_is_written(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "common.py": "from flash import remote\nimport os\non_cpu = remote(os.environ)\n",
            "jobs.py": "from common import on_cpu\n\n@on_cpu\ndef f(x):\n    return x\n",
        },
    )
    assert "cannot resolve the resource config `os.environ`" in err.message
    assert (err.path, err.line) == ("common.py", 3)


@pytest.mark.parametrize(
    "source",
    [
        'import flash\ncfg = flash.LiveServerless(name="g")\n@flash.remote(cfg)\ndef f(): ...\n',
        'from flash import remote, LiveServerless as LS\ncfg = LS(name="g")\n'
        "@remote(cfg)\ndef f(): ...\n",
        'from flash import remote, LiveServerless\ncfg: LiveServerless = LiveServerless(name="g")\n'
        "@remote(cfg)\ndef f(): ...\n",
        "from flash import remote, LiveServerless\n"
        '@remote(LiveServerless(name="g"))\ndef f(): ...\n',
        "import flash as fl\n"
        '@fl.remote(resource_config=fl.LiveServerless(name="g"))\ndef f(): ...\n',
        "from flash.sdk.resources import LiveServerless\nfrom flash import remote\n"
        'base = LiveServerless(name="g")\n'
        "cfg = base\n@remote(cfg)\ndef f(): ...\n",
    ],
    ids=["flash-attr", "alias", "annotated", "inline", "inline-module-alias", "name-alias"],
)
def test_config_spellings(tmp_path: Path, source: str) -> None:
    result = scan(tmp_path, {"main.py": source})
    assert list(result.resources) == ["g"]
    assert result.resources["g"].type == "LiveServerless"
    assert only(result).resource == "g"


CONFIG_MODULE = """\
    from flash import LiveServerless, GpuGroup

    gpu = LiveServerless(name="shared-gpu", gpus=[GpuGroup.AMPERE_80])
"""


@pytest.mark.parametrize(
    ("files", "user_module", "qualified_name"),
    [
        ({"config.py": CONFIG_MODULE}, ("main.py", "from config import gpu"), "main.f"),
        (
            {"pkg/__init__.py": "", "pkg/config.py": CONFIG_MODULE},
            ("pkg/jobs.py", "from .config import gpu"),
            "pkg.jobs.f",
        ),
        (
            {"pkg/__init__.py": "", "pkg/config.py": CONFIG_MODULE, "pkg/sub/__init__.py": ""},
            ("pkg/sub/jobs.py", "from ..config import gpu"),
            "pkg.sub.jobs.f",
        ),
        (
            {"pkg/config.py": CONFIG_MODULE},
            ("main.py", "from pkg.config import gpu as g\ngpu = g"),
            "main.f",
        ),
        (
            {"pkg/config.py": CONFIG_MODULE},
            ("main.py", "import pkg.config\ngpu = pkg.config.gpu"),
            "main.f",
        ),
        (
            {"pkg/config.py": CONFIG_MODULE},
            ("main.py", "from pkg import config\ngpu = config.gpu"),
            "main.f",
        ),
        (
            {"pkg/__init__.py": "from .config import gpu\n", "pkg/config.py": CONFIG_MODULE},
            ("main.py", "from pkg import gpu"),
            "main.f",
        ),
        (
            {"pkg/__init__.py": "from . import config\n", "pkg/config.py": CONFIG_MODULE},
            ("main.py", "import pkg\ngpu = pkg.config.gpu"),
            "main.f",
        ),
        ({"config.py": CONFIG_MODULE}, ("main.py", "from config import *"), "main.f"),
    ],
    ids=[
        "absolute",
        "relative",
        "relative-parent",
        "aliased",
        "import-module",
        "from-package-import-module",
        "package-reexport",
        "package-imports-submodule",
        "star",
    ],
)
def test_config_imported_from_another_module(
    tmp_path: Path, files: dict[str, str], user_module: tuple[str, str], qualified_name: str
) -> None:
    # The config module never mentions the decorator: it is only read because it is imported.
    path, imports = user_module
    source = f"{imports}\nfrom flash import remote\n\n@remote(gpu)\ndef f():\n    return 1\n"
    result = scan(tmp_path, {**files, path: source})
    assert only(result).qualified_name == qualified_name
    resource = result.resources["shared-gpu"]
    assert resource.config["gpus"] == ["AMPERE_80"]
    assert resource.path.endswith("config.py") and resource.line == 3


def test_enum_members_snake_case_and_arithmetic(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": """\
                import flash
                from flash import remote, CpuLiveServerless, ScalerType
                from flash.sdk import CpuInstanceType as CIT

                TIMEOUT_MS = 10 * 60 * 1000
                cpu = CpuLiveServerless(
                    name="cpu-worker",
                    instance_ids=[CIT.CPU3G_2_8, flash.CpuInstanceType.CPU5C_4_8],
                    scaler_type=ScalerType.REQUEST_COUNT,
                    workers_min=1,
                    workers_max=-(-4),
                    execution_timeout_ms=TIMEOUT_MS,
                    env={"MODE": "prod", "LEVEL": "debug"},
                )

                @remote(cpu)
                def f():
                    return 1
            """,
        },
    )
    config = result.resources["cpu-worker"].config
    assert config["instanceIds"] == ["cpu3g-2-8", "cpu5c-4-8"]
    assert config["scalerType"] == "REQUEST_COUNT"
    assert (config["workersMin"], config["workersMax"]) == (1, 4)
    assert config["executionTimeoutMs"] == 600_000
    assert config["env"] == {"MODE": "prod", "LEVEL": "debug"}
    assert "instance_ids" not in config


@pytest.mark.parametrize(
    ("argument", "field", "shown"),
    [
        ('workersMax=int(os.environ.get("WORKERS", "10"))', "workersMax", "int(os.environ"),
        ("workersMax=MAX", "workersMax", "got `MAX`"),  # a constant that is not literal
        ('env={"TOKEN": os.environ["TOKEN"]}', "env", "TOKEN: a subscript os.environ[...]"),
        ("idleTimeout=max(60, 30)", "idleTimeout", "max(60, 30)"),
        ("**dict(os.environ)", "a ** argument", "a call dict(...)"),
    ],
)
def test_a_non_literal_config_field_is_an_error_naming_it(
    tmp_path: Path, argument: str, field: str, shown: str
) -> None:
    err = scan_error(
        tmp_path,
        {
            "main.py": f"""\
                import os
                from flash import remote, LiveServerless

                MAX = int(os.environ.get("MAX_WORKERS", "10"))
                gpu = LiveServerless(
                    name="gpu",
                    {argument},
                )

                @remote(gpu)
                def f():
                    return 1
            """,
        },
    )
    assert f"{field} must be a literal value" in err.message and shown in err.message
    assert (err.path, err.line) == ("main.py", 7)


OPENAI_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"


@pytest.mark.parametrize(
    ("argument", "shown", "at"),
    [
        (f'env={{"OPENAI_API_KEY": "{OPENAI_KEY}", "N": str(5)}}', "N: a call str(...)", "str"),
        (f'env={{"GH": "{OPENAI_KEY}"}} if DEBUG else {{}}', "a conditional expression", "{"),
        (f'**{{"env": {{"K": "{OPENAI_KEY}"}}, "x": f()}}', "x: a call f(...)", "f()"),
        ("env=ENV", "the name `ENV`", "ENV"),
    ],
)
def test_a_non_literal_env_is_an_error_that_quotes_none_of_its_values(
    tmp_path: Path, argument: str, shown: str, at: str
) -> None:
    line = f'cpu = CpuLiveServerless(name="ok", {argument})'
    err = scan_error(
        tmp_path,
        {
            "main.py": f"{HEADER}import os\nDEBUG = True\nENV = dict(os.environ)\n{line}\n"
            "@remote(cpu)\ndef f(): ...\n"
        },
    )
    assert OPENAI_KEY not in str(err) and "str(5)" not in str(err)
    assert f"so the build can record it; got {shown}" in err.message
    assert (err.path, err.line, err.col) == ("main.py", 5, line.index(at, 35) + 1)


def test_literal_dict_unpacked_into_a_config_is_read(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f'{HEADER}extra = {{"scalerValue": 2}}\n'
            'gpu = LiveServerless(name="gpu", idleTimeout=7, **extra)\n'
            "@remote(gpu)\ndef f(): ...\n"
        },
    )
    assert result.resources["gpu"].config["idleTimeout"] == 7
    assert result.resources["gpu"].config["scalerValue"] == 2


# A module with one @remote function, step(), on endpoint "cpu".
ONE_STEP = f'{HEADER}cfg = CpuLiveServerless(name="cpu")\n\n@remote(cfg)\ndef step():\n    pass\n'


def test_module_names_for_numbered_files_nested_packages_and_init(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "01_prep.py": ONE_STEP,
            "a/b/c/deep.py": ONE_STEP,
            "pkg/__init__.py": ONE_STEP,
        },
    )
    modules = sorted((f.module, f.qualified_name, f.path) for f in result.functions)
    assert modules == [
        ("01_prep", "01_prep.step", "01_prep.py"),
        ("a.b.c.deep", "a.b.c.deep.step", "a/b/c/deep.py"),
        ("pkg", "pkg.step", "pkg/__init__.py"),
    ]
    assert list(result.resources) == ["cpu"]  # three equal configs named "cpu" are one endpoint


def test_a_src_folder_without_init_is_an_import_root(tmp_path: Path) -> None:
    # The src layout: src/mypkg is the package mypkg, as setuptools, hatch and uv install it.
    result = scan(
        tmp_path / "layout",
        {
            "src/mypkg/__init__.py": ONE_STEP,
            "src/mypkg/gpu.py": f"{HEADER}from mypkg.config import gpu\n\n@remote(gpu)\n"
            "def embed(): ...\n",
            "src/mypkg/config.py": f'{HEADER}gpu = LiveServerless(name="gpu")\n',
            "src/single.py": ONE_STEP,
            "tasks.py": ONE_STEP,
        },
    )
    modules = sorted((f.module, f.qualified_name, f.path) for f in result.functions)
    assert modules == [
        ("mypkg", "mypkg.step", "src/mypkg/__init__.py"),
        ("mypkg.gpu", "mypkg.gpu.embed", "src/mypkg/gpu.py"),
        ("single", "single.step", "src/single.py"),
        ("tasks", "tasks.step", "tasks.py"),
    ]
    assert result.src_layout
    # A src folder that is itself a package keeps its name, as before.
    result = scan(tmp_path / "package", {"src/__init__.py": "", "src/jobs.py": ONE_STEP})
    assert only(result).qualified_name == "src.jobs.step" and not result.src_layout


@pytest.mark.parametrize(
    ("at_root", "under_src"),
    [
        ("mypkg/gpu.py", "src/mypkg/gpu.py"),  # the same module twice
        ("mypkg/__init__.py", "src/mypkg/gpu.py"),  # the root package would hide src's
        ("mypkg.py", "src/mypkg/__init__.py"),
    ],
)
def test_a_module_both_at_the_root_and_under_src_is_an_error(
    tmp_path: Path, at_root: str, under_src: str
) -> None:
    error = scan_error(tmp_path, {at_root: "", under_src: ONE_STEP})
    assert error.path == under_src
    assert f"{at_root} and {under_src} both define the top-level module 'mypkg'" in error.message


def test_same_function_name_on_two_endpoints(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "config.py": """\
                from flash import LiveServerless, CpuLiveServerless
                gpu = LiveServerless(name="gpu")
                cpu = CpuLiveServerless(name="cpu")
            """,
            "gpu_jobs.py": "from flash import remote\nfrom config import gpu\n"
            "@remote(gpu)\nasync def process(x):\n    return x\n",
            "cpu_jobs.py": "from flash import remote\nfrom config import cpu\n"
            "@remote(cpu)\ndef process(x):\n    return x\n",
        },
    )
    assert [(f.resource, f.qualified_name) for f in result.functions] == [
        ("cpu", "cpu_jobs.process"),
        ("gpu", "gpu_jobs.process"),
    ]
    assert list(result.resources) == ["cpu", "gpu"]
    assert result.resources["cpu"].type == "CpuLiveServerless"


def test_one_config_shared_by_many_functions(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                gpu = LiveServerless(name="gpu")

                @remote(gpu)
                def a(): ...

                @remote(resource_config=gpu)
                async def b(): ...

                @remote(gpu)
                class C:
                    def run(self): ...
            """,
        },
    )
    assert [f.name for f in result.functions] == ["C", "a", "b"]
    assert {f.resource for f in result.functions} == {"gpu"}
    assert len(result.resources) == 1


def test_dependencies_on_functions_async_functions_and_classes(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                cpu = CpuLiveServerless(name="cpu")
                SHARED = ["requests==2.32.0", "pyyaml"]

                @remote(cpu, dependencies=["numpy>=1.26"], system_dependencies=["ffmpeg"])
                def sync_fn(): ...

                @remote(cpu, dependencies=("pandas",))
                async def async_fn(): ...

                @remote(cpu, dependencies=["torch"], system_dependencies=["libgl1"])
                class Model:
                    def predict(self): ...

                @remote(cpu, dependencies=SHARED, system_dependencies=None)
                def shared_fn(): ...
            """,
        },
    )
    by_name = {f.name: f for f in result.functions}
    assert by_name["sync_fn"].dependencies == ("numpy>=1.26",)
    assert by_name["sync_fn"].system_dependencies == ("ffmpeg",)
    assert by_name["async_fn"].dependencies == ("pandas",)
    assert by_name["Model"].dependencies == ("torch",)
    assert by_name["Model"].system_dependencies == ("libgl1",)
    assert by_name["shared_fn"].dependencies == ("requests==2.32.0", "pyyaml")
    assert by_name["shared_fn"].system_dependencies == ()


def test_class_methods_in_source_order(tmp_path: Path) -> None:
    fn = only(
        scan(
            tmp_path,
            {
                "main.py": f"""\
                    {HEADER}
                    gpu = LiveServerless(name="gpu")

                    @remote(gpu)
                    class Model:
                        def __init__(self, size):
                            self.size = size

                        async def generate(self, prompt): ...

                        def _helper(self): ...

                        @property
                        def ready(self):
                            return True

                        def __call__(self, x): ...

                        @staticmethod
                        def version():
                            return 1

                        async def embed(self, text): ...
                """,
            },
        )
    )
    assert fn.is_class and not fn.is_async and not fn.is_generator
    assert fn.methods == ("generate", "__call__", "version", "embed")
    assert fn.async_methods == ("generate", "embed")


def test_generators(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                cpu = CpuLiveServerless(name="cpu")

                @remote(cpu)
                def count(n):
                    for i in range(n):
                        yield i

                @remote(cpu)
                async def stream(n):
                    for i in range(n):
                        yield i

                @remote(cpu)
                def delegate(n):
                    yield from range(n)

                @remote(cpu)
                def plain(n):
                    def inner():
                        yield n
                    return list(inner())
            """,
        },
    )
    flags = {f.name: (f.is_async, f.is_generator) for f in result.functions}
    assert flags == {
        "count": (False, True),
        "stream": (True, True),
        "delegate": (False, True),
        "plain": (False, False),
    }


def test_a_rebound_config_name_means_what_it_meant_at_the_decorator(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                cfg = LiveServerless(name="first")

                @remote(cfg)
                def a(): ...

                cfg = CpuLiveServerless(name="second")

                @remote(cfg)
                def b(): ...
            """,
        },
    )
    assert {f.name: f.resource for f in result.functions} == {"a": "first", "b": "second"}


def test_other_remote_decorators_and_files_are_ignored(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f'{HEADER}cfg = LiveServerless(name="g")\n@remote(cfg)\ndef f(): ...\n',
            "ray_jobs.py": "import ray\n\n@ray.remote\ndef g(): ...\n",
            "remote_control.py": "def remote(x):\n    return x\n\n@remote\ndef h(): ...\n",
            "notes.txt": "@remote(cfg) in a text file is not code",
            "data/broken.json": "{not python",
        },
    )
    assert [f.qualified_name for f in result.functions] == ["main.f"]


def test_user_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    scan(
        tmp_path / "proj",
        {
            "config.py": f"open({str(marker)!r}, 'w').close()\n"
            "from flash import LiveServerless\ngpu = LiveServerless(name='g')\n",
            "main.py": f"open({str(marker)!r}, 'w').close()\n"
            "from flash import remote\nfrom config import gpu\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert not marker.exists()


def test_remote_inside_module_level_if_block_counts(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                import sys
                if sys.version_info >= (3, 10):
                    gpu = LiveServerless(name="g")

                    @remote(gpu)
                    def f(): ...
            """,
        },
    )
    assert only(result).qualified_name == "main.f"


def test_a_config_rebound_under_a_main_guard_does_not_route_functions(tmp_path: Path) -> None:
    # The block never runs when a worker imports workers.config: gpu stays "gpu-worker".
    result = scan(
        tmp_path,
        {
            "workers/__init__.py": "",
            "workers/config.py": f"""\
                {HEADER}
                gpu = LiveServerless(name="gpu-worker")
                if __name__ == "__main__":
                    gpu = CpuLiveServerless(name="scratch-cpu")
                if "__main__" != __name__:
                    pass
                else:
                    gpu = CpuLiveServerless(name="scratch-too")
            """,
            "workers/gpu.py": "from flash import remote\nfrom workers.config import gpu\n"
            "@remote(resource_config=gpu)\ndef embed(x): ...\n",
        },
    )
    assert only(result).resource == "gpu-worker"
    assert set(result.resources) == {"gpu-worker"}


def test_a_config_chosen_by_if_else_is_an_error_not_the_last_branch(tmp_path: Path) -> None:
    # The manifest would record "dev" only; with PROD set the caller would target "prod".
    err = scan_error(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                import os
                if os.environ.get("PROD"):
                    cpu = CpuLiveServerless(name="prod", workersMax=9)
                else:
                    cpu = CpuLiveServerless(name="dev", workersMax=1)

                @remote(cpu)
                def f(): ...
            """,
        },
    )
    assert str(err).startswith(
        "main.py:9:9: the endpoint of resource config `cpu` would depend on run-time "
        "conditions: `cpu` is bound at main.py:5 and main.py:7, and an if, try, loop, with or "
        "match at module level decides which binding is in effect; bind `cpu` once"
    )


@pytest.mark.parametrize(
    ("setup", "lines"),
    [
        ('cpu = C(name="a")\nif os.environ.get("B"):\n    cpu = C(name="b")\n', "4 and main.py:6"),
        (
            'try:\n    cpu = C(name=os.environ["N"])\nexcept KeyError:\n    cpu = C(name="a")\n',
            "5 and main.py:7",
        ),
        ('cpu = C(name="a")\nfor cpu in [C(name="b")]:\n    pass\n', "4 and main.py:5"),
        (
            'cpu = C(name="a")\nwhile os.environ.get("B"):\n    cpu = C(name="b")\n    break\n',
            "4 and main.py:6",
        ),
        (
            'cpu = C(name="a")\nwith open(__file__) as f:\n    cpu = C(name="b")\n',
            "4 and main.py:6",
        ),
        (
            'match os.environ.get("ENV"):\n    case "prod":\n        cpu = C(name="p")\n'
            '    case _:\n        cpu = C(name="d")\n',
            "6 and main.py:8",
        ),
        (
            'if os.environ.get("A"):\n    cpu = C(name="a")\nelif os.environ.get("B"):\n'
            '    cpu = C(name="b")\n',
            "5 and main.py:7",
        ),
    ],
    ids=[
        "rebound-under-if",
        "try-except",
        "for-target",
        "while",
        "with",
        "match",
        "elif",
    ],
)
def test_a_config_bound_under_control_flow_and_again_is_an_error(
    tmp_path: Path, setup: str, lines: str
) -> None:
    source = f"{HEADER}import os\nC = CpuLiveServerless\n{setup}@remote(cpu)\ndef f(): ...\n"
    err = scan_error(tmp_path, {"main.py": source})
    assert "would depend on run-time conditions" in err.message
    assert f"`cpu` is bound at main.py:{lines}," in err.message
    decorator_line = source.count("\n", 0, source.index("@remote(cpu)")) + 1
    assert (err.path, err.line, err.col) == ("main.py", decorator_line, 9)


def test_an_imported_config_bound_under_a_condition_is_an_error_at_the_decorator(
    tmp_path: Path,
) -> None:
    err = scan_error(
        tmp_path,
        {
            "config.py": f"""\
                {HEADER}
                import sys
                gpu = LiveServerless(name="big")
                if sys.platform == "darwin":
                    gpu = LiveServerless(name="small")
            """,
            "jobs.py": "from flash import remote\nfrom config import gpu\n\n"
            "@remote(resource_config=gpu)\ndef f(): ...\n",
        },
    )
    assert (err.path, err.line) == ("jobs.py", 4)
    assert "`gpu` is bound at config.py:4 and config.py:6" in err.message


@pytest.mark.parametrize(
    ("code", "shown", "lines"),
    [
        (
            'N = 1\nif os.environ.get("P"):\n    N = 9\n'
            'cpu = CpuLiveServerless(name="a", workersMax=N)\n@remote(cpu)\n',
            "the value of `N`",
            "3 and main.py:5",
        ),
        (
            'DEPS = ["a"]\nif os.environ.get("P"):\n    DEPS = ["b"]\n'
            'cpu = CpuLiveServerless(name="a")\n@remote(cpu, dependencies=DEPS)\n',
            "dependencies=DEPS",
            "3 and main.py:5",
        ),
        (
            "try:\n    from flash import remote as r\nexcept ImportError:\n    r = None\n"
            'cpu = CpuLiveServerless(name="a")\n@r(cpu)\n',
            "@r on 'f'",
            "4 and main.py:6",
        ),
    ],
    ids=["config-field", "dependencies", "decorator"],
)
def test_other_values_bound_under_a_condition_are_errors_too(
    tmp_path: Path, code: str, shown: str, lines: str
) -> None:
    err = scan_error(tmp_path, {"main.py": f"{HEADER}import os\n{code}def f(): ...\n"})
    assert err.message.startswith(f"{shown} would depend on run-time conditions"), err.message
    assert f"main.py:{lines}," in err.message


def test_bindings_that_do_not_depend_on_run_time_conditions_still_work(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f"""\
                {HEADER}
                import os, sys
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:  # never runs: the else is what a worker sees
                    from flash.sdk.resources import LiveServerless as Config
                else:
                    from flash import CpuLiveServerless as Config
                try:  # the same object either way
                    from flash import remote
                except ImportError:
                    from flash.sdk import remote
                try:  # another decorator, bound under a condition: not Flash's business
                    from functools import cache
                except ImportError:
                    from functools import lru_cache as cache

                if sys.version_info >= (3, 10):  # bound once, if at all
                    once = Config(name="once")
                # Decided in each block where it is used.
                if os.environ.get("PROD"):
                    cpu = Config(name="prod")

                    @remote(cpu)
                    def in_prod(): ...
                else:
                    cpu = Config(name="dev")

                    @remote(cpu)
                    def in_dev(): ...
                # Rebound unconditionally: from here on cpu is this one, whatever came before.
                cpu = Config(name="last")

                @remote(once)
                @cache
                def uses_once(): ...

                @remote(cpu)
                def uses_last(): ...
            """,
        },
    )
    assert {f.name: f.resource for f in result.functions} == {
        "in_prod": "prod",
        "in_dev": "dev",
        "uses_once": "once",
        "uses_last": "last",
    }
    assert {r.type for r in result.resources.values()} == {"CpuLiveServerless"}


def test_remote_under_type_checking_is_a_clear_error(tmp_path: Path) -> None:
    body = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    @remote(cfg)\n    def f(): ...\n"
    )
    err = scan_error(tmp_path, {"app.py": f"{HEADER}cfg = LiveServerless(name='g')\n{body}"})
    assert err.message == (
        "@remote on 'f', inside `if TYPE_CHECKING:`, which never runs when a worker imports "
        "the module; define it at module level"
    )
    assert (err.path, err.line) == ("app.py", 5)


def test_remote_under_a_main_guard_is_a_clear_error(tmp_path: Path) -> None:
    body = "if __name__ == '__main__':\n    @remote(cfg)\n    def f(): ...\n"
    err = scan_error(tmp_path, {"app.py": f"{HEADER}cfg = LiveServerless(name='g')\n{body}"})
    assert "never runs when a worker imports the module" in err.message
    assert (err.path, err.line) == ("app.py", 4)


def test_utf8_with_bom_and_non_ascii_source(tmp_path: Path) -> None:
    # Non-ASCII in the source; an endpoint name is part of a URL, so ASCII.
    source = (
        f'{HEADER}cfg = LiveServerless(name="modele")  # modèle\n@remote(cfg)\ndef café(): ...\n'
    )
    result = scan(tmp_path, {"main.py": b"\xef\xbb\xbf" + source.encode("utf-8")})
    assert only(result).name == "café"
    assert list(result.resources) == ["modele"]


# --- errors ----------------------------------------------------------------------------


def test_syntax_error_in_any_python_file(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "main.py": f'{HEADER}cfg = LiveServerless(name="g")\n@remote(cfg)\ndef f(): ...\n',
            "util/helpers.py": "x = 1\ndef broken(:\n    pass\n",
        },
    )
    assert "syntax error" in err.message
    assert (err.path, err.line) == ("util/helpers.py", 2)
    assert err.col is not None
    assert str(err).startswith("util/helpers.py:2:")


def test_a_repeated_keyword_in_a_config_is_a_scan_error(tmp_path: Path) -> None:
    # ast.parse takes it (the endpoint would be named "b"); Python refuses to compile it.
    err = scan_error(
        tmp_path,
        {"main.py": f'{HEADER}\n@remote(CpuLiveServerless(name="a", name="b"))\ndef f(): ...\n'},
    )
    assert str(err) == "main.py:3:37: syntax error: keyword argument repeated: name"


def test_a_repeated_keyword_anywhere_in_a_project_module_is_a_scan_error(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "main.py": f'{HEADER}cfg = LiveServerless(name="g")\n@remote(cfg)\ndef f(): ...\n',
            "util/helpers.py": "def g():\n    return dict(a=1,\n                a=2)\n",
        },
    )
    assert str(err) == (
        "util/helpers.py:3:17: syntax error: keyword argument repeated: a"
        "; if this file is not part of the app (an old script, a fixture), list it in .flashignore"
    )


def test_non_utf8_file(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "main.py": f'{HEADER}cfg = LiveServerless(name="g")\n@remote(cfg)\ndef f(): ...\n',
            "legacy.py": b"x = 1\ns = '\xe9t\xe9'\n",
        },
    )
    assert "not valid UTF-8" in err.message
    assert (err.path, err.line, err.col) == ("legacy.py", 2, 6)


@pytest.mark.parametrize(
    ("decorator", "col"),
    # The column is the decorator expression's, just after the "@".
    [("@remote", 2), ("@remote()", 2), ("@remote(dependencies=['x'])", 2)],
)
def test_remote_without_config(tmp_path: Path, decorator: str, col: int) -> None:
    err = scan_error(tmp_path, {"app.py": f"{HEADER}\n{decorator}\ndef f(): ...\n"})
    assert "needs a resource config" in err.message
    assert "'f'" in err.message
    assert (err.path, err.line, err.col) == ("app.py", 3, col)


@pytest.mark.parametrize(
    ("setup", "expr", "reason"),
    [
        ("def make():\n    return LiveServerless(name='g')\n", "make()", "make(...)"),
        ("", "undefined_cfg", "not a name defined or imported"),
        ("configs = {'g': LiveServerless(name='g')}\n", "configs['g']", "configs['g']"),
        ("import os\n", "os.environ", "os.environ"),
        ("cfg = 3\n", "cfg", "`3`"),
    ],
    ids=["factory", "undefined", "subscript", "external", "not-a-call"],
)
def test_config_that_cannot_be_resolved(tmp_path: Path, setup: str, expr: str, reason: str) -> None:
    err = scan_error(tmp_path, {"app.py": f"{HEADER}{setup}\n@remote({expr})\ndef f(): ...\n"})
    assert f"`{expr}`" in err.message
    assert reason in err.message
    assert "module level with literal values" in err.message
    line = 1 + setup.count("\n") + 2
    assert (err.path, err.line, err.col) == ("app.py", line, 9)


def test_config_imported_from_a_module_that_does_not_define_it(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "config.py": "from flash import LiveServerless\n",
            "app.py": f"{HEADER}from config import gpu\n\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert "`gpu`" in err.message
    assert (err.path, err.line) == ("app.py", 4)


@pytest.mark.parametrize(
    ("name_arg", "shown"),
    [
        ('name=f"w-{os.getpid()}"', "got `f'w-{os.getpid()}'`"),
        ("name=os.environ['NAME']", "got `os.environ['NAME']`"),
        ("name=3", "got `3`"),
        ("workersMax=2", ""),
    ],
)
def test_config_name_must_be_a_string_literal(tmp_path: Path, name_arg: str, shown: str) -> None:
    err = scan_error(
        tmp_path,
        {
            "config.py": f"import os\nfrom flash import LiveServerless\nENV = 'x'\n"
            f"gpu = LiveServerless({name_arg})\n",
            "app.py": f"{HEADER}from config import gpu\n\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert "needs name= set to a string the build can read" in err.message
    assert shown in err.message
    # Reported where the config is constructed, not where it is used.
    assert (err.path, err.line) == ("config.py", 4)


@pytest.mark.parametrize("name", ["team/gpu", "gpu?x", "gpu#1", "50%", "a\\\\b", "tab\\there"])
def test_config_name_that_cannot_be_in_a_url_is_an_error(tmp_path: Path, name: str) -> None:
    err = scan_error(
        tmp_path,
        {"app.py": f'{HEADER}\ncfg = LiveServerless(name="{name}")\n@remote(cfg)\ndef f(): ...\n'},
    )
    assert "cannot be part of the endpoint's URL" in err.message
    assert (err.path, err.line) == ("app.py", 3)


def test_name_from_a_module_level_constant_is_fine(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "app.py": f'{HEADER}NAME = "gpu-" + "a"\ncfg = LiveServerless(name=NAME)\n'
            "@remote(cfg)\ndef f(): ...\n"
        },
    )
    assert list(result.resources) == ["gpu-a"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ("workersMax=-1", "workersMax"),
        ("workers_min=5, workers_max=2", "workersMin (5) must not exceed workersMax (2)"),
        ("gpus=['H100']", "gpus"),
        ("colour='red'", "colour"),
    ],
)
def test_config_that_fails_validation(tmp_path: Path, kwargs: str, field: str) -> None:
    name = "" if "name=" in kwargs else "name='g', "
    err = scan_error(
        tmp_path,
        {
            "config.py": "from flash import LiveServerless\n\n"
            f"gpu = LiveServerless({name}{kwargs})\n",
            "app.py": f"{HEADER}from config import gpu\n\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert "invalid LiveServerless" in err.message
    assert field in err.message
    assert (err.path, err.line, err.col) == ("config.py", 3, 7)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("''", "must not be empty"), ("'..'", "relative path step"), ("'a/b'", "contains '/'")],
)
def test_a_name_no_url_can_hold_is_reported_at_the_name(
    tmp_path: Path, name: str, problem: str
) -> None:
    err = scan_error(
        tmp_path,
        {
            "config.py": f"from flash import LiveServerless\n\ngpu = LiveServerless(name={name})\n",
            "app.py": f"{HEADER}from config import gpu\n\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert err.message.startswith("LiveServerless name") and problem in err.message
    assert (err.path, err.line, err.col) == ("config.py", 3, 27)


def test_unknown_enum_member(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "app.py": f"{HEADER}from flash import GpuGroup\n"
            "cfg = LiveServerless(name='g', gpus=[GpuGroup.H100])\n@remote(cfg)\ndef f(): ...\n"
        },
    )
    assert "GpuGroup has no member 'H100'" in err.message
    assert "AMPERE_80" in err.message
    assert (err.path, err.line, err.col) == ("app.py", 3, 38)


def test_positional_config_arguments(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path, {"app.py": f"{HEADER}cfg = LiveServerless('g')\n@remote(cfg)\ndef f(): ...\n"}
    )
    assert "keyword arguments only" in err.message
    assert (err.path, err.line, err.col) == ("app.py", 2, 22)


@pytest.mark.parametrize(
    ("option", "value", "message", "col"),
    [
        ("dependencies", '"numpy"', "dependencies must be a list of string literals", 27),
        (
            "dependencies",
            '["numpy", VERSION]',
            "dependencies[1] must be a string literal; got `VERSION`",
            37,
        ),
        (
            "system_dependencies",
            '["git", 3]',
            "system_dependencies[1] must be a string literal; got `3`",
            42,
        ),
        ("dependencies", "make_deps()", "got `make_deps()`", 27),
    ],
)
def test_dependencies_must_be_string_literals(
    tmp_path: Path, option: str, value: str, message: str, col: int
) -> None:
    err = scan_error(
        tmp_path,
        {
            "app.py": f"{HEADER}import os\nVERSION = os.environ['V']\n"
            "cfg = LiveServerless(name='g')\n"
            f"@remote(cfg, {option}={value})\nasync def f(): ...\n"
        },
    )
    assert message in err.message
    assert (err.path, err.line, err.col) == ("app.py", 5, col)


def test_an_invalid_requirement_in_dependencies_names_its_file_and_line(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "deps.py": 'GPU_DEPS = [\n    "numpy>=2",\n    "torch>>2",\n]\n',
            "app.py": f"{HEADER}from deps import GPU_DEPS\ncfg = LiveServerless(name='g')\n"
            "@remote(cfg, dependencies=['rich', 'not a pkg!!'])\ndef f(): ...\n"
            "@remote(cfg, dependencies=GPU_DEPS)\ndef g(): ...\n",
        },
    )
    assert str(err).startswith("app.py:4:36: invalid requirement 'not a pkg!!': ")
    # A list defined in another module: the entry's own file and line.
    fixed = (tmp_path / "app.py").read_text().replace("'not a pkg!!'", "'pkg'")
    err = scan_error(tmp_path, {"app.py": fixed})
    assert str(err).startswith("deps.py:3:5: invalid requirement 'torch>>2': ")


def test_a_variable_in_dependencies_is_refused_at_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uv would expand it in the requirements it is given, and show the value in its messages.
    monkeypatch.setenv("MYTOK", "SECRET_PATHTOKEN_7777")
    err = scan_error(
        tmp_path,
        {
            "app.py": f"{HEADER}cfg = LiveServerless(name='g')\n"
            "@remote(cfg, dependencies=['tinypkg @ http://127.0.0.1:9/${MYTOK}/t.whl'])\n"
            "def f(): ...\n"
        },
    )
    assert str(err).startswith(
        "app.py:3:28: 'tinypkg @ http://127.0.0.1:9/${MYTOK}/t.whl': flash build does not "
        "expand ${...} in requirements; "
    )
    assert "SECRET_PATHTOKEN_7777" not in str(err)


def test_env_names_that_hold_secrets_are_warned_about_unless_referenced(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "app.py": f"""\
                {HEADER.strip()}

                gpu = LiveServerless(
                    name="g",
                    env={{
                        "HF_TOKEN": "hf_written_out",
                        "AWS_SECRET_ACCESS_KEY": "{{{{RUNPOD_SECRET_aws}}}}",
                        "db_password": "hunter2",
                        "MAX_TOKENS": "512",
                        "MODE": "prod",
                        "DATABASE_URL": "postgres://app:pw123@db:5432/app",
                        "PUBLIC_URL": "https://user@example.com/x",
                    }},
                )

                @remote(gpu)
                def f(): ...
            """,
        },
    )
    # A RunPod secret reference goes into the manifest as it is written.
    env = result.resources["g"].config["env"]
    assert env["AWS_SECRET_ACCESS_KEY"] == "{{RUNPOD_SECRET_aws}}"
    shown = [str(warning) for warning in result.warnings]
    assert [text.split(": ", 1)[0] for text in shown] == ["app.py:3:7"] * 3
    assert "env 'HF_TOKEN' looks like a secret" in shown[0]
    assert "env 'db_password' looks like a secret" in shown[1]
    assert '"{{ RUNPOD_SECRET_db_password }}"' in shown[1]
    # Whatever its name, a URL with a password in it (a user alone is no secret).
    assert "env 'DATABASE_URL' looks like a secret" in shown[2]
    assert not [t for t in shown if "hf_written_out" in t or "hunter2" in t or "pw123" in t]


def test_an_endpoint_of_no_workers_is_warned_about(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "app.py": f"""\
                {HEADER.strip()}

                off = CpuLiveServerless(name="off", workersMax=0)
                on = CpuLiveServerless(name="on", workersMax=1)

                @remote(off)
                def f(): ...

                @remote(on)
                def g(): ...
            """,
        },
    )
    (warning,) = [str(warning) for warning in result.warnings]
    assert warning.startswith("app.py:3:7: CpuLiveServerless 'off': workersMax=0 lets the")
    assert "flash run and flash serve give it one worker" in warning


# Fake credentials in the shapes their issuers use, built here: none is a real one.
FAKE_HF = "hf_" + "a1" * 17
FAKE_OPENAI = "sk-proj-" + "Ab3" * 10
FAKE_STRIPE = "sk_live_" + "Zx9" * 8
FAKE_GITHUB = "ghp_" + "Qw3" * 12
FAKE_GITHUB_PAT = "github_pat_" + "Rt5" * 8 + "_" + "Yu7" * 10
FAKE_SLACK = "xoxb-" + "1234567890-" + "Ab3" * 8
FAKE_RUNPOD = "rpa_" + "K8M" * 14
FAKE_PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "TUlJ" * 10 + "\n-----END RSA PRIVATE KEY-----\n"
FAKE_JWT = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxIn0" + "." + "c2ln" * 8
FAKE_AWS_ID = "AKIA" + "EXAMPLE2" * 2
FAKE_AWS_SECRET = "wJal" + "rXUt9/K7" * 4 + "EXAM"
FAKE_KEY = "Zx9Qw3Rt5Yu7" * 3


def env_warnings(root: Path, env: Mapping[str, str]) -> list[str]:
    result = scan(
        root,
        {
            "app.py": f"{HEADER}cfg = LiveServerless(name='g', env={dict(env)!r})\n"
            "@remote(cfg)\ndef f(): ...\n"
        },
    )
    return [str(warning) for warning in result.warnings]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        # By name: its words, in any case or spelling.
        ("DB_PASS", "hunter2", "by its name"),
        ("SMTP_PWD", "hunter2", "by its name"),
        ("HF_AUTH", "hunter2", "by its name"),
        ("SESSION_SECRET_KEY", "hunter2", "by its name"),
        ("dbPassword", "hunter2", "by its name"),
        ("openaiApiKey", "hunter2", "by its name"),
        ("HFTOKEN", "hunter2", "by its name"),
        ("GOOGLE_CREDENTIALS", "hunter2", "by its name"),
        # A word placeholder is warned about: it cannot be told from a weak password.
        ("DB_PASSWORD", "changeme", "by its name"),
        # KEY alone: only with a value that looks generated.
        ("OPENAI_KEY", FAKE_KEY, "by its name and value"),
        # Part reference, part written out: the written-out part decides.
        ("API_TOKEN", "{{ RUNPOD_SECRET_user }}:" + FAKE_KEY, "by its name and value"),
        # By value, whatever the name.
        ("STRIPE_KEY", FAKE_STRIPE, "by its value (looks like a Stripe API key)"),
        ("MODEL_SOURCE", FAKE_HF, "by its value (looks like a Hugging Face token)"),
        ("OPENAI", FAKE_OPENAI, "by its value (looks like an OpenAI-style API key)"),
        ("GH", FAKE_GITHUB, "by its value (looks like a GitHub token)"),
        ("GH", FAKE_GITHUB_PAT, "by its value (looks like a GitHub token)"),
        ("SLACK", FAKE_SLACK, "by its value (looks like a Slack token)"),
        ("RUNPOD", FAKE_RUNPOD, "by its value (looks like a RunPod API key)"),
        ("TLS", FAKE_PEM, "by its value (looks like a private key)"),
        ("AUTHORIZATION_HEADER", "Bearer " + FAKE_JWT, "by its value (looks like a JSON"),
        ("DATABASE_URL", "postgres://app:pw123@db/app", "by its value (a URL with a password)"),
        ("AUTH_HEADER", "Bearer " + FAKE_KEY, "by its value (looks like credentials)"),
        ("DSN", "Server=db;User Id=app;Password=hunter2;", "by its value (looks like a conn"),
        ("FEED", "https://x.example/feed?api_key=" + FAKE_KEY, "by its value (looks like a URL"),
    ],
)
def test_secrets_in_env_are_warned_about_without_their_value(
    tmp_path: Path, name: str, value: str, why: str
) -> None:
    shown = env_warnings(tmp_path, {name: value, "MODE": "prod"})
    assert len(shown) == 1, shown
    assert shown[0].startswith(
        f"app.py:2:7: LiveServerless 'g': env {name!r} looks like a secret {why}"
    )
    assert f'"{{{{ RUNPOD_SECRET_{name} }}}}"' in shown[0]
    # Neither the value nor a piece of it (each line of a PEM block) is ever shown.
    assert not [part for part in [value, *value.split()] if len(part) > 5 and part in shown[0]]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Names about a secret, not the secret.
        ("MAX_TOKEN_LENGTH", "4096"),
        ("SECRET_NAME", "hf-token"),
        ("AWS_ACCESS_KEY_ID", FAKE_AWS_ID),
        ("TOKEN_ENDPOINT", "https://auth.example.com/oauth/token"),
        ("PASSWORD_MIN_LENGTH", "12"),
        ("MAX_TOKENS", "512"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("PWD", "/app"),
        # KEY alone, with a value that is no generated key.
        ("CACHE_KEY", "llama-3-8b-instruct-v2"),
        ("SORT_KEY", "550e8400-e29b-41d4-a716-446655440000"),
        ("PARTITION_KEY", "tenant_id"),
        ("CACHE_KEY", "/models/cache/0123456789abcdefghij"),
        # Values that hold no secret, whatever the name.
        ("HF_TOKEN", ""),
        ("HF_TOKEN", "  "),
        ("HF_TOKEN", "{{ RUNPOD_SECRET_hf_token }}"),
        ("HF_TOKEN", "${HF_TOKEN}"),
        ("HF_TOKEN", "$HF_TOKEN"),
        ("DISABLE_AUTH", "1"),
        ("DATABASE_URL", "postgres://app:${DB_PASSWORD}@db/app"),
        ("PUBLIC_URL", "https://user@example.com/x"),
        # A prefix inside a word is no token; 40 base64 characters without an AWS key ID
        # beside them are no AWS secret.
        ("TASK", "task-" + "abc1" * 8),
        ("CHECKSUM", FAKE_AWS_SECRET),
        # Words about a secret, or tokens that are text, not credentials.
        ("EOS_TOKEN", "</s>"),
        ("PAD_TOKEN", "<pad>"),
        ("SPECIAL_TOKENS", "<|im_start|>,<|im_end|>"),
        ("TOKEN_BUDGET", "100000"),
        ("TOKEN_STRATEGY", "sliding"),
        ("PASS_THROUGH", "yes please"),
        ("AUTH_DOMAIN", "example.auth0.com"),
        ("BASIC_AUTH_USER", "admin"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/service-account.json"),
        ("API_TOKEN", "Bearer {{ RUNPOD_SECRET_api_token }}"),
        ("MODEL_PATH", "/models/sk-" + "a1" * 15),
        ("AUTH_HEADER", "Bearer {{ RUNPOD_SECRET_api_token }}"),
        ("DSN", "Server=db;Database=app;Password=${DB_PASSWORD};"),
        ("PAGE_URL", "https://x.example/list?page=2&token_type=bearer"),
        ("PROMPT", "Answer with a token count of 12"),
    ],
)
def test_env_entries_that_hold_no_secret_are_not_warned_about(
    tmp_path: Path, name: str, value: str
) -> None:
    assert env_warnings(tmp_path, {name: value}) == []


def test_an_aws_secret_key_is_known_by_its_key_id_beside_it(tmp_path: Path) -> None:
    # The key ID is no secret; its pair is one, whatever its name.
    pair = {"AWS_ACCESS_KEY_ID": FAKE_AWS_ID, "STORAGE_SK": FAKE_AWS_SECRET}
    shown = env_warnings(tmp_path, pair)
    assert len(shown) == 1, shown
    assert (
        "env 'STORAGE_SK' looks like a secret by its value (looks like an AWS secret access key"
        in (shown[0])
    )
    assert FAKE_AWS_SECRET not in shown[0] and FAKE_AWS_ID not in shown[0]
    # A name that says it holds no key: a model's name is not the pair's secret.
    assert env_warnings(tmp_path, {**pair, "STORAGE_SK": "", "MODEL": FAKE_AWS_SECRET}) == []


def test_long_values_of_many_would_be_tokens_are_scanned_in_linear_time() -> None:
    # Shapes like "sk-sk-sk-..." made the token patterns backtrack quadratically: 100k
    # characters took minutes. Linear, each takes milliseconds; the bound only catches a
    # return of the quadratic scan.
    for value in (
        "sk-" * 40_000,
        "eyJ-" * 30_000,
        "sk-" + "a-" * 60_000,
        "hf_" * 40_000,
        "bearer " * 20_000,
        "password=" * 15_000,
        "?token=" * 20_000,
    ):
        started = time.monotonic()
        list(secret_env_entries({"X": value}))
        assert time.monotonic() - started < 2, value[:12]


def test_bad_dependencies_on_a_class(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "app.py": f"{HEADER}cfg = LiveServerless(name='g')\n"
            "@remote(cfg, dependencies=[str(1)])\nclass Model: ...\n"
        },
    )
    assert "dependencies[0] must be a string literal" in err.message
    assert (err.path, err.line) == ("app.py", 3)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("def outer():\n    @remote(cfg)\n    def inner(): ...\n    return inner\n", 4),
        ("class Holder:\n    @remote(cfg)\n    def method(self): ...\n", 4),
        ("for i in range(2):\n    @remote(cfg)\n    def looped(): ...\n", 4),
        ("on_g = remote(cfg)\ndef outer():\n    @on_g\n    def inner(): ...\n", 5),
    ],
    ids=["function", "method", "loop", "stored"],
)
def test_remote_must_be_at_module_level(tmp_path: Path, body: str, line: int) -> None:
    err = scan_error(tmp_path, {"app.py": f"{HEADER}cfg = LiveServerless(name='g')\n{body}"})
    assert "not defined at module level" in err.message
    assert (err.path, err.line, err.col) == ("app.py", line, 6)


def test_two_different_configs_with_the_same_name(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "a.py": f"{HEADER}cfg = LiveServerless(name='worker', workersMax=2)\n"
            "@remote(cfg)\ndef f(): ...\n",
            "b.py": f"{HEADER}cfg = LiveServerless(name='worker', workersMax=4)\n"
            "@remote(cfg)\ndef g(): ...\n",
        },
    )
    assert "two different resource configs are named 'worker'" in err.message
    assert "a.py:2:7" in err.message and "b.py:2:7" in err.message
    assert "workersMax" in err.message
    assert (err.path, err.line) == ("b.py", 2)


def test_same_name_different_type(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "a.py": f"{HEADER}@remote(LiveServerless(name='worker'))\ndef f(): ...\n"
            "@remote(CpuLiveServerless(name='worker'))\ndef g(): ...\n",
        },
    )
    assert "LiveServerless vs CpuLiveServerless" in err.message
    assert "a.py:2:9" in err.message and "a.py:4:9" in err.message


def test_resource_names_that_collide_as_file_names(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "a.py": f"{HEADER}@remote(LiveServerless(name='My.GPU'))\ndef f(): ...\n",
            "b.py": f"{HEADER}@remote(LiveServerless(name='my-gpu'))\ndef g(): ...\n",
        },
    )
    assert "'My.GPU'" in err.message and "'my-gpu'" in err.message
    assert "handler_my_gpu.py" in err.message
    assert "a.py:2:9" in err.message and "b.py:2:9" in err.message
    assert (err.path, err.line) == ("b.py", 2)


def test_same_function_defined_twice_in_one_module(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "a.py": f"{HEADER}cfg = LiveServerless(name='g')\n@remote(cfg)\ndef f(): ...\n"
            "@remote(cfg)\ndef f(): ...\n",
        },
    )
    assert "defined twice" in err.message
    assert "a.py:4:1" in err.message and "a.py:6:1" in err.message


def test_no_remote_functions(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {"main.py": "def remote_helper():\n    return 1\n", "config.py": CONFIG_MODULE},
    )
    assert f"no @remote functions found in {tmp_path}" in err.message
    assert "@remote(resource_config=gpu)" in err.message
    assert err.path is None


# --- resource names as file names ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpu-worker", "gpu_worker"),
        ("GPU Worker", "gpu_worker"),
        ("my.model.v2", "my_model_v2"),
        ("  --lots   of---space--  ", "lots_of_space"),
        ("Modèle \U0001d7d9", "modele_1"),  # a double-struck digit one
        ("ÆON", "on"),  # Æ has no ASCII decomposition
        ("a_b", "a_b"),
        ("__x__", "x"),
    ],
)
def test_sanitize_resource_name(name: str, expected: str) -> None:
    assert sanitize_resource_name(name) == expected


@pytest.mark.parametrize("name", ["日本語", "---", ""])
def test_sanitize_resource_name_without_ascii_letters(name: str) -> None:
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    assert sanitize_resource_name(name) == f"resource_{digest}"


def test_sanitize_resource_name_distinguishes_non_ascii_names() -> None:
    assert sanitize_resource_name("日本語") != sanitize_resource_name("中文")
    assert sanitize_resource_name("a b") == sanitize_resource_name("a-b") == "a_b"


# --- size ------------------------------------------------------------------------------


def test_scans_a_project_of_two_thousand_modules(tmp_path: Path) -> None:
    files = {
        "shared/__init__.py": "",
        "shared/config.py": "from flash import LiveServerless, CpuLiveServerless\n"
        "gpu = LiveServerless(name='gpu', workersMax=2)\n"
        "cpu = CpuLiveServerless(name='cpu')\n",
    }
    for i in range(2000):
        rel = f"pkg{i % 20}/mod_{i}.py"
        files[f"pkg{i % 20}/__init__.py"] = ""
        if i % 10 == 0:
            cfg = "gpu" if i % 20 == 0 else "cpu"
            files[rel] = (
                f"from flash import remote\nfrom shared.config import {cfg}\n\n"
                f"@remote({cfg}, dependencies=['pkg-{i}'])\n"
                f"async def task_{i}(x: int) -> int:\n    return x + {i}\n"
            )
        else:
            files[rel] = (
                f'"""Module {i}."""\nimport json\n\nVALUE = {i}\n\n\n'
                f"def helper_{i}(data: dict) -> str:\n    return json.dumps(data) + str(VALUE)\n"
                f"\n\nclass Thing{i}:\n    def method(self) -> int:\n        return VALUE\n"
            )
    result = scan(tmp_path, files)
    assert len(result.functions) == 200
    assert {f.qualified_name for f in result.functions} == {
        f"pkg{i % 20}.mod_{i}.task_{i}" for i in range(0, 2000, 10)
    }
    assert sorted(result.resources) == ["cpu", "gpu"]
    assert sum(f.resource == "gpu" for f in result.functions) == 100


def test_import_cycles_end_in_a_clear_error(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "a.py": "from b import gpu\nfrom c import *\n",
            "b.py": "from a import gpu\nfrom c import *\n",
            "c.py": "from a import *\nfrom b import *\n",
            "main.py": f"{HEADER}from a import gpu\n\n@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert "cannot resolve the resource config `gpu`" in err.message
    assert (err.path, err.line) == ("main.py", 4)


def test_a_chain_of_conditional_rebindings_is_read_once_each(tmp_path: Path) -> None:
    # Each `if ...: cpu = cpu` used to double the work: 24 of them took over a minute.
    rebinds = 'if os.environ.get("A"):\n    cpu = cpu\n' * 24
    source = f'{HEADER}import os\ncpu = CpuLiveServerless(name="a")\n{rebinds}'
    result = scan(tmp_path, {"main.py": source + "@remote(cpu)\ndef f(): ...\n"})
    assert only(result).resource == "a"  # every binding is the same config


def test_a_stored_decorator_whose_remote_is_bound_under_a_condition_is_an_error(
    tmp_path: Path,
) -> None:
    # Not a function silently left out of the manifest.
    err = scan_error(
        tmp_path,
        {
            "main.py": """\
try:
    from flash import remote
except ImportError:
    remote = None
from flash import CpuLiveServerless

cpu = CpuLiveServerless(name="cpu")
on_cpu = remote(resource_config=cpu)


@on_cpu
def g(): ...
""",
        },
    )
    assert str(err).startswith("main.py:8:10: `remote` in `on_cpu` would depend on run-time")


def test_a_config_reached_through_a_star_import_cycle_resolves_from_every_module(
    tmp_path: Path,
) -> None:
    # a.py's lookup meets pkg.gpu while it is still being resolved; b.py must still find it.
    result = scan(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.config import *\nfrom pkg.workers import *\n",
            "pkg/config.py": f'{HEADER}gpu = LiveServerless(name="gpu")\n',
            "pkg/workers.py": f"{HEADER}from pkg import gpu\n@remote(gpu)\ndef job(): ...\n",
            "a.py": f"{HEADER}from pkg import gpu\n@remote(gpu)\ndef a_job(): ...\n",
            "b.py": f"{HEADER}from pkg.workers import gpu\n@remote(gpu)\ndef b_job(): ...\n",
        },
    )
    assert {f.name: f.resource for f in result.functions} == {
        "job": "gpu",
        "a_job": "gpu",
        "b_job": "gpu",
    }


def test_an_imported_ambiguity_is_blamed_where_it_is_bound(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "configs.py": f"""{HEADER}import os
if os.environ.get("GPU"):
    worker = LiveServerless(name="worker")
else:
    worker = CpuLiveServerless(name="worker")
""",
            "shared.py": "from configs import worker\n",
            "main.py": f"""{HEADER}try:
    from shared import worker
except ImportError:
    from configs import worker


@remote(worker)
def f(): ...
""",
        },
    )
    assert "`worker` is bound at configs.py:4 and configs.py:6" in str(err), str(err)


def test_the_same_config_in_a_try_and_its_except_is_one_config(tmp_path: Path) -> None:
    source = f"""\
{HEADER}
try:
    import torch  # noqa: F401
    gpu = LiveServerless(name="gpu")
except ImportError:
    gpu = LiveServerless(name="gpu")


@remote(gpu)
def f(): ...
"""
    assert only(scan(tmp_path, {"main.py": source})).resource == "gpu"
    for other in ('CpuLiveServerless(name="gpu")', 'LiveServerless(name="cpu")'):
        different = source.replace(
            'except ImportError:\n    gpu = LiveServerless(name="gpu")',
            f"except ImportError:\n    gpu = {other}",
        )
        assert "would depend on run-time" in str(scan_error(tmp_path, {"main.py": different}))


def test_calls_written_alike_of_constructors_bound_apart_are_not_one_config(
    tmp_path: Path,
) -> None:
    source = """\
from flash import remote
try:
    import torch  # noqa: F401
    from flash import LiveServerless as Endpoint
    worker = Endpoint(name="worker")
except ImportError:
    from flash import CpuLiveServerless as Endpoint
    worker = Endpoint(name="worker")


@remote(worker)
def f(): ...
"""
    assert "would depend on run-time" in str(scan_error(tmp_path, {"main.py": source}))


def test_a_config_from_a_star_import_rebound_under_a_condition_is_an_error(
    tmp_path: Path,
) -> None:
    files = {
        "configs.py": f'{HEADER}gpu = LiveServerless(name="a")\n',
        "w.py": f"""{HEADER}import os
from configs import *
if os.environ.get("X"):
    gpu = LiveServerless(name="b")


@remote(gpu)
def f(): ...
""",
    }
    err = scan_error(tmp_path, files)
    assert "`gpu` is bound at w.py:3 and w.py:5" in str(err), str(err)
    # Rebound unconditionally, the star import's is overwritten: no question.
    files["w.py"] = files["w.py"].replace('if os.environ.get("X"):\n    gpu', "gpu")
    assert only(scan(tmp_path, files)).resource == "b"


@pytest.mark.parametrize(
    "expression", ["+".join(["1"] * 200_000), "not " * 100_000 + "1"], ids=["long", "deep"]
)
def test_an_expression_too_deep_for_python_is_a_scan_error(tmp_path: Path, expression: str) -> None:
    # ast.parse gives up with RecursionError or MemoryError: the error names the file.
    err = scan_error(tmp_path, {"main.py": f"{HEADER}x = {expression}\n"})
    assert str(err) == "main.py: cannot parse file: an expression is nested too deeply for Python"


# --- system_dependencies entries -------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        *("", "ffmpeg; rm -rf /", "lib gl", "curl|sh", "$(id)", "FFmpeg", "-y", "ffmpeg=", "a=b c"),
        # One letter is no Debian name; an architecture or a release needs one.
        *("x", "libc6:", "ffmpeg/", "ffmpeg/a b", "nginx=1.18 *", "libc6:i386;id"),
    ],
)
def test_a_bad_system_dependency_is_a_scan_error_at_its_entry(tmp_path: Path, entry: str) -> None:
    err = scan_error(
        tmp_path,
        {
            "app.py": f"{HEADER}cfg = LiveServerless(name='g')\n"
            f"@remote(cfg, system_dependencies=['ffmpeg', {entry!r}])\ndef f(): ...\n"
        },
    )
    assert str(err).startswith(f"app.py:3:45: invalid system dependency {entry!r}: "), str(err)
    assert "one OS package as apt-get install takes it" in str(err)


def test_system_dependencies_take_what_apt_get_install_takes(tmp_path: Path) -> None:
    entries = (
        *("ffmpeg", "libgl1", "g++", "libstdc++6=12.2.0-14", "python3.11", "tzdata=1:2024a-0"),
        # An architecture, a release, a version glob.
        *("libc6:i386", "libc6:amd64=2.36-9", "ffmpeg/bookworm-backports", "nginx=1.18.*"),
    )
    fn = only(
        scan(
            tmp_path,
            {
                "deps.py": f"SYSTEM = {list(entries)!r}\n",
                "app.py": f"{HEADER}from deps import SYSTEM\ncfg = LiveServerless(name='g')\n"
                "@remote(cfg, system_dependencies=SYSTEM)\ndef f(): ...\n",
            },
        )
    )
    assert fn.system_dependencies == entries


def test_a_bad_system_dependency_in_another_module_names_that_module(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "deps.py": 'SYSTEM = [\n    "ffmpeg",\n    "lib gl",\n]\n',
            "app.py": f"{HEADER}from deps import SYSTEM\ncfg = LiveServerless(name='g')\n"
            "@remote(cfg, system_dependencies=SYSTEM)\ndef f(): ...\n",
        },
    )
    assert str(err).startswith("deps.py:3:5: invalid system dependency 'lib gl': ")


# --- remote applied by a call ----------------------------------------------------------


@pytest.mark.parametrize(
    ("imports", "applied", "col"),
    [
        ("from flash import remote\n", "wrapped = remote(cfg)(plain)", 11),
        ("from flash import remote as r\n", "wrapped = r(cfg)(plain)", 11),
        ("import flash\n", "wrapped = flash.remote(cfg)(plain)", 11),
        ("import flash as fl\n", "wrapped = fl.remote(cfg)(plain)", 11),
        ("from flash import remote\n", "on_cpu = remote(cfg)\nwrapped = on_cpu(plain)", 11),
        ("from flash import remote\n", "def make():\n    return remote(cfg)(plain)", 12),
        ("from flash import remote\n", "Wrapped = remote(resource_config=cfg)(Plain)", 11),
    ],
    ids=["plain", "alias", "module", "module-alias", "stored", "in-function", "class"],
)
def test_remote_applied_by_a_call_is_a_scan_error(
    tmp_path: Path, imports: str, applied: str, col: int
) -> None:
    source = (
        f"{imports}from flash import CpuLiveServerless\n"
        "cfg = CpuLiveServerless(name='c')\n"
        "def plain(x): return x\n"
        "class Plain: ...\n"
        f"{applied}\n"
    )
    err = scan_error(tmp_path, {"m.py": source})
    line = source.count("\n")
    assert (err.path, err.line, err.col) == ("m.py", line, col), str(err)
    assert "write @remote(...) as a decorator on its def or class" in str(err)


def test_remote_applied_by_a_call_beside_a_decorated_function_is_a_scan_error(
    tmp_path: Path,
) -> None:
    err = scan_error(
        tmp_path,
        {
            "m.py": f"{HEADER}cfg = CpuLiveServerless(name='c')\n"
            "@remote(cfg)\ndef ok(x): return x\n"
            "def plain(x): return x\n"
            "if True:\n    wrapped = remote(cfg)(plain)\n"
        },
    )
    assert str(err).startswith("m.py:7:15: `remote(cfg)(plain)` applies remote(...) by a call")


def test_a_stored_remote_imported_and_applied_by_a_call_is_a_scan_error(tmp_path: Path) -> None:
    err = scan_error(
        tmp_path,
        {
            "common.py": f"{HEADER}cfg = CpuLiveServerless(name='c')\non_cpu = remote(cfg)\n",
            "m.py": "from common import on_cpu\ndef plain(x): return x\nwrapped = on_cpu(plain)\n",
        },
    )
    assert str(err).startswith("m.py:3:11: `on_cpu(plain)` applies remote(...) by a call")


@pytest.mark.parametrize(
    "applied",
    [
        "def apply(remote, fn):\n    return remote(1)(fn)",
        "def apply(fn):\n    remote = lambda c: (lambda f: f)\n    return remote(1)(fn)",
        "def use(on_cpu):\n    return on_cpu(1)",
        "def use(*, on_cpu=None):\n    return on_cpu(plain)",
        "use = lambda remote: remote(1)(plain)",
        "wrapped = [remote(1)(plain) for remote in (str,)]",
        "def apply():\n    for remote in (str,):\n        remote(1)(plain)",
        "def apply():\n    with open('f') as remote:\n        remote(1)(plain)",
        "def apply():\n    from ray import remote\n    return remote(1)(plain)",
        "def apply():\n    def remote(c): return c\n    return remote(1)(plain)",
        "def outer(remote):\n    def inner():\n        return remote(1)(plain)\n    return inner",
        "def apply():\n    try:\n        pass\n    except OSError as on_cpu:\n        on_cpu(1)",
    ],
    ids=[
        *("parameter", "local", "stored-parameter", "keyword-only", "lambda", "comprehension"),
        *("for", "with", "local-import", "nested-def", "enclosing-function", "except"),
    ],
)
def test_a_name_a_function_binds_hides_the_modules_remote(tmp_path: Path, applied: str) -> None:
    source = (
        f"{HEADER}cfg = CpuLiveServerless(name='c')\non_cpu = remote(cfg)\n"
        f"def plain(x): return x\n@on_cpu\ndef ok(x): return x\n{applied}\n"
    )
    assert only(scan(tmp_path, {"m.py": source})).name == "ok"


@pytest.mark.parametrize(
    "applied",
    [
        # Another function's local does not hide the module's remote here.
        "def other(remote): return remote\ndef make():\n    return remote(cfg)(plain)",
        "def make():\n    global on_cpu\n    on_cpu = on_cpu\n    return on_cpu(plain)",
        # A default value is computed outside the function.
        "def make(remote=remote(cfg)(plain)):\n    return remote",
    ],
    ids=["other-function", "global", "default"],
)
def test_the_modules_remote_applied_in_a_function_is_a_scan_error(
    tmp_path: Path, applied: str
) -> None:
    source = (
        f"{HEADER}cfg = CpuLiveServerless(name='c')\non_cpu = remote(cfg)\n"
        f"def plain(x): return x\n{applied}\n"
    )
    err = scan_error(tmp_path, {"m.py": source})
    assert "applies remote(...) by a call" in str(err), str(err)


@pytest.mark.parametrize(
    ("common", "mid", "applied"),
    [
        ("on_cpu = remote(cfg)\n", "from common import on_cpu as gpu\n", "gpu(plain)"),
        ("from flash import remote as deco\n", "from common import deco as d\n", "d(cfg)(plain)"),
        ("on_cpu = remote(cfg)\n", "import common\ngpu = common.on_cpu\n", "gpu(plain)"),
    ],
    ids=["stored", "remote", "assigned"],
)
def test_remote_renamed_through_modules_and_applied_by_a_call_is_a_scan_error(
    tmp_path: Path, common: str, mid: str, applied: str
) -> None:
    # m.py names neither remote nor the name common.py binds it to, and has no decorator.
    err = scan_error(
        tmp_path,
        {
            "common.py": f"{HEADER}cfg = CpuLiveServerless(name='c')\n{common}"
            "@remote(cfg)\ndef ok(x): return x\n",
            "mid.py": mid,
            "m.py": f"from common import cfg\nfrom mid import *\ndef plain(x): return x\n"
            f"wrapped = {applied}\n",
        },
    )
    assert str(err).startswith(f"m.py:4:11: `{applied}` applies remote(...) by a call"), str(err)


def test_calls_of_other_call_results_are_not_remote(tmp_path: Path) -> None:
    # Another function named remote, functools.partial and friends: not Flash's remote.
    result = scan(
        tmp_path,
        {
            "other.py": "def remote(x):\n    return lambda f: f\n",
            "m.py": """\
                import functools
                import other
                from flash import CpuLiveServerless, remote
                cfg = CpuLiveServerless(name="c")
                on_cpu = remote(cfg)
                def plain(x): return x
                a = other.remote(cfg)(plain)
                b = functools.partial(plain)(1)
                c = (lambda f: f)(plain)

                @on_cpu
                def ok(x): return x
            """,
        },
    )
    assert only(result).name == "ok"


def test_a_misspelled_remote_keyword_is_an_error_naming_it(tmp_path: Path) -> None:
    error = scan_error(
        tmp_path,
        {
            "app.py": HEADER
            + 'cfg = CpuLiveServerless(name="typo")\n\n\n'
            + '@remote(resource_config=cfg, dependecies=["numpy"], timeout_s=5)\n'
            + "def f(x: int) -> int:\n"
            + "    return x\n"
        },
    )
    assert (error.path, error.line, error.col) == ("app.py", 5, 30)
    assert "'dependecies'" in error.message and "did you mean 'dependencies'" in error.message
    for accepted in ("resource_config", "dependencies", "system_dependencies", "timeout"):
        assert accepted in error.message


def test_the_documented_remote_keywords_are_accepted(tmp_path: Path) -> None:
    spec = only(
        scan(
            tmp_path,
            {
                "app.py": HEADER
                + 'cfg = CpuLiveServerless(name="ok")\n\n\n'
                + "@remote(resource_config=cfg, dependencies=['numpy'],"
                + " system_dependencies=['ffmpeg'], timeout=5)\n"
                + "def f(x: int) -> int:\n"
                + "    return x\n"
            },
        )
    )
    assert spec.dependencies == ("numpy",) and spec.system_dependencies == ("ffmpeg",)
