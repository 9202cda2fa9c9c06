// Log in / register.
import { h } from '../dom.js';
import * as api from '../api.js';

// Why the last session ended, for the login screen after the reload that ends it.
const SIGNED_OUT = 'fastsock.signedOut';

export function noteSignedOut(text) {
  try { sessionStorage.setItem(SIGNED_OUT, text); } catch { /* storage off: no note */ }
}

function takeSignedOutNote() {
  try {
    const text = sessionStorage.getItem(SIGNED_OUT);
    sessionStorage.removeItem(SIGNED_OUT);
    return text || '';
  } catch { return ''; }
}

export function renderAuth(root, onAuthed) {
  let mode = 'login';
  const error = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'auth-error', text: takeSignedOutNote() });
  const username = h('input', { id: 'auth-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'auth-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, minlength: '8' });
  const displayName = h('input', { id: 'auth-display', name: 'display_name', autocomplete: 'name', maxlength: '64' });
  const displayField = h('div', { class: 'field', hidden: true }, h('label', { for: 'auth-display', text: 'Display name (optional)' }), displayName);
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Log in');
  const loginTab = h('button', { type: 'button', role: 'tab', class: 'tab', 'aria-selected': 'true', onclick: () => setMode('login') }, 'Log in');
  const registerTab = h('button', { type: 'button', role: 'tab', class: 'tab', 'aria-selected': 'false', onclick: () => setMode('register') }, 'Create account');
  const hint = h('p', { class: 'field-hint', hidden: true, text: '3-32 characters: a-z, 0-9, _ . -  ·  password at least 8 characters' });

  function setMode(next) {
    mode = next;
    loginTab.setAttribute('aria-selected', String(mode === 'login'));
    registerTab.setAttribute('aria-selected', String(mode === 'register'));
    displayField.hidden = mode === 'login';
    hint.hidden = mode === 'login';
    password.autocomplete = mode === 'login' ? 'current-password' : 'new-password';
    submit.textContent = mode === 'login' ? 'Log in' : 'Create account';
    error.textContent = '';
  }

  const form = h('form', {
    class: 'auth-form',
    'aria-label': 'Log in or create an account',
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      submit.disabled = true;
      try {
        const user = mode === 'login'
          ? await api.login(username.value.trim(), password.value)
          : await api.register(username.value.trim(), password.value, displayName.value.trim());
        onAuthed(user);
      } catch (err) {
        // Only the server's own "deactivated" refusal reads as one; any other 403 says what it is.
        const deactivated = err.code === 'forbidden' && /deactivated/i.test(err.message);
        error.textContent = err.status === 401 ? 'Wrong username or password.'
          : deactivated ? 'This account is deactivated. Ask a server admin to reactivate it.' : err.message;
        submit.disabled = false;
      }
    },
  },
  h('div', { class: 'tabs', role: 'tablist' }, loginTab, registerTab),
  h('div', { class: 'field' }, h('label', { for: 'auth-username', text: 'Username' }), username),
  hint,
  h('div', { class: 'field' }, h('label', { for: 'auth-password', text: 'Password' }), password),
  displayField,
  error,
  submit);

  root.replaceChildren(h('main', { class: 'auth-screen', 'data-testid': 'auth-screen' },
    h('div', { class: 'auth-card' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true', text: '⚡' }), h('h1', { text: 'FastSock' })),
      h('p', { class: 'auth-tagline', text: 'Team chat, self-hosted.' }),
      form)));
  username.focus();
}
