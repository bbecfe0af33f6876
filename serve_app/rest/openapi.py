"""Request bodies the OpenAPI document states for routes that read the raw body themselves.

Those routes accept several formats or an optional body, so FastAPI cannot infer the body from
the signature; without this the document would say nothing and generated clients and tests
would send nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter

from serve_app.rest import errors


class RequestBodies:
    """OpenAPI request bodies for endpoints that read the raw body themselves (several formats,
    an optional body): the document then says what to send, and generated tests send it."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def __call__(self, model: type[BaseModel], *, required: bool = True, xml: str | None = None,
                 properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """The body ``model`` describes; ``properties`` replaces those the route constrains further."""
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.components.update(schema.pop("$defs", {}))
        schema["properties"].update(properties or {})
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if xml:
            # the document as sent, byte for byte (not an object mapped to XML elements)
            content["application/xml"] = {"schema": {"type": "string", "format": "binary", "description": xml}}
        return {"requestBody": {"required": required, "content": content}}

    def install(self, app: FastAPI) -> None:
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(self.components)
            schemas.update(errors.schemas())
            _drop_default_validation_errors(document)
            return document

        app.openapi = openapi  # type: ignore[method-assign]


def _drop_default_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 with its own body on every operation that has parameters; this app never
    sends that body (its 422 is the error body, declared by each route that can answer it), and an
    operation whose parameters cannot be refused does not answer 422 at all."""
    default = {"$ref": "#/components/schemas/HTTPValidationError"}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422", {})
            if answer.get("content", {}).get("application/json", {}).get("schema") == default:
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(name, None)


def constraints(field_type: Any) -> dict[str, Any]:
    """The JSON Schema keywords of an id type (or of a field's schema), to document a path parameter
    the route does not refuse with 422: an id outside them was never issued, so it is answered 404
    like any other unknown id."""
    schema = field_type if isinstance(field_type, dict) else TypeAdapter(field_type).json_schema()
    return {k: v for k, v in schema.items() if k in ("minLength", "maxLength", "pattern", "format")}
