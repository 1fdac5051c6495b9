"""A typed app laid out like an extracted build archive, shared by the schema and call tests.

The app directory holds the project's modules, a vendored ``flash/runtime`` and a small
``flash/__init__.py`` exporting what user modules import, as ``flash build`` writes them.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import flash.runtime

RUNTIME_DIR = Path(flash.runtime.__file__).parent

FLASH_STUB = """\
from flash.runtime.remote import remote
from flash.runtime.resources import CpuLiveServerless, LiveServerless
"""

# Uses only the standard library (and typing_extensions for TypedDict on Python < 3.12,
# which pydantic needs), so it also runs in a worker without pydantic.
TYPED_APP = """
from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple, Optional

from typing_extensions import NotRequired, Required, TypedDict

from flash import LiveServerless, remote

gpu = LiveServerless(name="typed")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Item:
    name: str
    price: float
    qty: int = 1
    color: Color = Color.RED


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)


class Options(TypedDict):
    fast: bool
    label: NotRequired[str]


@dataclasses.dataclass
class Stamp:
    when: datetime.date


class Stamps(TypedDict, total=False):
    first: Required[Stamp]
    last: NotRequired[Stamp]


class Point(NamedTuple):
    x: int
    y: int


@remote(resource_config=gpu)
async def total(items: list[Item], options: Options, discount: Optional[float] = None) -> dict:
    amount = sum(i.price * i.qty for i in items) * (1 - (discount or 0))
    return {"amount": amount, "colors": sorted(i.color.value for i in items), **options}


@remote(resource_config=gpu)
def tree_sum(root: Node) -> int:
    return root.value + sum(tree_sum.__wrapped__(c) for c in root.children)


@remote(resource_config=gpu)
def shapes(
    pair: tuple[int, str],
    tags: set[str],
    weights: dict[int, float],
    level: Level,
    point: Point,
    mode: Literal["a", "b"] = "a",
) -> tuple[int, list[str], str, int]:
    assert isinstance(pair, tuple) and isinstance(tags, set) and isinstance(point, Point)
    assert all(isinstance(k, int) for k in weights) and isinstance(level, Level)
    return (pair[0] + point.x + point.y, sorted(tags), mode, level.value + len(weights))


@remote(resource_config=gpu)
def by_level(weights: dict[Level, float]) -> list:
    return sorted((type(k).__name__, k.value, v) for k, v in weights.items())


@remote(resource_config=gpu)
def span(stamps: Stamps) -> list:
    return [type(s).__name__ + " " + s.when.isoformat() for s in stamps.values()]


@remote(resource_config=gpu)
def when(at: datetime.datetime, ident: uuid.UUID) -> dict[str, Any]:
    return {"date": at.date(), "hex": ident.hex, "tz": str(at.tzinfo)}


@remote(resource_config=gpu)
def make_items(n: int) -> list[Item]:
    return [Item(name=f"i{k}", price=k / 2, color=Color.BLUE) for k in range(n)]


@remote(resource_config=gpu)
def untyped(x, y: int):
    return x


@remote(resource_config=gpu)
def no_return(x: int):
    return x


@remote(resource_config=gpu)
def star(*values: int) -> int:
    return sum(values)


@remote(resource_config=gpu)
def keywords(**values: int) -> int:
    return sum(values.values())


@remote(resource_config=gpu)
def positional(x: int, /) -> int:
    return x


@remote(resource_config=gpu)
def stream(n: int) -> Iterator[int]:
    yield from range(n)


@remote(resource_config=gpu)
def callback(fn: Callable[[int], int]) -> int:
    return fn(1)


@remote(resource_config=gpu)
def unresolved(x: Missing) -> int:  # noqa: F821
    return 1


@remote(resource_config=gpu)
class Counter:
    def add(self, n: int) -> int:
        return n

    @staticmethod
    def double(n: int) -> int:
        return 2 * n


class Opaque:
    pass


@remote(resource_config=gpu)
def opaque(thing: Opaque) -> int:
    return 1
"""

MODELS_APP = """
from pydantic import BaseModel, Field

from flash import LiveServerless, remote

cpu = LiveServerless(name="models")


class User(BaseModel):
    id: int
    name: str = Field(min_length=1)
    tags: list[str] = []


@remote(resource_config=cpu)
def rename(user: User, name: str, times: int = 1) -> User:
    return user.model_copy(update={"name": name * times})


class Person(BaseModel):
    full_name: str = Field(alias="fullName")


@remote(resource_config=cpu)
def greet(person: Person) -> Person:
    return Person(fullName="Dr " + person.full_name)
"""

TYPED_FUNCTIONS = [
    "total",
    "tree_sum",
    "shapes",
    "by_level",
    "span",
    "when",
    "make_items",
    "untyped",
    "no_return",
    "star",
    "keywords",
    "positional",
    "stream",
    "callback",
    "unresolved",
    "Counter",
    "opaque",
]


def write_app(root: Path, modules: dict[str, str]) -> Path:
    """An archive-like directory: the modules, the vendored runtime and the flash stub."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source).lstrip())
    shutil.copytree(
        RUNTIME_DIR, root / "flash" / "runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "flash" / "__init__.py").write_text(FLASH_STUB)
    return root


@pytest.fixture(scope="session")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(
        tmp_path_factory.mktemp("app"), {"typed_app": TYPED_APP, "models_app": MODELS_APP}
    )


@pytest.fixture(scope="session")
def typed_functions() -> list[tuple[str, str, str]]:
    rows = [(f"typed_app.{n}", "typed_app", n) for n in TYPED_FUNCTIONS]
    models = [(f"models_app.{n}", "models_app", n) for n in ("rename", "greet")]
    return [*rows, *models]


@pytest.fixture(scope="session")
def derived(app_dir: Path, typed_functions: list[tuple[str, str, str]]) -> dict[str, object]:
    from flash.build.schemas import derive_schemas

    return dict(derive_schemas(app_dir, None, typed_functions))


@pytest.fixture(scope="session")
def apps(app_dir: Path) -> Iterator[dict[str, ModuleType]]:
    """The app's modules imported in this process, under the installed flash package."""
    import importlib.util

    loaded = {}
    for name in ("typed_app", "models_app"):
        spec = importlib.util.spec_from_file_location(f"safety_{name}", app_dir / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve their module by name
        spec.loader.exec_module(module)
        loaded[name] = module
    yield loaded
    for name in ("typed_app", "models_app"):
        sys.modules.pop(f"safety_{name}", None)
