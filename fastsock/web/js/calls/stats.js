// Connection quality from RTCPeerConnection.getStats(): round-trip time of the selected
// candidate pair, and packet loss of the inbound RTP streams since the previous sample; and
// the sampling of a call's connection (1:1 in connection.js, group in group.js).

const STATS_EVERY_MS = 2000;

const LEVELS = [
  // [level, max round trip (ms), max loss (%)]
  ['good', 250, 2],
  ['fair', 500, 8],
];

export function qualityLevel(rttMs, lossPct) {
  for (const [level, rtt, loss] of LEVELS) {
    if ((rttMs === null || rttMs <= rtt) && (lossPct === null || lossPct <= loss)) return level;
  }
  return 'poor';
}

function selectedPair(report) {
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
  });
  if (pair) return pair;
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || s.selected)) pair = s;
  });
  return pair;
}

// One sample: {rttMs, lossPct, level, path, local, remote, framesDecoded, packets}. `prev` is
// the previous sample (for the loss since then).
export async function sample(pc, prev) {
  const report = await pc.getStats();
  const pair = selectedPair(report);
  const local = pair ? report.get(pair.localCandidateId) : null;
  const remote = pair ? report.get(pair.remoteCandidateId) : null;
  let lost = 0;
  let received = 0;
  let framesDecoded = 0;
  let jitter = 0;
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    lost += Math.max(0, s.packetsLost || 0);
    received += s.packetsReceived || 0;
    if (s.kind === 'video') framesDecoded += s.framesDecoded || 0;
    if (s.kind === 'audio' && typeof s.jitter === 'number') jitter = s.jitter;
  });
  const rttMs = pair && typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null;
  let lossPct = null;
  if (prev && prev.packets) {
    const dLost = lost - prev.packets.lost;
    const dRecv = received - prev.packets.received;
    if (dLost + dRecv > 0) lossPct = Math.max(0, (100 * dLost) / (dLost + dRecv));
  } else if (lost + received > 0) {
    lossPct = (100 * lost) / (lost + received);
  }
  const types = [local?.candidateType, remote?.candidateType];
  const path = !pair ? null : types.includes('relay') ? 'relay' : 'direct';
  return {
    rttMs,
    lossPct,
    jitterMs: Math.round(jitter * 1000),
    level: pair ? qualityLevel(rttMs, lossPct) : null,
    path,
    local: local ? { type: local.candidateType, protocol: local.protocol } : null,
    remote: remote ? { type: remote.candidateType, protocol: remote.protocol } : null,
    framesDecoded,
    packets: { lost, received },
  };
}

// Sample session `s`'s connection every STATS_EVERY_MS from now (the manager's finish() stops
// s.statsTimer). `connOf(s)`: the session's current connection (its `pc` is sampled), or null.
export function watchQuality(m, s, connOf) {
  clearInterval(s.statsTimer);
  s.statsTimer = setInterval(() => pollQuality(m, s, connOf), STATS_EVERY_MS);
}

// One sample into `s.quality` (one at a time; dropped if the connection changed meanwhile),
// then the manager `m` fires 'stats' for the views.
export async function pollQuality(m, s, connOf) {
  const conn = connOf(s);
  if (!conn || s.polling) return;
  s.polling = true;
  try {
    const q = await sample(conn.pc, s.quality);
    if (connOf(s) === conn) {
      s.quality = q;
      if (m.session === s) m.dispatchEvent(new Event('stats'));
    }
  } catch { /* closed meanwhile */ } finally {
    s.polling = false;
  }
}

export function describeQuality(q) {
  if (!q || !q.level) return 'Measuring the connection…';
  const bits = [`${q.level[0].toUpperCase()}${q.level.slice(1)} connection`];
  if (q.rttMs !== null) bits.push(`round trip ${q.rttMs} ms`);
  if (q.lossPct !== null) bits.push(`packet loss ${q.lossPct.toFixed(1)} %`);
  if (q.path) bits.push(q.path === 'relay' ? 'relayed through the TURN server' : 'direct');
  return bits.join(' · ');
}
