"""What the fuzz suite reads from the schema table (fastsock/services/schemas.py): each
field's kind and bounds.

The table holds checks (functions), not descriptions, so a field's kind is recognised by its
check's name and its bounds are read from the check's closure (`text(max_len=80)` keeps
`max_len`). A check this module does not know fails test_schema_table.py, so a new kind of
field cannot go unfuzzed."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastsock.services.schemas import SCHEMAS, Field

# The check's qualified name -> the kind of field it checks.
KINDS = {
    "text.<locals>.<lambda>": "text",
    "integer.<locals>.<lambda>": "integer",
    "object_ids.<locals>.check": "ids",
    "_choice.<locals>.check": "choice",
    "object_id": "id",
    "boolean": "boolean",
    "_username": "username",
    "_password": "password",
    "_password_guess": "password",
    "_string": "string",
    "_emoji": "emoji",
    "_resume": "resume",
    "_sdp": "sdp",
    "_candidate": "candidate",
    "number.<locals>.check": "number",
    "url.<locals>.check": "url",
    "records.<locals>.check": "records",
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str
    required: bool
    bounds: Mapping[str, Any]  # min_len/max_len, low/high, min_items/max_items, choices

    def bound(self, key: str) -> Any:
        return self.bounds[key]


def spec_of(name: str, field: Field) -> FieldSpec:
    qualname = field.check.__qualname__
    if qualname not in KINDS:
        raise LookupError(f"field {name!r}: unknown kind of check {qualname!r}")
    bounds = dict(inspect.getclosurevars(field.check).nonlocals)
    return FieldSpec(name, KINDS[qualname], field.required, bounds)


def specs(schema: str) -> list[FieldSpec]:
    return [spec_of(name, field) for name, field in SCHEMAS[schema].items()]
