// Small helpers shared by the state modules.

export const PAGE = 40; // messages per history page
export const cmpId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
export const uid = () => (crypto.randomUUID ? crypto.randomUUID().replace(/-/g, '') : `${Date.now()}${Math.random()}`.replace('.', ''));
