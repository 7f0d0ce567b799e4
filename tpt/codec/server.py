"""`tpt codec-server`: Temporal's remote codec protocol over HTTP, so the Web UI (and `temporal` CLI) can show
decrypted payloads to whoever may reach this server, while Temporal and the UI server only ever hold ciphertext.

POST /encode, POST /decode   {"payloads": [<Payload as proto JSON>]} in and out (the UI's requests; a query string
                              such as ?preserveStorageRefs=true is ignored)
OPTIONS (any path)           CORS preflight; only the configured UI origins get CORS headers
GET /login, POST /login      a form that trades the token for an HttpOnly session cookie, for browsers
POST /logout                 forgets that cookie
GET /healthz                 200 "ok"

Who may decode:
- Origin: a browser request must come from a configured UI origin (TPT_CODEC_UI_ORIGINS); others get 403.
- Token (TPT_CODEC_TOKEN, when set): `Authorization: Bearer <token>` (the `temporal` CLI's --codec-auth, scripts,
  a UI behind an auth proxy) or the session cookie from /login (the Web UI with "Include cross-origin credentials").
  A server listening beyond loopback refuses to start without a token.
- Host: while listening on loopback, a request whose Host is not a loopback name is refused (DNS rebinding).
Standard library only: a threaded HTTP/1.1 server; the codec work is CPU-bound and short.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from tpt.codec.payload import EncryptionCodec, PayloadDecryptionError
from tpt.settings import Settings

log = structlog.get_logger(__name__)

COOKIE = "tpt_codec_session"
COOKIE_MAX_AGE = 12 * 3600
MAX_BODY = 64 * 1024 * 1024  # a page of history events; Temporal's own limit is 2 MiB per payload
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"


class CodecServerError(RuntimeError):
    """The server cannot start as configured; the message says which setting to change."""


@dataclass
class CodecServerConfig:
    codec: EncryptionCodec
    host: str = "127.0.0.1"
    port: int = 8234
    origins: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"])
    token: str | None = None

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)

    def session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"tpt-codec-session/v1", hashlib.sha256).hexdigest()


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CodecServer:
    """The HTTP server; `start()` serves from a background thread (tpt dev), `serve_forever()` in the caller's."""

    def __init__(self, config: CodecServerConfig):
        if config.codec.keyring is None:
            raise CodecServerError("no codec key is configured: set TPT_CODEC_KEY_FILE or TPT_CODEC_KEYS to the "
                                   "keyring the workers use (`tpt codec keygen` makes one)")
        if not config.loopback and not config.token:
            raise CodecServerError(f"the codec server would listen on {config.host}, beyond this machine, with no "
                                   "token: set TPT_CODEC_TOKEN, or TPT_CODEC_SERVER_HOST=127.0.0.1")
        self.config = config
        try:
            self.httpd = _HTTPServer((config.host, config.port), _Handler)
        except OSError as err:
            raise CodecServerError(
                f"the codec server cannot listen on {config.host}:{config.port} ({err.strerror}): stop whatever "
                f"holds it or choose another port with TPT_CODEC_SERVER_PORT") from err
        self.httpd.config = config
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tpt-codec-server", daemon=True)
        self._thread.start()
        log.info("codec server listening", url=self.url, origins=self.config.origins, token=bool(self.config.token))

    def serve_forever(self) -> None:
        log.info("codec server listening", url=self.url, origins=self.config.origins, token=bool(self.config.token))
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving (from any thread but the serving one) and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> CodecServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    config: CodecServerConfig


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        self.status, self.message = status, message
        super().__init__(message)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "tpt-codec-server"
    sys_version = ""

    @property
    def config(self) -> CodecServerConfig:
        return self.server.config

    # --- routes ------------------------------------------------------------------------------------------

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            self._check_host()
            origin = self.headers.get("Origin")
            if origin not in self.config.origins:
                raise _Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} may not call this codec server: add it "
                                                     "to TPT_CODEC_UI_ORIGINS")
        except _Refused as refused:
            return self._json(refused.status, {"error": refused.message})
        self._send(HTTPStatus.NO_CONTENT, b"", "text/plain", {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        })

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        try:
            self._check_host()
        except _Refused as refused:
            return self._json(refused.status, {"error": refused.message})
        if path == "/healthz":
            return self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        if path == "/login":
            return self._login_page()
        if path == "/":
            return self._send(HTTPStatus.OK, self._index().encode(), "text/plain; charset=utf-8")
        self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {path}; POST /encode or /decode"})

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        try:
            self._check_host()
            if path in ("/login", "/logout"):
                self._check_own_origin()
                body = self._body()
                return self._login(body) if path == "/login" else self._logout()
            if path not in ("/encode", "/decode"):
                raise _Refused(HTTPStatus.NOT_FOUND, f"no such path {path}; POST /encode or /decode")
            self._check_ui_origin()
            self._check_token()
            body = self._body()
            self._convert(path.lstrip("/"), body)
        except _Refused as refused:
            self._json(refused.status, {"error": refused.message})

    # --- checks ------------------------------------------------------------------------------------------

    def _path(self) -> str:
        return urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"

    def _check_host(self) -> None:
        if not self.config.loopback:
            return  # reachable beyond loopback: the token is the guard (required in that case)
        host = urllib.parse.urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if not _is_loopback(host):
            raise _Refused(HTTPStatus.MISDIRECTED_REQUEST, f"host {host!r} is not this loopback codec server")

    def _check_ui_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.config.origins:
            raise _Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} may not call this codec server: add it to "
                                                 "TPT_CODEC_UI_ORIGINS")

    def _check_own_origin(self) -> None:
        origin = self.headers.get("Origin")
        own = {f"http://{self.headers.get('Host', '')}"}
        if origin is not None and origin != "null" and origin not in own:
            raise _Refused(HTTPStatus.FORBIDDEN, "log in from this server's own /login page")

    def _check_token(self) -> None:
        token = self.config.token
        if token is None:
            return
        offered = self.headers.get("Authorization", "").strip()
        if offered[:7].lower() == "bearer ":
            offered = offered[7:].strip()
        if offered and hmac.compare_digest(offered.encode(), token.encode()):
            return
        session = self._cookie(COOKIE)
        if session and hmac.compare_digest(session.encode(), self.config.session_value().encode()):
            return
        what = "a wrong token" if offered or session else "no token"
        raise _Refused(HTTPStatus.UNAUTHORIZED,
                       f"{what}: send `Authorization: Bearer <TPT_CODEC_TOKEN>`, or log this browser in at /login "
                       "and enable \"Include cross-origin credentials\" in the UI's Codec Server settings")

    def _cookie(self, name: str) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if length > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        return self.rfile.read(length)

    # --- work --------------------------------------------------------------------------------------------

    def _convert(self, operation: str, body: bytes) -> None:
        try:
            request = json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
        except json_format.ParseError as err:
            raise _Refused(HTTPStatus.BAD_REQUEST, f'expected {{"payloads": [...]}} as proto JSON: {err}') from err
        codec = self.config.codec
        try:
            done = codec.encode_sync(request.payloads) if operation == "encode" else codec.decode_sync(
                request.payloads)
        except PayloadDecryptionError as err:
            log.warning("codec server cannot decrypt", key_id=err.key_id, error=str(err))
            raise _Refused(HTTPStatus.UNPROCESSABLE_ENTITY, str(err)) from err
        out = json_format.MessageToJson(Payloads(payloads=done), indent=None).encode()
        self._send(HTTPStatus.OK, out, "application/json")

    def _login_page(self, message: str = "") -> None:
        origins = ", ".join(html.escape(o) for o in self.config.origins)
        note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tpt codec server</title></head><body>
<h1>tpt codec server</h1>{note}
<p>Enter the codec token (TPT_CODEC_TOKEN) to let this browser see decrypted payloads in the Temporal UI
({origins}).</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="off"></label>
<button type="submit">Log in</button></form></body></html>"""
        self._send(HTTPStatus.OK if not message else HTTPStatus.UNAUTHORIZED, page.encode(), "text/html; charset=utf-8")

    def _login(self, body: bytes) -> None:
        if self.config.token is None:
            return self._send(HTTPStatus.OK, b"this codec server needs no token\n", "text/plain")
        offered = urllib.parse.parse_qs(body.decode(errors="replace")).get("token", [""])[0].strip()
        if not hmac.compare_digest(offered.encode(), self.config.token.encode()):
            log.warning("codec server login refused")
            return self._login_page("Wrong token.")
        cookie = f"{COOKIE}={self.config.session_value()}; HttpOnly; SameSite=Strict; Path=/; Max-Age={COOKIE_MAX_AGE}"
        endpoint = f"http://{self.headers.get('Host', '')}"
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tpt codec server</title></head><body>
<h1>Logged in</h1><p id="logged-in">This browser may now decode payloads for {COOKIE_MAX_AGE // 3600} hours.</p>
<p>In the Temporal UI, open <em>Codec Server</em> settings, enter the endpoint <code>{html.escape(endpoint)}</code>,
tick <em>Include cross-origin credentials</em> and choose <em>Use my browser setting</em>. The UI and this server must
be opened under the same host name (both 127.0.0.1, or both localhost), or the browser withholds the cookie.</p>
</body></html>"""
        log.info("codec server login")
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", {"Set-Cookie": cookie})

    def _logout(self) -> None:
        cookie = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        self._send(HTTPStatus.OK, b"logged out\n", "text/plain", {"Set-Cookie": cookie})

    def _index(self) -> str:
        return ("tpt codec server: POST /encode and /decode (Temporal remote codec protocol).\n"
                f"UI origins allowed: {', '.join(self.config.origins)}\n"
                f"token required: {'yes (Authorization: Bearer, or /login)' if self.config.token else 'no'}\n")

    # --- responses ---------------------------------------------------------------------------------------

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="tpt-codec"'} if status == HTTPStatus.UNAUTHORIZED else {}
        if status >= 400:  # a refused request's body may be unread: never reuse the connection after it
            self.close_connection = True
            headers["Connection"] = "close"
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin in self.config.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Vary", "Origin")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("codec server request", line=format % args, client=self.client_address[0])


def config_from_settings(settings: Settings, codec: EncryptionCodec) -> CodecServerConfig:
    token = settings.codec_token.get_secret_value() if settings.codec_token else None
    return CodecServerConfig(codec=codec, host=settings.codec_server_host, port=settings.codec_port,
                             origins=settings.codec_origins, token=token or None)
