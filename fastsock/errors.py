"""Domain errors. Services raise them; HTTP handlers and the WebSocket render them as
`{"error": {"code", "message"}}` (plus `field` for invalid input).

Each code names one class (wherever it is defined), so an error rendered on another node
(cluster/rpc.py) is raised again here as the class it was raised as: `from_dict`."""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ApiError(Exception):
    status = 400
    code = "invalid_request"
    # code -> the class that declares it, filled as the classes are defined
    by_code: ClassVar[dict[str, type[ApiError]]] = {}

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return  # it answers with its parent's code: the parent stands for it
        known = ApiError.by_code.setdefault(cls.code, cls)
        if known is not cls:  # the code would not say which of them was raised
            raise TypeError(f"error code {cls.code!r} is already {known.__qualname__}'s")

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body

    @staticmethod
    def from_dict(status: int, body: dict[str, Any]) -> ApiError | None:
        """The error `to_dict` rendered (with its `status`) as its own class again; None if
        no class here has that code and status (a node running another version)."""
        kind = ApiError.by_code.get(body["code"])
        if kind is None or kind.status != status:
            return None
        return kind._rebuilt(body)

    @classmethod
    def _rebuilt(cls, body: dict[str, Any]) -> ApiError:
        return cls(body["message"], field=body.get("field"))


class InvalidRequest(ApiError):
    status, code = 400, "invalid_request"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotAMember(ApiError):
    status, code = 403, "not_a_member"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str]:
        # Rounded up, never to zero: "retry now" would only earn another refusal.
        wait = max(0.001, math.ceil(self.retry_after * 1000) / 1000)
        # The one error with a number in it (the base type says strings, as all others have).
        return {**super().to_dict(), "retry_after": wait}  # type: ignore[dict-item]

    @classmethod
    def _rebuilt(cls, body: dict[str, Any]) -> ApiError:
        return cls(body["message"], retry_after=body["retry_after"])
