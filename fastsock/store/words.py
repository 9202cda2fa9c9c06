"""What a word is to message search, the same for every backend (store/base.py, search).

A word is a run of letters, digits and private-use characters (the token characters of SQLite's
`unicode61` tokenizer, which indexes the messages), with the marks that follow them: unicode61
keeps Latin accents inside a token and folds them away, so "e" + U+0323 + U+0302 must not
split a word in two, and where it splits at a mark (a Devanagari vowel sign) FTS5 splits the
quoted word the same way. A mark with no letter before it is no word. Everything else
separates words: `e-mail`, `don't`, `10:30` and `foo.bar` are two words each, as the index
holds them. Words are NFC, as typed text nearly always is, and never query syntax to any
backend: they hold no quote, hyphen, asterisk or other punctuation."""

from __future__ import annotations

import unicodedata


def search_words(text: str) -> list[str]:
    """The words of `text`, in order ([] when it has none)."""
    words: list[str] = []
    word: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if char.isalnum() or category == "Co" or (word and category[0] == "M"):
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return words
