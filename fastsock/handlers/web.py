"""The browser client: `/` serves the app shell, `/static/...` its ES modules and styles."""

from __future__ import annotations

from pathlib import Path

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# The client renders user text with textContent only; this policy backs that up: no inline
# script, nothing loaded from elsewhere, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _security_headers(handler: RequestHandler) -> None:
    handler.set_header("Content-Security-Policy", CSP)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")


class AppShellHandler(RequestHandler):
    route = "/"

    def get(self) -> None:
        _security_headers(self)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish((WEB_ROOT / "index.html").read_bytes())


class AssetHandler(StaticFileHandler):
    route = "/static/(.*)"

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        # No file name holds a NUL; os.path would raise on it (a 500 with a traceback).
        if "\x00" in path:
            raise HTTPError(404)
        return super().get_absolute_path(root, path)

    def set_extra_headers(self, path: str) -> None:
        _security_headers(self)
        self.set_header("Cache-Control", "no-cache")  # no build step, so no hashed names
