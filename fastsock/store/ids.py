"""ObjectId conversion at the store boundary: services pass and receive hex strings."""

from __future__ import annotations

from bson import ObjectId


def oid(value: str | ObjectId) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(value)


def new_id() -> str:
    return str(ObjectId())
