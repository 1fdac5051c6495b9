"""The build says which typed functions JSON callers cannot reach, and why."""

import sys
from pathlib import Path

import pytest
from tests.integration.projects import write_files

from flash.build.manifest import ClassSchema
from flash.build.pipeline import BuildOptions, build_project

JOBS = """\
    from flash import CpuLiveServerless, remote

    cpu = CpuLiveServerless(name="cpu")


    class Opaque:
        pass


    @remote(cpu)
    def typed_ok(a: int, b: int = 5) -> int:
        return a + b


    @remote(cpu)
    def untyped(x):
        return x


    @remote(cpu)
    def half_typed(x: int, y):
        return x


    @remote(cpu)
    def opaque(o: Opaque) -> int:
        return 1


    @remote(cpu)
    class Model:
        def ok(self, a: int) -> int:
            return a

        def bad(self, o: Opaque) -> int:
            return 1

        def loose(self, x):
            return x
    """


def test_typed_functions_without_a_json_schema_are_warned_about_once(tmp_path: Path) -> None:
    root = write_files(tmp_path / "proj", {"app/__init__.py": "", "app/jobs.py": JOBS})
    result = build_project(BuildOptions(project_dir=root))
    (warning,) = result.warnings
    lines = str(warning).splitlines()
    assert lines[0] == (
        "3 functions with type hints got no JSON Schema, so they take signed pickled calls "
        "only (a JSON call, from curl say, fails with NotJsonCallable):"
    )
    # Where each is, and why; not the untyped ones (pickle-only by design) nor typed_ok.
    assert lines[1] == "  app/jobs.py:21 half_typed: parameter 'y' has no type annotation"
    assert lines[2].startswith(
        "  app/jobs.py:26 opaque: parameter 'o': app.jobs.Opaque has no JSON Schema ("
    )
    assert lines[3].startswith("  app/jobs.py:31 Model.bad: parameter 'o': app.jobs.Opaque")
    assert len(lines) == 4
    # A rebuild with nothing changed says it again.
    again = build_project(BuildOptions(project_dir=root))
    assert again.skipped and again.warnings == result.warnings


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic reads typing.TypedDict there")
def test_a_typing_typeddict_warning_says_to_use_typing_extensions(tmp_path: Path) -> None:
    module = """\
        from typing import TypedDict

        from flash import CpuLiveServerless, remote


        class Movie(TypedDict):
            title: str


        @remote(CpuLiveServerless(name="cpu"))
        def f_td(m: Movie) -> Movie:
            return m
        """
    root = write_files(tmp_path / "proj", {"app/__init__.py": "", "app/types_ep.py": module})
    result = build_project(BuildOptions(project_dir=root))
    (warning,) = result.warnings
    assert str(warning).splitlines()[1] == (
        "  app/types_ep.py:11 f_td: parameter 'm': app.types_ep.Movie has no JSON Schema: "
        "pydantic reads typing.TypedDict only on Python 3.12+; import TypedDict from "
        "typing_extensions (and list typing-extensions in requirements.txt), or build on "
        "Python 3.12+"
    )


def test_typed_classmethods_get_a_schema_or_a_warning_as_other_methods(tmp_path: Path) -> None:
    module = """\
        from flash import CpuLiveServerless, remote


        class Opaque:
            pass


        @remote(CpuLiveServerless(name="cpu"))
        class K:
            def __init__(self, base: int) -> None:
                self.base = base

            @classmethod
            def cm(cls, x: int) -> str:
                return f"{cls.__name__}:{x}"

            @classmethod
            def cm_opaque(cls, o: Opaque) -> int:
                return 1

            @staticmethod
            def sm(x: int) -> int:
                return x
        """
    root = write_files(tmp_path / "proj", {"app/__init__.py": "", "app/k.py": module})
    result = build_project(BuildOptions(project_dir=root))
    (entry,) = result.manifest.resources["cpu"].functions
    assert isinstance(entry.schema_, ClassSchema)
    methods = entry.schema_.methods
    assert sorted(methods) == ["cm", "sm"]
    # The class is bound already: its first parameter is not an argument.
    assert methods["cm"].input["required"] == ["x"]
    assert methods["cm"].output == {"type": "string"}
    (warning,) = result.warnings
    lines = str(warning).splitlines()
    assert lines[0].startswith("1 function with type hints got no JSON Schema")
    assert lines[1].startswith("  app/k.py:9 K.cm_opaque: parameter 'o': app.k.Opaque has no")
