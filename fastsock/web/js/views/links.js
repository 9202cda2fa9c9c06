// Links in message text: where a URL starts and ends (a linear scan, no backtracking regex),
// and the link element for it. Only http(s) and mailto become links: there is no
// [text](url) syntax, so a link always shows its own address, never javascript:, data:,
// vbscript: or file:. Look-alikes: a host with non-ASCII characters (an IDN, a host mixing
// scripts) shows in its ASCII (punycode) form; an address with user@ before the host
// ("https://bank.com@evil.example") stays text; bidi controls show percent-encoded, so they
// cannot reorder what is shown. Long addresses show their middle elided; the href and the
// title keep all of it.
import { h } from '../dom.js';

const PREFIXES = ['https://', 'http://', 'mailto:', 'www.'];
const PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);
const TRAILING = new Set(['.', ',', ':', ';', '!', '?', "'", '"', '*', '_', '~']); // punctuation after a URL, not in it
const STOPS = new Set(['<', '>', '"', '`']);
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu;
const SHOWN_MAX = 60; // code points shown of a long address: HEAD, an ellipsis, TAIL
const HEAD = 40;
const TAIL = 16;

// A URL's first characters, either case: a quick check before urlEnd.
const FIRSTS = new Set(PREFIXES.flatMap((p) => [p[0], p[0].toUpperCase()]));

const isSpaceOrControl = (c) => c <= ' ' || /\s/u.test(c);
// A letter or digit before a prefix makes it part of a word ("xhttp://"); "_" does not, so
// "_https://x.org_" is an italic link.
const isLetterOrDigit = (c) => /[\p{L}\p{N}]/u.test(c);

// Whether a URL may start with the character `c` (the first of a known prefix).
export function mayStartUrl(c) {
  return FIRSTS.has(c);
}

// The end (exclusive) of the URL starting at `i` of `text`, or -1 when none starts there: a
// known prefix at a word's start, up to a space or a character never left unescaped in a URL,
// without the punctuation that ends a sentence or closes emphasis, nor a ")" the URL did not open.
export function urlEnd(text, i) {
  if (i > 0 && isLetterOrDigit(text[i - 1])) return -1;
  const head = text.slice(i, i + 8).toLowerCase();
  const prefix = PREFIXES.find((p) => head.startsWith(p));
  if (!prefix) return -1;
  const start = i + prefix.length;
  let end = start;
  let parens = 0; // "(" minus ")" up to `end`
  while (end < text.length && !isSpaceOrControl(text[end]) && !STOPS.has(text[end])) {
    if (text[end] === '(') parens += 1; else if (text[end] === ')') parens -= 1;
    end += 1;
  }
  for (;;) {
    const last = text[end - 1];
    if (TRAILING.has(last)) end -= 1;
    else if (last === ')' && parens < 0) { end -= 1; parens += 1; } else break;
  }
  return end > start ? end : -1;
}

function shorten(shown) {
  const points = [...shown];
  if (points.length <= SHOWN_MAX) return shown;
  return `${points.slice(0, HEAD).join('')}…${points.slice(-TAIL).join('')}`;
}

// What a link shows: the address as written, but with the host the browser will connect to
// when that reads otherwise (an IDN in punycode, a percent-encoded or numeric host).
function shownAddress(raw, url) {
  if (url.protocol === 'mailto:') return /^[\x20-\x7e]*$/.test(raw) ? raw : url.href;
  const www = raw.slice(0, 4).toLowerCase() === 'www.';
  const hostStart = www ? 0 : raw.indexOf('//') + 2;
  let hostEnd = hostStart;
  while (hostEnd < raw.length && !'/?#'.includes(raw[hostEnd])) hostEnd += 1;
  const host = raw.slice(hostStart, hostEnd);
  return raw.slice(0, hostStart) + (host.toLowerCase() === url.host ? host : url.host) + raw.slice(hostEnd);
}

// A URL found by urlEnd as a link: {url, shown}, or null when it must stay text (not a valid
// URL, another protocol, a user name before the host, a backslash: browsers read it as "/",
// so "https://evil.com\@good.com" would lead elsewhere than it reads).
function asLink(raw) {
  if (raw.includes('\\')) return null;
  let url;
  try {
    url = new URL(raw.slice(0, 4).toLowerCase() === 'www.' ? `https://${raw}` : raw);
  } catch {
    return null;
  }
  if (!PROTOCOLS.has(url.protocol) || url.username || url.password) return null;
  return { url, shown: shorten(shownAddress(raw, url).replace(BIDI_CONTROLS, (c) => encodeURIComponent(c))) };
}

// What plain text (notifications, search results) shows for it: what its link shows.
export function linkText(raw) {
  return asLink(raw)?.shown ?? raw;
}

// The <a> for a URL found by urlEnd, or null when it stays text.
export function linkElement(raw) {
  const link = asLink(raw);
  if (!link) return null;
  const { url, shown } = link;
  const idn = url.hostname.split('.').some((label) => label.startsWith('xn--'));
  return h('a', {
    href: url.href,
    target: '_blank',
    rel: 'noopener noreferrer',
    dir: 'ltr',
    class: `msg-link${idn ? ' idn' : ''}`,
    'data-testid': 'message-link',
    title: idn ? `${url.href}\nThe address has non-ASCII characters: its host is shown in ASCII (punycode).` : url.href,
  }, shown);
}
