"""The scanner on project layouts and sources that the basic tests leave out: src.X imports
in a src layout, file names no import can reach, ignored config modules, coding
declarations, exclusive definitions, inherited methods and f-string configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.build.test_scanner import HEADER, only, scan, scan_error, write

from flash.build.errors import BuildError
from flash.build.scanner import scan_project

CPU = f'{HEADER}cpu = CpuLiveServerless(name="cpu")\n'
STEP = f"{CPU}@remote(resource_config=cpu)\ndef step(x: int) -> int:\n    return x\n"


# --- 1. src.X imports in a src layout ---------------------------------------------------


P21 = {
    "src/config.py": 'from flash import CpuLiveServerless\ncpu = CpuLiveServerless(name="cpu")\n',
    "src/utils.py": "def double(x):\n    return 2 * x\n",
    "src/models/train.py": "from flash import remote\n"
    "from src.config import cpu\nfrom src.utils import double\n\n"
    "@remote(resource_config=cpu)\ndef train(x: int) -> int:\n    return double(x)\n",
    "run_pipeline.py": "from src.models.train import train\n",
}


@pytest.mark.parametrize(
    "config_import",
    [
        "from src.config import cpu\n",
        "import src.config as config\ncpu = config.cpu\n",
        "import src.config\ncpu = src.config.cpu\n",
        "from src import config\ncpu = config.cpu\n",
    ],
)
def test_a_src_import_in_a_src_layout_resolves_the_project_module(
    tmp_path: Path, config_import: str
) -> None:
    # `from src.config import cpu` in a src layout reads src/config.py: the manifest keeps the
    # src-layout names (models.train.train); the runtime maps src.models.train.train there.
    train = P21["src/models/train.py"].replace("from src.config import cpu\n", config_import)
    result = scan(tmp_path, {**P21, "src/models/train.py": train})
    fn = only(result)
    assert (fn.module, fn.qualified_name) == ("models.train", "models.train.train")
    assert result.src_layout
    assert list(result.resources) == ["cpu"]


def test_a_stdlib_import_beside_a_src_module_of_that_name_builds(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "src/types.py": "from dataclasses import dataclass\n@dataclass\nclass Item:\n"
            "    x: int\n",
            "src/worker.py": f"import types\nfrom src.types import Item\n{STEP}",
        },
    )
    assert only(result).qualified_name == "worker.step"
    assert result.src_layout


def test_tests_importing_src_keep_the_src_layout_names(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "src/mypkg/__init__.py": "",
            "src/mypkg/util.py": "def g(x):\n    return x\n",
            "src/mypkg/core.py": f"{CPU}from mypkg.util import g\n\n"
            "@remote(cpu)\ndef f(n: int) -> int:\n    return g(n)\n",
            "tests/test_core.py": "from src.mypkg.core import f\n\n"
            "def test_f():\n    assert f.local(1) == 1\n",
        },
    )
    assert only(result).qualified_name == "mypkg.core.f"
    assert result.src_layout


# --- 2. files no import can reach -------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "line"),
    [("embed.v2.py", 3), ("experiments/2024.06-baseline/run.py", 3)],
)
def test_remote_in_a_file_no_import_can_name_is_a_scan_error(
    tmp_path: Path, rel: str, line: int
) -> None:
    error = scan_error(tmp_path, {rel: STEP})
    assert (error.path, error.line) == (rel, line)
    assert "cannot be imported" in error.message and "rename" in error.message
    assert ".flashignore" in error.message


def test_a_dotted_file_name_without_remote_stays_harmless(tmp_path: Path) -> None:
    result = scan(tmp_path, {"main.py": STEP, "notes.v2.py": "x = 1\n"})
    assert only(result).qualified_name == "main.step"


def test_a_dotted_file_leaves_the_module_of_its_dotted_name_alone(tmp_path: Path) -> None:
    # embed.v2.py is no module; embed/v2.py is the module embed.v2, and its config resolves.
    result = scan(
        tmp_path,
        {
            "embed/__init__.py": "",
            "embed/v2.py": CPU,
            "embed.v2.py": "x = 1\n",
            "w.py": "from flash import remote\nfrom embed.v2 import cpu\n\n"
            "@remote(cpu)\ndef f(n: int) -> int:\n    return n\n",
        },
    )
    assert only(result).qualified_name == "w.f"
    assert list(result.resources) == ["cpu"]


# --- 3. config modules an ignore file leaves out ----------------------------------------


@pytest.mark.parametrize(
    ("ignore_file", "pattern", "folder"),
    [(".flashignore", "settings/\n", "settings"), (".gitignore", "build/\nlib/\n", "lib")],
)
def test_a_config_module_left_out_by_an_ignore_file_names_that_file(
    tmp_path: Path, ignore_file: str, pattern: str, folder: str
) -> None:
    write(
        tmp_path,
        {
            ignore_file: pattern,
            f"{folder}/endpoints.py": CPU,
            "main.py": f"from flash import remote\nfrom {folder}.endpoints import cpu\n\n"
            "@remote(resource_config=cpu)\ndef f(): ...\n",
        },
    )
    with pytest.raises(BuildError) as info:
        scan_project(tmp_path, [ignore_file, "main.py"])  # as collect_files leaves it
    error = info.value
    assert (error.path, error.line) == ("main.py", 4)
    assert f"{folder}/endpoints.py" in error.message and ignore_file in error.message
    assert "not a Flash resource config" not in error.message


# --- 4. coding declarations --------------------------------------------------------------


def test_a_coding_declaration_is_honoured(tmp_path: Path) -> None:
    source = (
        "# -*- coding: latin-1 -*-\n"
        f'{HEADER}cfg = CpuLiveServerless(name="cpu")\n'
        '@remote(cfg)\ndef f():\n    return "café"\n'
    )
    result = scan(tmp_path, {"main.py": source.encode("latin-1")})
    assert only(result).qualified_name == "main.f"


def test_bytes_the_declared_encoding_cannot_decode_are_an_error(tmp_path: Path) -> None:
    error = scan_error(tmp_path, {"main.py": b"# coding: ascii\nx = '\xe9'\n"})
    assert (error.path, error.line) == ("main.py", 2)
    assert "ascii" in error.message


def test_a_non_utf8_byte_in_the_first_lines_without_a_declaration_says_utf8(
    tmp_path: Path,
) -> None:
    error = scan_error(tmp_path, {"main.py": STEP, "helpers.py": b"# caf\xe9 helpers\nx = 1\n"})
    assert str(error) == ("helpers.py:1:6: file is not valid UTF-8 (byte 0xe9); save it as UTF-8")


# --- 5. exclusive definitions -----------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        f"import sys\n{CPU}if sys.version_info >= (3, 11):\n"
        "    @remote(resource_config=cpu)\n    def f(x: int) -> int:\n        return x + 1\n"
        "else:\n"
        "    @remote(resource_config=cpu)\n    def f(x: int) -> int:\n        return x + 2\n",
        f"{CPU}try:\n    import orjson\n"
        "    @remote(resource_config=cpu)\n    def f(x: dict) -> str: ...\n"
        "except ImportError:\n    import json\n"
        "    @remote(resource_config=cpu)\n    def f(x: dict) -> str: ...\n",
    ],
    ids=["if-else", "try-except"],
)
def test_the_same_remote_in_exclusive_branches_is_one_function(tmp_path: Path, source: str) -> None:
    assert only(scan(tmp_path, {"main.py": source})).qualified_name == "main.f"


def test_exclusive_definitions_on_different_endpoints_are_an_error(tmp_path: Path) -> None:
    source = (
        f'import sys\n{CPU}gpu = LiveServerless(name="gpu")\n'
        "if sys.platform == 'linux':\n"
        "    @remote(resource_config=cpu)\n    def f(): ...\n"
        "else:\n"
        "    @remote(resource_config=gpu)\n    def f(): ...\n"
    )
    error = scan_error(tmp_path, {"main.py": source})
    assert (error.path, error.line) == ("main.py", 10)
    assert "'cpu'" in error.message and "'gpu'" in error.message


ALTERNATIVES = (
    f"{CPU}try:\n    import numpy_not_here\n"
    "    @remote(resource_config=cpu)\n{first}"
    "except ImportError:\n"
    "    @remote(resource_config=cpu)\n{second}"
)
MODEL = "    class Model:\n        def predict(self, x: int) -> int: ...\n"


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [
        (
            MODEL + "        def fast(self, x: int) -> int: ...\n",
            MODEL,
            "methods",
        ),
        (
            "    def stream(n: int) -> int:\n        return n\n",
            "    def stream(n: int):\n        yield n\n",
            "generator",
        ),
        (
            "    def stream(n: int) -> int:\n        return n\n",
            "    async def stream(n: int) -> int:\n        return n\n",
            "async",
        ),
        (MODEL, "    def Model(x: int) -> int:\n        return x\n", "class"),
        (
            MODEL,
            "    class Model:\n        async def predict(self, x: int) -> int: ...\n",
            "async",
        ),
    ],
    ids=["methods", "generator", "async", "class-function", "async-method"],
)
def test_alternative_definitions_of_another_kind_are_an_error(
    tmp_path: Path, first: str, second: str, what: str
) -> None:
    source = ALTERNATIVES.format(first=first, second=second)
    # The line after the second @remote (the first definition is on line 6).
    second_line = source.count("\n", 0, source.rindex("@remote")) + 2
    error = scan_error(tmp_path, {"main.py": source})
    assert (error.path, error.line) == ("main.py", second_line)
    assert "line 6" in error.message and f"line {second_line}" in error.message
    assert what in error.message and "must match" in error.message


def test_alternative_classes_with_the_same_methods_are_one_function(tmp_path: Path) -> None:
    body = MODEL + "        def fast(self, x: int) -> int: ...\n"
    other = "    class Model:\n        def fast(self, x): ...\n        def predict(self, x): ...\n"
    fn = only(scan(tmp_path, {"main.py": ALTERNATIVES.format(first=body, second=other)}))
    assert fn.is_class and set(fn.methods) == {"predict", "fast"}


# --- 6. inherited methods ----------------------------------------------------------------


def test_a_remote_class_lists_methods_inherited_from_project_classes(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "base.py": "class Root:\n    def ping(self) -> str: ...\n"
            "class BaseModel(Root):\n    def __init__(self, scale=1): ...\n"
            "    def predict(self, x: int) -> int: ...\n"
            "    async def health(self): ...\n"
            "    def _private(self): ...\n",
            "models.py": f"{CPU}import base\nfrom base import BaseModel\n\n"
            "@remote(resource_config=cpu)\nclass Doubler(BaseModel):\n"
            "    async def astream(self, n: int): ...\n"
            "    @property\n    def ping(self): ...\n\n"
            "@remote(resource_config=cpu)\nclass Other(base.BaseModel, dict): ...\n",
        },
    )
    by_name = {f.name: f for f in result.functions}
    doubler = by_name["Doubler"]
    assert doubler.methods == ("astream", "predict", "health")  # ping: a property here
    assert doubler.async_methods == ("astream", "health")
    assert by_name["Other"].methods == ("predict", "health", "ping")


# --- 7. f-strings ------------------------------------------------------------------------


def test_an_f_string_of_constants_names_a_config(tmp_path: Path) -> None:
    result = scan(
        tmp_path,
        {
            "main.py": f'{HEADER}PREFIX = "team"\nN = 2\n'
            'gpu = LiveServerless(name=f"{PREFIX}-gpu-{N}")\n'
            "@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert list(result.resources) == ["team-gpu-2"]


def test_an_f_string_with_a_format_spec_is_refused_clearly(tmp_path: Path) -> None:
    error = scan_error(
        tmp_path,
        {
            "main.py": f'{HEADER}N = 2\ngpu = LiveServerless(name=f"gpu-{{N:03d}}")\n'
            "@remote(gpu)\ndef f(): ...\n",
        },
    )
    assert (error.path, error.line) == ("main.py", 3)
    assert "format spec" in error.message


def test_a_name_that_is_not_a_string_says_what_is_accepted(tmp_path: Path) -> None:
    error = scan_error(
        tmp_path,
        {
            "main.py": f"{HEADER}import os\ngpu = LiveServerless(name=os.getenv('N'))\n"
            "@remote(gpu)\ndef f(): ...\n"
        },
    )
    assert "f-string" in error.message and "string literal" not in error.message


# --- 8. syntax errors in scripts ---------------------------------------------------------


def test_a_syntax_error_says_a_file_outside_the_app_can_be_ignored(tmp_path: Path) -> None:
    error = scan_error(tmp_path, {"main.py": STEP, "scripts/py2.py": 'print "hello"\n'})
    assert (error.path, error.line) == ("scripts/py2.py", 1)
    assert ".flashignore" in error.message
