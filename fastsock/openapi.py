"""The REST API's OpenAPI 3.1 document, generated: paths and methods from the routes table
(app.HANDLERS: each handler's `route` and the methods it implements), request bodies and
query parameters from the schema table (services/schemas.py; the handler's `query_schema`),
response bodies from openapi_shapes.py, each error status's codes from the error classes. What
only this module knows is which body schema and shape each operation uses, and which error
statuses it can answer with (OPERATIONS).

Served at GET /openapi.json and committed as docs/openapi.json; regenerate that with
`python -m fastsock.openapi > docs/openapi.json` (tests/handlers/test_openapi.py fails until
the committed copy matches the code)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus

from fastsock import __version__
from fastsock.errors import ApiError
from fastsock.handlers.base import HTTP_CODES, BaseHandler
from fastsock.openapi_shapes import SCHEMAS as SHAPES
from fastsock.services import schemas
from fastsock.services.schemas import Doc

REGENERATE = "python -m fastsock.openapi > docs/openapi.json"
PATH_PARAMETERS: dict[str, Doc] = {
    "id": schemas.ID_SCHEMA,
    "user_id": schemas.ID_SCHEMA,
    "emoji": schemas.EMOJI,
}


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str | None = None  # what the summary leaves out
    response: str | None = None  # a shape in openapi_shapes.SCHEMAS; None: 204, no body
    status: int = 200
    body: str | None = None  # the schema table entry the JSON body is checked against
    path_fields: tuple[str, ...] = ()  # fields of `body` the path supplies, not the body
    errors: tuple[int, ...] = ()  # besides those every such operation can answer (_errors)
    also: tuple[int, ...] = ()  # other success statuses, with the same body
    # For what is not JSON or not in the schema table: the success responses written out
    # (files, metrics), a request body (uploads), parameters (an upload's name, a Range).
    # Query arguments come from the handler's `query_schema`.
    success: Doc | None = None
    request_body: Doc | None = None
    parameters: tuple[Doc, ...] = ()
    security: tuple[Doc, ...] | None = None  # None: as the handler authenticates


BINARY: Doc = {"type": "string", "format": "binary"}
FILE: Doc = {"*/*": {"schema": BINARY}}
DOWNLOAD = Operation(
    summary="Download a file",
    errors=(403, 416),
    success={
        "200": {"description": "The file", "content": FILE},
        "206": {
            "description": "One byte range of the file",
            "headers": {
                "Content-Range": {
                    "required": True,
                    "description": "`bytes first-last/size`",
                    "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
                }
            },
            "content": FILE,
        },
    },
    parameters=({"name": "Range", "in": "header", "schema": {"type": "string"}},),
)
UPLOAD_BODY: Doc = {
    "required": True,
    "description": "The file as the raw body, with its own Content-Type (or none, or a "
    "generic one: the type is detected from the content; 415 for a type the server does not "
    "take), or a multipart/form-data form with a part named `file`.",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": BINARY}, "required": ["file"]}
        },
        "application/octet-stream": {"schema": BINARY},
        "*/*": {"schema": BINARY},
    },
}
INTERNAL = "Mounted only when FASTSOCK_SFU_SECRET is set (404 without)."


# (route, method) -> what the handler reads and answers. A route or method missing here (or
# here without a handler) fails tests/handlers/test_openapi.py.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("/auth/register", "post"): Operation(
        summary="Create an account and sign in",
        response="Session",
        status=201,
        body="auth.register",
        errors=(409, 429),
    ),
    ("/auth/login", "post"): Operation(
        summary="Sign in", response="Session", body="auth.login", errors=(401, 403, 429)
    ),
    ("/auth/refresh", "post"): Operation(
        summary="Rotate the refresh token for a new pair",
        response="Session",
        body="auth.refresh",
        errors=(401,),
    ),
    ("/auth/logout", "post"): Operation(summary="End this login", body="auth.refresh"),
    ("/users/me", "get"): Operation(summary="My profile", response="Me", errors=(404,)),
    ("/users/me", "patch"): Operation(
        summary="Change my profile", response="User", body="user.update", errors=(403, 404)
    ),
    ("/users", "get"): Operation(summary="Find users", response="UserList"),
    ("/users/{id}", "get"): Operation(summary="A user", response="User"),
    ("/config", "get"): Operation(
        summary="Limits a client checks input against", response="Config"
    ),
    ("/rooms", "get"): Operation(summary="My rooms", response="RoomList"),
    ("/rooms", "post"): Operation(
        summary="Create a group",
        response="Room",
        status=201,
        body="room.create",
        errors=(409, 429),
    ),
    ("/rooms/direct", "post"): Operation(
        summary="Open a direct-message room",
        response="Room",
        status=201,
        body="room.direct",
        errors=(409, 429),
        also=(200,),
    ),
    ("/rooms/public", "get"): Operation(summary="Find public groups", response="PublicRoomList"),
    ("/rooms/{id}", "get"): Operation(
        summary="A room, with its members", response="RoomDetail", errors=(403,)
    ),
    ("/rooms/{id}", "patch"): Operation(
        summary="Rename a group or change its privacy",
        response="Room",
        body="room.update",
        errors=(403,),
    ),
    ("/rooms/{id}/join", "post"): Operation(
        summary="Join a public group", response="Room", errors=(403, 409, 429)
    ),
    ("/rooms/{id}/members", "post"): Operation(
        summary="Add members", response="Room", body="room.members.add", errors=(403, 409, 429)
    ),
    ("/rooms/{id}/members/{user_id}", "delete"): Operation(
        summary="Remove a member (banning them from rejoining), or leave", errors=(403,)
    ),
    ("/rooms/{id}/members/{user_id}", "patch"): Operation(
        summary="Make a member an admin, or a member again",
        response="RoomDetail",
        body="room.member.update",
        errors=(403, 404, 409),
    ),
    ("/rooms/{id}/bans", "get"): Operation(
        summary="Who was removed and may not rejoin", response="Bans", errors=(403,)
    ),
    ("/rooms/{id}/bans/{user_id}", "delete"): Operation(
        summary="Let a removed member join again", errors=(403, 404)
    ),
    ("/admin/users/{id}/deactivate", "post"): Operation(
        summary="Deactivate an account (server admins)", response="User", errors=(403, 404, 409)
    ),
    ("/admin/users/{id}/reactivate", "post"): Operation(
        summary="Reactivate an account (server admins)", response="User", errors=(403, 404)
    ),
    ("/rooms/{id}/read", "post"): Operation(
        summary="Move my read pointer",
        response="ReadState",
        body="message.read",
        path_fields=("room_id",),
        errors=(403, 429),
    ),
    ("/rooms/{id}/messages", "post"): Operation(
        summary="Send a message",
        response="Message",
        status=201,
        body="message.send",
        path_fields=("room_id",),
        errors=(403, 409, 429),
        also=(200,),
    ),
    ("/history/room/{id}", "get"): Operation(
        summary="A page of a room's history", response="MessagePage", errors=(403,)
    ),
    ("/messages/{id}", "patch"): Operation(
        summary="Edit a message",
        response="Message",
        body="message.edit",
        path_fields=("message_id",),
        errors=(403, 409, 429),
    ),
    ("/messages/{id}", "delete"): Operation(summary="Delete a message", errors=(403, 429)),
    ("/messages/{id}/receipts", "get"): Operation(
        summary="Who has a message, and who read it", response="Receipts", errors=(403,)
    ),
    ("/messages/{id}/reactions/{emoji}", "put"): Operation(
        summary="React to a message", response="Reactions", errors=(403, 409, 429)
    ),
    ("/messages/{id}/reactions/{emoji}", "delete"): Operation(
        summary="Take a reaction back", response="Reactions", errors=(403, 409, 429)
    ),
    ("/search/messages", "get"): Operation(
        summary="Search my rooms' messages", response="MessagePage", errors=(403,)
    ),
    ("/uploads", "post"): Operation(
        summary="Upload a file",
        response="Upload",
        status=201,
        errors=(413, 415, 429),
        request_body=UPLOAD_BODY,
        parameters=({"name": "filename", "in": "query", "schema": {"type": "string"}},),
    ),
    ("/uploads/{id}", "get"): DOWNLOAD,
    ("/uploads/{id}/thumbnail", "get"): replace(DOWNLOAD, summary="An image's thumbnail"),
    ("/calls/ice-servers", "get"): Operation(
        summary="STUN/TURN servers", response="IceServers", errors=(429,)
    ),
    ("/rooms/{id}/calls", "get"): Operation(
        summary="A room's calls", response="CallPage", errors=(403,)
    ),
    ("/healthz", "get"): Operation(summary="Liveness", response="Health"),
    ("/readyz", "get"): Operation(summary="Readiness", response="Ready"),
    ("/metrics", "get"): Operation(
        summary="Prometheus metrics",
        description="Served on FASTSOCK_METRICS_PORT instead when that is set (404 here).",
        success={
            "200": {
                "description": "The Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        security=({}, {"metricsToken": []}),  # the token only when one is set
    ),
    ("/openapi.json", "get"): Operation(
        summary="This document",
        success={
            "200": {
                "description": "This document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    ),
    ("/internal/sfu/workers/{id}/register", "post"): Operation(
        summary="An SFU worker registers",
        description=INTERNAL,
        response="WorkerSettings",
        body="sfu.register",
        errors=(403,),
    ),
    ("/internal/sfu/workers/{id}/heartbeat", "post"): Operation(
        summary="An SFU worker's heartbeat",
        description=INTERNAL,
        response="WorkerCommands",
        body="sfu.heartbeat",
        errors=(403,),
    ),
    ("/internal/sfu/workers/{id}/events", "post"): Operation(
        summary="An SFU worker's peer events",
        description=INTERNAL,
        response="WorkerCommands",
        body="sfu.events",
        errors=(403,),
    ),
    ("/internal/sfu/workers/{id}", "delete"): Operation(
        summary="An SFU worker deregisters", description=INTERNAL, errors=(403,)
    ),
}

# Any GET: tornado answers If-None-Match with 304 when the body's ETag still matches.
NOT_MODIFIED: Doc = {"description": "Not modified: the If-None-Match ETag still matches"}

SECURITY_SCHEMES: Doc = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access token of POST /auth/login, /auth/register or /auth/refresh.",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "FASTSOCK_METRICS_TOKEN, when it is set.",
    },
    "workerToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An SFU worker's control token (FASTSOCK_SFU_SECRET), `sub` its id.",
    },
}


def document(handlers: Iterable[type[BaseHandler]]) -> Doc:
    paths: Doc = {}
    for handler in handlers:
        for method in map(str.lower, handler.methods()):
            op = OPERATIONS.get((handler.route, method))
            if op is None:
                raise LookupError(
                    f"{method.upper()} {handler.route} ({handler.__qualname__}) has no entry in "
                    "fastsock.openapi.OPERATIONS"
                )
            paths.setdefault(handler.route, {})[method] = _operation(handler, method, op)
    codes = error_codes()
    used = {int(s) for ops in paths.values() for op in ops.values() for s in op["responses"]}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "FastSock",
            "version": __version__,
            "description": "Self-hosted team chat: the REST API (docs/api.md). The WebSocket "
            "/ws is described in docs/api.md only.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SHAPES,
            "responses": {str(s): _error(s, codes[s]) for s in sorted(used & set(codes))},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def render(handlers: Iterable[type[BaseHandler]]) -> bytes:
    """The document as served and committed (docs/openapi.json)."""
    return (json.dumps(document(handlers), indent=2, ensure_ascii=False) + "\n").encode()


def error_codes() -> dict[int, list[str]]:
    """Every error code by its status: the ApiError classes' (errors.py, and those defined
    next to where they are raised), and those of tornado's own errors (base.HTTP_CODES)."""
    codes: dict[int, set[str]] = {}
    for code, kind in ApiError.by_code.items():
        codes.setdefault(kind.status, set()).add(code)
    for status, code in HTTP_CODES.items():
        codes.setdefault(status, set()).add(code)
    return {status: sorted(names) for status, names in codes.items()}


def _operation(handler: type[BaseHandler], method: str, op: Operation) -> Doc:
    path_names = re.findall(r"\{(\w+)\}", handler.route)
    parameters = [
        {"name": n, "in": "path", "required": True, "schema": PATH_PARAMETERS[n]}
        for n in path_names
    ]
    if handler.query_schema is not None:
        query = schemas.json_schema(handler.query_schema)
        required = set(query.get("required", ()))
        parameters += [
            {"name": n, "in": "query", "required": n in required, "schema": s}
            for n, s in query["properties"].items()
        ]
    parameters += op.parameters
    doc: Doc = {
        "operationId": f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}.{method}",
        "summary": op.summary,
        "tags": [handler.route.split("/")[1]],
        "security": _security(handler, op),
    }
    if op.description is not None:
        doc["description"] = op.description
    if op.body is not None:
        body = _body_schema(op.body, op.path_fields)
        doc["requestBody"] = {
            "required": bool(body.get("required") or body.get("minProperties")),
            "content": {"application/json": {"schema": body}},
        }
    if op.request_body is not None:
        doc["requestBody"] = op.request_body
    if parameters:
        doc["parameters"] = parameters
    success = _success(op) | ({"304": NOT_MODIFIED} if method == "get" else {})
    doc["responses"] = success | {
        str(s): {"$ref": f"#/components/responses/{s}"} for s in _errors(handler, op)
    }
    return doc


def _body_schema(name: str, path_fields: tuple[str, ...]) -> Doc:
    body = schemas.json_schema(name)
    properties = {k: v for k, v in body["properties"].items() if k not in path_fields}
    required = [k for k in body.get("required", ()) if k not in path_fields]
    return {**body, "properties": properties} | ({"required": required} if required else {})


def _security(handler: type[BaseHandler], op: Operation) -> list[Doc]:
    if op.security is not None:
        return list(op.security)
    if getattr(handler, "internal", False):
        return [{"workerToken": []}]
    return [{"bearerAuth": []}] if handler.auth_required else []


def _success(op: Operation) -> Doc:
    if op.success is not None:
        return op.success
    if op.response is None:
        return {"204": {"description": "Done"}}
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response}"}}}
    return {str(s): {"description": op.summary, "content": content} for s in (op.status, *op.also)}


def _errors(handler: type[BaseHandler], op: Operation) -> list[int]:
    """Every error status the operation can answer with."""
    statuses = {503, *op.errors}  # 503: the database away, or the connection bound reached
    if "{" in handler.route or handler.query_schema or op.body or op.request_body or op.parameters:
        statuses.add(400)
    if "{" in handler.route:
        statuses.add(404)
    if op.body is not None:
        statuses.add(413)
    if _security(handler, op):
        statuses.add(401)
    return sorted(statuses)


def _error(status: int, codes: list[str]) -> Doc:
    """An error response: the Error shape, its `code` one of those of `status`."""
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }
    response: Doc = {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": schema}},
    }
    if status in (429, 503):
        retry = {"type": "string", "pattern": "^[0-9]+$"}
        response["headers"] = {
            "Retry-After": {"required": True, "description": "Seconds", "schema": retry}
        }
    if status == 416:
        response["headers"] = {
            "Content-Range": {
                "required": True,
                "description": "`bytes */size`",
                "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"},
            }
        }
    return response


def main() -> None:
    from fastsock.app import HANDLERS  # app imports this module: not at import time

    sys.stdout.buffer.write(render(HANDLERS))


if __name__ == "__main__":
    main()
