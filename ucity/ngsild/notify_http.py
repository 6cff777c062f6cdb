"""A lean HTTP/1.1 client for NGSI-LD notification POSTs (issue #9).

Why not httpx: a busy subscription POSTs a notification per round trip of its endpoint, and httpx
(request and response models, header normalization, the httpcore pool and its locks, anyio
streams) cost about as much server CPU per POST as matching and rendering the notification. The
POSTs here are all alike (one small JSON body, a status code to read, the body to discard), so
this client does only that, on an asyncio protocol:

* keep-alive connections, pooled per origin (scheme, host, port), at most `max_idle` idle in all,
  each closed after `keepalive_s` idle (httpx's defaults: 100 and 5 s); a pooled connection the
  server closed meanwhile is detected before it is used, and a request that gets no byte of a
  response on a reused connection (the server closed it as the request went out) is sent once
  more on a new connection, like browsers and urllib3 do;
* responses framed by Content-Length, chunked transfer coding or the end of the connection;
  interim 1xx responses skipped; the body is read and dropped, never kept;
* one `timeout` for the whole exchange (connect, TLS handshake, request, response), so a slow or
  silent endpoint costs at most that;
* https with the trust store httpx uses (SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle),
  with hostname verification; credentials in the URI as Basic authentication, as httpx sends them;
* URIs are read by `httpx.URL`, once per endpoint, so their normalization (IDNA host names,
  percent-encoding of the path) is the one the previous httpx sender applied;
* an origin that an HTTP(S)_PROXY / ALL_PROXY environment variable covers is posted through httpx,
  which applies the proxy and NO_PROXY rules as before: this client speaks to endpoints directly;
* with a `guard` (ucity.core.netguard, `subscriptions.block_private_networks`), a host is resolved
  and checked before each new connection, and the connection goes to a checked address, never to
  the name again (DNS rebinding); TLS still verifies the certificate for the name. Through a proxy
  the name is checked the same way, but the proxy resolves it again (a documented limit).

Every failure to get a response is a `DeliveryError` whose text says what happened; the caller
counts it as a failed attempt.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from ucity import __version__ as _version
from ucity.core.netguard import AddressGuard, RefusedAddress

MAX_HEAD: Final = 64 * 1024
"""Most bytes of a response's status line and headers (and of a chunk-size or trailer line)."""
_TARGETS_CACHED: Final = 1024
_USER_AGENT: Final = f"ucity/{_version}"

# Response parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_EOF, _DONE = range(8)


class DeliveryError(Exception):
    """A notification POST got no HTTP response (connection, TLS, timeout or protocol failure)."""


class _Closed(DeliveryError):
    """The server closed the connection before the response was complete."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # some response bytes had arrived


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint URI, parsed once: where to connect and the request line and Host header."""

    origin: tuple[str, str, int]  # scheme, host as connected to (IDNA, IPv6 without brackets), port
    start: bytes  # b"POST <path?query> HTTP/1.1\r\nHost: <host[:port]>\r\n"
    authorization: str | None  # Basic credentials from the URI's user info
    proxied: bool  # an environment proxy applies: post through httpx


def parse_target(uri: str, proxies: Mapping[str, str]) -> Target:
    url = httpx.URL(uri)
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise DeliveryError(f"not an absolute http or https URI: {uri!r}")
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    start = b"POST " + url.raw_path + b" HTTP/1.1\r\nHost: " + url.netloc + b"\r\n"
    authorization = None
    if url.username or url.password:
        userpass = f"{url.username}:{url.password}".encode()
        authorization = "Basic " + base64.b64encode(userpass).decode("ascii")
    return Target((url.scheme, host, port), start, authorization, url.scheme in proxies or "all" in proxies)


def default_ssl_context() -> ssl.SSLContext:
    """The verifying context httpx builds by default (httpx._config.create_ssl_context)."""
    if os.environ.get("SSL_CERT_FILE"):
        ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        ctx = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    else:
        import certifi

        ctx = ssl.create_default_context(cafile=certifi.where())
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses the response's framing, drops its body."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._buf = bytearray()
        self._state = _DONE
        self._status = 0
        self._keep_alive = True
        self._remaining = 0
        self._answered = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        self._answered = True
        self._buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(DeliveryError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        self._ended("the server closed the connection")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(f"connection lost: {exc}" if exc else "the server closed the connection")

    # -- the exchange ----------------------------------------------------------------------------
    async def request(self, data: bytes) -> tuple[int, bool]:
        """Send one request; the status code and whether the connection can be used again."""
        assert self.transport is not None
        waiter: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._buf.clear()
        self._state, self._keep_alive, self._answered = _HEAD, True, False
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _ended(self, why: str) -> None:
        self.closed = True
        if self._state == _UNTIL_EOF:  # the end of the connection is the end of this response's body
            self._state = _DONE
            self._succeed()
        else:
            self._fail(_Closed(why, self._answered))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _succeed(self) -> None:
        if self._buf:  # bytes past the response: not a connection to reuse
            self._keep_alive = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._status, self._keep_alive and not self.closed))

    def _parse(self) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ValueError("response headers too long")
                    return
                head = bytes(buf[:end])
                del buf[:end + 4]
                self._head(head)
            elif state == _LENGTH:
                take = min(self._remaining, len(buf))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._state = _DONE
            elif state in (_CHUNK_SIZE, _TRAILER):
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ValueError("chunk-size or trailer line too long")
                    return
                line = bytes(buf[:end])
                del buf[:end + 2]
                if state == _TRAILER:
                    if not line:
                        self._state = _DONE
                    continue
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buf))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _UNTIL_EOF:
                buf.clear()
                return
            if self._state == _DONE:
                self._succeed()
                return

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, status_text = lines[0].split(b" ", 2)[:2]
        if not version.startswith(b"HTTP/1.") or len(status_text) != 3 or not status_text.isdigit():
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        status = int(status_text)
        if 100 <= status < 200:
            if status == 101:
                raise ValueError("unexpected 101 Switching Protocols")
            return  # an interim response: the final one follows
        keep_alive = version == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                n = int(value.strip())
                if n < 0 or (length is not None and n != length):
                    raise ValueError("bad Content-Length")
                length = n
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
                if not chunked:
                    length, keep_alive = None, False  # delimited by the end of the connection
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self._status, self._keep_alive = status, keep_alive
        if status in (204, 304):
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state, self._keep_alive = _UNTIL_EOF, False


class NotifyClient:
    """POSTs notification bodies; see the module docstring for what it does and why."""

    def __init__(self, timeout: float, max_idle: int = 100, keepalive_s: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None, guard: AddressGuard | None = None) -> None:
        self.timeout = timeout
        self.guard = guard
        self.max_idle = max_idle
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._n_idle = 0
        self._open: set[_Connection] = set()
        self._targets: dict[str, Target] = {}
        self._proxies = {k: v for k, v in urllib.request.getproxies_environment().items() if k != "no"}
        self._httpx: httpx.AsyncClient | None = None
        self._next_sweep = 0.0
        self.connects = 0  # connections opened, for tests and health

    async def post(self, uri: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body` to `uri` with `headers`; the response's status code, or DeliveryError."""
        target = self._targets.get(uri)
        if target is None:
            target = self._target(uri)
        if target.proxied:
            if self.guard is not None:  # the name is checked; the proxy resolves it again (documented limit)
                await self._addresses(target.origin[1], target.origin[2])
            return await self._post_httpx(uri, body, headers)
        parts = [target.start]
        defaults = {"user-agent": "User-Agent", "accept": "Accept"}
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise DeliveryError(f"header {name} contains a line break")
            lower = name.lower()
            if lower == "authorization" and target.authorization is not None:
                continue  # credentials in the URI win, as with httpx
            defaults.pop(lower, None)
            parts.append(f"{name}: {value}\r\n".encode())
        if target.authorization is not None:
            parts.append(f"Authorization: {target.authorization}\r\n".encode())
        if "user-agent" in defaults:
            parts.append(f"User-Agent: {_USER_AGENT}\r\n".encode())
        if "accept" in defaults:
            parts.append(b"Accept: */*\r\n")
        parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        parts.append(body)
        data = b"".join(parts)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(target, data)
        except TimeoutError:
            raise DeliveryError(f"no response within {self.timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, reset, DNS, certificate ...
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def _target(self, uri: str) -> Target:
        try:
            target = parse_target(uri, self._proxies)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise DeliveryError(f"invalid URI {uri!r}: {exc}") from exc
        if len(self._targets) >= _TARGETS_CACHED:
            self._targets.clear()
        self._targets[uri] = target
        return target

    async def _exchange(self, target: Target, data: bytes) -> int:
        while True:
            conn = self._take(target.origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target.origin)
            try:
                status, keep_alive = await conn.request(data)
            except _Closed as exc:
                self._discard(conn)
                if reused and not exc.answered:
                    continue  # a kept-alive connection the server closed as the request went out
                raise
            except BaseException:  # timeout, cancellation, malformed response: the connection is unusable
                self._discard(conn)
                raise
            if keep_alive:
                self._release(conn)
            else:
                self._discard(conn)
            return status

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The guard's checked addresses of `host`, within the timeout; DeliveryError when refused or unresolved."""
        assert self.guard is not None
        try:
            async with asyncio.timeout(self.timeout):
                return await self.guard.resolve(host, port, "the endpoint's host")
        except RefusedAddress as exc:
            raise DeliveryError(str(exc)) from None
        except TimeoutError:
            raise DeliveryError(f"{host} not resolved within {self.timeout:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        addresses = [host] if self.guard is None else await self._addresses(host, port)
        if scheme == "https" and self._ssl is None:
            self._ssl = default_ssl_context()
        conn: _Connection | None = None
        for n, address in enumerate(addresses):  # the checked addresses, in the resolver's order
            try:
                if scheme == "https":  # the certificate is verified for the name, not the address
                    _, conn = await loop.create_connection(lambda: _Connection(origin), address, port, ssl=self._ssl,
                                                           server_hostname=host)
                else:
                    _, conn = await loop.create_connection(lambda: _Connection(origin), address, port)
                break
            except OSError:
                if n == len(addresses) - 1:
                    raise
        assert conn is not None
        self.connects += 1
        self._open.add(conn)
        return conn

    def _take(self, origin: tuple[str, str, int]) -> _Connection | None:
        stack = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while stack:
            conn = stack.pop()
            self._n_idle -= 1
            assert conn.transport is not None
            if conn.closed or conn.transport.is_closing() or now - conn.idle_since > self.keepalive_s:
                self._discard(conn)
                continue
            return conn
        return None

    def _release(self, conn: _Connection) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_sweep:
            self._sweep(now)
        if self._n_idle >= self.max_idle:
            self._discard(conn)
            return
        conn.idle_since = now
        self._idle.setdefault(conn.origin, []).append(conn)
        self._n_idle += 1

    def _sweep(self, now: float) -> None:
        """Close the connections idle for longer than keepalive_s (at most every keepalive_s)."""
        self._next_sweep = now + self.keepalive_s
        for origin, stack in list(self._idle.items()):
            fresh = [c for c in stack if not c.closed and now - c.idle_since <= self.keepalive_s]
            for conn in stack:
                if conn not in fresh:
                    self._discard(conn)
            self._n_idle -= len(stack) - len(fresh)
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def _post_httpx(self, uri: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout),
                                            limits=httpx.Limits(max_connections=None,
                                                                max_keepalive_connections=self.max_idle))
        try:
            response = await self._httpx.post(uri, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code

    def idle(self) -> int:
        """Connections kept alive for reuse now."""
        return self._n_idle

    async def aclose(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()
        self._n_idle = 0
        if self._httpx is not None:
            await self._httpx.aclose()
            self._httpx = None
