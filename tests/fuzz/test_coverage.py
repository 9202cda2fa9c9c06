"""The fuzz suite's tables cover every input there is: every field of the schema table is of
a kind the strategies know, every schema is fuzzed through some route or event, and every
route of the app is in a table."""

from __future__ import annotations

import re

import pytest

from fastsock.app import HANDLERS
from fastsock.services.schemas import SCHEMAS
from tests.fuzz.routes import (
    BODY_ROUTES,
    EVENT_TYPES,
    NO_INPUT,
    PATH_ROUTES,
    QUERY_ROUTES,
    REFUSED_TYPES,
)
from tests.fuzz.schema_fields import specs
from tests.fuzz.strategies import invalid, valid

pytestmark = pytest.mark.once


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_every_field_has_strategies(schema: str) -> None:
    for spec in specs(schema):
        valid(spec), invalid(spec)


def test_every_schema_is_fuzzed() -> None:
    fuzzed = {r.schema for r in BODY_ROUTES} | {r.schema for r in QUERY_ROUTES}
    fuzzed |= set(EVENT_TYPES) | {"auth"}  # auth: test_ws_frames.py's first frames
    assert set(SCHEMAS) <= fuzzed, sorted(set(SCHEMAS) - fuzzed)
    assert set(REFUSED_TYPES).isdisjoint(EVENT_TYPES)


def shape(path: str) -> str:
    """`/rooms/{group}/read` and `/rooms/{id}/read` -> `/rooms/{}/read`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_fuzzed() -> None:
    fuzzed = {shape(r.path) for r in (*BODY_ROUTES, *QUERY_ROUTES, *PATH_ROUTES)}
    fuzzed |= {*NO_INPUT, "/uploads"}  # POST /uploads: test_rest_paths.py's test_uploads
    assert {shape(h.route) for h in HANDLERS} == fuzzed
