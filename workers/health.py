"""The worker's probes over plain HTTP (stdlib asyncio, no web framework): GET /healthz and GET /readyz.

/healthz answers 200 while the process's event loop runs (liveness: restart me only if this stops answering).
/readyz answers 200 only when every readiness check passes (Temporal reachable, Postgres reachable, worker
polling) and the worker is not draining; otherwise 503 with a JSON body naming what failed.
`python -m workers.health [readyz|healthz]` probes the local endpoint (the container healthcheck).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

# A check returns None when ready and raises (with a short reason) when not.
Check = Callable[[], Awaitable[None]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    def __init__(self, port: int, checks: Mapping[str, Check], *, host: str = "0.0.0.0",
                 check_timeout: float = 2.0):
        self.host, self.port = host, port
        self.checks = dict(checks)
        self.check_timeout = check_timeout
        self.draining = False
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as err:
            raise OSError(err.errno, f"health endpoint cannot listen on port {self.port} ({err.strerror}): "
                                     "set TPT_HEALTH_PORT to a free port, or 0 to turn the probes off") from err
        log.info("health endpoint listening", port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check concurrently, each under the timeout; the verdict and each check's outcome."""
        if self.draining:
            return False, {"worker": "draining: shutting down"}
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), self.check_timeout) for n in names), return_exceptions=True
        )
        report = {n: "ok" if r is None else _reason(r) for n, r in zip(names, results, strict=True)}
        return all(r is None for r in results), report

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(_read_request(reader), 5.0)
            status, body = await self._respond(method, path)
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a probe that hangs up or sends garbage gets nothing
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, method: str, path: str) -> tuple[int, dict[str, object]]:
        path = path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz"):
            return 404, {"error": f"no such endpoint {path}; try /healthz or /readyz"}
        if method != "GET":
            return 405, {"error": "use GET"}
        if path == "/healthz":
            return 200, {"status": "alive"}
        ready, report = await self.readiness()
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", "checks": report}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) < 2:
        raise ValueError("not an HTTP request")
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # headers are not needed
        pass
    return request_line[0].upper(), request_line[1]


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"[:300]


def probe(endpoint: str, port: int, timeout: float = 3.0) -> int:
    """Exit status for a container healthcheck: 0 when the endpoint answers 200, 1 otherwise."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{endpoint}", timeout=timeout) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as err:
        print(f"{endpoint}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from tpt.settings import Settings

    sys.exit(probe(sys.argv[1] if len(sys.argv) > 1 else "readyz", Settings().health_port))
