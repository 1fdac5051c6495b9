"""Stage 3: ``flash_manifest.json``, the map of which function lives on which endpoint.

The schema is versioned and holds no wall-clock fields, so equal inputs give an equal file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flash.build.errors import redact
from flash.build.scanner import ScanResult, sanitize_resource_name
from flash.build.schemas import SchemaResult, schema_sha256

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Target(_Model):
    python_version: str
    platform: str


class FunctionSchema(_Model):
    """JSON Schemas of a function's parameters (an object) and return value."""

    input: dict[str, Any]
    output: dict[str, Any]
    sha256: str
    stream: bool = False  # a generator: ``output`` describes each item it yields


class ClassSchema(_Model):
    """A class's constructor schema and its JSON-callable methods."""

    init: dict[str, Any]
    methods: dict[str, FunctionSchema]
    pickle_only_methods: dict[str, str] = Field(default_factory=dict)
    sha256: str


class FunctionEntry(_Model):
    name: str
    qualified_name: str
    module: str
    is_async: bool
    is_class: bool
    is_generator: bool = False
    methods: list[str] = Field(default_factory=list)
    async_methods: list[str] = Field(default_factory=list)
    schema_: FunctionSchema | ClassSchema | None = Field(default=None, alias="schema")
    pickle_only: str | None = Field(
        default=None, description="why the function takes pickled calls only (no JSON schema)"
    )


class ResourceEntry(_Model):
    type: str
    handler_file: str
    config: dict[str, Any]
    dependencies: list[str] = Field(default_factory=list)
    system_dependencies: list[str] = Field(default_factory=list)
    functions: list[FunctionEntry]


class Dependencies(_Model):
    requirements: list[str] = Field(default_factory=list)
    pins: list[str] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)


class Manifest(_Model):
    schema_version: Literal[1] = 1
    project: str
    flash_version: str
    target: Target
    resources: dict[str, ResourceEntry]
    function_registry: dict[str, str] = Field(
        description="qualified function name -> resource name"
    )
    dependencies: Dependencies
    source_fingerprint: str

    def to_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def with_schemas(self, schemas: Mapping[str, SchemaResult]) -> Manifest:
        """A copy with each function's JSON schemas, or the reason it has none."""
        copy = self.model_copy(deep=True)
        for resource in copy.resources.values():
            for entry in resource.functions:
                found = schemas.get(entry.qualified_name)
                if found is None:
                    continue
                entry.schema_ = schema_record(found)
                if entry.schema_ is None:
                    entry.pickle_only = found.reason
        return copy


def schema_record(found: SchemaResult) -> FunctionSchema | ClassSchema | None:
    """What the manifest records of a function's schemas; None for a pickle-only one."""
    if found.class_schema is not None:
        methods = {
            name: FunctionSchema(
                input=m["input"],
                output=m["output"],
                sha256=schema_sha256(m["input"], m["output"]),
                stream=bool(m.get("stream")),
            )
            for name, m in found.class_schema["methods"].items()
        }
        return ClassSchema(
            init=found.class_schema["init"],
            methods=methods,
            pickle_only_methods=found.class_schema.get("pickle_only_methods", {}),
            sha256=found.sha256 or "",
        )
    if found.reason is None and found.input is not None and found.output is not None:
        return FunctionSchema(
            input=found.input, output=found.output, sha256=found.sha256 or "", stream=found.stream
        )
    return None


def handler_file_name(resource_name: str) -> str:
    return f"handler_{sanitize_resource_name(resource_name)}.py"


def build_manifest(
    *,
    project: str,
    flash_version: str,
    target: Target,
    scan: ScanResult,
    dependencies: Dependencies,
    source_fingerprint: str,
) -> Manifest:
    resources: dict[str, ResourceEntry] = {}
    for name, spec in sorted(scan.resources.items()):
        members = [f for f in scan.functions if f.resource == name]
        resources[name] = ResourceEntry(
            type=spec.type,
            handler_file=handler_file_name(name),
            config=spec.config,
            dependencies=sorted({redact(d) for f in members for d in f.dependencies}),
            system_dependencies=sorted({d for f in members for d in f.system_dependencies}),
            functions=[
                FunctionEntry(
                    name=f.name,
                    qualified_name=f.qualified_name,
                    module=f.module,
                    is_async=f.is_async,
                    is_class=f.is_class,
                    is_generator=f.is_generator,
                    methods=list(f.methods),
                    async_methods=list(f.async_methods),
                )
                for f in members
            ],
        )
    registry = {f.qualified_name: f.resource for f in scan.functions}
    return Manifest(
        project=project,
        flash_version=flash_version,
        target=target,
        resources=resources,
        function_registry=dict(sorted(registry.items())),
        # The manifest is shipped and shown: URL credentials and index URLs never go in
        # (installs are done).
        dependencies=Dependencies(
            requirements=[redact(r) for r in dependencies.requirements],
            pins=[redact(p) for p in dependencies.pins],
            excluded=list(dependencies.excluded),
        ),
        source_fingerprint=source_fingerprint,
    )


def load_manifest(path: Path) -> Manifest:
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
