// ICE servers for calls (TURN credentials included) from `GET /calls/ice-servers`, and
// keeping them fresh for as long as a call lasts.
import * as api from '../api.js';

const RETRY_MS = 30000; // a refresh that failed is tried again this much later

export async function fetchIceConfig() {
  const body = await api.get('/calls/ice-servers');
  return {
    iceServers: body.ice_servers || [],
    iceTransportPolicy: body.ice_transport_policy === 'relay' ? 'relay' : 'all',
    ttl: Number(body.ttl) || 3600,
  };
}

// Refresh TURN credentials when 3/4 of their lifetime has passed (at least 5 s from now).
export const refreshDelayMs = (ttl) => Math.max(5, ttl * 0.75) * 1000;

// From credentials that live `ttl` seconds: fetch new ones at 3/4 of their lifetime and hand
// them to apply(ice), again and again while alive() says the call goes on. -> stop().
export function keepIceFresh(ttl, { alive, apply }) {
  let timer = null;
  const schedule = (delay) => {
    timer = setTimeout(async () => {
      if (!alive()) return;
      let ice;
      try {
        ice = await fetchIceConfig();
      } catch {
        if (alive()) schedule(RETRY_MS);
        return;
      }
      if (!alive()) return;
      apply(ice);
      schedule(refreshDelayMs(ice.ttl));
    }, delay);
  };
  schedule(refreshDelayMs(ttl));
  return () => clearTimeout(timer);
}
