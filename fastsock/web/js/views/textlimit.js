// The length limit of a message being written (the composer, the inline editor). No
// maxlength, which silently cuts a paste: a counter shows near the limit, and past it a live
// message says by how much (the count itself is not read out at every key). The caller
// refuses to send while `update()` returns more than 0.
import { h } from '../dom.js';
import { messageLimits } from '../limits.js';

const COUNT_FROM = 0.875; // the counter shows from this share of the limit on (3,500 of 4,000)
let made = 0;

// Characters as the server counts them: code points of the trimmed text (Python's len after
// strip), so an emoji outside the BMP is one, not the two UTF-16 units of String.length.
function textLength(text) {
  return [...text.trim()].length;
}

export class TextLimit {
  // `testid`: the prefix of the parts' test ids (`composer` -> composer-count, composer-over).
  constructor(input, testid) {
    this.input = input;
    const id = `${testid}-over-${++made}`;
    this.count = h('span', { class: 'text-count', 'aria-hidden': 'true', 'data-testid': `${testid}-count` });
    this.over = h('span', { class: 'text-over', id, 'aria-live': 'polite', 'data-testid': `${testid}-over` });
    this.el = h('div', { class: 'text-limit' }, this.over, this.count);
    input.setAttribute('aria-describedby', id);
    this.sentence = '';
  }

  // Shows the counter and the over-limit state; returns how many characters are too many.
  update() {
    const n = textLength(this.input.value);
    const max = messageLimits().chars;
    const over = Math.max(0, n - max);
    this.el.classList.toggle('over', over > 0);
    this.count.textContent = n < max * COUNT_FROM ? '' : `${n.toLocaleString()} / ${max.toLocaleString()}`;
    this.sentence = over ? `${over.toLocaleString()} character${over > 1 ? 's' : ''} over the limit` : '';
    if (this.over.textContent !== this.sentence) this.over.textContent = this.sentence;
    if (over) this.input.setAttribute('aria-invalid', 'true'); else this.input.removeAttribute('aria-invalid');
    return over;
  }
}
