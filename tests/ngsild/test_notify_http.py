"""The notification HTTP client (ucity.ngsild.notify_http) against a real local HTTP server.

The server is a small asyncio one whose answer depends on the path, so each test can make it
answer with a Content-Length, chunked or connection-delimited body, close connections, stay
silent, or speak TLS. No mocks: the client's sockets, framing and pool are the ones in use.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ucity.core.netguard import AddressGuard
from ucity.ngsild.notify_http import DeliveryError, NotifyClient, parse_target


@dataclass
class Seen:
    conn: int
    path: str
    headers: dict[str, str]
    body: bytes
    names: list[str]  # every header name as sent, lower-cased, duplicates included


@dataclass
class Server:
    """Answers POSTs by path; records every request with the number of its connection."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    drop_next_on_reuse: bool = False  # close a reused connection on its next request, unanswered
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, served = self.connections, 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers, names = {}, []
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                        names.append(name.strip().lower())
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if self.drop_next_on_reuse and served:
                    self.drop_next_on_reuse = False
                    return  # read the request, then hang up without a byte of answer
                self.seen.append(Seen(conn, path, headers, body, names))
                served += 1
                if not await self.answer(path, writer):
                    return
        finally:
            writer.close()

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Write the response for `path`; False closes the connection after it."""
        if path == "/slow":
            await asyncio.sleep(3600)
        if path == "/length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world")
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        elif path == "/split":  # the response in pieces, as a slow network delivers it
            for piece in (b"HTTP/1.1 202 Acc", b"epted\r\nContent-Le", b"ngth: 4\r\n\r", b"\nab", b"cd"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)
        elif path == "/interim":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        elif path == "/until-close":
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection")
            await writer.drain()
            return False
        elif path == "/close":
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return False
        elif path == "/hangup":  # answered, then the server ends the kept-alive connection
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            return False
        elif path == "/fail":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        elif path == "/garbage":
            writer.write(b"SMTP ready\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        return True

    def url(self, path: str, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


async def start(tls: ssl.SSLContext | None = None) -> Server:
    srv = Server()
    srv.server = await asyncio.start_server(srv.handle, "127.0.0.1", 0, ssl=tls)
    srv.port = srv.server.sockets[0].getsockname()[1]
    return srv


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = await start()
    yield srv
    assert srv.server is not None
    srv.server.close()


@pytest.fixture
async def client() -> AsyncIterator[NotifyClient]:
    c = NotifyClient(timeout=5.0)
    yield c
    await c.aclose()


HEADERS = {"Content-Type": "application/json", "Link": '<https://example.org/ctx.jsonld>; rel="x"'}


async def test_posts_the_body_and_headers_and_reuses_one_connection(server: Server, client: NotifyClient) -> None:
    for n in range(5):
        assert await client.post(server.url("/ok"), b'{"n": %d}' % n, HEADERS) == 204
    assert [s.body for s in server.seen] == [b'{"n": %d}' % n for n in range(5)]
    assert {s.conn for s in server.seen} == {1} and client.connects == 1
    first = server.seen[0].headers
    assert first["content-type"] == "application/json"
    assert first["link"] == HEADERS["Link"]
    assert first["host"] == f"127.0.0.1:{server.port}"
    assert first["content-length"] == "8"
    assert first["user-agent"].startswith("ucity/")


async def test_receiver_headers_replace_the_defaults_and_line_breaks_are_refused(
        server: Server, client: NotifyClient) -> None:
    await client.post(server.url("/ok"), b"{}", {**HEADERS, "user-agent": "mine", "X-Key": "k"})
    seen = server.seen[0].headers
    assert seen["user-agent"] == "mine" and seen["x-key"] == "k"
    assert server.seen[0].names.count("user-agent") == 1
    with pytest.raises(DeliveryError, match="line break"):
        await client.post(server.url("/ok"), b"{}", {"X-Bad": "a\r\nInjected: 1"})
    assert len(server.seen) == 1


@pytest.mark.parametrize(("path", "status"), [("/length", 200), ("/chunked", 201), ("/split", 202),
                                              ("/interim", 204), ("/fail", 500)])
async def test_responses_of_every_framing_leave_the_connection_reusable(
        server: Server, client: NotifyClient, path: str, status: int) -> None:
    assert await client.post(server.url(path), b"{}", HEADERS) == status
    assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
    assert [s.conn for s in server.seen] == [1, 1]


async def test_a_body_delimited_by_the_end_of_the_connection(server: Server, client: NotifyClient) -> None:
    assert await client.post(server.url("/until-close"), b"{}", HEADERS) == 200
    assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
    assert [s.conn for s in server.seen] == [1, 2]


async def test_connection_close_is_honoured(server: Server, client: NotifyClient) -> None:
    assert await client.post(server.url("/close"), b"{}", HEADERS) == 204
    assert client.idle() == 0
    assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
    assert [s.conn for s in server.seen] == [1, 2]


async def test_a_kept_alive_connection_the_server_closed_is_opened_again(server: Server, client: NotifyClient) -> None:
    assert await client.post(server.url("/hangup"), b"{}", HEADERS) == 204
    # Wait until the server's FIN has arrived and the pooled connection is seen closed, so that this tests
    # the check before reuse (a request lost on a reused connection is the next test's path).
    pooled = [c for stack in client._idle.values() for c in stack]
    assert len(pooled) == 1
    deadline = asyncio.get_running_loop().time() + 30
    while not pooled[0].closed:
        assert asyncio.get_running_loop().time() < deadline, "the server's close never reached the client"
        await asyncio.sleep(0.001)
    assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
    assert [s.conn for s in server.seen] == [1, 2]


async def test_a_request_lost_on_a_reused_connection_is_sent_once_more(server: Server, client: NotifyClient) -> None:
    assert await client.post(server.url("/ok"), b"1", HEADERS) == 204
    server.drop_next_on_reuse = True  # the server hangs up as the next request arrives on that connection
    assert await client.post(server.url("/ok"), b"2", HEADERS) == 204
    assert [(s.conn, s.body) for s in server.seen] == [(1, b"1"), (2, b"2")]


async def test_a_silent_endpoint_times_out_and_its_connection_is_not_reused(server: Server) -> None:
    client = NotifyClient(timeout=0.2)
    try:
        with pytest.raises(DeliveryError, match="no response within"):
            await client.post(server.url("/slow"), b"{}", HEADERS)
        assert client.idle() == 0
        assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
        assert [s.conn for s in server.seen] == [1, 2]
    finally:
        await client.aclose()


async def test_refused_connections_and_garbage_are_delivery_errors(server: Server, client: NotifyClient) -> None:
    assert server.server is not None
    with pytest.raises(DeliveryError, match="malformed HTTP response"):
        await client.post(server.url("/garbage"), b"{}", HEADERS)
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(DeliveryError, match="ConnectionRefusedError"):
        await client.post(server.url("/ok"), b"{}", HEADERS)


async def test_concurrent_posts_use_separate_connections_and_all_are_kept(server: Server,
                                                                          client: NotifyClient) -> None:
    statuses = await asyncio.gather(*(client.post(server.url("/split"), b"{}", HEADERS) for _ in range(3)))
    assert statuses == [202, 202, 202]
    assert client.connects == 3 and client.idle() == 3


async def test_uri_credentials_path_and_query_are_sent_as_httpx_did(server: Server, client: NotifyClient) -> None:
    uri = f"http://user:p%40ss@127.0.0.1:{server.port}/a b/ü?x=1&y=ä#frag"
    assert await client.post(uri, b"{}", HEADERS) == 204
    seen = server.seen[0]
    assert seen.path == "/a%20b/%C3%BC?x=1&y=%C3%A4"
    assert seen.headers["authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    await client.post(uri, b"{}", {**HEADERS, "Authorization": "Bearer t"})  # the URI's credentials win
    assert server.seen[1].headers["authorization"] == "Basic dXNlcjpwQHNz"
    assert server.seen[1].names.count("authorization") == 1


def test_targets_keep_ports_ipv6_and_default_ports_like_httpx() -> None:
    assert parse_target("http://[::1]:8080/n", {}).start == b"POST /n HTTP/1.1\r\nHost: [::1]:8080\r\n"
    assert parse_target("http://[::1]:8080/n", {}).origin == ("http", "::1", 8080)
    assert parse_target("https://example.org", {}).origin == ("https", "example.org", 443)
    assert parse_target("https://example.org", {}).start.endswith(b"Host: example.org\r\n")
    assert parse_target("http://bücher.example/", {}).origin[1] == "xn--bcher-kva.example"
    assert parse_target("http://example.org/", {"http": "http://proxy:3128"}).proxied
    assert not parse_target("https://example.org/", {"http": "http://proxy:3128"}).proxied


# -- https ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> AsyncIterator[Server]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificate)
    srv = await start(tls)
    yield srv
    assert srv.server is not None
    srv.server.close()


async def test_https_verifies_the_certificate_and_reuses_the_connection(
        tls_server: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trusted the way httpx trusts it
    client = NotifyClient(timeout=5.0)
    try:
        for host in ("localhost", "127.0.0.1"):
            assert await client.post(tls_server.url("/chunked", "https", host), b"{}", HEADERS) == 201
            assert await client.post(tls_server.url("/ok", "https", host), b"{}", HEADERS) == 204
        assert [s.conn for s in tls_server.seen] == [1, 1, 2, 2]
    finally:
        await client.aclose()


async def test_https_refuses_an_untrusted_certificate(tls_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    client = NotifyClient(timeout=5.0)
    try:
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(tls_server.url("/ok", "https", "localhost"), b"{}", HEADERS)
        assert tls_server.seen == []
    finally:
        await client.aclose()


async def test_an_origin_behind_an_environment_proxy_is_posted_through_httpx(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url(""))  # the local server plays the proxy
    client = NotifyClient(timeout=5.0)
    try:
        assert await client.post("http://notify.example/ngsi", b"{}", HEADERS) == 204
        assert server.seen[0].path == "http://notify.example/ngsi"  # the absolute form a proxy receives
        assert client.connects == 0
    finally:
        await client.aclose()


# -- the SSRF guard (subscriptions.block_private_networks) ---------------------------------------------
async def test_a_guarded_client_refuses_non_public_endpoints_before_connecting(server: Server) -> None:
    client = NotifyClient(timeout=5.0, guard=AddressGuard([], "subscriptions.allowed_networks"))
    try:
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(DeliveryError, match=r"non-public address \((127\.0\.0\.1|::1)\).*allowed_networks"):
                await client.post(server.url("/ok", host=host), b"{}", HEADERS)
        assert server.connections == 0 and server.seen == []
    finally:
        await client.aclose()


async def test_allowed_networks_are_reached(server: Server) -> None:
    client = NotifyClient(timeout=5.0, guard=AddressGuard(["127.0.0.0/8", "::1/128"]))
    try:
        assert await client.post(server.url("/ok"), b"{}", HEADERS) == 204
        assert await client.post(server.url("/ok", host="localhost"), b"{}", HEADERS) == 204
        assert [s.path for s in server.seen] == ["/ok", "/ok"]
    finally:
        await client.aclose()


async def test_the_connection_goes_to_the_checked_address_not_to_the_name_again(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answers an allowed address to the check and another one afterwards."""
    calls: list[str] = []
    real = asyncio.get_running_loop().getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "receiver.test":
            calls.append(host)
            if len(calls) > 1:  # a second lookup would get the address the attacker wants
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    client = NotifyClient(timeout=5.0, guard=AddressGuard(["127.0.0.0/8"]))
    try:
        assert await client.post(server.url("/ok", host="receiver.test"), b"{}", HEADERS) == 204
        assert calls == ["receiver.test"]  # resolved once, by the guard
        assert server.seen[0].headers["host"] == f"receiver.test:{server.port}"  # the name is still the Host
    finally:
        await client.aclose()


async def test_https_through_the_guard_still_verifies_the_name(
        tls_server: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    client = NotifyClient(timeout=5.0, guard=AddressGuard(["127.0.0.0/8", "::1/128"]))
    try:
        assert await client.post(tls_server.url("/ok", "https", "localhost"), b"{}", HEADERS) == 204
    finally:
        await client.aclose()
