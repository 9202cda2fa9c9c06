// Entry point: restore the session (silent refresh) or show the login screen.
import * as api from './api.js';
import { store } from './store.js';
import { loadLimits } from './limits.js';
import { renderAuth, noteSignedOut } from './views/auth.js';
import { renderApp } from './views/app.js';
import { renderUnavailable } from './views/unavailable.js';
import { applyTheme } from './views/theme.js';

const root = document.getElementById('app');
applyTheme();

// Starting again after the server did not answer: in 2 s, then 4 s, 8 s… at most 30 s.
const RETRY_FIRST = 2000;
const RETRY_MAX = 30000;
let retryDelay = RETRY_FIRST;
let retryTimer = null;

// Signed in (logged in, or a restored session): the server's limits first, which the
// composer and the upload checks need, then the rooms and the socket.
async function enter(user) {
  root.textContent = '';
  try {
    await loadLimits();
    if (!(await store.start(user))) return; // stopped meanwhile: whoever stopped it decides
  } catch (err) {
    failed(err);
    return;
  }
  retryDelay = RETRY_FIRST;
  renderApp(root, { onLogout: logout });
}

// The start failed. A login that is over (a refused refresh clears it) goes back to the login
// screen; otherwise the server did not answer as it should: say so, and try again.
function failed(err) {
  store.stop();
  if (!api.hasSession()) { showAuth(); return; }
  const retryIn = retryDelay;
  retryDelay = Math.min(RETRY_MAX, retryDelay * 2);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(retry, retryIn);
  renderUnavailable(root, { reason: err.message, retryIn, onRetry: retry });
}

function retry() {
  clearTimeout(retryTimer);
  retryTimer = null;
  boot();
}
window.addEventListener('online', () => { if (retryTimer) retry(); });

// Leaving the signed-in app reloads the page: every view, listener, timer and cached blob of
// the old session goes away with it, and the fresh page shows the login screen. Logging out
// ends the login in every tab, so its drafts and unsent messages go too (a shared computer).
async function logout() {
  const userId = store.me.id;
  store.forgetDrafts();
  store.forgetOutbox();
  store.stop();
  await api.logout();
  // Again: another tab may have written a draft before it saw the login end.
  store.forgetDrafts(userId);
  location.reload();
}

function showAuth() {
  store.stop();
  renderAuth(root, enter);
}

// A draft written in another tab shows here too.
window.addEventListener('storage', (ev) => store.draftChanged(ev.key));

// The login ended: logged out here or in another tab, or the server refused to refresh it,
// or a server admin deactivated the account (the login screen then says so).
store.on('authlost', (detail) => {
  if (!store.me) return;
  if (detail?.reason === 'deactivated') noteSignedOut('Your account was deactivated by a server admin, so you were signed out.');
  store.stop(); // signed out first: the page going away writes no draft after a logout's purge
  api.clearSession();
  location.reload();
});

async function boot() {
  if (!api.hasSession()) { showAuth(); return; }
  let me;
  try {
    await api.refreshAccess();
    me = await api.get('/users/me');
  } catch (err) {
    failed(err);
    return;
  }
  await enter(me);
}

boot();
