// Ringtones made with WebAudio (no audio files): 'ring' for an incoming call, 'ringback' for
// the caller while the other side rings. Browsers may keep an AudioContext suspended until the
// user interacts with the page (autoplay policy): then `blocked` is true, `onBlocked` is told,
// and the tone starts at the next click or key press. once() plays the pattern a single time
// (a group call starting), now or not at all. stop() always silences it: it stops the
// scheduler, every scheduled oscillator, and closes the context.

const PATTERNS = {
  // Two bright chords, twice, every 3 s.
  ring: {
    period: 3,
    volume: 0.16,
    notes: [[0, 0.16, [880, 1320]], [0.2, 0.16, [988, 1480]], [0.5, 0.16, [880, 1320]], [0.7, 0.16, [988, 1480]]],
  },
  // The North American ringback: 440 + 480 Hz, 2 s on, 4 s off, quiet.
  ringback: { period: 6, volume: 0.05, notes: [[0, 2, [440, 480]]] },
};
const GESTURES = ['pointerdown', 'keydown', 'touchstart'];

export class Ringtone {
  constructor(kind, { onBlocked } = {}) {
    this.pattern = PATTERNS[kind];
    this.onBlocked = onBlocked;
    this.ctx = null;
    this.nodes = new Set();
    this.timer = null;
    this.blocked = false;
    this.repeat = true;
    this.onceTimer = null;
    this.unlock = () => this.resume();
  }

  get playing() { return Boolean(this.ctx); }

  // One pass of the pattern, then silence. A browser that holds the audio back gets no ring
  // later: a late ring would announce nothing.
  once() {
    if (this.ctx) return;
    this.repeat = false;
    this.start();
    if (!this.ctx) { this.repeat = true; return; } // no WebAudio here
    const length = Math.max(...this.pattern.notes.map(([offset, len]) => offset + len));
    this.onceTimer = setTimeout(() => this.stop(), (length + 0.3) * 1000);
  }

  start() {
    if (this.ctx) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      this.ctx = new Ctx();
    } catch {
      this.ctx = null;
      return;
    }
    this.master = this.ctx.createGain();
    this.master.gain.value = this.pattern.volume;
    this.master.connect(this.ctx.destination);
    this.nextAt = this.ctx.currentTime + 0.05;
    this.schedule();
    this.timer = setInterval(() => this.schedule(), 400);
    if (this.ctx.state !== 'running') {
      this.ctx.resume().catch(() => {});
      // A context the autoplay policy holds stays suspended: wait for a gesture.
      setTimeout(() => {
        if (this.ctx && this.ctx.state !== 'running') {
          if (!this.repeat) { this.stop(); return; }
          this.blocked = true;
          GESTURES.forEach((g) => window.addEventListener(g, this.unlock, { capture: true }));
          this.onBlocked?.(true);
        }
      }, 250);
    }
  }

  resume() {
    if (!this.ctx) return;
    this.ctx.resume().then(() => {
      if (this.ctx && this.ctx.state === 'running' && this.blocked) {
        this.blocked = false;
        GESTURES.forEach((g) => window.removeEventListener(g, this.unlock, { capture: true }));
        this.nextAt = Math.max(this.nextAt, this.ctx.currentTime + 0.05);
        this.onBlocked?.(false);
      }
    }).catch(() => {});
  }

  // Keep about 1.5 s of the pattern scheduled ahead of the audio clock.
  schedule() {
    const ctx = this.ctx;
    if (!ctx) return;
    const { period, notes } = this.pattern;
    while (this.nextAt < ctx.currentTime + 1.5) {
      for (const [offset, length, freqs] of notes) {
        const t0 = this.nextAt + offset;
        const env = ctx.createGain();
        env.gain.setValueAtTime(0, t0);
        env.gain.linearRampToValueAtTime(1 / freqs.length, t0 + 0.02);
        env.gain.setValueAtTime(1 / freqs.length, t0 + length - 0.04);
        env.gain.linearRampToValueAtTime(0, t0 + length);
        env.connect(this.master);
        for (const f of freqs) {
          const osc = ctx.createOscillator();
          osc.type = 'sine';
          osc.frequency.value = f;
          osc.connect(env);
          osc.start(t0);
          osc.stop(t0 + length + 0.01);
          this.nodes.add(osc);
          osc.onended = () => { osc.disconnect(); this.nodes.delete(osc); };
        }
      }
      this.nextAt += period;
      if (!this.repeat) { this.nextAt = Infinity; break; }
    }
  }

  stop() {
    clearInterval(this.timer);
    clearTimeout(this.onceTimer);
    this.timer = null;
    this.onceTimer = null;
    this.repeat = true;
    GESTURES.forEach((g) => window.removeEventListener(g, this.unlock, { capture: true }));
    const ctx = this.ctx;
    this.ctx = null;
    if (!ctx) return;
    for (const osc of this.nodes) {
      try { osc.stop(); } catch { /* not started or already stopped */ }
      osc.disconnect();
    }
    this.nodes.clear();
    try { this.master.disconnect(); } catch { /* already disconnected */ }
    ctx.close().catch(() => {});
    if (this.blocked) { this.blocked = false; this.onBlocked?.(false); }
  }
}
