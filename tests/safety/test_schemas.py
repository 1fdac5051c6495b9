"""derive_schemas on a real app directory: one child interpreter, real pydantic, no mocks."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import ModuleType

import pytest

from flash.build.errors import BuildError
from flash.build.schemas import SchemaResult, derive_schemas, schema_sha256
from flash.runtime.jsonschema import validate
from flash.sdk.jsoncodec import codec_for, method_codecs_for

from .conftest import TYPED_APP, write_app


def test_typed_functions_get_input_and_output_schemas(derived: dict[str, SchemaResult]) -> None:
    total = derived["typed_app.total"]
    assert total.reason is None and total.json_callable
    schema = total.input
    assert schema is not None and total.output is not None
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["items", "options"]
    assert schema["properties"]["discount"]["default"] is None
    # Nested types are hoisted into $defs and referenced.
    assert {"Item", "Color", "Options"} <= set(schema["$defs"])
    assert schema["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
    assert schema["$defs"]["Color"]["enum"] == ["red", "blue"]
    assert schema["$defs"]["Options"]["required"] == ["fast"]
    assert total.sha256 == schema_sha256(schema, total.output)


def test_schemas_accept_good_calls_and_reject_bad_ones(derived: dict[str, SchemaResult]) -> None:
    schema = derived["typed_app.total"].input
    good = {"items": [{"name": "a", "price": 2.5, "color": "blue"}], "options": {"fast": True}}
    assert validate(good, schema, path="kwargs") == []
    bad = {"items": [{"name": "a", "price": "x", "color": "green"}], "options": {}, "more": 1}
    paths = {issue.path for issue in validate(bad, schema, path="kwargs")}
    assert paths == {
        "kwargs.items[0].price",
        "kwargs.items[0].color",
        "kwargs.options.fast",
        "kwargs.more",
    }


def test_recursive_and_container_types(derived: dict[str, SchemaResult]) -> None:
    tree = derived["typed_app.tree_sum"].input
    assert tree is not None
    assert validate({"root": {"value": 1, "children": [{"value": 2}]}}, tree) == []
    assert [i.path for i in validate({"root": {"value": 1, "children": [{}]}}, tree)] == [
        "root.children[0].value"
    ]
    shapes = derived["typed_app.shapes"]
    assert shapes.input is not None and shapes.output is not None
    pair = shapes.input["properties"]["pair"]
    assert pair["minItems"] == pair["maxItems"] == 2
    assert shapes.input["properties"]["tags"]["uniqueItems"] is True
    assert shapes.input["properties"]["mode"]["default"] == "a"
    assert shapes.output["type"] == "array"
    assert derived["models_app.rename"].input is not None
    user = derived["models_app.rename"].input["$defs"]["User"]
    assert user["properties"]["name"]["minLength"] == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("untyped", "parameter 'x' has no type annotation"),
        ("no_return", "the return value has no type annotation"),
        ("star", "*values"),
        ("keywords", "**values"),
        ("positional", "parameter 'x' is positional-only"),
        ("callback", "parameter 'fn'"),
        ("unresolved", "type hints do not resolve (NameError"),
        ("opaque", "parameter 'thing': typed_app.Opaque has no JSON Schema"),
    ],
)
def test_untypable_functions_stay_pickle_only_with_a_reason(
    derived: dict[str, SchemaResult], name: str, reason: str
) -> None:
    result = derived[f"typed_app.{name}"]
    assert result.input is None and result.output is None and result.sha256 is None
    assert result.reason is not None and reason in result.reason
    assert not result.json_callable


def test_classes_get_constructor_and_method_schemas(derived: dict[str, SchemaResult]) -> None:
    result = derived["typed_app.Counter"]
    assert result.json_callable and result.class_schema is not None
    assert result.class_schema["init"]["properties"] == {}  # no constructor arguments
    add = result.class_schema["methods"]["add"]
    assert add["input"]["required"] == ["n"] and add["output"] == {"type": "integer"}
    # A staticmethod has no self: its first parameter is an argument like the others.
    double = result.class_schema["methods"]["double"]
    assert double["input"]["required"] == ["n"]


def test_generators_stream_json_items_of_their_yielded_type(
    derived: dict[str, SchemaResult],
) -> None:
    result = derived["typed_app.stream"]
    assert result.json_callable and result.stream
    assert result.input is not None and result.input["required"] == ["n"]
    assert result.output == {"type": "integer"}


def test_output_is_deterministic_and_the_hash_follows_the_types(
    tmp_path: Path, app_dir: Path, typed_functions: list[tuple[str, str, str]]
) -> None:
    first = derive_schemas(app_dir, None, typed_functions)
    second = derive_schemas(app_dir, None, list(reversed(typed_functions)))
    assert list(first) == sorted(first)
    assert json.dumps({k: vars(v) for k, v in first.items()}, sort_keys=True) == json.dumps(
        {k: vars(v) for k, v in second.items()}, sort_keys=True
    )
    changed = write_app(
        tmp_path / "changed",
        {"typed_app": TYPED_APP.replace("    qty: int = 1", "    qty: float = 1")},
    )
    third = derive_schemas(changed, None, [("typed_app.total", "typed_app", "total")])
    assert third["typed_app.total"].sha256 != first["typed_app.total"].sha256
    assert (
        first["typed_app.tree_sum"].sha256
        == derive_schemas(changed, None, [("typed_app.tree_sum", "typed_app", "tree_sum")])[
            "typed_app.tree_sum"
        ].sha256
    )


def test_vendored_packages_come_before_the_host(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "units").mkdir(parents=True)
    (site / "units" / "__init__.py").write_text(
        "import dataclasses\n\n@dataclasses.dataclass\nclass Metres:\n    value: float\n"
    )
    app = write_app(
        tmp_path / "app",
        {
            "geo": """
                from units import Metres
                from flash import LiveServerless, remote

                @remote(resource_config=LiveServerless(name="geo"))
                def double(d: Metres) -> Metres:
                    return Metres(d.value * 2)
            """
        },
    )
    result = derive_schemas(app, site, [("geo.double", "geo", "double")])["geo.double"]
    assert result.reason is None and result.input is not None
    assert result.input["$defs"]["Metres"]["required"] == ["value"]


def test_a_module_that_fails_to_import_is_a_build_error(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "app",
        {"ok": "def f(x: int) -> int:\n    return x\n", "broken": "import not_installed_pkg\n"},
    )
    with pytest.raises(BuildError) as info:
        derive_schemas(app, None, [("ok.f", "ok", "f"), ("broken.g", "broken", "g")])
    assert "module 'broken' failed to import" in str(info.value)
    assert "not_installed_pkg" in str(info.value)


def test_an_import_failure_names_its_cause_and_the_vendored_line_that_raised(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    (site / "vendpkg").mkdir(parents=True)
    (site / "vendpkg" / "__init__.py").write_text("raise FileNotFoundError('model.bin')\n")
    app = write_app(
        tmp_path / "app",
        {
            "mod": """
                try:
                    import vendpkg
                except FileNotFoundError as exc:
                    raise RuntimeError("the model is missing") from exc
            """
        },
    )
    with pytest.raises(BuildError) as info:
        derive_schemas(app, site, [("mod.f", "mod", "f")])
    message = str(info.value)
    assert "  vendpkg/__init__.py:1 in <module>: raise FileNotFoundError('model.bin')" in message
    assert "FileNotFoundError: model.bin\nwhich caused:" in message
    assert message.endswith("RuntimeError: the model is missing")
    assert str(app) not in message and str(site) not in message


def test_a_crashing_import_is_a_build_error(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"dies": "import os\nos._exit(3)\n"})
    with pytest.raises(BuildError, match=r"crashed \(exit 3\)"):
        derive_schemas(app, None, [("dies.f", "dies", "f")])


def test_missing_attribute_and_no_functions(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"m": "def f(x: int) -> int:\n    return x\n"})
    result = derive_schemas(app, None, [("m.g", "m", "g"), ("m.f", "m", "f")])
    assert result["m.g"].reason == "module 'm' has no attribute 'g'"
    assert result["m.f"].input is not None
    assert derive_schemas(app, None, []) == {}


def test_imports_that_never_finish_are_a_build_error(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", {"stuck": "import threading\nthreading.Event().wait()\n"})
    with pytest.raises(BuildError, match=r"took over 1 s"):
        derive_schemas(app, None, [("stuck.f", "stuck", "f")], timeout=1)


def test_the_client_sends_json_exactly_when_the_build_publishes_a_schema(
    derived: dict[str, SchemaResult], apps: dict[str, ModuleType]
) -> None:
    # One rule for both: a call the client sends as JSON has a schema the worker checks it
    # against, and a call with a published schema is not pickled; a generator's (a stream of
    # its items) too.
    checked = 0
    for qualified_name, result in derived.items():
        module_name, name = qualified_name.split(".")
        fn = getattr(apps[module_name], name)
        fn = getattr(fn, "__wrapped__", fn)
        if not inspect.isclass(fn):
            sends_json = codec_for(fn) is not None
            assert sends_json == result.json_callable, qualified_name
            checked += 1
            continue
        assert result.class_schema is not None
        for method in result.class_schema["methods"]:
            assert method_codecs_for(fn, method) is not None, method
            checked += 1
        for method in result.class_schema["pickle_only_methods"]:
            assert method_codecs_for(fn, method) is None, method
            checked += 1
    assert checked >= len(derived)
