// REST client. The access token lives in memory only; the refresh token in localStorage.
// A 401 triggers one silent refresh (rotation) shared by concurrent callers, then a retry.
// Refreshes are serialised across tabs with the Web Locks API so two tabs never spend the
// same refresh token (the server would revoke the whole family on reuse).

const REFRESH_KEY = 'fs.refresh';
let accessToken = null;
let refreshing = null;
// The login this tab is signed in with: its refresh tokens' family (`fam`). Tabs of one
// browser share it, and rotate its token in turn; a token of another family in storage
// means this tab's login was replaced (logged out, then in again, maybe as someone else).
let family = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function onAuthLost(fn) { listeners.add(fn); }
export function hasSession() { return Boolean(localStorage.getItem(REFRESH_KEY)); }
export function getAccessToken() { return accessToken; }

// A refresh token's family, read from its payload (the server checks the signature).
function familyOf(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).fam || null;
  } catch {
    return null;
  }
}

function setTokens(body) {
  accessToken = body.access_token;
  family = familyOf(body.refresh_token);
  localStorage.setItem(REFRESH_KEY, body.refresh_token);
}

// Forget this tab's login, and its token in storage unless that is another login's by now.
export function clearSession() {
  const stored = localStorage.getItem(REFRESH_KEY);
  if (stored && family && familyOf(stored) === family) localStorage.removeItem(REFRESH_KEY);
  accessToken = null;
  family = null;
}

function loginLost() {
  accessToken = null;
  listeners.forEach((fn) => fn());
}

// Another tab of this browser logged out (or its refresh failed), maybe logging in again at
// once: the login is over here too. Each change of the token is an event of its own, with its
// new value (what storage holds by the time it is handled may already be the next login's).
window.addEventListener('storage', (ev) => {
  if (ev.key !== REFRESH_KEY && ev.key !== null) return; // null: storage was cleared
  const token = ev.key === null ? null : ev.newValue;
  if (family && token && familyOf(token) === family) return; // another tab rotated it
  loginLost();
});

async function doRefresh(staleAccess) {
  const run = async () => {
    // Another tab (or caller) may have rotated already: only refresh if still stale.
    if (accessToken && accessToken !== staleAccess) return accessToken;
    const token = localStorage.getItem(REFRESH_KEY);
    // Never carry on as whoever logged in since in another tab.
    if (!token || (family && familyOf(token) !== family)) {
      if (token) loginLost();
      throw new ApiError(401, 'unauthenticated', 'Not logged in');
    }
    const resp = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    });
    if (!resp.ok) {
      if (resp.status === 401 || resp.status === 400) {
        if (localStorage.getItem(REFRESH_KEY) === token) localStorage.removeItem(REFRESH_KEY);
        clearSession();
        loginLost();
      }
      throw new ApiError(resp.status, 'unauthenticated', 'Your session has expired');
    }
    setTokens(await resp.json());
    return accessToken;
  };
  if (navigator.locks) return navigator.locks.request('fs-refresh', run);
  return run();
}

export function refreshAccess() {
  if (!refreshing) {
    const stale = accessToken;
    refreshing = doRefresh(stale).finally(() => { refreshing = null; });
  }
  return refreshing;
}

export async function ensureAccess() {
  if (accessToken) return accessToken;
  return refreshAccess();
}

async function parseError(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  const err = body && body.error ? body.error : {};
  return new ApiError(resp.status, err.code, err.message || resp.statusText, err.field);
}

export async function request(method, path, body, { auth = true, retry = true } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) headers.Authorization = `Bearer ${await ensureAccess()}`;
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401 && auth && retry) {
    await refreshAccess();
    return request(method, path, body, { auth, retry: false });
  }
  if (!resp.ok) throw await parseError(resp);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (p) => request('GET', p);
export const post = (p, b) => request('POST', p, b === undefined ? {} : b);
export const patch = (p, b) => request('PATCH', p, b);
export const put = (p) => request('PUT', p);
export const del = (p) => request('DELETE', p);

export async function login(username, password) {
  const body = await request('POST', '/auth/login', { username, password }, { auth: false });
  setTokens(body);
  return body.user;
}

export async function register(username, password, displayName) {
  const data = { username, password };
  if (displayName) data.display_name = displayName;
  const body = await request('POST', '/auth/register', data, { auth: false });
  setTokens(body);
  return body.user;
}

// The token leaves storage before the request goes out: other tabs sign out (and stop writing
// drafts) at once, not a round trip later.
export async function logout() {
  try {
    // A fresh access token (the one held may have expired): the refresh needs the stored token.
    const access = await refreshAccess();
    const token = localStorage.getItem(REFRESH_KEY);
    const ours = token && familyOf(token) === family;
    clearSession();
    if (ours) {
      await fetch('/auth/logout', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${access}` },
        body: JSON.stringify({ refresh_token: token }),
      });
    }
  } catch { /* the session ends locally either way */ }
  clearSession();
}

// --- uploads ------------------------------------------------------------------------------

// Uploads use XMLHttpRequest for progress events. Returns {promise, abort}.
export function upload(file, onProgress) {
  const xhr = new XMLHttpRequest();
  let aborted = false;
  const promise = (async () => {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const token = await ensureAccess();
      if (aborted) throw new ApiError(0, 'aborted', 'Cancelled');
      const result = await new Promise((resolve, reject) => {
        xhr.open('POST', `/uploads?filename=${encodeURIComponent(file.name || 'upload')}`);
        xhr.setRequestHeader('Authorization', `Bearer ${token}`);
        xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
        xhr.upload.onprogress = (ev) => {
          if (ev.lengthComputable) onProgress?.(ev.loaded / ev.total);
        };
        xhr.onload = () => resolve(xhr);
        xhr.onerror = () => reject(new ApiError(0, 'network', 'Network error — the upload failed'));
        xhr.onabort = () => reject(new ApiError(0, 'aborted', 'Cancelled'));
        xhr.send(file);
      });
      if (result.status === 401 && attempt === 0) {
        await refreshAccess();
        continue;
      }
      let body = null;
      try { body = JSON.parse(result.responseText); } catch { /* not JSON */ }
      if (result.status === 201) return body;
      const err = body && body.error ? body.error : {};
      let message = err.message || `Upload failed (HTTP ${result.status})`;
      if (result.status === 413) message = `Too large: ${message}`;
      if (result.status === 415) message = `File type not allowed: ${message}`;
      throw new ApiError(result.status, err.code, message);
    }
    throw new ApiError(401, 'unauthenticated', 'Not logged in');
  })();
  return { promise, abort: () => { aborted = true; xhr.abort(); } };
}

// Authenticated media: fetched with the Bearer header, shown through blob: URLs (never a
// token in a URL). Cached per URL for the life of the page.
const blobCache = new Map();
export function blobUrl(url) {
  if (!blobCache.has(url)) {
    const p = (async () => {
      const token = await ensureAccess();
      let resp = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
      if (resp.status === 401) {
        const fresh = await refreshAccess();
        resp = await fetch(url, { headers: { Authorization: `Bearer ${fresh}` } });
      }
      if (!resp.ok) throw await parseError(resp);
      return URL.createObjectURL(await resp.blob());
    })();
    p.catch(() => blobCache.delete(url));
    blobCache.set(url, p);
  }
  return blobCache.get(url);
}
