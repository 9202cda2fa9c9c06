"""Issue 10, item 6: the logins (refresh-token families) revoked while their access tokens may
still be unexpired, and the `fam` claim that ties an access token to its login."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest

from fastsock.errors import Unauthenticated
from fastsock.services.revocations import ExpiringSet
from fastsock.services.tokens import ACCESS, TokenCodec

pytestmark = pytest.mark.once

SECRET = "unit-test-secret-" + "k" * 40
USER_ID = "507f1f77bcf86cd799439011"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_login_is_kept_as_long_as_its_access_tokens_can_live() -> None:
    clock = Clock()
    revoked = ExpiringSet(keep_s=900, clock=clock)
    revoked.add("family-a")
    clock.now += 899
    assert "family-a" in revoked and "family-b" not in revoked
    revoked.add("family-b")
    clock.now += 2  # family-a's last access token has expired: nothing left to refuse
    assert "family-a" not in revoked and "family-b" in revoked


def test_revoking_again_keeps_the_login_from_then_on() -> None:
    clock = Clock()
    revoked = ExpiringSet(keep_s=900, clock=clock)
    revoked.add("family-a")
    clock.now += 600
    revoked.add("family-b")
    revoked.add("family-a")  # e.g. a logout and then a reuse of an old refresh token
    clock.now += 600
    assert "family-a" in revoked and "family-b" in revoked


def test_access_tokens_carry_their_login() -> None:
    codec = TokenCodec(SECRET)
    issued = codec.issue(ACCESS, USER_ID, datetime.now(UTC), fam="family-1")
    assert codec.decode(issued.token, ACCESS)["fam"] == "family-1"


@pytest.mark.parametrize("fam", [42, None, ["family-1"], {"id": "family-1"}])
def test_a_login_that_is_not_a_string_is_refused(fam: object) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": USER_ID, "typ": ACCESS, "iat": now, "exp": now + 600, "jti": "j" * 22}
    token = jwt.encode({**claims, "fam": fam}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(token, ACCESS)
