// Typing indicators: who is typing where, each expiring unless refreshed.
// Methods of the Store (store.js), mixed into its prototype.

export const typing = {
  typingUsers(roomId) {
    return [...(this.typing.get(roomId)?.keys() || [])];
  },

  setTyping(roomId, userId, active) {
    let map = this.typing.get(roomId);
    if (!map) { map = new Map(); this.typing.set(roomId, map); }
    clearTimeout(map.get(userId));
    if (active) {
      map.set(userId, setTimeout(() => this.setTyping(roomId, userId, false), 7000));
    } else {
      map.delete(userId);
    }
    this.emit('typing', { roomId });
  },

  // Nobody is known to be typing any more: the socket is down, no "stopped" can arrive.
  clearTyping() {
    for (const [roomId, map] of this.typing) {
      map.forEach((timer) => clearTimeout(timer));
      this.typing.delete(roomId);
      this.emit('typing', { roomId });
    }
  },
};
