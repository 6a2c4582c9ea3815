"""Every request field the OpenAPI document calls an `integer` takes only a JSON number, and
every `boolean` only `true` or `false`: pydantic alone reads `true` as 1 and `"5"` as 5, so
`{"amount": true}` asked for a step-up of one minor unit and `{"score": "900"}` saved a rule
(schemathesis: negative_data_rejection), and `{"fraud": "yes"}` labelled a movement.
Fields the document also allows as a string (amounts as digit strings) keep their strings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from billfold.app import create_app
from billfold.kit.settings import Settings

NOT_INTEGERS: list[object] = [True, False, "5", "1e3", ""]


def _subclasses(cls: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield str(node["$ref"]).rsplit("/", 1)[1]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _request_models() -> list[type[BaseModel]]:
    """The models behind every request body of the document, nested ones included."""
    document = create_app(Settings(database_url="sqlite+aiosqlite:///unused.db")).openapi()
    components = document["components"]["schemas"]
    names: set[str] = set()
    pending = [
        name
        for operations in document["paths"].values()
        for operation in operations.values()
        if isinstance(operation, dict)
        for name in _references(operation.get("requestBody", {}))
    ]
    while pending:
        name = pending.pop()
        if name not in names:
            names.add(name)
            pending += _references(components[name])
    by_name: dict[str, list[type[BaseModel]]] = {}
    for model in _subclasses(BaseModel):
        if model.__module__.startswith("billfold."):
            by_name.setdefault(model.__name__, []).append(model)
    found = {
        model
        for name in names
        for model in by_name.get(name.removesuffix("-Input").split("__")[-1], [])
    }
    assert len(found) > 40, sorted(names)
    return sorted(found, key=lambda model: f"{model.__module__}.{model.__name__}")


def _types(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return {kind for option in schema["anyOf"] for kind in _types(option)}
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ["any"])


def _fields_of_type(kind: str) -> list[tuple[type[BaseModel], str]]:
    fields = []
    for model in _request_models():
        properties = model.model_json_schema()["properties"]
        fields += [
            (model, name)
            for name, schema in properties.items()
            if kind in _types(schema) and _types(schema) <= {kind, "null"}
        ]
    return fields


INTEGER_FIELDS = _fields_of_type("integer")
BOOLEAN_FIELDS = _fields_of_type("boolean")
NOT_BOOLEANS: list[object] = [1, 0, "true", "yes", "off", ""]


def test_the_walk_finds_the_integer_fields_it_is_meant_to() -> None:
    names = {f"{model.__name__}.{name}" for model, name in INTEGER_FIELDS}
    assert {
        "StepUpRequest.amount",
        "RuleCreateRequest.score",
        "SplitShare.bps",
        "HolderTierRequest.tier",
        "LedgerAdjustmentPayload.code",
    } <= names


@pytest.mark.parametrize(
    ("model", "name"),
    INTEGER_FIELDS,
    ids=[f"{model.__name__}.{name}" for model, name in INTEGER_FIELDS],
)
def test_an_integer_field_refuses_what_is_no_json_number(model: type[BaseModel], name: str) -> None:
    for value in NOT_INTEGERS:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({name: value})
        at_field = [error for error in refused.value.errors() if error["loc"] == (name,)]
        assert at_field, (value, refused.value.errors())


def test_the_walk_finds_the_boolean_fields() -> None:
    names = {f"{model.__name__}.{name}" for model, name in BOOLEAN_FIELDS}
    assert {"CaseLabelRequest.fraud", "LabelCreate.fraud"} <= names


@pytest.mark.parametrize(
    ("model", "name"),
    BOOLEAN_FIELDS,
    ids=[f"{model.__name__}.{name}" for model, name in BOOLEAN_FIELDS],
)
def test_a_boolean_field_refuses_what_is_no_json_boolean(model: type[BaseModel], name: str) -> None:
    """Pydantic alone reads `"yes"` and `1` as true: `{"fraud": "yes"}` labelled a movement
    fraud, which a client built from the document could never have meant."""
    for value in NOT_BOOLEANS:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({name: value})
        at_field = [error for error in refused.value.errors() if error["loc"] == (name,)]
        assert at_field, (value, refused.value.errors())
