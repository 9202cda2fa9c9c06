"""FastSock's SFU worker: forwards group-call media as encoded frames (aiortc), admitted and
placed by FastSock (`python -m sfu`, docs/calls.md)."""
