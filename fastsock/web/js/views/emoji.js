// Big emoji: a message of one to three emoji (spaces between allowed). An emoji is a grapheme
// made only of emoji code points that asks for emoji presentation (so ✔ or © alone, which
// show as text, do not count).
const EMOJI_POINTS = /^[\p{Extended_Pictographic}\p{Emoji_Component}\u200D\uFE0F]+$/u;
const EMOJI_LOOK = /[\p{Emoji_Presentation}\uFE0F\u20E3]/u;
const EMOJI_ONLY_MAX = 3;
const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

export function isEmojiOnly(text) {
  const s = text.trim();
  if (!s || s.length > 64) return false;
  let n = 0;
  for (const { segment } of graphemes.segment(s)) {
    if (/^\s+$/u.test(segment)) continue;
    if (!EMOJI_POINTS.test(segment) || !EMOJI_LOOK.test(segment) || ++n > EMOJI_ONLY_MAX) return false;
  }
  return n > 0;
}
