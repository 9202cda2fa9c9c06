"""Issue 14, items 1 and 2: message formatting (a Markdown subset parsed in the client into
elements, never HTML), big emoji, dir=auto, and links (http(s) and mailto only, look-alike
hosts in punycode, long addresses elided). The server keeps the text as typed."""

from __future__ import annotations

import re
import time

from playwright.async_api import Page, expect

from tests.e2e.helpers import alice_and_bob, dm_pair, open_room, send, shot, signed_in
from tests.e2e.test_notifications import HIDE, RECORD

MODULE = "/static/js/views/markdown.js"

# Each text rendered by renderMarkdown, as [tag, ...children] with text nodes as strings
# (icons left out).
SHAPES = """async ([module, texts]) => {
  const md = await import(module);
  const shape = (n) => n.nodeType === Node.TEXT_NODE ? n.data
    : [n.localName, ...[...n.childNodes].filter((c) => c.localName !== 'svg').map(shape)];
  return texts.map((t) => [...md.renderMarkdown(t).childNodes].map(shape));
}"""

CASES = {
    "**bold** *it* ~~gone~~ `x`": [
        ["p", ["strong", "bold"], " ", ["em", "it"], " ", ["del", "gone"], " ", ["code", "x"]]
    ],
    "__b__ _i_ snake_case_name": [["p", ["strong", "b"], " ", ["em", "i"], " snake_case_name"]],
    "***both*** and *a **b** c*": [
        ["p", ["em", ["strong", "both"]], " and ", ["em", "a ", ["strong", "b"], " c"]]
    ],
    "line one\nline two": [["p", "line one\nline two"]],
    "```py\nprint('<b>*hi*</b>')\n```": [
        ["div", ["div", ["span", "py"], ["button"]], ["pre", ["code", "print('<b>*hi*</b>')"]]]
    ],
    "> quoted *text*\n> more": [["blockquote", ["p", "quoted ", ["em", "text"], "\nmore"]]],
    "- one\n- two\n  - nested": [
        ["ul", ["li", ["p", "one"]], ["li", ["p", "two"], ["ul", ["li", ["p", "nested"]]]]]
    ],
    "intro\n1. a\n2. b\nafter": [
        ["p", "intro"],
        ["ol", ["li", ["p", "a"]], ["li", ["p", "b"]]],
        ["p", "after"],
    ],
    "see https://example.com/a_b_c.": [["p", "see ", ["a", "https://example.com/a_b_c"], "."]],
    "**open and `tick and ~~strike": [["p", "**open and `tick and ~~strike"]],
    "\\*literal\\* 2 * 3 = 6": [["p", "*literal* 2 * 3 = 6"]],
    "# not a heading [no](https://x.org) <b>no</b>": [
        ["p", "# not a heading [no](", ["a", "https://x.org"], ") <b>no</b>"]
    ],
    "<script>alert(1)</script> `<img src=x onerror=alert(1)>`": [
        ["p", "<script>alert(1)</script> ", ["code", "<img src=x onerror=alert(1)>"]]
    ],
    # A backslash in an address: browsers read it as "/", so the link would lead elsewhere
    # than it reads; it stays text, as typed.
    "https://evil.com\\@good.com and http://\\evil.com": [
        ["p", "https://evil.com\\@good.com", " and ", "http://\\evil.com"]
    ],
    # Thematic breaks are shown as typed, not as lists of lists.
    "* * *\n- - -\n___": [["p", "* * *\n- - -\n___"]],
    # Inside a paragraph, only a numbered list starting at 1 begins (CommonMark).
    "I was born in\n1984. Then I grew up": [["p", "I was born in\n1984. Then I grew up"]],
    "_https://x.org_": [["p", ["em", ["a", "https://x.org"]]]],
    "*\ufe0f\u20e3*\ufe0f\u20e3 and *\u20e3*\u20e3": [
        ["p", "*\ufe0f\u20e3*\ufe0f\u20e3 and *\u20e3*\u20e3"]
    ],
    # An empty code block has nothing to copy: no button.
    "```\n```": [["div", ["div", ["span"]], ["pre", ["code"]]]],
}

DEEP = "**a " * 200 + "z" + " b**" * 200
ASTERISKS = "*" * 4000


def _page_errors(page: Page) -> list[str]:
    """The page's uncaught errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    return errors


async def test_parser_builds_elements_from_each_construct(new_page) -> None:
    page = await new_page()
    errors = _page_errors(page)
    await page.goto("/")
    shapes = await page.evaluate(SHAPES, [MODULE, list(CASES)])
    assert dict(zip(CASES, shapes, strict=True)) == CASES
    # A numbered list keeps its first number; plain text for notifications and search.
    facts = await page.evaluate(
        """async ([module, deep, stars]) => {
          const md = await import(module);
          const ol = md.renderMarkdown('3. three\\n4. four').firstChild;
          const depth = (n) => Math.max(0, ...[...n.children].map((c) => 1 + depth(c)));
          const nested = md.renderMarkdown(deep);
          const starred = md.renderMarkdown(stars);
          return {
            start: ol.getAttribute('start'),
            plain: md.plainText(
              '**Deploy** done: `make ship`\\n> quoted\\n- a\\n- b\\n```\\ncode\\n```'),
            deepText: nested.textContent, deepDepth: depth(nested),
            stars: starred.textContent, starElements: starred.querySelectorAll('*').length,
            unclosed: md.plainText('*'.repeat(2000) + 'a' + '_'.repeat(2000)),
            link: md.plainText('*see* https://\u0430pple.com/login'),
          };
        }""",
        [MODULE, DEEP, ASTERISKS],
    )
    assert facts["start"] == "3"
    assert facts["plain"] == "Deploy done: make ship\nquoted\n• a\n• b\ncode"
    # 200 levels of bold: every marker is consumed, but no more than 8 elements deep (+ the <p>).
    assert facts["deepText"] == "a " * 200 + "z" + " b" * 200
    assert 2 <= facts["deepDepth"] <= 9
    assert facts["stars"] == ASTERISKS and facts["starElements"] == 1  # one <p>, no emphasis
    assert facts["unclosed"] == "*" * 2000 + "a" + "_" * 2000
    assert facts["link"] == "see https://xn--pple-43d.com/login"  # as the link shows it
    assert errors == []


async def test_elements_per_message_are_bounded(new_page) -> None:
    """Fence spam: 500 empty code blocks would make 500 copy buttons (Tab stops), 1,000 icons
    and 5,000 elements. Past 20 code blocks or 200 blocks, the rest is paragraph text."""
    page = await new_page()
    errors = _page_errors(page)
    await page.goto("/")
    counts = await page.evaluate(
        """async (module) => {
          const md = await import(module);
          const count = (text) => {
            const frag = md.renderMarkdown(text);
            return {
              code: frag.querySelectorAll('.code-block').length,
              buttons: frag.querySelectorAll('button').length,
              items: frag.querySelectorAll('li').length,
              elements: frag.querySelectorAll('*').length,
              text: frag.textContent.length,
            };
          };
          return {
            empty: count('```\\n```\\n'.repeat(500)),
            full: count('```\\nx\\n```\\n'.repeat(400)),
            items: count('- a\\n'.repeat(1000)),
          };
        }""",
        MODULE,
    )
    assert counts["empty"]["code"] == 20 and counts["empty"]["buttons"] == 0, counts
    assert counts["full"]["code"] == 20 and counts["full"]["buttons"] == 20, counts
    # The fences left pair up as inline code spans: ~600 elements, not 5,000.
    assert counts["empty"]["elements"] < 1000 and counts["full"]["elements"] < 1000, counts
    assert counts["items"]["items"] < 200 and counts["items"]["elements"] <= 420, counts
    # The rest is text: nothing is lost.
    assert counts["items"]["text"] == 199 + len("\n".join(["- a"] * 801)), counts
    assert errors == []


async def test_formatted_message_renders_and_is_sent_as_typed(new_page, api) -> None:
    """Typed in the composer, the text reaches the server unchanged and shows formatted to
    both sides."""
    pair = await dm_pair(new_page, api)
    page, bob_page = pair.page, pair.bob_page
    text = (
        "**Release 2.4** is *ready*, ~~maybe~~ see `make test`\n"
        "> Ship it when CI is green\n"
        "- build the images\n"
        "- deploy to staging\n"
        "```sh\nmake release VERSION=2.4\n```\n"
        "Notes: https://example.com/changelog"
    )
    await api.send(pair.bob, pair.dm, "Is the release ready?")
    await send(page, text)
    row = page.get_by_test_id("message").filter(has=page.get_by_test_id("code-block"))
    await expect(row.get_by_test_id("tick")).not_to_have_attribute("data-state", "sending")
    stored = (await api.get(f"/history/room/{pair.dm}", pair.alice)).body["messages"]
    assert stored[0]["text"] == text

    for viewer in (page, bob_page):
        content = (
            viewer.get_by_test_id("message")
            .filter(has=viewer.get_by_test_id("code-block"))
            .get_by_test_id("message-text")
        )
        await expect(content.locator("strong")).to_have_text("Release 2.4")
        await expect(content.locator("em")).to_have_text("ready")
        await expect(content.locator("del")).to_have_text("maybe")
        await expect(content.locator("p code")).to_have_text("make test")
        await expect(content.locator("blockquote")).to_have_text("Ship it when CI is green")
        await expect(content.locator("ul > li")).to_have_text(
            ["build the images", "deploy to staging"]
        )
        await expect(content.locator("pre code")).to_have_text("make release VERSION=2.4")
        link = content.get_by_role("link", name="https://example.com/changelog")
        await expect(link).to_have_attribute("href", "https://example.com/changelog")
        await expect(link).to_have_attribute("rel", "noopener noreferrer")
        await expect(link).to_have_attribute("target", "_blank")
    # The room list's preview is the text without its markup, as notifications show it.
    await expect(page.get_by_test_id("room-preview").first).to_have_text(
        re.compile(r"^You: Release 2\.4 is ready, maybe see make test")
    )
    await shot(page, "formatting")


async def test_copy_button_copies_the_code(new_page, api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    await api.send(bob, dm, "Run this:\n```\nuv sync\npytest -q\n```")
    page = await signed_in(
        new_page, alice, fake_clock=True, permissions=["clipboard-read", "clipboard-write"]
    )
    await open_room(page, "Bob")
    await page.clock.pause_at(time.time() + 1)  # "Copied" stays until the clock moves
    button = page.get_by_test_id("code-copy")
    await expect(button).to_have_accessible_name("Copy code")
    await button.click()
    await expect(button).to_have_accessible_name("Copied")
    # Said to screen readers too: the toasts' polite live region.
    await expect(page.get_by_role("status").filter(has_text="Code copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == "uv sync\npytest -q"
    await page.clock.run_for(2000)
    await expect(button).to_have_accessible_name("Copy code")


HOSTILE = [
    '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> **<b>b</b>**',
    '```html\n<script>window.__pwned = 3</script>\n<iframe src="javascript:1"></iframe>\n```',
    '`<svg onload="window.__pwned = 4">` and " onmouseover="window.__pwned = 5"',
    'https://example.com/"onmouseover="window.__pwned=6" *x*',
    "*a **b *c **d *e **f*** g** h* i** j*",
    DEEP,
    "**never closed _nor this ~~or this `or this",
    ASTERISKS,
]
ALLOWED_TAGS = {"p", "strong", "em", "del", "code", "pre", "div", "span", "button", "svg", "path"}
ALLOWED_TAGS |= {"blockquote", "ul", "ol", "li", "a"}


async def test_hostile_markdown_renders_as_text(new_page, api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    for text in HOSTILE:
        await api.send(bob, dm, text)
    page = await signed_in(new_page, alice)
    errors = _page_errors(page)
    await open_room(page, "Bob")
    contents = page.get_by_test_id("message-text")
    await expect(contents).to_have_count(len(HOSTILE))
    found = await page.evaluate(
        """() => {
          const els = [...document.querySelectorAll('[data-testid=message-text] *')];
          return {
            tags: [...new Set(els.map((e) => e.localName))],
            attrs: [...new Set(els.flatMap((e) => e.getAttributeNames()))],
            pwned: window.__pwned ?? null,
            texts: [...document.querySelectorAll('[data-testid=message-text]')]
              .map((e) => e.textContent),
          };
        }"""
    )
    assert set(found["tags"]) <= ALLOWED_TAGS, found["tags"]
    assert not [a for a in found["attrs"] if a.startswith("on") or a in ("src", "style")]
    assert found["pwned"] is None
    texts = found["texts"]
    assert (
        texts[0]
        == '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> <b>b</b>'
    )
    await expect(contents.nth(0).locator("strong")).to_have_text("<b>b</b>")
    await expect(contents.nth(1).locator("pre code")).to_have_text(
        '<script>window.__pwned = 3</script>\n<iframe src="javascript:1"></iframe>'
    )
    await expect(contents.nth(2).locator("code")).to_have_text('<svg onload="window.__pwned = 4">')
    link = contents.nth(3).get_by_role("link")
    await expect(link).to_have_attribute("href", "https://example.com/")
    assert texts[3] == 'https://example.com/"onmouseover="window.__pwned=6" x'
    assert texts[4] == "a b c d e f g h i j"
    assert texts[5] == "a " * 200 + "z" + " b" * 200
    assert texts[6] == HOSTILE[6]
    assert texts[7] == ASTERISKS
    assert errors == []


LONG_URL = "https://example.com/" + "segment/" * 40 + "end?q=1"
LONG_WORD = "x" * 600
LINK_TEXTS = [
    LONG_URL,
    "log in at https://\u0430pple.com/login now",
    "javascript:alert(1) data:text/html,hi vbscript:msgbox(1) file:///etc/passwd",
    "https://bank.example@evil.example/login",
    "mail mailto:team@example.com or www.example.org",
    LONG_WORD,
    "```\n" + "y" * 400 + "\n```",
]
NO_OVERFLOW = """() => {
  const list = document.querySelector('.messages');
  const pre = document.querySelector('.code-block pre');
  return {list: [list.scrollWidth, list.clientWidth],
          page: [document.documentElement.scrollWidth, innerWidth],
          pre: [pre.scrollWidth, pre.clientWidth]};
}"""


async def test_links_only_http_and_mailto_with_lookalikes_and_long_text_contained(
    new_page, api
) -> None:
    alice, bob, dm = await alice_and_bob(api)
    for text in LINK_TEXTS:
        await api.send(bob, dm, text)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    contents = page.get_by_test_id("message-text")
    await expect(contents).to_have_count(len(LINK_TEXTS))

    long = contents.nth(0).get_by_role("link")
    await expect(long).to_have_attribute("href", LONG_URL)
    await expect(long).to_have_attribute("title", LONG_URL)
    shown = await long.text_content()
    assert shown is not None and len(shown) < 70 and "…" in shown, shown
    assert shown.startswith("https://example.com/segment/") and shown.endswith(LONG_URL[-16:])

    punycode = "https://" + "\u0430pple.com".encode("idna").decode() + "/login"
    idn = contents.nth(1).get_by_role("link")
    await expect(idn).to_have_text(punycode)
    await expect(idn).to_have_attribute("href", punycode)
    await expect(idn).to_have_attribute(
        "title",
        f"{punycode}\n"
        + ("The address has non-ASCII characters: its host is shown in ASCII (punycode)."),
    )
    await expect(contents.nth(2).locator("a")).to_have_count(0)
    await expect(contents.nth(2)).to_have_text(LINK_TEXTS[2])
    await expect(contents.nth(3).locator("a")).to_have_count(0)  # user@host hides the host
    links = contents.nth(4).get_by_role("link")
    await expect(links).to_have_text(["mailto:team@example.com", "www.example.org"])
    assert [await a.get_attribute("href") for a in await links.all()] == [
        "mailto:team@example.com",
        "https://www.example.org/",
    ]

    # Long words and links wrap, a long code line scrolls inside its block: the list never
    # scrolls sideways, on a desktop or a phone.
    sizes = await page.evaluate(NO_OVERFLOW)
    assert sizes["list"][0] <= sizes["list"][1] and sizes["pre"][0] > sizes["pre"][1], sizes
    phone = await signed_in(new_page, alice, viewport={"width": 360, "height": 740}, is_mobile=True)
    await open_room(phone, "Bob")
    await expect(phone.get_by_test_id("message-text")).to_have_count(len(LINK_TEXTS))
    sizes = await phone.evaluate(NO_OVERFLOW)
    assert sizes["list"][0] <= sizes["list"][1], sizes
    assert sizes["page"][0] <= sizes["page"][1], sizes
    assert sizes["pre"][0] > sizes["pre"][1], sizes


async def test_emoji_only_is_large_and_text_gets_dir_auto(new_page, api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    texts = ["😂😮😢", "👍🏽 🇫🇷", "😂😮😢😂", "ok 👍", "שלום, מה שלומך?", "hello there"]
    for text in texts:
        await api.send(bob, dm, text)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await expect(page.get_by_test_id("message-text")).to_have_count(len(texts))
    facts = await page.evaluate(
        """() => [...document.querySelectorAll('.msg-text')].map((e) => ({
          large: e.classList.contains('emoji-only'),
          size: parseFloat(getComputedStyle(e.querySelector('.msg-content')).fontSize),
          dir: e.getAttribute('dir'),
          direction: getComputedStyle(e).direction,
        }))"""
    )
    assert [f["large"] for f in facts] == [True, True, False, False, False, False]
    base = facts[-1]["size"]
    assert facts[0]["size"] >= 2 * base and facts[1]["size"] >= 2 * base
    assert facts[2]["size"] == base and facts[3]["size"] == base
    assert all(f["dir"] == "auto" for f in facts)
    assert facts[4]["direction"] == "rtl" and facts[5]["direction"] == "ltr"


async def test_search_results_and_notifications_show_plain_text(new_page, api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    await api.send(bob, dm, "**Deploy** done: see `make ship` and ~~old~~ notes")
    plain = "Deploy done: see make ship and old notes"
    page = await signed_in(new_page, alice, permissions=["notifications"])
    await open_room(page, "Bob")
    search = page.get_by_test_id("search-input")
    await search.fill("deploy")
    await search.press("Enter")
    result = page.get_by_test_id("search-result-text")
    await expect(result).to_have_text(plain)
    await expect(result.locator("mark")).to_have_text("Deploy")
    await expect(result).to_have_attribute("dir", "auto")

    await page.evaluate("() => {" + RECORD + "}")
    await page.evaluate(HIDE)
    await api.send(bob, dm, "> **Heads up:** the ~~old~~ *new* build is out")
    await page.wait_for_function("() => window.__notes.length === 1")
    assert await page.evaluate("window.__notes") == [
        {"title": "Bob", "body": "Heads up: the old new build is out"}
    ]


ZALGO = "Z" + "\u0336\u0353\u033f" * 60 + "algo"
BIG_NUMBERS = "123456789. first\n123456790. second"
LONG_TEXT = "word " * 790


async def test_big_list_numbers_zalgo_and_long_previews_stay_in_place(new_page, api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    for text in (BIG_NUMBERS, ZALGO, LONG_TEXT):
        await api.send(bob, dm, text)
    page = await signed_in(new_page, alice, viewport={"width": 360, "height": 740}, is_mobile=True)
    # The room list's preview formats the text's start only (it runs on every render).
    preview = page.get_by_test_id("room-preview").first
    await expect(preview).to_have_text(re.compile(r"^word word"))
    assert len(await preview.text_content() or "") <= 300
    await open_room(page, "Bob")
    contents = page.get_by_test_id("message-text")
    await expect(contents).to_have_count(3)
    facts = await page.evaluate(
        """() => {
          const ol = document.querySelector('.msg-content ol');
          const probe = document.createElement('span');
          probe.textContent = '123456790.';
          ol.lastElementChild.append(probe);
          const number = probe.getBoundingClientRect().width;
          probe.remove();
          return {
            start: ol.getAttribute('start'),
            indent: parseFloat(getComputedStyle(ol).paddingInlineStart),
            number,
            clip: [...document.querySelectorAll('.msg-text')]
              .map((e) => getComputedStyle(e).overflow),
          };
        }"""
    )
    # The numbers fit in the list's indent instead of spilling over the avatar column.
    assert facts["start"] == "123456789"
    assert facts["indent"] >= facts["number"], facts
    # Stacked combining marks paint no further than the text's box (and a small margin).
    assert facts["clip"] == ["clip"] * 3, facts
