"""The pieces that read client input before any rule applies: JSON documents (depth, lone
surrogates), ids, search words, Range positions. The transports' answers are tested over the
wire in tests/handlers/test_bad_inputs.py and tests/realtime/test_bad_frames.py."""

from __future__ import annotations

from typing import Any

import pytest

from fastsock.errors import InvalidRequest
from fastsock.handlers.uploads import _parse_range
from fastsock.services import fields
from fastsock.store.words import search_words

pytestmark = pytest.mark.once


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` deep: {"a": [[...]]}."""
    value: Any = []
    for _ in range(levels - 2):
        value = [value]
    return {"a": value}


def test_documents_nest_at_most_max_depth_levels() -> None:
    fields.check_document(nested(fields.MAX_DEPTH), "body")
    with pytest.raises(InvalidRequest) as info:
        fields.check_document(nested(fields.MAX_DEPTH + 1), "body")
    assert info.value.field == "a"


def test_a_document_too_deep_for_the_parser_is_invalid_json() -> None:
    with pytest.raises(InvalidRequest) as info:
        fields.parse_json("[" * 100_000 + "]" * 100_000, "the body")
    assert "nested" in info.value.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"text": "a\\ud800"}', "text"),
        (b'{"text": "\\udfff b"}', "text"),
        (b'{"sdp": {"type": "offer", "sdp": ["x", "\\udc00"]}}', "sdp"),
        (b'{"\\ud800": 1}', None),
        (b'{"a": {"\\ud800": 1}}', "a"),
        (b'{"text": "\xed\xa0\x80"}', "text"),  # UTF-8's form of U+D800: json.loads lets it in
    ],
)
def test_lone_surrogates_anywhere_are_refused_naming_the_top_level_field(
    raw: bytes, field: str | None
) -> None:
    document = fields.parse_json(raw, "the body")
    with pytest.raises(InvalidRequest) as info:
        fields.check_document(document, "the body")
    assert info.value.field == field


def test_surrogate_pairs_are_text() -> None:
    document = fields.parse_json(b'{"text": "\\ud83d\\ude00", "\\ud83c\\udf89": ["ok"]}', "b")
    fields.check_document(document, "the body")
    assert document["text"] == "😀"


def test_ids_have_one_form() -> None:
    upper = "0123456789ABCDEF01234567"
    assert fields.canonical_id(upper) == upper.lower()
    assert fields.canonical_id(upper.lower()) == upper.lower()
    for bad in ("zzz", upper + "0", "０" * 24, None, 5, [upper]):
        assert fields.canonical_id(bad) is None


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("-x", ["x"]),
        ('"needle" -hay*', ["needle", "hay"]),
        ("  pins,  needles!! ", ["pins", "needles"]),
        ("e-mail don't 10:30 foo.bar", ["e", "mail", "don", "t", "10", "30", "foo", "bar"]),
        ("snake_case", ["snake", "case"]),
        ("Vie\u0323\u0302t", ["Vi\u1ec7t"]),  # marks stay in their word, composed (NFC)
        ("\u0301a \u0301 b\u0301", ["a", "b\u0301"]),  # a mark alone is no word
        ("\u0939\u093f\u0928\u094d\u0926\u0940", ["\u0939\u093f\u0928\u094d\u0926\u0940"]),
        ("x\ue000y ²", ["x\ue000y", "²"]),  # private use and other numbers, as unicode61
        (".*", []),
        ("\\", []),
        ("- _ * ( ) $", []),
    ],
)
def test_search_words(query: str, words: list[str]) -> None:
    assert search_words(query) == words


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-1", (0, 1)),
        ("bytes=" + "9" * 5000 + "-", None),
        ("bytes=0-" + "9" * 5000, (0, 9)),
        ("bytes=-" + "9" * 5000, (0, 9)),
        ("bytes=" + "0" * 5000 + "3-", (3, 9)),
        ("bytes=10-", None),
        ("bytes=-0", None),
        ("bytes=-", None),
    ],
)
def test_range_positions_of_any_length(header: str, expected: tuple[int, int] | None) -> None:
    assert _parse_range(header, 10) == expected
