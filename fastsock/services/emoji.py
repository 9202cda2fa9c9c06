"""Is this string exactly one emoji? (the grapheme of a reaction)

Accepted shapes, after Unicode's emoji sequences (UTS #51): a flag (two regional indicators),
a keycap ([0-9#*] FE0F? 20E3), or pictographs joined by ZWJ, each optionally followed by
VS16, a skin-tone modifier and a tag sequence. "Pictograph" is approximated by the
Extended_Pictographic blocks, which the standard library does not expose."""

from __future__ import annotations

MAX_LEN = 32  # code points; the longest real sequences (family + tones) are about 11

_PICTOGRAPHIC = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049),
    (0x2122, 0x2122), (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA),
    (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x27BF),
    (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297),
    (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A),
    (0x1F1AD, 0x1F1E5), (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F),
    (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D),
    (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F), (0x1F7D5, 0x1F7FF),
    (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
)  # fmt: skip
ZWJ, VS16, KEYCAP, CANCEL_TAG = 0x200D, 0xFE0F, 0x20E3, 0xE007F
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL = range(0x1F1E6, 0x1F200)
TAGS = range(0xE0020, 0xE007F)


def _pictographic(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _PICTOGRAPHIC)


def _element(cps: list[int], i: int) -> int | None:
    """Parse one ZWJ element at i; the index after it, or None."""
    if i >= len(cps) or not _pictographic(cps[i]):
        return None
    i += 1
    if i < len(cps) and cps[i] == VS16:
        i += 1
    if i < len(cps) and cps[i] in SKIN_TONES:
        i += 1
    if i < len(cps) and cps[i] in TAGS:
        while i < len(cps) and cps[i] in TAGS:
            i += 1
        if i >= len(cps) or cps[i] != CANCEL_TAG:
            return None
        i += 1
    return i


def is_single_emoji(value: str) -> bool:
    if not value or len(value) > MAX_LEN:
        return False
    cps = [ord(c) for c in value]
    if len(cps) == 2 and all(c in REGIONAL for c in cps):
        return True
    if value[0] in "0123456789#*" and cps[-1] == KEYCAP:
        return cps[1:-1] in ([], [VS16])
    i = _element(cps, 0)
    while i is not None and i < len(cps):
        if cps[i] != ZWJ:
            return False
        i = _element(cps, i + 1)
    return i == len(cps)
