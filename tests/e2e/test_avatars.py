"""Issue 10, item 7: avatar colours. The colour of the initials avatar comes from a hash of the
username over a palette of distinct hues, each readable (white initials at WCAG AA) in both
themes. The pure function is imported into the page; the contrast is read from rendered
avatars."""

import itertools
import math

from playwright.async_api import Page

NAMES = [
    "alice", "bob", "carol", "dave", "eve", "frank",
    "grace", "heidi", "ivan", "judy", "mallory", "oscar",
]  # fmt: skip

COLORS = """async (keys) => {
  const m = await import('/static/js/views/avatar.js');
  return {palette: m.AVATAR_COLORS, colors: keys.map((username) => m.avatarColor({username}))};
}"""

# One rendered avatar per palette colour (found by trying usernames), then its computed
# background and text colours in the light and the dark theme.
RENDERED = """async () => {
  const m = await import('/static/js/views/avatar.js');
  const byColor = new Map();
  for (let i = 0; i < 10000 && byColor.size < m.AVATAR_COLORS.length; i++) {
    const user = {username: `user${i}`, display_name: `User ${i}`};
    if (!byColor.has(m.avatarColor(user))) byColor.set(m.avatarColor(user), user);
  }
  const els = [...byColor.values()].map((u) => document.body.appendChild(m.avatar(u, 'md')));
  const out = {};
  for (const theme of ['light', 'dark']) {
    document.documentElement.dataset.theme = theme;
    out[theme] = els.map((el) => {
      const style = getComputedStyle(el);
      return [style.backgroundColor, style.color];
    });
  }
  return out;
}"""


def _rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return r / 255, g / 255, b / 255


def _hex(value: str) -> tuple[float, float, float]:
    return tuple(int(value[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio."""
    la, lb = (
        0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b_) for r, g, b_ in (a, b)
    )
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _oklab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = (_linear(c) for c in rgb)
    l_, m, s = (
        v ** (1 / 3)
        for v in (
            0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b,
            0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b,
            0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b,
        )
    )
    return (
        0.2104542553 * l_ + 0.7936177850 * m - 0.0040720468 * s,
        1.9779984951 * l_ - 2.4285922050 * m + 0.4505937099 * s,
        0.0259040371 * l_ + 0.7827717662 * m - 0.8086757660 * s,
    )


async def _page(new_page) -> Page:
    page = await new_page()
    await page.goto("/")
    return page


async def test_colours_spread_over_distinct_hues(new_page) -> None:
    page = await _page(new_page)
    got = await page.evaluate(COLORS, NAMES)
    palette, colors = got["palette"], dict(zip(NAMES, got["colors"], strict=True))
    assert colors["alice"] != colors["bob"]
    assert len(set(colors.values())) >= 8, colors  # 12 common names, at least 8 colours
    # Usernames differing only at the end (and so sequential ids) reach every colour.
    numbered = (await page.evaluate(COLORS, [f"user{i}" for i in range(120)]))["colors"]
    assert set(numbered) == set(palette)
    # No two colours of the palette look alike (OKLab distance; 0.02 is barely noticeable).
    closest = min(
        math.dist(_oklab(_hex(a)), _oklab(_hex(b))) for a, b in itertools.combinations(palette, 2)
    )
    assert closest >= 0.08, closest
    assert len(palette) >= 12


async def test_initials_are_readable_in_both_themes(new_page) -> None:
    page = await _page(new_page)
    rendered = await page.evaluate(RENDERED)
    for theme, pairs in rendered.items():
        for background, text in pairs:
            ratio = _contrast(_rgb(background), _rgb(text))
            assert ratio >= 4.5, (theme, background, text, ratio)
    assert len(rendered["light"]) == len(rendered["dark"]) >= 12
