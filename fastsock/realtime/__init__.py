"""WebSocket transport: the handler, event routing, and the hub that delivers events."""
