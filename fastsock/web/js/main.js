// Entry point: restore the session (silent refresh) or show the login screen.
import * as api from './api.js';
import { store } from './store.js';
import { loadLimits } from './limits.js';
import { renderAuth } from './views/auth.js';
import { renderApp } from './views/app.js';
import { applyTheme } from './views/theme.js';

const root = document.getElementById('app');
applyTheme();

async function enter(user) {
  root.textContent = '';
  try {
    await Promise.all([store.start(user), loadLimits()]);
  } catch (err) {
    showAuth();
    return;
  }
  renderApp(root, { onLogout: logout });
}

// Leaving the signed-in app reloads the page: every view, listener, timer and cached blob of
// the old session goes away with it, and the fresh page shows the login screen.
async function logout() {
  store.stop();
  await api.logout();
  location.reload();
}

function showAuth() {
  store.stop();
  renderAuth(root, enter);
}

// The login ended: logged out here or in another tab, or the server refused to refresh it.
store.on('authlost', () => {
  if (!store.me) return;
  api.clearSession();
  location.reload();
});

async function boot() {
  if (!api.hasSession()) { showAuth(); return; }
  try {
    await api.refreshAccess();
    const me = await api.get('/users/me');
    await enter(me);
  } catch {
    showAuth();
  }
}

boot();
