"""A src-layout project called as its users call it: the script imports the package by its
installed name (src/ on sys.path, as an editable install puts it), and the calls route."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

from tests.helpers import completed_jobs
from tests.integration.projects import src_layout_project

from flash.platform import serve_project


def test_src_layout_functions_are_called_by_their_package_names(tmp_path: Path) -> None:
    root = src_layout_project(tmp_path / "proj")
    src = str(root / "src")
    sys.path.insert(0, src)
    try:
        with serve_project(root) as platform:
            gpu = importlib.import_module("srcapp.gpu")
            counter = importlib.import_module("srcapp.models.counter")
            assert gpu.embed.__wrapped__.__module__ == "srcapp.gpu"  # what the client sends
            assert asyncio.run(gpu.embed(20)) == 41
            assert gpu.embed.call(1) == 3
            instance = counter.Counter(10)
            assert asyncio.run(instance.add(5)) == 15
            assert completed_jobs(platform.url, "src-cpu") == 3
    finally:
        sys.path.remove(src)
        for name in [m for m in sys.modules if m == "srcapp" or m.startswith("srcapp.")]:
            del sys.modules[name]


def test_src_prefixed_names_reach_the_function_in_json_and_pickled_calls(tmp_path: Path) -> None:
    """A script that imports the package as ``src.srcapp...`` (the project root on sys.path)
    names its functions ``src.srcapp.gpu.embed``; the build registered ``srcapp.gpu.embed``.
    A typed function goes as JSON by default, and must route as the pickled call does."""
    root = src_layout_project(tmp_path / "proj")
    paths = [str(root), str(root / "src")]
    sys.path[:0] = paths
    try:
        with serve_project(root) as platform:
            gpu = importlib.import_module("src.srcapp.gpu")
            assert gpu.embed.__wrapped__.__module__ == "src.srcapp.gpu"  # what the client sends
            assert asyncio.run(gpu.embed(20)) == 41  # JSON, the default for typed functions
            assert asyncio.run(gpu.embed.options(serialization="pickle")(3)) == 7
            counter = importlib.import_module("src.srcapp.models.counter")
            assert asyncio.run(counter.Counter(10).add(5)) == 15  # a class, by JSON
            assert completed_jobs(platform.url, "src-cpu") == 3
    finally:
        for path in paths:
            sys.path.remove(path)
        prefixes = ("src", "srcapp")
        for name in [m for m in sys.modules if m in prefixes or m.startswith(("src.", "srcapp."))]:
            del sys.modules[name]
