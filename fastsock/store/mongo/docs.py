"""Documents across the Mongo boundary: ObjectIds inside, id strings outside (store/base.py)."""

from __future__ import annotations

from typing import Any, overload

from bson import ObjectId

Doc = dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, list):  # read_log pairs
        return [_plain(v) for v in value]
    return value


@overload
def plain(doc: Doc, *, drop_id: bool = False) -> Doc: ...
@overload
def plain(doc: Doc | None, *, drop_id: bool = False) -> Doc | None: ...
def plain(doc: Doc | None, *, drop_id: bool = False) -> Doc | None:
    """The document with every ObjectId as its hex string. `drop_id` leaves out `_id` where it
    is only MongoDB's row id (memberships, deliveries), which the contract does not have."""
    if doc is None:
        return None
    return {k: _plain(v) for k, v in doc.items() if not (drop_id and k == "_id")}


def plain_all(docs: list[Doc], *, drop_id: bool = False) -> list[Doc]:
    return [plain(d, drop_id=drop_id) for d in docs]
