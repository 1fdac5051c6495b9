"""OpenAPI documents and the /docs page, from the JSON Schemas the build recorded.

Every endpoint shares RunPod's routes, so one ``/runsync`` request body describes all of an
endpoint's JSON-callable functions: ``{"input": {"function": <name>, "kwargs": {...}}}`` (or,
for an endpoint's one such function, ``{"input": {...kwargs}}``).
Functions without a schema take signed pickles only and are listed as such.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from flash.runtime.jsonschema import FORMAT_EXAMPLES, KEY_PATTERNS, validate
from flash.runtime.protocol import MAX_POLICY_MS, call_names


def _component(prefix: str, schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved to components, refs rewritten to match."""
    schema = json.loads(json.dumps(schema))  # a private copy
    defs = schema.pop("$defs", {}) or {}
    renamed = {key: f"{prefix}.{key}" for key in defs}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": f"#/components/schemas/{renamed[ref[8:]]}"}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for key, value in defs.items():
        components[renamed[key]] = rewrite(value)
    return dict(rewrite(schema))


def _has_required(schema: Any) -> bool:
    """Whether an arguments schema requires any argument."""
    return isinstance(schema, dict) and bool(schema.get("required"))


def _shown_names(functions: Any) -> dict[str, list[str]]:
    """Per qualified name, the names a job may call the function by (call_names, the
    handler's rule), the one to show first: its short name where that reaches it."""
    return {names[0]: names[::-1] for names, _ in call_names(functions)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def endpoint_document(name: str, resource: Mapping[str, Any], server_url: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document for one endpoint's ``run``/``runsync`` with typed JSON inputs."""
    components: dict[str, Any] = {}
    variants: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    pickle_only: list[str] = []
    bare: list[dict[str, Any]] = []  # each function's arguments, as a bare input
    examples: dict[str, Any] = {}  # a request to start from, per function or method
    functions = resource.get("functions") or []
    callable_by = _shown_names(functions)
    for fn in functions:
        schema = fn.get("schema") if isinstance(fn, dict) else None
        qualified = str(fn.get("qualified_name", fn.get("name", "?")))
        if not isinstance(schema, dict):
            reason = fn.get("pickle_only") or "no JSON schema"
            pickle_only.append(f"{qualified} ({reason})")
            continue
        shown = callable_by.get(qualified, [qualified])
        names = sorted(shown)
        for title, call, _ in call_examples(fn, shown[0]):
            examples[title] = {"summary": title, "value": {"input": call}}
        prefix = _safe(qualified)
        if "methods" in schema:
            # Each schema's $defs get their own namespace ("in"/"out" cannot be a method's
            # name): a parameter's Item and a result's Item may be different classes.
            init = _component(f"{prefix}.in", schema["init"], components)
            for method, spec in sorted(schema["methods"].items()):
                where = f"{prefix}.{_safe(method)}"
                components[f"{where}.call"] = {
                    "type": "object",
                    "title": f"{qualified}.{method}",
                    # "init" and "kwargs" may be left out when they would be empty.
                    "required": ["function", "method"]
                    + (["init"] if _has_required(schema["init"]) else [])
                    + (["kwargs"] if _has_required(spec["input"]) else []),
                    "additionalProperties": False,
                    "properties": {
                        "function": {"enum": names},
                        "method": {"const": method},
                        "init": init,
                        "kwargs": _component(f"{where}.in", spec["input"], components),
                    },
                }
                components[f"{where}.result"] = _component(
                    f"{where}.out", spec["output"], components
                )
                variants.append({"$ref": f"#/components/schemas/{where}.call"})
                outputs.append({"$ref": f"#/components/schemas/{where}.result"})
            for method, reason in sorted((schema.get("pickle_only_methods") or {}).items()):
                pickle_only.append(f"{qualified}.{method} ({reason})")
            continue
        kwargs = _component(f"{prefix}.in", schema["input"], components)
        result = _component(f"{prefix}.out", schema["output"], components)
        components[f"{prefix}.call"] = {
            "type": "object",
            "title": qualified,
            # {"function": name} alone calls it with no arguments.
            "required": ["function"] + (["kwargs"] if _has_required(schema["input"]) else []),
            "additionalProperties": False,
            "properties": {
                "function": {"enum": names},
                "kwargs": kwargs,
            },
        }
        components[f"{prefix}.result"] = {
            "title": f"{qualified} result"
            + (" (each streamed item)" if schema.get("stream") else ""),
            **result,
        }
        variants.append({"$ref": f"#/components/schemas/{prefix}.call"})
        outputs.append({"$ref": f"#/components/schemas/{prefix}.result"})
        bare.append({"title": f"{qualified} (its arguments alone)", **kwargs})
    typed = [f for f in functions if isinstance(f, dict) and isinstance(f.get("schema"), dict)]
    if len(typed) == 1 and len(bare) == 1:
        # The endpoint's one JSON-callable function also takes its arguments as the input.
        # anyOf: a call naming the function may match the arguments' schema too.
        variants.append(bare[0])
    output = {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            # anyOf: functions may share a result type, and Any's schema matches every value.
            "result": {"anyOf": outputs} if outputs else {},
            "encoding": {"const": "json"},
            "issues": {"type": "array", "items": {"type": "object"}},
            "issues_truncated": {"type": "boolean"},  # issues stop at 50: maybe not all
        },
    }
    # RunPod's worker streams only from a generator handler, so an endpoint with a generator
    # function has one, and every job's output is the list of its answers (one for the other
    # functions); a failed one's answer is the text of "error".
    streaming = any(isinstance(fn, dict) and fn.get("is_generator") for fn in functions)
    job = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"anyOf": variants} if variants else {"type": "object"},
            "webhook": {"type": "string", "format": "uri"},
            "policy": {
                "type": "object",
                "properties": {
                    "executionTimeout": {"type": "integer", "minimum": 1, "maximum": MAX_POLICY_MS},
                    "ttl": {"type": "integer", "minimum": 1, "maximum": MAX_POLICY_MS},
                    "lowPriority": {"type": "boolean"},
                },
            },
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {
                "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
            },
            "output": {"type": "array", "items": output} if streaming else output,
            "error": {"type": "string"},
            "delayTime": {"type": "integer"},
            "executionTime": {"type": "integer"},
        },
    }
    description = "Typed JSON calls to this endpoint's functions."
    if streaming:
        description += (
            " It has a generator function, so every job's output is the list of its answers"
            " (one for a plain function), and a failure's answer is the JSON text of 'error'."
        )
    if pickle_only:
        description += " Signed pickles only (Flash's Python client): " + ", ".join(pickle_only)
    queued = {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"const": "IN_QUEUE"}},
    }
    media: dict[str, Any] = {"schema": job}
    if examples:
        media["examples"] = examples
    body = {"required": True, "content": {"application/json": media}}
    ok = {"description": "the job", "content": {"application/json": {"schema": answer}}}
    accepted = {
        "description": "the queued job's id: its output comes from /status",
        "content": {"application/json": {"schema": queued}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Flash endpoint {name}", "version": "1", "description": description},
        "servers": [{"url": f"{server_url}/v2/{name}"}],
        "paths": {
            "/runsync": {
                "post": {"summary": "Run and wait", "requestBody": body, "responses": {"200": ok}}
            },
            "/run": {
                "post": {"summary": "Queue", "requestBody": body, "responses": {"200": accepted}}
            },
        },
        "components": {"schemas": components},
    }


def docs_page(endpoints: list[tuple[str, Mapping[str, Any]]]) -> str:
    """A page that works offline: every endpoint, its functions (a class: each method), and
    a request body to start from for each, with a value for every required argument."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Flash platform API</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "pre{background:#f4f4f4;padding:.6em;overflow:auto}</style></head><body>",
        "<h1>Flash platform API</h1><p>RunPod's serverless API: "
        "<a href='/openapi.json'>/openapi.json</a>. Per endpoint, typed JSON calls:</p>",
    ]
    for name, resource in endpoints:
        quoted = html.escape(name)
        link = f"/v2/{quoted}/openapi.json"
        parts.append(f"<h2>{quoted}</h2><p><a href='{link}'>{link}</a></p>")
        callable_by = _shown_names(resource.get("functions"))
        for fn in resource.get("functions") or []:
            called = callable_by.get(str(fn.get("qualified_name", "?")), ["?"])[0]
            qualified = html.escape(str(fn.get("qualified_name", "?")))
            schema = fn.get("schema")
            if not isinstance(schema, dict):
                why = html.escape(str(fn.get("pickle_only") or "no JSON schema"))
                parts.append(f"<h3>{qualified}</h3><p>Signed pickles only: {why}.</p>")
                continue
            heading = "h3"
            if "methods" in schema:
                heading = "h4"  # under the class's own heading
                parts.append(
                    f"<h3>{qualified}</h3><p>Constructor arguments (<code>init</code>):</p>"
                    f"<pre>{html.escape(json.dumps(schema['init'], indent=2))}</pre>"
                )
            for title, call, arguments in call_examples(fn, called):
                text = html.escape(json.dumps({"input": call}))
                parts.append(
                    f"<{heading}>{html.escape(title)}</{heading}>"
                    f"<p>POST /v2/{quoted}/runsync <code>{text}</code></p>"
                    f"<pre>{html.escape(json.dumps(arguments, indent=2))}</pre>"
                )
            for method, reason in sorted((schema.get("pickle_only_methods") or {}).items()):
                parts.append(
                    f"<h4>{qualified}.{html.escape(method)}</h4>"
                    f"<p>Signed pickles only: {html.escape(str(reason))}.</p>"
                )
    parts.append("</body></html>")
    return "".join(parts)


def call_examples(fn: Mapping[str, Any], called: str) -> list[tuple[str, dict[str, Any], Any]]:
    """``(title, input, arguments schema)`` for a typed function, or each JSON-callable
    method of a typed class: an ``input`` to start from (see :func:`example`), calling it
    by the name ``called`` (see _shown_names)."""
    schema = fn["schema"]
    qualified = str(fn.get("qualified_name", fn.get("name", "?")))
    if "methods" not in schema:
        call = {"function": called, "kwargs": example(schema["input"])}
        return [(qualified, call, schema["input"])]
    init = example(schema["init"])
    return [
        (
            f"{qualified}.{method}",
            {
                "function": called,
                "init": init,
                "method": method,
                "kwargs": example(spec["input"]),
            },
            spec["input"],
        )
        for method, spec in sorted(schema["methods"].items())
    ]


def example(schema: Any) -> Any:
    """A value for ``schema`` to start a request from: its required properties only, each a
    placeholder of its type (``0``, ``"string"``, a date of the right format, the first
    choice of an enum), within simple bounds. Not every schema has one (a pattern): the
    gateway's answer then says what is wrong with it."""
    root = schema if isinstance(schema, dict) else {}
    return _Examples(root.get("$defs") or {}).value(schema, 0)


class _Examples:
    """Writes one example, sharing a budget of values: a recursive model that requires
    itself (a tree of eight children) would otherwise fill the page."""

    def __init__(self, defs: Mapping[str, Any], budget: int = 1000) -> None:
        self.defs = defs
        self.left = budget

    def value(self, schema: Any, depth: int) -> Any:
        self.left -= 1
        if not isinstance(schema, dict) or depth > 16 or self.left < 0:
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return self.value(self.defs.get(ref[8:]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = [
                    o for o in options if not (isinstance(o, dict) and o.get("type") == "null")
                ]
                return self.value((chosen or options)[0], depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            known = KEY_PATTERNS.get(str(schema.get("pattern")))
            text = known[1] if known else FORMAT_EXAMPLES.get(str(schema.get("format")), "string")
            return text[: _bound(schema, "maxLength", len(text))].ljust(
                _bound(schema, "minLength", 0), "x"
            )
        if kind in ("integer", "number"):
            return _number(schema, kind)
        if kind == "boolean":
            return False
        return None

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        value = {
            name: self.value(properties.get(name), depth + 1)
            for name in schema.get("required") or ()
        }
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict):  # a dict: one item, to show its form
            key = self._key(schema.get("propertyNames"), depth)
            if key is not None:
                value[key] = self.value(extra, depth + 1)
        return value

    def _key(self, names: Any, depth: int) -> str | None:
        """A key of a dict that its ``propertyNames`` takes (keys are text: an integer
        enum's 1 is "1"), or None where none is known: the example's dict is then empty."""
        if names is None:
            return "key"
        if not isinstance(names, dict):
            return None
        # A key schema may state no type (pydantic's {"format": "uuid"}): it is text.
        typed = names if "type" in names or "$ref" in names else {"type": "string", **names}
        found = self.value(typed, depth + 1)
        key = found if isinstance(found, str) else json.dumps(found)
        root = {"propertyNames": names, "$defs": self.defs}
        return key if not validate({key: None}, root) else None

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [self.value(item, depth + 1) for item in prefix]
        count = min(max(_bound(schema, "minItems", 1), 1), _bound(schema, "maxItems", 8), 8)
        if count == 0:
            return []
        item = self.value(schema.get("items"), depth + 1)
        if schema.get("uniqueItems") and count > 1:
            # Distinct numbers and texts are easy; other items: one (the answer says more).
            if type(item) is int:
                return list(range(item, item + count))
            return [f"{item}{n}" for n in range(count)] if type(item) is str else [item]
        # Each written anew, from the budget: a copy of a nested one would multiply it.
        return [item] + [self.value(schema.get("items"), depth + 1) for _ in range(count - 1)]


def _bound(schema: Mapping[str, Any], key: str, default: int) -> int:
    """A length bound of the schema, if it is a sensible one."""
    value = schema.get(key)
    return value if type(value) is int and 0 <= value <= 1000 else default


def _number(schema: Mapping[str, Any], kind: str) -> int | float:
    """Zero when the bounds allow it, else a value inside them (their middle, when there
    are two), a multiple of ``multipleOf`` where one is asked for."""
    low, high = _numbers(schema, "minimum"), _numbers(schema, "maximum")
    above, below = _numbers(schema, "exclusiveMinimum"), _numbers(schema, "exclusiveMaximum")

    def fits(value: float) -> bool:
        return (
            all(value >= v for v in low)
            and all(value <= v for v in high)
            and all(value > v for v in above)
            and all(value < v for v in below)
        )

    floor, ceiling = max(low + above, default=None), min(high + below, default=None)
    if fits(0):
        value: float = 0
    elif floor is not None and ceiling is not None:
        value = (floor + ceiling) / 2
    elif floor is not None:
        value = floor if fits(floor) else floor + 1
    else:
        value = ceiling if ceiling is not None and fits(ceiling) else (ceiling or 0) - 1
    for step in _numbers(schema, "multipleOf"):
        if step <= 0:
            break
        for candidate in (math.ceil(value / step) * step, math.floor(value / step) * step):
            if fits(candidate):
                value = candidate
                break
    if kind == "integer":
        for candidate in (math.ceil(value), math.floor(value)):
            if fits(candidate):
                return int(candidate)
        return int(value)
    return float(value)


def _numbers(schema: Mapping[str, Any], key: str) -> list[float]:
    """The schema's number under ``key``, as a list of it or none."""
    value = schema.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return [float(value)]
    return []
