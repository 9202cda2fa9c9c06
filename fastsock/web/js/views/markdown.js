// Message formatting: a small Markdown subset, parsed here in the client (the server keeps
// the text as typed) into DOM nodes, never into HTML strings: whatever the text holds,
// <script> included, ends up in text nodes.
//   blocks: ``` fenced code ``` (or ~~~), > quotes, - * + bullet lists, 1. 1) numbered
//           lists; quotes and lists nest (by indentation), up to MAX_BLOCK_DEPTH levels
//   inline: **bold** __bold__, *italic* _italic_, ~~strikethrough~~, `code`, \* escapes,
//           links (links.js)
// Everything else (headings, tables, images, HTML, [text](url), rules) stays as typed. The
// parse is linear in the text: lines are read once per nesting level, code spans find their
// closing run through a table built in one pass, and emphasis is matched CommonMark-style
// with a stack per marker character, so 4,000 asterisks or unclosed markers cost one pass.
// A message's elements are bounded too: past MAX_CODE_BLOCKS code blocks or MAX_BLOCKS
// blocks, the rest of the text is paragraph text (500 empty fences would otherwise make
// 500 copy buttons, each a Tab stop).
import { h, icon } from '../dom.js';
import { urlEnd, mayStartUrl, linkElement, linkText } from './links.js';
import { toast } from './toast.js';

const MAX_BLOCK_DEPTH = 4; // quotes and lists inside each other
const MAX_INLINE_DEPTH = 8; // emphasis inside emphasis: deeper levels add no further element
const MAX_BLOCKS = 200; // paragraphs, code blocks, quotes, lists and list items of a message
const MAX_CODE_BLOCKS = 20;
const LANG_MAX = 24;
const COPIED_MS = 2000;

// ---- Blocks ----------------------------------------------------------------------------

// Leading spaces of a line (a tab counts as 4).
function indentOf(line) {
  let n = 0;
  for (const c of line) {
    if (c === ' ') n += 1; else if (c === '\t') n += 4; else break;
  }
  return n;
}

// Drops up to `n` columns of indentation.
function dedent(line, n) {
  let i = 0;
  let cols = 0;
  while (i < line.length && cols < n && (line[i] === ' ' || line[i] === '\t')) { cols += line[i] === '\t' ? 4 : 1; i += 1; }
  return line.slice(i);
}

// An opening code fence: ``` or ~~~ (3 or more) and an optional language.
function fenceOf(line) {
  const s = line.trimStart();
  if (line.length - s.length > 3) return null;
  const ch = s[0];
  if (ch !== '`' && ch !== '~') return null;
  let n = 0;
  while (s[n] === ch) n += 1;
  if (n < 3) return null;
  const info = s.slice(n).trim();
  if (ch === '`' && info.includes('`')) return null;
  return { ch, n, lang: info.split(/\s/u, 1)[0].slice(0, LANG_MAX) };
}

function closesFence(line, fence) {
  const s = line.trim();
  if (s.length < fence.n || line.length - line.trimStart().length > 3) return false;
  for (const c of s) if (c !== fence.ch) return false;
  return true;
}

// A thematic break ("***", "- - -"): three or more of one of - * _ and spaces only. Shown as
// typed, not as a list of lists.
function isRule(line) {
  const s = line.trim();
  const ch = s[0];
  if (ch !== '-' && ch !== '*' && ch !== '_') return false;
  let n = 0;
  for (const c of s) {
    if (c === ch) n += 1; else if (c !== ' ' && c !== '\t') return false;
  }
  return n >= 3;
}

// A list item's marker: "- ", "* ", "+ ", "1. ", "1) " followed by text, up to 3 spaces in.
// `content`: the column its text starts at (where its continuation lines are indented to).
function itemOf(line) {
  const indent = indentOf(line);
  if (indent > 3 || isRule(line)) return null;
  const s = line.trimStart();
  let n = 0;
  let ordered = false;
  if (s[0] === '-' || s[0] === '*' || s[0] === '+') n = 1;
  else {
    while (n < 9 && s[n] >= '0' && s[n] <= '9') n += 1;
    if (n === 0 || (s[n] !== '.' && s[n] !== ')')) return null;
    ordered = true;
    n += 1;
  }
  let spaces = 0;
  while (s[n + spaces] === ' ') spaces += 1;
  if (spaces === 0 || n + spaces >= s.length) return null;
  if (spaces > 4) spaces = 1; // more is indented text inside the item
  return { ordered, start: ordered ? Number(s.slice(0, n - 1)) : 1, content: indent + n + spaces, text: s.slice(n + spaces) };
}

const quoteText = (line) => {
  const s = line.trimStart();
  if (line.length - s.length > 3 || s[0] !== '>') return null;
  return s[1] === ' ' ? s.slice(2) : s.slice(1);
};
const blank = (line) => line.trim() === '';

// The lines of the list item starting at line `i` (its marker line): its text, then the lines
// indented at least to its text (dedented), with the blank lines among them; blank lines after
// it only when the next item of the same list follows them. Returns [lines, next line].
function itemLines(lines, i, item, ordered) {
  const inner = [item.text];
  i += 1;
  for (;;) {
    let j = i;
    while (j < lines.length && blank(lines[j])) j += 1;
    if (j < lines.length && indentOf(lines[j]) >= item.content) {
      for (; i <= j; i += 1) inner.push(dedent(lines[i], item.content));
      continue;
    }
    const next = j < lines.length ? itemOf(lines[j]) : null;
    return [inner, next && next.ordered === ordered ? j : i];
  }
}

// The text's blocks: {type: 'para', inline}, {type: 'code', lang, text}, {type: 'quote',
// blocks}, {type: 'list', ordered, start, items: [blocks]}. Beyond MAX_BLOCK_DEPTH, quotes and
// lists are text; past the message's budget (`left`, shared by all levels), all blocks are.
// A paragraph keeps its line breaks (and blank lines); those next to another block are
// dropped, the block's own margins separate them.
function parseBlocks(lines, depth, left) {
  const blocks = [];
  let para = [];
  const endPara = () => {
    while (para.length && blank(para[para.length - 1])) para.pop();
    let first = 0;
    while (first < para.length && blank(para[first])) first += 1;
    if (first < para.length) blocks.push({ type: 'para', inline: parseInline(para.slice(first).join('\n')) });
    para = [];
  };
  const take = (code = false) => { left.blocks -= 1; if (code) left.code -= 1; };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const room = left.blocks > 1; // a list takes two: itself and an item
    const fence = room && left.code > 0 && fenceOf(line);
    if (fence) {
      endPara();
      take(true);
      const body = [];
      i += 1;
      while (i < lines.length && !closesFence(lines[i], fence)) { body.push(lines[i]); i += 1; }
      i += 1; // the closing fence (an unclosed block runs to the end)
      blocks.push({ type: 'code', lang: fence.lang, text: body.join('\n') });
      continue;
    }
    const nests = room && depth < MAX_BLOCK_DEPTH;
    if (nests && quoteText(line) !== null) {
      endPara();
      take();
      const inner = [];
      for (let q; i < lines.length && (q = quoteText(lines[i])) !== null; i += 1) inner.push(q);
      blocks.push({ type: 'quote', blocks: parseBlocks(inner, depth + 1, left) });
      continue;
    }
    // Inside a paragraph, as in CommonMark, a numbered list starts only at 1 ("born in\n1984.
    // I…" stays a paragraph); a bullet list may start anywhere.
    let item = nests && itemOf(line);
    if (item && item.ordered && item.start !== 1 && para.length && !blank(para[para.length - 1])) item = null;
    if (item) {
      endPara();
      take();
      const list = { type: 'list', ordered: item.ordered, start: item.start, items: [] };
      while (item && left.blocks > 0) {
        take();
        const [inner, next] = itemLines(lines, i, item, list.ordered);
        i = next;
        list.items.push(parseBlocks(inner, depth + 1, left));
        item = i < lines.length ? itemOf(lines[i]) : null;
        if (item?.ordered !== list.ordered) item = null;
      }
      blocks.push(list);
      continue;
    }
    para.push(line);
    i += 1;
  }
  endPara();
  return blocks;
}

// ---- Inline ----------------------------------------------------------------------------

// For flanking: a space, or the text's start or end ('').
const isSpaceOrEdge = (c) => c === '' || /\s/u.test(c);
const isPunct = (c) => /[\p{P}\p{S}]/u.test(c);
const isAsciiPunct = (c) => /[!-/:-@[-`{-~]/.test(c);
// "*" + U+20E3 (optionally with U+FE0F between) is the keycap emoji *️⃣, not emphasis.
const isKeycap = (s, i) => s[i] === '\u20E3' || (s[i] === '\uFE0F' && s[i + 1] === '\u20E3');

// The characters around a delimiter run, whole code points ('' at either end).
function charBefore(s, i) {
  if (i <= 0) return '';
  const low = s.charCodeAt(i - 1);
  return low >= 0xdc00 && low <= 0xdfff && i >= 2 ? s.slice(i - 2, i) : s[i - 1];
}
function charAfter(s, i) {
  return i < s.length ? String.fromCodePoint(s.codePointAt(i)) : '';
}

// Backtick runs of the text, each with the index of the next run of the same length (its
// closing run as a code span), or -1: one pass each way.
function backtickRuns(s) {
  const runs = [];
  for (let i = 0; i < s.length;) {
    if (s[i] !== '`') { i += 1; continue; }
    let j = i;
    while (s[j] === '`') j += 1;
    runs.push({ at: i, len: j - i, next: -1 });
    i = j;
  }
  const seen = new Map();
  for (let r = runs.length - 1; r >= 0; r -= 1) {
    runs[r].next = seen.get(runs[r].len) ?? -1;
    seen.set(runs[r].len, r);
  }
  return runs;
}

// A code span's text: one space stripped from each end when both have one (so `` ` `` can
// show a backtick), line breaks as spaces.
function codeText(s) {
  const t = s.replace(/\n/g, ' ');
  return t.length > 2 && t[0] === ' ' && t[t.length - 1] === ' ' && t.trim() ? t.slice(1, -1) : t;
}

// Splits the text into text, code, link and delimiter-run tokens. Flanking as in CommonMark:
// a run can open when followed by a non-space (not punctuation, unless preceded by space or
// punctuation), close in the mirror case; "_" only at a word's edge, so snake_case stays.
function tokenize(s) {
  const tokens = [];
  let text = '';
  const flush = () => { if (text) { tokens.push({ t: 'text', s: text }); text = ''; } };
  const runs = backtickRuns(s);
  let run = 0;
  for (let i = 0; i < s.length;) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length && s[i + 1] !== '`' && isAsciiPunct(s[i + 1])) {
      text += s[i + 1];
      i += 2;
    } else if (c === '`') {
      while (runs[run].at < i) run += 1;
      const { len, next } = runs[run];
      if (next >= 0) {
        flush();
        tokens.push({ t: 'code', s: codeText(s.slice(i + len, runs[next].at)) });
        i = runs[next].at + len;
      } else {
        text += s.slice(i, i + len);
        i += len;
      }
    } else if (c === '*' && isKeycap(s, i + 1)) {
      text += c;
      i += 1;
    } else if (c === '*' || c === '_' || c === '~') {
      let j = i;
      while (s[j] === c && !(c === '*' && isKeycap(s, j + 1))) j += 1;
      if (c === '~' && j - i !== 2) { text += s.slice(i, j); i = j; continue; }
      const before = charBefore(s, i);
      const after = charAfter(s, j);
      const left = !isSpaceOrEdge(after) && (!isPunct(after) || isSpaceOrEdge(before) || isPunct(before));
      const right = !isSpaceOrEdge(before) && (!isPunct(before) || isSpaceOrEdge(after) || isPunct(after));
      flush();
      tokens.push({
        t: 'delim', ch: c, len: j - i, opens: [], closes: [],
        open: c === '_' ? left && (!right || isPunct(before)) : left,
        close: c === '_' ? right && (!left || isPunct(after)) : right,
      });
      i = j;
    } else {
      const end = mayStartUrl(c) ? urlEnd(s, i) : -1;
      if (end > 0) {
        flush();
        tokens.push({ t: 'link', s: s.slice(i, end) });
        i = end;
      } else {
        text += c;
        i += 1;
      }
    }
  }
  flush();
  return tokens;
}

// Pairs the delimiter runs: each closer takes the nearest opener of its character (a stack
// per character, so no search), and runs left between them become text. Two of each side
// make bold, one italic, ~~ strikethrough; what is left of a run stays literal.
function matchDelimiters(tokens) {
  const stack = []; // openers still unmatched, by token
  const tops = { '*': [], _: [], '~': [] }; // per character: their positions in `stack`
  for (const d of tokens) {
    if (d.t !== 'delim') continue;
    while (d.close && d.len > 0 && tops[d.ch].length) {
      const at = tops[d.ch][tops[d.ch].length - 1];
      while (stack.length - 1 > at) tops[stack.pop().ch].pop();
      const o = stack[at];
      const use = d.ch !== '~' && (o.len < 2 || d.len < 2) ? 1 : 2;
      const tag = d.ch === '~' ? 'del' : use === 2 ? 'strong' : 'em';
      o.len -= use;
      d.len -= use;
      o.opens.push(tag); // innermost first
      d.closes.push(tag);
      if (o.len === 0) { stack.pop(); tops[o.ch].pop(); }
    }
    if (d.open && d.len > 0) { tops[d.ch].push(stack.length); stack.push(d); }
  }
}

// Inline nodes: {type: 'text' | 'code' | 'link', text} and {type: 'strong' | 'em' | 'del',
// children}, built with an explicit stack (no recursion on the text's nesting).
function parseInline(s) {
  const tokens = tokenize(s);
  matchDelimiters(tokens);
  const root = { children: [] };
  const open = [root];
  const add = (type, text) => {
    const kids = open[open.length - 1].children;
    const last = kids[kids.length - 1];
    if (type === 'text' && last?.type === 'text') last.text += text; else kids.push({ type, text });
  };
  for (const tok of tokens) {
    if (tok.t !== 'delim') { add(tok.t, tok.s); continue; }
    for (let k = 0; k < tok.closes.length; k += 1) open.pop();
    if (tok.len > 0) add('text', tok.ch.repeat(tok.len));
    for (let k = tok.opens.length - 1; k >= 0; k -= 1) {
      const parent = open[open.length - 1];
      // Too deep: the level gets no element of its own, its content goes to the parent.
      const node = open.length > MAX_INLINE_DEPTH ? { children: parent.children } : { type: tok.opens[k], children: [] };
      if (node.type) parent.children.push(node);
      open.push(node);
    }
  }
  return root.children;
}

function parse(text) {
  return parseBlocks(text.replace(/\r\n?/g, '\n').split('\n'), 0, { blocks: MAX_BLOCKS, code: MAX_CODE_BLOCKS });
}

// ---- Output ----------------------------------------------------------------------------

function inlineNodes(nodes) {
  return nodes.map((n) => {
    if (n.type === 'text') return document.createTextNode(n.text);
    if (n.type === 'code') return h('code', { class: 'inline-code', text: n.text });
    if (n.type === 'link') return linkElement(n.text) || document.createTextNode(n.text);
    return h(n.type, {}, inlineNodes(n.children)); // strong, em, del
  });
}

let copyIcons = null; // built once, cloned for each button

// The copy button of a code block: says "Copied" (a tick instead of the icon) for a moment,
// and the toasts' live region says it to screen readers.
function copyButton(text) {
  copyIcons ??= [icon('copy'), icon('check')];
  const btn = h('button', { type: 'button', class: 'code-copy', title: 'Copy code', 'aria-label': 'Copy code', 'data-testid': 'code-copy' },
    copyIcons.map((svg) => svg.cloneNode(true)));
  const label = (words, copied) => {
    btn.classList.toggle('copied', copied);
    btn.setAttribute('aria-label', words);
    btn.title = words;
  };
  let timer = null;
  btn.addEventListener('click', () => {
    Promise.resolve().then(() => navigator.clipboard.writeText(text)).then(
      () => { label('Copied', true); toast('Code copied'); },
      () => {
        const words = 'Could not copy: select the code and copy it instead';
        label(words, false);
        toast(words, 'error');
      });
    clearTimeout(timer);
    timer = setTimeout(() => label('Copy code', false), COPIED_MS);
  });
  return btn;
}

// A numbered list's widest number, in digits, as a class (the indent grows with it).
function digitsClass(b) {
  const digits = String(b.start + b.items.length - 1).length;
  return digits > 2 ? `digits-${digits}` : null;
}

function blockNodes(blocks) {
  return blocks.map((b) => {
    // No dir on paragraphs: the row's dir=auto (message.js) follows their text. Quotes and
    // list items take their own direction (a quoted message in another script).
    if (b.type === 'para') return h('p', { class: 'md-p' }, inlineNodes(b.inline));
    if (b.type === 'code') {
      // An empty block has nothing to copy: no button (and no Tab stop).
      return h('div', { class: 'code-block', 'data-testid': 'code-block' },
        h('div', { class: 'code-head' }, h('span', { class: 'code-lang', text: b.lang }), b.text.trim() ? copyButton(b.text) : null),
        h('pre', { dir: 'ltr' }, h('code', { text: b.text })));
    }
    if (b.type === 'quote') return h('blockquote', { dir: 'auto' }, blockNodes(b.blocks));
    const items = b.items.map((item) => h('li', { dir: 'auto' }, blockNodes(item)));
    if (!b.ordered) return h('ul', {}, items);
    return h('ol', { start: b.start !== 1 ? String(b.start) : null, class: digitsClass(b) }, items);
  });
}

// The text as elements: paragraphs, code blocks (with a copy button), quotes, lists.
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  frag.append(...blockNodes(parse(text)));
  return frag;
}

function inlinePlain(nodes) {
  return nodes.map((n) => {
    if (n.children) return inlinePlain(n.children);
    return n.type === 'link' ? linkText(n.text) : n.text;
  }).join('');
}

function blocksPlain(blocks) {
  return blocks.map((b) => {
    if (b.type === 'para') return inlinePlain(b.inline);
    if (b.type === 'code') return b.text;
    if (b.type === 'quote') return blocksPlain(b.blocks);
    return b.items.map((item, k) => `${b.ordered ? `${b.start + k}.` : '•'} ${blocksPlain(item)}`).join('\n');
  }).join('\n');
}

// The text without its markup, for notifications and search results; links read as they
// show in the timeline (look-alike hosts in ASCII, long addresses elided).
export function plainText(text) {
  return blocksPlain(parse(text));
}
