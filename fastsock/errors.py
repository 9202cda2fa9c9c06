"""Domain errors. Services raise them; HTTP handlers and the WebSocket render them as
`{"error": {"code", "message"}}` (plus `field` for invalid input)."""

from __future__ import annotations

import math


class ApiError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


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
        return {**super().to_dict(), "retry_after": wait}  # type: ignore[dict-item]
