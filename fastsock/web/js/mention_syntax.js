// The `@name` token rule, the server's (services/mentions.py, docs/api.md): `@` not after a
// letter, digit, `_` or another `@`, then a username in any case. Python's `\w` is Unicode:
// letters and digits of any script, hence \p{L}\p{N}_ here (JS's `\w` is ASCII only).
// Trailing `.`/`-` are punctuation, not part of the name.
export const TOKEN = /(?<![\p{L}\p{N}_@])@([a-z0-9_.-]{3,32})/giu;

// The username a match names (lowercase, as usernames are), and its length as written.
export const tokenName = (m) => m[1].replace(/[.-]+$/, '').toLowerCase();

export const mentionsRoom = (text) => [...text.matchAll(TOKEN)].some((m) => tokenName(m) === 'room');
