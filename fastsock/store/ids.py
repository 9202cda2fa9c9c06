"""ObjectId conversion at the store boundary: services pass and receive hex strings."""

from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId


def oid(value: str | ObjectId) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(value)


def is_object_id(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 24:
        return False
    try:
        ObjectId(value)
    except InvalidId:
        return False
    return True


def new_id() -> str:
    return str(ObjectId())
