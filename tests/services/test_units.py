"""Pure-logic unit tests: passwords, tokens, field validation and settings (no server)."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from fastsock.config import (
    LIMIT_VARS,
    ConfigError,
    Limits,
    Settings,
    ensure_jwt_secret,
    load_settings,
    read_config_file,
)
from fastsock.errors import InvalidRequest, Unauthenticated
from fastsock.services import fields
from fastsock.services.emoji import is_single_emoji
from fastsock.services.limits import RateLimiter, client_key
from fastsock.services.passwords import ScryptParams, hash_password, verify_password
from fastsock.services.sniff import detect
from fastsock.services.tokens import ACCESS, REFRESH, TokenCodec
from fastsock.services.uploads import sanitise_filename

SECRET = "unit-test-secret-" + "k" * 40
FAST = ScryptParams(n=2**10, r=8, p=1)
USER_ID = "507f1f77bcf86cd799439011"


# --- passwords ------------------------------------------------------------------------------


def test_password_roundtrip_with_default_params() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", stored)
    assert "correct horse battery" not in stored


def test_password_roundtrip_unicode_and_custom_params() -> None:
    stored = hash_password("pässwörd ✓ 密码", FAST)
    assert stored.split("$")[1:4] == ["1024", "8", "1"]
    assert verify_password("pässwörd ✓ 密码", stored)


@pytest.mark.parametrize("wrong", ["correct horse batterY", "correct horse battery ", "", "x"])
def test_wrong_password_is_refused(wrong: str) -> None:
    stored = hash_password("correct horse battery", FAST)
    assert verify_password(wrong, stored) is False


def test_two_hashes_of_the_same_password_differ() -> None:
    a, b = hash_password("same password", FAST), hash_password("same password", FAST)
    assert a != b
    assert a.split("$")[4] != b.split("$")[4]  # different salts
    assert verify_password("same password", a) and verify_password("same password", b)


def _with_params(stored: str, n: str, r: str, p: str) -> str:
    parts = stored.split("$")
    return "$".join([parts[0], n, r, p, parts[4], parts[5]])


MALFORMED: dict[str, Any] = {
    "empty": lambda s: "",
    "garbage": lambda s: "garbage",
    "too_few_parts": lambda s: "scrypt$1$2$3",
    "too_many_parts": lambda s: s + "$extra",
    "other_scheme": lambda s: "bcrypt" + s.removeprefix("scrypt"),
    "non_numeric_n": lambda s: _with_params(s, "abc", "8", "1"),
    "bad_base64": lambda s: s.rsplit("$", 1)[0] + "$%%%notbase64",
    "empty_digest": lambda s: s.rsplit("$", 1)[0] + "$",
    # Parameters hashlib.scrypt itself refuses: must still be "no match", not a crash.
    "n_not_power_of_two": lambda s: _with_params(s, "1000", "8", "1"),
    "n_zero": lambda s: _with_params(s, "0", "8", "1"),
    "p_zero": lambda s: _with_params(s, "1024", "8", "0"),
    "n_beyond_maxmem": lambda s: _with_params(s, "1048576", "8", "1"),
}


@pytest.mark.parametrize("mangle", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_stored_hash_returns_false(mangle: Any) -> None:
    stored = mangle(hash_password("pw12345678", FAST))
    assert verify_password("pw12345678", stored) is False


# --- tokens ---------------------------------------------------------------------------------


def test_token_issue_and_decode() -> None:
    codec = TokenCodec(SECRET)
    now = datetime.now(UTC)
    issued = codec.issue(ACCESS, USER_ID, now)
    claims = codec.decode(issued.token, ACCESS)
    assert claims["sub"] == USER_ID and claims["typ"] == ACCESS
    assert claims["jti"] == issued.jti
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert issued.expires_at == now + timedelta(minutes=15)
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_refresh_token_ttl_and_extra_claims() -> None:
    codec = TokenCodec(SECRET)
    issued = codec.issue(REFRESH, USER_ID, datetime.now(UTC), fam="family-1")
    claims = codec.decode(issued.token, REFRESH)
    assert claims["fam"] == "family-1"
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600


def test_each_issued_token_has_a_unique_jti() -> None:
    codec = TokenCodec(SECRET)
    now = datetime.now(UTC)
    jtis = {codec.issue(ACCESS, USER_ID, now).jti for _ in range(20)}
    assert len(jtis) == 20


def test_token_typ_mismatch_is_refused() -> None:
    codec = TokenCodec(SECRET)
    now = datetime.now(UTC)
    with pytest.raises(Unauthenticated):
        codec.decode(codec.issue(ACCESS, USER_ID, now).token, REFRESH)
    with pytest.raises(Unauthenticated):
        codec.decode(codec.issue(REFRESH, USER_ID, now).token, ACCESS)


def test_expired_token_is_refused() -> None:
    codec = TokenCodec(SECRET)
    issued = codec.issue(ACCESS, USER_ID, datetime.now(UTC) - timedelta(minutes=16))
    with pytest.raises(Unauthenticated) as info:
        codec.decode(issued.token, ACCESS)
    assert info.value.status == 401 and info.value.code == "unauthenticated"
    assert "expired" in info.value.message


def test_token_from_another_secret_is_refused() -> None:
    issued = TokenCodec("other-" + "o" * 40).issue(ACCESS, USER_ID, datetime.now(UTC))
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(issued.token, ACCESS)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": USER_ID,
        "typ": ACCESS,
        "iat": now,
        "exp": now + 600,
        "jti": "j" * 22,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_handmade_token_with_all_claims_is_accepted() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert TokenCodec(SECRET).decode(token, ACCESS)["sub"] == USER_ID


@pytest.mark.parametrize("missing", ["sub", "typ", "iat", "exp", "jti"])
def test_token_missing_claims_is_refused(missing: str) -> None:
    token = jwt.encode(_claims(**{missing: None}), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(token, ACCESS)


def test_token_with_non_string_sub_is_refused() -> None:
    # PyJWT itself may refuse a non-string sub; either way the codec must answer 401.
    token = jwt.encode(_claims(sub=12345), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(token, ACCESS)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_token_algorithm_is_pinned() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(token, ACCESS)


@pytest.mark.parametrize("token", [None, "", 42, b"bytes", "not.a.jwt", ["x"], "a.\ud800.c"])
def test_non_token_values_are_refused(token: Any) -> None:
    with pytest.raises(Unauthenticated):
        TokenCodec(SECRET).decode(token, ACCESS)


# --- fields ---------------------------------------------------------------------------------


def test_object_id_normalises_to_lowercase() -> None:
    assert fields.object_id("507F1F77BCF86CD799439011", "room_id") == USER_ID
    assert fields.object_id(USER_ID, "room_id") == USER_ID


@pytest.mark.parametrize(
    "value",
    [
        "",
        "xyz",
        "507f1f77bcf86cd79943901",
        "507f1f77bcf86cd7994390111",
        "g" * 24,
        None,
        123,
        ["507f1f77bcf86cd799439011"],
        b"507f1f77bcf86cd799439011",
    ],
)
def test_object_id_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        fields.object_id(value, "room_id")
    assert info.value.field == "room_id" and info.value.status == 400


def test_list_object_ids() -> None:
    other = "0123456789abcdef01234567"
    assert fields.object_ids([USER_ID, other, USER_ID.upper()], "ids", max_items=5) == [
        USER_ID,
        other,
    ]
    with pytest.raises(InvalidRequest):
        fields.object_ids([USER_ID, other], "ids", max_items=1)
    with pytest.raises(InvalidRequest):
        fields.object_ids(USER_ID, "ids", max_items=5)
    with pytest.raises(InvalidRequest):
        fields.object_ids([USER_ID, "bad"], "ids", max_items=5)


def test_text_strips_and_checks_length() -> None:
    assert fields.text("  hi  ", "t", max_len=10) == "hi"
    assert fields.text("  hi  ", "t", max_len=10, strip=False) == "  hi  "
    assert fields.text("x" * 10, "t", max_len=10) == "x" * 10
    assert fields.text("", "t", min_len=0, max_len=10) == ""
    assert fields.text("line1\nline2\tend", "t", max_len=50) == "line1\nline2\tend"
    for bad in ("", "   ", "x" * 11):
        with pytest.raises(InvalidRequest) as info:
            fields.text(bad, "t", max_len=10)
        assert info.value.field == "t"
    with pytest.raises(InvalidRequest):
        fields.text("ab", "t", min_len=3, max_len=10)


def test_text_length_counts_characters_not_bytes() -> None:
    assert fields.text("é" * 10, "t", max_len=10) == "é" * 10
    assert fields.text("👍" * 10, "t", max_len=10) == "👍" * 10


@pytest.mark.parametrize(
    "value",
    ["nul\x00", "bell\x07", "esc\x1b[0m", "cr\rlf", "\x01", "del\x7f", "csi\x9b", "x\ud800y"],
)
def test_text_refuses_control_characters(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        fields.text(value, "t", max_len=50)
    assert info.value.field == "t" and "control" in info.value.message


@pytest.mark.parametrize("value", [None, 1, 1.5, ["x"], {"a": 1}, b"bytes", True])
def test_text_refuses_non_strings(value: Any) -> None:
    with pytest.raises(InvalidRequest):
        fields.text(value, "t", max_len=50)


def test_boolean() -> None:
    assert fields.boolean(True, "b") is True and fields.boolean(False, "b") is False
    for bad in (1, 0, "true", None):
        with pytest.raises(InvalidRequest):
            fields.boolean(bad, "b")


def test_integer_bounds_and_strings() -> None:
    assert fields.integer(1, "n", low=1, high=50) == 1
    assert fields.integer(50, "n", low=1, high=50) == 50
    assert fields.integer("7", "n", low=1, high=50) == 7
    assert fields.integer(-3, "n", low=-5, high=5) == -3


@pytest.mark.parametrize(
    "value", [0, 51, "0", "51", "abc", "", "1.5", 1.5, 10.0, None, [], True, False]
)
def test_integer_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        fields.integer(value, "limit", low=1, high=50)
    assert info.value.field == "limit"


def test_integer_refuses_bool_even_inside_bounds() -> None:
    with pytest.raises(InvalidRequest):
        fields.integer(True, "n", low=0, high=5)
    with pytest.raises(InvalidRequest):
        fields.integer(False, "n", low=0, high=5)


def test_only() -> None:
    fields.only({"a": 1, "b": 2}, {"a", "b", "c"})
    fields.only({}, {"a"})
    with pytest.raises(InvalidRequest) as info:
        fields.only({"a": 1, "zz": 2, "yy": 3}, {"a"})
    assert info.value.field == "yy"  # the first unknown field, in a stable order
    assert "yy" in info.value.message
    body = info.value.to_dict()
    assert body["code"] == "invalid_request" and body["field"] == "yy"


# --- settings -------------------------------------------------------------------------------

GOOD_SECRET = "s" * 32


def test_load_settings_defaults() -> None:
    s = load_settings({})
    assert s == Settings()
    assert (s.host, s.port, s.env) == ("127.0.0.1", 8888, "development")
    assert s.data_dir == Path("var")
    assert s.mongo_uri is None and s.embedded_db
    assert s.jwt_secret == "" and not s.production
    assert s.log_level == "INFO" and s.metrics_token is None


def test_hash_workers_default_to_half_the_cpus_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A container pinned to 4 of the host's 64 CPUs: size for the 4.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 4)
    assert Limits().hash_workers == 2
    monkeypatch.setattr(os, "process_cpu_count", lambda: 1)
    assert Limits().hash_workers == 1
    monkeypatch.setattr(os, "process_cpu_count", lambda: None)  # unknown
    assert Limits().hash_workers == 1


def test_load_settings_reads_values() -> None:
    s = load_settings(
        {
            "FASTSOCK_HOST": "0.0.0.0",
            "FASTSOCK_PORT": "9000",
            "FASTSOCK_ENV": "production",
            "FASTSOCK_DATA_DIR": "/srv/fs",
            "FASTSOCK_MONGO_URI": "mongodb://db:27017/chat",
            "FASTSOCK_JWT_SECRET": GOOD_SECRET,
            "FASTSOCK_METRICS_TOKEN": "m",
            "FASTSOCK_LOG_LEVEL": "debug",
            "UNRELATED": "ignored",
        }
    )
    assert (s.host, s.port, s.env) == ("0.0.0.0", 9000, "production")
    assert s.data_dir == Path("/srv/fs") and s.mongo_uri == "mongodb://db:27017/chat"
    assert not s.embedded_db and s.production
    assert s.jwt_secret == GOOD_SECRET and s.metrics_token == "m" and s.log_level == "DEBUG"


def test_load_settings_bounds_and_empty_values() -> None:
    assert load_settings({"FASTSOCK_PORT": "0"}).port == 0
    assert load_settings({"FASTSOCK_PORT": "65535"}).port == 65535
    assert load_settings({"FASTSOCK_MONGO_URI": "mongodb+srv://x.example/db"}).mongo_uri
    empty = load_settings({"FASTSOCK_PORT": "", "FASTSOCK_MONGO_URI": ""})
    assert empty.port == 8888 and empty.mongo_uri is None


MONGO = {"FASTSOCK_MONGO_URI": "mongodb://db.example/fastsock"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FASTSOCK_PORT": "abc"}, "FASTSOCK_PORT"),
        ({"FASTSOCK_PORT": "70000"}, "FASTSOCK_PORT"),
        ({"FASTSOCK_PORT": "-1"}, "FASTSOCK_PORT"),
        ({"FASTSOCK_ENV": "staging"}, "FASTSOCK_ENV"),
        ({"FASTSOCK_MONGO_URI": "http://x"}, "FASTSOCK_MONGO_URI"),
        ({"FASTSOCK_JWT_SECRET": "too-short"}, "FASTSOCK_JWT_SECRET"),
        ({"FASTSOCK_JWT_SECRET": "s" * 31}, "FASTSOCK_JWT_SECRET"),
        ({"FASTSOCK_ENV": "production"}, "FASTSOCK_JWT_SECRET"),
        ({"FASTSOCK_LOG_LEVEL": "loud"}, "FASTSOCK_LOG_LEVEL"),
        ({"FASTSOCK_CALL_RING_S": "0"}, "FASTSOCK_CALL_RING_S"),
        ({"FASTSOCK_CALL_GRACE_S": "soon"}, "FASTSOCK_CALL_GRACE_S"),
        ({"FASTSOCK_LIMIT_CALL_INVITES_PER_MIN": "-5"}, "FASTSOCK_LIMIT_CALL_INVITES_PER_MIN"),
        ({"FASTSOCK_REDIS_URL": "http://x", **MONGO}, "FASTSOCK_REDIS_URL"),
        ({"FASTSOCK_REDIS_URL": "redis://h:notaport/0", **MONGO}, "FASTSOCK_REDIS_URL"),
        ({"FASTSOCK_REDIS_URL": "redis://h:6379/zero", **MONGO}, "FASTSOCK_REDIS_URL"),
        ({"FASTSOCK_REDIS_URL": "redis://h/0?socket_timeout=x", **MONGO}, "FASTSOCK_REDIS_URL"),
        ({"FASTSOCK_REDIS_URL": "redis://h:6379/0"}, "FASTSOCK_MONGO_URI"),  # embedded: one node
    ],
)
def test_load_settings_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message


def test_call_timing_and_invite_limit_settings() -> None:
    default = load_settings({})
    assert (default.call_ring_s, default.call_grace_s) == (30.0, 20.0)
    assert default.limits.call_invites_per_min == 5
    s = load_settings(
        {
            "FASTSOCK_CALL_RING_S": "45",
            "FASTSOCK_CALL_GRACE_S": "7.5",
            "FASTSOCK_LIMIT_CALL_INVITES_PER_MIN": "12",
        }
    )
    assert (s.call_ring_s, s.call_grace_s, s.limits.call_invites_per_min) == (45.0, 7.5, 12)


def test_production_with_secret_starts() -> None:
    s = load_settings({"FASTSOCK_ENV": "production", "FASTSOCK_JWT_SECRET": GOOD_SECRET})
    assert s.production and s.jwt_secret == GOOD_SECRET


def test_config_file_parsing_and_env_override(tmp_path: Path) -> None:
    path = tmp_path / "fastsock.conf"
    path.write_text(
        "# comment line\n"
        "\n"
        "FASTSOCK_PORT=9100\n"
        "  FASTSOCK_HOST = 10.0.0.1  \n"
        'FASTSOCK_DATA_DIR="/data/fs"\n'
        "FASTSOCK_METRICS_TOKEN='tok=with=equals'\n"
        "FASTSOCK_LOG_LEVEL=warning\n",
        encoding="utf-8",
    )
    raw = read_config_file(path)
    assert raw["FASTSOCK_METRICS_TOKEN"] == "tok=with=equals"
    assert raw["FASTSOCK_HOST"] == "10.0.0.1"

    from_file = load_settings({}, config_file=path)
    assert from_file.port == 9100 and from_file.host == "10.0.0.1"
    assert from_file.data_dir == Path("/data/fs")
    assert from_file.metrics_token == "tok=with=equals" and from_file.log_level == "WARNING"

    overridden = load_settings({"FASTSOCK_PORT": "9200", "OTHER": "x"}, config_file=path)
    assert overridden.port == 9200  # env wins
    assert overridden.host == "10.0.0.1"  # the rest still comes from the file


def test_config_file_bad_value_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("FASTSOCK_PORT=abc\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_file=path)
    assert "FASTSOCK_PORT" in str(info.value)
    # A good env value replaces the bad file value.
    assert load_settings({"FASTSOCK_PORT": "1234"}, config_file=path).port == 1234


@pytest.mark.parametrize("line", ["FASTSOCK_PORT 9000", "PORT=9000", "just words", "=value"])
def test_config_file_malformed_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "broken.conf"
    path.write_text(f"FASTSOCK_HOST=127.0.0.1\n# ok\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_file=path)
    message = str(info.value)
    assert "line 3" in message and str(path) in message


def test_config_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_file=tmp_path / "absent.conf")
    assert "absent.conf" in str(info.value)


def test_ensure_jwt_secret_generates_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    settings = Settings(data_dir=data_dir)
    first = ensure_jwt_secret(settings)
    path = data_dir / "jwt-secret"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.jwt_secret) >= 32
    assert path.read_text().strip() == first.jwt_secret
    second = ensure_jwt_secret(Settings(data_dir=data_dir))
    assert second.jwt_secret == first.jwt_secret
    assert settings.jwt_secret == ""  # the input is not mutated
    # A different data dir gets a different secret.
    other = ensure_jwt_secret(Settings(data_dir=tmp_path / "other"))
    assert other.jwt_secret != first.jwt_secret


def test_ensure_jwt_secret_keeps_a_configured_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", jwt_secret=GOOD_SECRET)
    assert ensure_jwt_secret(settings) is settings
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("content", ["", "\n", "short"], ids=["empty", "newline", "short"])
def test_ensure_jwt_secret_never_returns_a_weak_secret(tmp_path: Path, content: str) -> None:
    """A truncated or hand-edited secret file (e.g. a crash between create and write) must not
    silently become the signing key: refuse it with a ConfigError or replace it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text(content)
    try:
        settings = ensure_jwt_secret(Settings(data_dir=data_dir))
    except ConfigError as exc:
        assert "FASTSOCK_" in str(exc)
    else:
        assert len(settings.jwt_secret) >= 32, repr(settings.jwt_secret)


def test_ensure_jwt_secret_unwritable_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError) as info:
        ensure_jwt_secret(Settings(data_dir=blocker / "data"))
    assert "FASTSOCK_DATA_DIR" in str(info.value)


def test_example_config_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "fastsock.env.example"
    settings = load_settings(environ={}, config_file=example)
    assert settings.port == 8888 and settings.mongo_uri is None


def test_example_config_file_names_every_setting_with_a_valid_value(tmp_path: Path) -> None:
    """The README says the example shows every key: each one in the README's table (and every
    limit) is in it, and each example value, uncommented, loads."""
    root = Path(__file__).resolve().parents[2]
    example = (root / "config" / "fastsock.env.example").read_text()
    readme = (root / "README.md").read_text()
    documented = set()
    for cell in re.findall(r"^\| (`FASTSOCK_[^|]*) \|", readme, re.MULTILINE):
        names = re.findall(r"`((?:FASTSOCK)?_[A-Z0-9_]+)`", cell)
        family = "_".join(names[0].split("_")[:2])  # `FASTSOCK_TURN_RELAY_IP` / `_EXTERNAL_IP`
        documented |= {n if n.startswith("FASTSOCK") else family + n for n in names}
    documented |= {"FASTSOCK_LIMIT_" + suffix for suffix in LIMIT_VARS}
    shown = set(re.findall(r"^#? ?(FASTSOCK_[A-Z0-9_]+)=", example, re.MULTILINE))
    assert documented - shown == set()
    values = re.sub(r"^# (FASTSOCK_[A-Z0-9_]+=.+)$", r"\1", example, flags=re.MULTILINE)
    uncommented = tmp_path / "all.env"
    uncommented.write_text(values)
    settings = load_settings(environ={}, config_file=uncommented)
    assert settings.limits.pings_burst == 10 and settings.metrics_port == 9100


def test_limit_settings_are_read_and_checked() -> None:
    settings = load_settings(
        environ={"FASTSOCK_LIMIT_SEND_PER_S": "2.5", "FASTSOCK_LIMIT_LOGINS_PER_MIN": "3"}
    )
    assert settings.limits.send_per_s == 2.5 and settings.limits.logins_per_min == 3
    assert settings.limits.send_burst == 20  # untouched defaults stay
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="FASTSOCK_LIMIT_SEND_BURST"):
            load_settings(environ={"FASTSOCK_LIMIT_SEND_BURST": bad})
    with pytest.raises(ConfigError, match="FASTSOCK_LIMIT_SEND_BURST"):
        load_settings(environ={"FASTSOCK_LIMIT_SEND_BURST": "2.5"})


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [limiter.retry_after("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.retry_after("u") == pytest.approx(0.5)
    assert limiter.retry_after("other") == 0.0  # keys are independent
    now[0] = 0.5
    assert limiter.retry_after("u") == 0.0
    assert limiter.retry_after("u") > 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),  # one subscriber's /64
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 on a dual-stack listener: not one /64
        ("", ""),
    ],
)
def test_client_key_keys_ipv6_by_64(address: str, key: str) -> None:
    assert client_key(address) == key


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("👍", True),
        ("👍🏽", True),
        ("❤️", True),
        ("🇫🇷", True),
        ("1️⃣", True),
        ("👨‍👩‍👧‍👦", True),
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", True),
        ("a", False),
        ("👍👍", False),
        ("", False),
        ("👍 ", False),
        ("🇫", False),
        ("1", False),
        ("👍\u200d", False),
        ("<b>", False),
    ],
)
def test_single_emoji(value: str, ok: bool) -> None:
    assert is_single_emoji(value) is ok


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xfbP\x00" + b"\x00" * 20, "audio/mpeg"),  # MPEG-1 layer III, 128 kbit/s
        ("\ufeffhello".encode("utf-16-le"), None),  # UTF-16 text: FF FE is no audio frame
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 8, "video/mp4"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 8, None),  # HEIC shares the box, not the type
        (b"<svg xmlns='x'></svg>", None),
        (b"  <!DOCTYPE html><p>", None),
        (b"plain words\n", "text/plain"),
    ],
)
def test_sniffing(head: bytes, expected: str | None) -> None:
    assert detect(head) == expected


def test_file_names_lose_paths_controls_and_bidi_overrides() -> None:
    assert sanitise_filename("../../etc/passwd") == "passwd"
    assert sanitise_filename("invoice\u202efdp.exe") == "invoice_fdp.exe"
    assert sanitise_filename("a\x00b.txt") == "a_b.txt"
    long = sanitise_filename("x" * 300 + ".pdf")
    assert len(long) == 200 and long.endswith(".pdf")
    assert sanitise_filename("...") == "upload"
