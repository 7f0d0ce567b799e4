"""`tpt codec-server` over real HTTP: Temporal's remote codec protocol, CORS for the UI origin only, the token
(header or /login cookie), loopback Host checking, and clear refusals."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from tpt.codec import EncryptionCodec, data_converter
from tpt.codec.server import COOKIE, CodecServer, CodecServerConfig, CodecServerError

from .conftest import fresh_key, ring

UI = "http://127.0.0.1:8233"
KEYS = ring(("k-now", fresh_key()), ("k-before", fresh_key()))
TOKEN = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def call(server: CodecServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def as_json(payloads: list[Payload]) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def from_json(body: bytes) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


async def encrypted(value: object) -> Payload:
    [payload] = await data_converter(KEYS).encode([value])
    return payload


@pytest.fixture
def open_server() -> Iterator[CodecServer]:
    with CodecServer(CodecServerConfig(EncryptionCodec(KEYS), port=0, origins=[UI])) as server:
        yield server


@pytest.fixture
def token_server() -> Iterator[CodecServer]:
    with CodecServer(CodecServerConfig(EncryptionCodec(KEYS), port=0, origins=[UI], token=TOKEN)) as server:
        yield server


async def test_decode_answers_the_uis_request_with_plaintext(open_server: CodecServer) -> None:
    payload = await encrypted({"serials": ["JAV-F-24-018801"]})
    reply = call(open_server, "POST", "/decode?preserveStorageRefs=true", as_json([payload]),
                 {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI})
    assert reply.status == 200, reply.body
    assert reply.headers["access-control-allow-origin"] == UI
    [plain] = from_json(reply.body)
    assert plain.metadata["encoding"] == b"json/plain"
    assert json.loads(plain.data) == {"serials": ["JAV-F-24-018801"]}
    # the wire format is the proto JSON the UI sends: base64 data and metadata values
    assert base64.b64decode(reply.json()["payloads"][0]["metadata"]["encoding"]) == b"json/plain"  # type: ignore


async def test_encode_encrypts_with_the_current_key(open_server: CodecServer) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"from the UI"')
    reply = call(open_server, "POST", "/encode", as_json([plain]), {"Content-Type": "application/json"})
    [sealed] = from_json(reply.body)
    assert sealed.metadata["encryption-key-id"] == b"k-now" and b"from the UI" not in sealed.data
    assert await data_converter(KEYS).decode([sealed], [str]) == ["from the UI"]


def test_preflight_is_answered_for_the_ui_origin_only(open_server: CodecServer) -> None:
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-namespace,authorization"}
    ok = call(open_server, "OPTIONS", "/decode", headers={"Origin": UI} | asked)
    assert ok.status == 204
    assert ok.headers["access-control-allow-origin"] == UI
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert {"content-type", "x-namespace", "authorization"} <= {
        h.strip().lower() for h in ok.headers["access-control-allow-headers"].split(",")}
    evil = call(open_server, "OPTIONS", "/decode", headers={"Origin": "https://evil.example"} | asked)
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers


async def test_a_request_from_another_origin_is_refused(open_server: CodecServer) -> None:
    reply = call(open_server, "POST", "/decode", as_json([await encrypted("x")]),
                 {"Content-Type": "application/json", "Origin": "https://evil.example"})
    assert reply.status == 403 and "TPT_CODEC_UI_ORIGINS" in reply.json()["error"]  # type: ignore[operator]
    assert "access-control-allow-origin" not in reply.headers


async def test_a_foreign_host_name_is_refused_on_loopback(open_server: CodecServer) -> None:
    """DNS rebinding: a page on attacker.example re-pointed at 127.0.0.1 is same-origin with itself, not with us."""
    reply = call(open_server, "POST", "/decode", as_json([await encrypted("x")]),
                 {"Content-Type": "application/json", "Host": f"attacker.example:{open_server.port}"})
    assert reply.status == 421


async def test_the_token_is_required_when_configured(token_server: CodecServer) -> None:
    body = as_json([await encrypted("behind the token")])
    json_headers = {"Content-Type": "application/json", "Origin": UI}
    missing = call(token_server, "POST", "/decode", body, json_headers)
    assert missing.status == 401
    assert missing.headers["access-control-allow-origin"] == UI  # the UI can read why
    assert "Authorization: Bearer" in missing.json()["error"]  # type: ignore[operator]
    wrong = call(token_server, "POST", "/decode", body, json_headers | {"Authorization": "Bearer guess"})
    assert wrong.status == 401 and "wrong token" in wrong.json()["error"]  # type: ignore[operator]
    right = call(token_server, "POST", "/decode", body, json_headers | {"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200
    assert json.loads(from_json(right.body)[0].data) == "behind the token"


async def test_login_trades_the_token_for_a_session_cookie(token_server: CodecServer) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call(token_server, "GET", "/login").status == 200
    refused = call(token_server, "POST", "/login", urllib.parse.urlencode({"token": "guess"}).encode(), form)
    assert refused.status == 401 and "set-cookie" not in refused.headers
    accepted = call(token_server, "POST", "/login", urllib.parse.urlencode({"token": TOKEN}).encode(), form)
    assert accepted.status == 200
    cookie = accepted.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie and urllib.parse.quote(TOKEN) not in cookie  # the cookie is derived, not the token
    session = cookie.split(";", 1)[0]
    reply = call(token_server, "POST", "/decode", as_json([await encrypted("via cookie")]),
                 {"Content-Type": "application/json", "Origin": UI, "Cookie": session})
    assert reply.status == 200
    cross_site_login = call(token_server, "POST", "/login", urllib.parse.urlencode({"token": TOKEN}).encode(),
                            form | {"Origin": "https://evil.example"})
    assert cross_site_login.status == 403


async def test_an_unknown_key_id_is_a_clear_error_not_a_silent_pass(open_server: CodecServer) -> None:
    [foreign] = await data_converter(ring(("k-elsewhere", fresh_key()))).encode(["x"])
    reply = call(open_server, "POST", "/decode", as_json([foreign]), {"Content-Type": "application/json"})
    assert reply.status == 422
    error = reply.json()["error"]
    assert "'k-elsewhere'" in error and "add key" in error  # type: ignore[operator]


def test_garbage_is_a_bad_request(open_server: CodecServer) -> None:
    reply = call(open_server, "POST", "/decode", b"{not json", {"Content-Type": "application/json"})
    assert reply.status == 400
    assert call(open_server, "POST", "/elsewhere", b"{}").status == 404
    assert call(open_server, "GET", "/healthz").body == b"ok\n"


def test_listening_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(CodecServerError, match="TPT_CODEC_TOKEN"):
        CodecServer(CodecServerConfig(EncryptionCodec(KEYS), host="0.0.0.0", port=0))
    with pytest.raises(CodecServerError, match="no codec key"):
        CodecServer(CodecServerConfig(EncryptionCodec(None), port=0))
