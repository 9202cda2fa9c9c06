"""HTTP handlers: parse the request, call one service, render JSON."""
