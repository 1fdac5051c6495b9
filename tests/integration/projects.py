"""Small projects the integration tests build, written the way users write them."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# One CPU endpoint with one typed function: for tests about what a build does around it.
ONE_FUNCTION_APP = """
from flash import CpuLiveServerless, remote

cpu = CpuLiveServerless(name="cpu")


@remote(resource_config=cpu)
def f(x: int) -> int:
    return x
"""


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@contextlib.contextmanager
def served_files(root: Path, files: dict[str, str], **options: Any) -> Iterator[Any]:
    """Write ``files`` as a project at ``root``, serve it (``serve_project``, routing this
    process's calls there) and make its packages importable, until the block ends."""
    from flash.platform import serve_project

    write_files(root, files)
    packages = {name.split("/", 1)[0] for name in files if name.endswith("/__init__.py")}
    sys.path.insert(0, str(root))
    try:
        with serve_project(root, **options) as served:
            yield served
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".", 1)[0] in packages]:
            del sys.modules[name]


def multi_package_project(root: Path) -> Path:
    """Nested packages, a config imported from another module, a non-identifier module name,
    the same short name on two endpoints, an async function with a dependency."""
    return write_files(
        root,
        {
            "pyproject.toml": """
                [project]
                name = "multi"
                version = "0.1.0"
                dependencies = []
            """,
            "app/__init__.py": "",
            "app/config.py": """
                from flash import CpuLiveServerless, LiveServerless

                gpu = LiveServerless(name="Vision-Model.v2", workersMax=2, env={"MODE": "fast"})
                cpu = CpuLiveServerless(name="cpu-jobs", idle_timeout=10)
            """,
            "app/vision/__init__.py": "",
            "app/vision/infer.py": """
                from flash import remote
                from app.config import gpu


                @remote(resource_config=gpu, dependencies=["tinydep"])
                async def process(xs: list[int]) -> list[int]:
                    import tinydep

                    return [tinydep.VALUE + x for x in xs]
            """,
            "app/jobs.py": """
                import flash
                from .config import cpu


                @flash.remote(cpu)
                def process(text: str) -> str:
                    return text.upper()
            """,
            "01_prep.py": """
                from flash import remote as r
                from app.config import cpu


                @r(resource_config=cpu)
                def prep(n):
                    return list(range(n))
            """,
        },
    )


def src_layout_project(root: Path) -> Path:
    """The "src layout" of packaged projects: the package ``srcapp`` lives in ``src/`` (which
    has no __init__.py) and imports itself by absolute name, as installed code does; a
    root-level module imports it too."""
    return write_files(
        root,
        {
            "pyproject.toml": """
                [project]
                name = "srcapp"
                version = "0.1.0"
                dependencies = []

                [build-system]
                requires = ["hatchling"]
                build-backend = "hatchling.build"
            """,
            "src/srcapp/__init__.py": "",
            "src/srcapp/config.py": """
                from flash import CpuLiveServerless

                cpu = CpuLiveServerless(name="src-cpu", workersMax=1)
            """,
            "src/srcapp/util.py": """
                def double(x: int) -> int:
                    return 2 * x
            """,
            "src/srcapp/gpu.py": """
                from flash import remote

                from srcapp.config import cpu
                from srcapp.util import double


                @remote(resource_config=cpu)
                async def embed(x: int) -> int:
                    return double(x) + 1
            """,
            "src/srcapp/models/__init__.py": "",
            "src/srcapp/models/counter.py": """
                from flash import remote

                from ..config import cpu


                @remote(cpu)
                class Counter:
                    def __init__(self, start: int) -> None:
                        self.value = start

                    def add(self, n: int) -> int:
                        self.value += n
                        return self.value
            """,
            "tasks.py": """
                from flash import remote

                from srcapp.config import cpu
                from srcapp.util import double


                @remote(cpu)
                def quadruple(x: int) -> int:
                    return double(double(x))
            """,
        },
    )
