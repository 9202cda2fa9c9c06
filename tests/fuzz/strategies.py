"""Hypothesis strategies for FastSock's inputs.

Bodies come from the schema table (schema_fields.py): a valid-ish body (each field within its
kind and bounds, ids pointing into the world) with a few faults: a field left out, given a
value its check must refuse or arbitrary JSON, or an unknown field added. Text mixes what
the server must accept (emoji, combining marks, zero-width and bidi marks, noncharacters,
query syntax) with what it must refuse (lone surrogates, bidi overrides, NUL and other
controls). Raw texts cover what `json.dumps` cannot make: nesting thousands deep and
numbers thousands of digits long."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.schema_fields import FieldSpec, spec_of, specs
from tests.fuzz.world import ID_NAMES, TOKEN_NAMES, Forged, Named


class _Absent:
    """A drawn value meaning "leave it out"."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()

ALLOWED_CHARS = (
    "\u200b\u200d\u200e\u200f\u061c\ufeff\ufffe\uffff\U0010ffff\U000e0001"  # invisible
    "\u0301\u0323\u20e3\ufe0f\U0001f3fb"  # combining marks, keycap, VS16, skin tone
    "\n\t \u00a0\u2028\u2029\u3000"  # spaces and line breaks
    "\"'\\%*-.$^{}()[]:/_?&#=+~"  # query and path syntax
    "ǅİıßﬃΣσςاب١٢"  # case folding, right-to-left letters, non-ASCII digits
    "😀👍🇫🇷👨‍👩‍👧"
)
REFUSED_CHARS = (
    "\x00\x01\x08\x0b\x0c\r\x1b\x1f\x7f\x80\x85\x9f"  # C0 (not \n \t), DEL, C1
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi overrides, isolates
    "\ud800\udbff\udc00\udfff"  # lone surrogates (sent as JSON escapes)
)
FRAGMENTS = (
    "-x",
    ".*",
    "\\",
    '"',
    "NEAR(a b)",
    "a OR b",
    "NOT a",
    "text:a",
    "a*",
    "^a",
    "{1,}",
    "(?i)",
    "$where",
    "'; DROP TABLE messages; --",
    "../..",
    "%00",
    "%ff",
    "%s%n",
    "{0}",
    "NaN",
    "null",
    "__proto__",
)
# Text the server must take as it is (strategies for valid values)...
allowed_chars = st.one_of(
    st.characters(exclude_categories=["Cs", "Cc"]).filter(lambda c: c not in REFUSED_CHARS),
    st.sampled_from(ALLOWED_CHARS),
)
# ...and text that may hold anything (for invalid values, keys, unknown types).
any_chars = st.one_of(allowed_chars, st.sampled_from(REFUSED_CHARS))


def words(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    pieces = st.sampled_from(FRAGMENTS + tuple(alphabet))
    return (
        st.lists(pieces, min_size=1, max_size=6)
        .map("".join)
        .filter(lambda s: min_size <= len(s) <= max_size)
    )


def allowed_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(allowed_chars, min_size=min_size, max_size=max_size),
        words(ALLOWED_CHARS, min_size, max_size),
    )


def hostile_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(any_chars, min_size=min_size, max_size=max_size),
        words(ALLOWED_CHARS + REFUSED_CHARS, min_size, max_size),
        st.sampled_from(REFUSED_CHARS).map(lambda c: f"a{c}b"),  # one refused character
    ).filter(lambda s: min_size <= len(s) <= max_size)


def huge_ints() -> st.SearchStrategy[int]:
    # json.dumps writes ints of up to 4300 digits (Python's int-to-str limit); longer ones
    # are made as raw text (raw_json_texts).
    return st.sampled_from([2**53, -(2**53), 2**63, -(2**63) - 1, 2**64, 10**100, 10**4000])


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints(),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text(),
)
arbitrary_json = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


def oversize(max_len: int) -> st.SearchStrategy[str]:
    """Just over the limit, or far over it (still under the 64 KiB frame and body limits)."""
    far = min(3 * max_len, 60_000)
    return st.integers(max_len + 1, max(max_len + 1, far)).map(lambda n: "x" * n)


def at_length(min_len: int, max_len: int) -> st.SearchStrategy[str]:
    return st.one_of(
        allowed_text(min_len, min(max_len, 30)),
        st.sampled_from(sorted({min_len, max_len})).map(lambda n: "é" * n),
    )


object_ids = st.one_of(
    st.sampled_from([Named(n) for n in ID_NAMES]),
    st.sampled_from([Named(n, upper=True) for n in ID_NAMES]),
    st.binary(min_size=12, max_size=12).map(bytes.hex),
)
bad_ids = st.one_of(
    hostile_text(),
    st.binary(min_size=11, max_size=13).map(bytes.hex),  # 22 or 26 hex digits
    st.just("g" * 24),
    st.just("0" * 24 + "\x00"),
)
EMOJI = ("👍", "❤️", "😀", "👨‍👩‍👧", "🇫🇷", "1️⃣", "👍🏽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿")


VALID_CLAIMS = {"sub": Named("alice"), "typ": "access", "exp": "future", "iat": 0, "jti": "j1"}
OTHER_CLAIMS = {
    "sub": st.one_of(object_ids, bad_ids, arbitrary_json),
    "typ": st.sampled_from(["refresh", "Access", ""]) | arbitrary_json,
    "exp": st.just("past") | arbitrary_json | huge_ints(),
    "iat": arbitrary_json | huge_ints(),
    "jti": arbitrary_json,
}


@st.composite
def forged_tokens(draw: st.DrawFn) -> Forged:
    """JWTs signed with the server's own secret: alice's valid claims with up to two
    faults, a claim of another shape (a user id that is no id, an expiry that is no time)
    or left out."""
    claims: dict[str, Any] = dict(VALID_CLAIMS)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(VALID_CLAIMS)))
        claims[name] = draw(OTHER_CLAIMS[name] | st.just(ABSENT))
    return Forged({k: v for k, v in claims.items() if v is not ABSENT})


tokens = st.one_of(
    st.sampled_from([Named(n) for n in TOKEN_NAMES]),
    forged_tokens(),
    forged_tokens(),  # twice as likely: the tokens that pass the signature check
    hostile_text(),
    st.just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),  # alg: none
)


def valid(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """A value of the field's kind within its bounds (valid-ish: text may still be refused
    for what it contains, an id may name nothing)."""
    kind, b = spec.kind, spec.bounds
    if kind == "text":
        return at_length(b["min_len"], b["max_len"])
    if kind == "integer":
        return st.integers(b["low"], b["high"]) | st.sampled_from([b["low"], b["high"]])
    if kind == "id":
        return object_ids
    if kind == "ids":
        return st.lists(object_ids, min_size=b["min_items"], max_size=min(b["max_items"], 4))
    if kind == "boolean":
        return st.booleans()
    if kind == "choice":
        return st.sampled_from(b["choices"])
    if kind == "username":
        return st.from_regex(r"[a-zA-Z0-9_.-]{3,32}", fullmatch=True)
    if kind == "password":
        return st.text(any_chars, min_size=8, max_size=30)  # any characters at all
    if kind == "string":
        return tokens
    if kind == "emoji":
        return st.sampled_from(EMOJI)
    if kind == "resume":
        return st.fixed_dictionaries(
            {"session": hostile_text(max_size=64), "last_seq": st.integers(-1, 2**53)}
        )
    if kind == "sdp":
        return st.fixed_dictionaries(
            {"type": st.sampled_from(["offer", "answer"]), "sdp": allowed_text(min_size=1)}
        )
    if kind == "candidate":
        optional = {
            "sdpMid": st.none() | allowed_text(max_size=64),
            "sdpMLineIndex": st.none() | st.integers(-1, 2**31),
            "usernameFragment": st.none() | allowed_text(max_size=64),
        }
        return st.none() | st.fixed_dictionaries(
            {"candidate": allowed_text(max_size=200)}, optional=optional
        )
    if kind == "number":
        low, high = b["low"], b["high"]
        return st.floats(low, high) | st.integers(int(low), int(high))
    if kind == "url":
        return st.builds(
            "{}://{}{}{}".format,
            st.sampled_from(b["schemes"]),
            st.sampled_from(["127.0.0.1", "sfu-1.example.org", "[::1]"]),
            st.sampled_from(["", ":1", ":8890", ":65535"]),
            st.sampled_from(["", "/", "/ws", "/healthz?x=1"]),
        )
    if kind == "records":
        return st.lists(record(b["schema"]), max_size=min(b["max_items"], 3))
    raise LookupError(f"no strategy for {kind} fields")


def record(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """One valid-ish object of a `records` field: each of its own fields valid."""
    fields = [spec_of(name, field) for name, field in schema.items()]
    return st.fixed_dictionaries(
        {f.name: valid(f) for f in fields if f.required},
        optional={f.name: valid(f) for f in fields if not f.required},
    )


@st.composite
def bad_record(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    """An object of a `records` field with one field invalid, or no object at all."""
    item = draw(record(schema))
    spec = spec_of(name := draw(st.sampled_from(sorted(schema))), schema[name])
    return draw(st.sampled_from([item | {name: draw(invalid(spec))}, draw(scalars)]))


def invalid(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """A value the field's check should refuse: out of bounds or of another shape."""
    kind, b = spec.kind, spec.bounds
    wrong_type = st.one_of(st.none(), st.booleans(), st.floats(), st.lists(scalars, max_size=2))
    if kind == "text":
        return st.one_of(oversize(b["max_len"]), hostile_text(), st.integers(), wrong_type)
    if kind == "integer":
        numeric_text = st.sampled_from(["", " 5", "5.0", "1e3", "0x10", "1_0", "٣", "-0", "+1"])
        return st.one_of(
            st.integers(max_value=b["low"] - 1),
            st.integers(min_value=b["high"] + 1),
            huge_ints(),
            numeric_text,
            st.integers(b["low"], b["high"]).map(str),
            st.floats(),
            wrong_type,
        )
    if kind == "id":
        return bad_ids | wrong_type | st.integers()
    if kind == "ids":
        too_many = st.lists(object_ids, min_size=b["max_items"] + 1, max_size=b["max_items"] + 2)
        return st.one_of(too_many, st.lists(bad_ids | wrong_type, min_size=1, max_size=3), scalars)
    if kind == "number":
        return st.one_of(
            st.floats(max_value=b["low"], exclude_max=True),
            st.floats(min_value=b["high"], exclude_min=True),
            st.sampled_from([float("nan"), float("inf"), "1", "0.5"]),
            st.none(),
            st.booleans(),
            st.lists(scalars, max_size=2),
        )
    if kind == "url":
        scheme = b["schemes"][0]
        other = "http" if scheme.startswith("ws") else "ws"
        bad_urls = [
            *(f"{s}://h/x" for s in ("gopher", other)),
            *(f"{scheme}:{rest}" for rest in ("/h", "//", "//h:99999/x", "//[zz]/", "//h/ x")),
            f"{scheme}://h\x00/x",
            "//h/x",
        ]
        return st.one_of(
            st.sampled_from(bad_urls), hostile_text(), oversize(2048), wrong_type, st.integers()
        )
    if kind == "records":
        return st.one_of(
            scalars,
            st.dictionaries(hostile_text(max_size=12), arbitrary_json, max_size=3),
            st.lists(bad_record(b["schema"]), min_size=1, max_size=3),
            st.just([{}] * (b["max_items"] + 1)),
        )
    if kind in ("resume", "sdp", "candidate"):
        sdp = st.fixed_dictionaries(
            {"type": st.sampled_from(["offer", "answer"]), "sdp": oversize(60_000)}
        )
        return st.one_of(
            st.dictionaries(hostile_text(max_size=12), arbitrary_json, max_size=4), sdp, scalars
        )
    # username, password, token, emoji: also far longer than any of them may be
    return st.one_of(hostile_text(), oversize(1024), wrong_type, st.integers())


FAULTS = ("absent", "invalid", "arbitrary", "unknown")


def unknown_keys(known: set[str]) -> st.SearchStrategy[str]:
    near_misses = sorted({k.upper() for k in known} | {k + " " for k in known} | {"x"})
    return st.one_of(hostile_text(1, 12), st.sampled_from(near_misses)).filter(
        lambda k: k not in known
    )


@st.composite
def bodies(draw: st.DrawFn, schema: str) -> dict[str, Any]:
    """A valid-ish body for the schema (its required fields and some optional ones) with
    up to three faults: a field left out, given an invalid or an arbitrary value, or an
    unknown field added."""
    fields = specs(schema)
    body = {f.name: draw(valid(f)) for f in fields if f.required or draw(st.booleans())}
    for _ in range(draw(st.integers(0, 3))):
        fault = draw(st.sampled_from(FAULTS if fields else ("unknown",)))
        if fault == "unknown":
            body[draw(unknown_keys({f.name for f in fields}))] = draw(arbitrary_json)
            continue
        spec = draw(st.sampled_from(fields))
        if fault == "absent":
            body.pop(spec.name, None)
        else:
            body[spec.name] = draw(invalid(spec) if fault == "invalid" else arbitrary_json)
    return body


def raw_json_texts(inside: str = "{}") -> st.SearchStrategy[str | bytes]:
    """Bodies `json.dumps` cannot make, or that are not JSON objects. `inside` is a JSON
    object text with a `%s` where the deep or long values go (a field of a body, a frame's
    data); without one they are the whole body."""

    def wrap(value: str) -> str:
        return inside.replace("%s", value) if "%s" in inside else value

    depths = st.integers(500, 25_000)
    return st.one_of(
        depths.map(lambda n: wrap("[" * n + "]" * n)),
        depths.map(lambda n: wrap('{"a":' * n + "1" + "}" * n)),
        depths.map(lambda n: "[" * n + "]" * n),  # the whole body nested
        st.integers(4_000, 30_000).map(lambda n: wrap("1" + "0" * n)),  # 10**n
        st.integers(4_000, 30_000).map(lambda n: wrap("-0." + "0" * n + "1e-99999")),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "1.5"]).map(wrap),
        st.sampled_from(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"a\\u202eb"']).map(wrap),
        st.sampled_from(["[]", "null", "1", '"s"', "true", "", " ", '{"a":', "{,}", "{'a':1}"]),
        st.sampled_from([b'{"a": "\xff\xfe"}', b"\xef\xbb\xbf{}", b'{"a": "\xed\xa0\x80"}']),
        st.sampled_from(['{"a": 1, "a": 2}', '{"a": "b\x00c"}', "{}" + "x"]),
    )
