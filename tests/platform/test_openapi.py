"""The per-endpoint OpenAPI document describes what the gateway answers."""

from __future__ import annotations

from typing import Any

from flash.platform.openapi import endpoint_document

TYPED = {"input": {"type": "object", "properties": {}}, "output": {"type": "integer"}}


def _resource(*functions: dict[str, Any]) -> dict[str, Any]:
    return {"functions": list(functions)}


def _answer(document: dict[str, Any]) -> dict[str, Any]:
    ok = document["paths"]["/runsync"]["post"]["responses"]["200"]
    return dict(ok["content"]["application/json"]["schema"])


def _policy(document: dict[str, Any]) -> dict[str, Any]:
    body = document["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]
    return dict(body["schema"]["properties"]["policy"]["properties"])


def test_policy_lists_every_field_the_gateway_takes() -> None:
    policy = _policy(endpoint_document("e", _resource(), "http://x"))
    assert set(policy) == {"executionTimeout", "ttl", "lowPriority"}
    assert policy["ttl"]["maximum"] == 7 * 24 * 3600 * 1000


def test_an_endpoint_with_a_generator_answers_with_a_list() -> None:
    plain = {"name": "f", "qualified_name": "m.f", "schema": TYPED}
    generator = {"name": "g", "qualified_name": "m.g", "schema": TYPED, "is_generator": True}
    alone = _answer(endpoint_document("e", _resource(plain), "http://x"))
    assert alone["properties"]["output"]["type"] == "object"
    mixed = endpoint_document("e", _resource(plain, generator), "http://x")
    output = _answer(mixed)["properties"]["output"]
    assert output["type"] == "array" and output["items"]["type"] == "object"
    assert "list of its answers" in mixed["info"]["description"]
