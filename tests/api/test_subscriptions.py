"""NGSI-LD subscriptions (ETSI GS CIM 009 §5.8, §5.11, §6.10, §6.11).

Three layers, each through real collaborators:

* CRUD and validation over HTTP (`client`: the real app on a fresh SQLite data dir);
* end to end: a real uvicorn server (`live_server`) notifying a real local HTTP receiver: a notification
  goes out at once (while the platform clock stands still, before the next write), and slow and dead
  endpoints delay neither writes nor other subscriptions (shown by order: the slow endpoint holds its
  POST until the rest is done). No stopwatch: latency is measured in bench/bench_latency.py;
* matching, throttling, expiry, periodic notifications, retries and persistence on a fake clock:
  a started `Ucity` driven through its framework-free handlers, still notifying a real receiver.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import ContextServer, assert_problem, context_server, link
from tests.conftest import LiveServer, free_port
from ucity.app import Ucity
from ucity.core.bus import EntityChange
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.http import Req, Resp
from ucity.ngsild.scope import parse_scope_query, scope_matcher
from ucity.ngsild.subscriptions import (
    Notification,
    Outbox,
    Subscription,
    SubscriptionIndex,
    classify,
    notification_id,
)
from ucity.server import create_app

__all__ = ["context_server"]  # the fixture, imported for pytest

NGSI = "/ngsi-ld/v1"
SUBS = f"{NGSI}/subscriptions"
ENTITIES = f"{NGSI}/entities"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
NULL = "urn:ngsi-ld:null"
B1, B2, A1 = "urn:ngsi-ld:Building:b1", "urn:ngsi-ld:Building:b2", "urn:ngsi-ld:Building:a1"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# How long a test waits for something that happens at once when the code works: generous, because the
# CI machine can be loaded; a working run never waits that long, a broken one fails after it.
WAIT_S = 30.0
GATE_LIMIT_S = 120.0  # the longest a gated endpoint holds a POST (the tests open their gates long before)


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def subscription(uri: str, **members: Any) -> dict[str, Any]:
    """A subscription to Buildings notifying `uri`; `members` override or add members."""
    notification = {"endpoint": {"uri": uri}, **members.pop("notification", {})}
    return {"type": "Subscription", "entities": [{"type": "Building"}], "notification": notification, **members}


# ================================================================================================
# A real HTTP receiver
# ================================================================================================


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    at: float  # time.monotonic() once the request was read

    @property
    def values(self) -> list[Any]:
        """The temperature of each notified entity (normalized format)."""
        return [e["temperature"]["value"] for e in self.body["data"]]


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST; paths can be held (gated) or failing."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures: dict[str, int] = {}  # path -> how many of its next requests get a 500
        # path -> a gate its POSTs wait at before they are answered: an endpoint as slow as the test
        # wants it, answering when the test says so rather than after a delay that load could outlast.
        self.gates: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real notification receiver would

            def do_POST(self) -> None:  # the http.server naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.record(Received(self.path, headers, orjson.loads(raw), time.monotonic()))
                gate = receiver.gates.get(self.path)  # a slow endpoint
                if gate is not None:
                    gate.wait(GATE_LIMIT_S)  # bounded: a failing test must not hang the receiver for ever
                self.send_response(receiver.status(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def record(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def status(self, path: str) -> int:
        with self._cond:
            if self.failures.get(path, 0) > 0:
                self.failures[path] -= 1
                return 500
        return 200

    def on(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.path == path]

    def wait(self, path: str, count: int, timeout: float = WAIT_S) -> list[Received]:
        """Block until `path` got `count` requests (or fail after `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: len([r for r in self.received if r.path == path]) >= count, timeout)
        got = self.on(path)
        assert len(got) >= count, f"{path}: {len(got)} of {count} notifications after {timeout} s"
        return got

    async def await_(self, path: str, count: int, timeout: float = WAIT_S) -> list[Received]:
        """`wait` without blocking the event loop the broker delivers from."""
        return await asyncio.to_thread(self.wait, path, count, timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        for gate in server.gates.values():
            gate.set()  # answer what is still held, so that the server's threads end
        server.server.shutdown()
        server.server.server_close()


# ================================================================================================
# CRUD and validation over HTTP
# ================================================================================================


def create_sub(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    response = client.post(SUBS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    location = str(response.headers["location"])
    assert location.startswith(SUBS + "/urn:ngsi-ld:Subscription:")
    return location[len(SUBS) + 1:]


def get_sub(client: TestClient, sub_id: str, headers: dict[str, str] | None = None, **params: str) -> dict[str, Any]:
    response = client.get(f"{SUBS}/{sub_id}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_then_retrieve_shows_what_the_client_set_plus_status_and_default_triggers(
        client: TestClient) -> None:
    # Conformance 028_01/028_06 compare the whole body: no isActive, format, sysAttrs, accept or
    # counters the client did not set; status and the default notificationTrigger are shown.
    sub_id = create_sub(client, subscription("http://127.0.0.1:9/notify", watchedAttributes=["temperature"],
                                             q="temperature>30", description="hot buildings"))
    assert get_sub(client, sub_id) == {
        "id": sub_id, "type": "Subscription", "description": "hot buildings",
        "entities": [{"type": "Building"}], "watchedAttributes": ["temperature"], "q": "temperature>30",
        "notificationTrigger": ["attributeCreated", "attributeUpdated"], "status": "active",
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }


def test_every_member_round_trips(client: TestClient) -> None:
    body = subscription(
        "https://receiver.example/ngsi", id="urn:ngsi-ld:Subscription:full", subscriptionName="full",
        entities=[{"type": "Building", "idPattern": "^urn:ngsi-ld:Building:"},
                  {"type": "(Building;Shop),Park", "id": B1}],
        watchedAttributes=["temperature", "humidity"], notificationTrigger=["attributeUpdated", "entityDeleted"],
        geoQ={"geometry": "Point", "coordinates": [127.0, 37.5], "georel": "near;maxDistance==1000"},
        scopeQ="/Seoul", lang="ko", throttling=5, expiresAt="2099-01-01T00:00:00Z", isActive=False,
        notification={"attributes": ["temperature"], "format": "keyValues", "sysAttrs": True,
                      "endpoint": {"uri": "https://receiver.example/ngsi", "accept": "application/ld+json",
                                   "receiverInfo": [{"key": "X-Auth-Token", "value": "s3cr3t"}]}},
    )
    sub_id = create_sub(client, body)
    got = get_sub(client, sub_id, options="sysAttrs")
    assert sub_id == "urn:ngsi-ld:Subscription:full"
    assert got["entities"] == [{"type": "Building", "idPattern": "^urn:ngsi-ld:Building:"},
                               {"type": "(Building;Shop),Park", "id": B1}]
    assert got["geoQ"] == {"geometry": "Point", "coordinates": [127.0, 37.5], "georel": "near;maxDistance==1000",
                           "geoproperty": "location"}
    assert got["expiresAt"] == "2099-01-01T00:00:00.000000Z"
    assert got["status"] == "paused"
    assert got["notification"]["endpoint"]["receiverInfo"] == [{"key": "X-Auth-Token", "value": "s3cr3t"}]
    assert got["notification"]["format"] == "keyValues"
    assert (got["throttling"], got["scopeQ"], got["lang"], got["subscriptionName"]) == (5, "/Seoul", "ko", "full")
    assert got["notificationTrigger"] == ["attributeUpdated", "entityDeleted"]
    assert got["createdAt"] == got["modifiedAt"]


def test_duplicate_id_is_409(client: TestClient) -> None:
    body = subscription("http://127.0.0.1:9/n", id="urn:ngsi-ld:Subscription:one")
    create_sub(client, body)
    assert_problem(client.post(SUBS, json=body), 409, "AlreadyExists")


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("no type", {"entities": [{"type": "Building"}], "notification": {"endpoint": {"uri": "http://a.b/n"}}}),
    ("wrong type", subscription("http://a.b/n", type="Entity")),
    ("id not a URI", subscription("http://a.b/n", id="not a uri")),
    ("neither entities nor watchedAttributes", {"type": "Subscription",
                                                 "notification": {"endpoint": {"uri": "http://a.b/n"}}}),
    ("entities empty", subscription("http://a.b/n", entities=[])),
    ("selector without type", subscription("http://a.b/n", entities=[{"id": B1}])),
    ("selector id not a URI", subscription("http://a.b/n", entities=[{"type": "Building", "id": "b 1"}])),
    ("bad idPattern", subscription("http://a.b/n", entities=[{"type": "Building", "idPattern": "(["}])),
    ("watchedAttributes empty", subscription("http://a.b/n", watchedAttributes=[])),
    ("watchedAttributes not names", subscription("http://a.b/n", watchedAttributes=[1])),
    ("no notification", {"type": "Subscription", "entities": [{"type": "Building"}]}),
    ("no endpoint", subscription("http://a.b/n", notification={"endpoint": None})),
    ("relative uri", subscription("/notify")),
    ("ftp uri", subscription("ftp://a.b/n")),
    ("bad accept", subscription("http://a.b/n", notification={"endpoint": {"uri": "http://a.b/n",
                                                                           "accept": "text/plain"}})),
    ("bad format", subscription("http://a.b/n", notification={"format": "compact"})),
    ("bad sysAttrs", subscription("http://a.b/n", notification={"sysAttrs": "yes"})),
    ("bad receiverInfo", subscription("http://a.b/n", notification={
        "endpoint": {"uri": "http://a.b/n", "receiverInfo": [{"key": "Bad Header", "value": "x"}]}})),
    ("header injection", subscription("http://a.b/n", notification={
        "endpoint": {"uri": "http://a.b/n", "receiverInfo": [{"key": "X-A", "value": "a\r\nX-B: b"}]}})),
    ("unknown trigger", subscription("http://a.b/n", notificationTrigger=["entityChanged"])),
    ("bad q", subscription("http://a.b/n", q="temperature>>3")),
    ("bad geoQ", subscription("http://a.b/n", geoQ={"geometry": "Point", "coordinates": [127, 37.5]})),
    ("expiresAt in the past", subscription("http://a.b/n", expiresAt="2000-01-01T00:00:00Z")),
    ("expiresAt not a date", subscription("http://a.b/n", expiresAt="soon")),
    ("negative throttling", subscription("http://a.b/n", throttling=-1)),
    ("timeInterval not a number", subscription("http://a.b/n", timeInterval="60")),
    ("timeInterval with watchedAttributes", subscription("http://a.b/n", timeInterval=60,
                                                         watchedAttributes=["temperature"])),
    ("timeInterval with throttling", subscription("http://a.b/n", timeInterval=60, throttling=5)),
    ("scopeQ not a scope", subscription("http://a.b/n", scopeQ="Seoul")),
    ("scopeQ unbalanced", subscription("http://a.b/n", scopeQ="(/Seoul,/Busan")),
    ("isActive not a boolean", subscription("http://a.b/n", isActive="true")),
    ("jsonldContext not a URI", subscription("http://a.b/n", jsonldContext="my context")),
]


@pytest.mark.parametrize(("case", "body"), INVALID, ids=[c for c, _ in INVALID])
def test_invalid_subscriptions_are_400(client: TestClient, case: str, body: dict[str, Any]) -> None:
    assert_problem(client.post(SUBS, json=body), 400, "BadRequestData")
    assert client.get(SUBS).json() == []


def test_show_changes_is_not_supported(client: TestClient) -> None:
    body = subscription("http://a.b/n", notification={"showChanges": True})
    assert_problem(client.post(SUBS, json=body), 422, "OperationNotSupported")


def test_body_that_is_not_json_is_400_and_wrong_media_type_415(client: TestClient) -> None:
    bad = client.post(SUBS, content=b"{nope", headers={"Content-Type": "application/json"})
    assert_problem(bad, 400, "InvalidRequest")
    text = client.post(SUBS, content=b"{}", headers={"Content-Type": "text/plain"})
    assert_problem(text, 415, "UnsupportedMediaType")


def test_list_pages_and_counts(client: TestClient) -> None:
    ids = [create_sub(client, subscription("http://a.b/n", id=f"urn:ngsi-ld:Subscription:{n}")) for n in range(3)]
    first = client.get(SUBS, params={"limit": "2", "count": "true"})
    assert first.status_code == 200
    assert [s["id"] for s in first.json()] == ids[:2]
    assert first.headers["NGSILD-Results-Count"] == "3"
    assert 'rel="next"' in first.headers["Link"] and "offset=2" in first.headers["Link"]
    second = client.get(SUBS, params={"limit": "2", "offset": "2"})
    assert [s["id"] for s in second.json()] == ids[2:]
    assert "NGSILD-Results-Count" not in second.headers
    assert 'rel="prev"' in second.headers["Link"]
    assert client.get(SUBS, params={"limit": "0", "count": "true"}).headers["NGSILD-Results-Count"] == "3"
    assert_problem(client.get(SUBS, params={"limit": "0"}), 400, "BadRequestData")


def test_patch_merges_a_fragment(client: TestClient) -> None:
    sub_id = create_sub(client, subscription("http://a.b/n", watchedAttributes=["temperature"],
                                             expiresAt="2099-01-01T00:00:00Z"))
    before = get_sub(client, sub_id, options="sysAttrs")
    response = client.patch(f"{SUBS}/{sub_id}", json={
        "watchedAttributes": ["humidity"], "isActive": False, "expiresAt": None, "q": "humidity>80",
        "notification": {"format": "keyValues", "attributes": ["humidity"]}})
    assert response.status_code == 204, response.text
    after = get_sub(client, sub_id, options="sysAttrs")
    assert after["watchedAttributes"] == ["humidity"]
    assert after["q"] == "humidity>80"
    assert (after["isActive"], after["status"]) == (False, "paused")
    assert "expiresAt" not in after
    # The notification parameters are merged, not replaced: the endpoint is still there.
    assert after["notification"]["endpoint"] == {"uri": "http://a.b/n"}
    assert (after["notification"]["format"], after["notification"]["attributes"]) == ("keyValues", ["humidity"])
    assert after["createdAt"] == before["createdAt"] and after["modifiedAt"] >= before["modifiedAt"]


def test_patch_errors(client: TestClient) -> None:
    sub_id = create_sub(client, subscription("http://a.b/n", watchedAttributes=["temperature"]))
    url = f"{SUBS}/{sub_id}"
    assert_problem(client.patch(url, json={"id": "urn:ngsi-ld:Subscription:other"}), 400, "BadRequestData")
    assert_problem(client.patch(url, json={"expiresAt": "2001-01-01T00:00:00Z"}), 400, "BadRequestData")
    assert_problem(client.patch(url, json={"notification": {"endpoint": {"uri": "nowhere"}}}), 400, "BadRequestData")
    assert_problem(client.patch(url, json={"timeInterval": 10}), 400, "BadRequestData")  # with watchedAttributes
    assert_problem(client.patch(url, json={"entities": None, "watchedAttributes": None}), 400, "BadRequestData")
    assert_problem(client.patch(url, json={}), 400, "BadRequestData")
    assert_problem(client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:none", json={"isActive": True}), 404,
                   "ResourceNotFound")
    assert get_sub(client, sub_id)["watchedAttributes"] == ["temperature"]  # nothing half-applied


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    """The app with the SSRF guard of notification endpoints on (production's default), 10.20.0.0/16 allowed."""
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                             subscriptions={"block_private_networks": True, "allowed_networks": ["10.20.0.0/16"]})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9/n", "http://localhost:9/n", "https://[::1]/n",
                                 "http://169.254.169.254/latest/meta-data/", "http://10.21.0.5/n"])
def test_non_public_endpoints_are_refused_when_guarded(guarded: TestClient, uri: str) -> None:
    body = assert_problem(guarded.post(SUBS, json=subscription(uri)), 400, "BadRequestData")
    assert "non-public address" in body["detail"] and "subscriptions.allowed_networks" in body["detail"]
    assert guarded.get(SUBS).json() == []


def test_allowed_networks_and_names_are_accepted_and_a_patch_is_checked_too(guarded: TestClient) -> None:
    inside = create_sub(guarded, subscription("http://10.20.3.4:8080/n"))
    named = create_sub(guarded, subscription("https://receiver.example/n"))  # its addresses: checked on connect
    assert {s["id"] for s in guarded.get(SUBS).json()} == {inside, named}
    response = guarded.patch(f"{SUBS}/{named}", json={"notification": {"endpoint": {"uri": "http://127.0.0.1/n"}}})
    assert_problem(response, 400, "BadRequestData")
    assert get_sub(guarded, named)["notification"]["endpoint"]["uri"] == "https://receiver.example/n"


def test_the_guard_is_on_in_production_unless_set(tmp_path: Path) -> None:
    from ucity.ngsild.subscriptions import endpoint_guard

    def guard(**kw: Any) -> Any:
        return endpoint_guard(load_settings(data_dir=str(tmp_path), **kw))

    assert guard(environment="production") is not None
    assert guard(environment="production", subscriptions={"block_private_networks": False}) is None
    assert guard(environment="test") is None and guard(environment="development") is None
    assert guard(environment="test", subscriptions={"block_private_networks": True}) is not None


def test_delete(client: TestClient) -> None:
    sub_id = create_sub(client, subscription("http://a.b/n"))
    assert client.delete(f"{SUBS}/{sub_id}").status_code == 204
    assert_problem(client.get(f"{SUBS}/{sub_id}"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{SUBS}/{sub_id}"), 404, "ResourceNotFound")
    assert_problem(client.get(f"{SUBS}/not-a-uri"), 400, "BadRequestData")


def test_subscriptions_are_per_tenant(client: TestClient) -> None:
    city = {"NGSILD-Tenant": "city1"}
    sub_id = create_sub(client, subscription("http://a.b/n"), headers=city)
    assert client.get(SUBS).json() == []
    assert_problem(client.get(f"{SUBS}/{sub_id}"), 404, "ResourceNotFound")
    listed = client.get(SUBS, headers=city)
    assert [s["id"] for s in listed.json()] == [sub_id]
    assert listed.headers["NGSILD-Tenant"] == "city1"
    assert_problem(client.get(SUBS, headers={"NGSILD-Tenant": "nowhere"}), 404, "NonexistentTenant")


def test_names_are_stored_expanded_and_compacted_with_the_readers_context(
        client: TestClient, context_server: ContextServer) -> None:
    url = context_server.serve("/ctx.jsonld", {"temp": "https://example.org/temperature",
                                               "Bldg": "https://example.org/Building"})
    sub_id = create_sub(client, {
        "type": "Subscription", "entities": [{"type": "Bldg"}], "watchedAttributes": ["temp", "humidity"],
        "notification": {"attributes": ["temp"], "endpoint": {"uri": "http://a.b/n"}}}, headers=link(url))
    plain = get_sub(client, sub_id)
    assert plain["entities"] == [{"type": "https://example.org/Building"}]
    assert plain["watchedAttributes"] == ["https://example.org/temperature", "humidity"]
    assert plain["notification"]["attributes"] == ["https://example.org/temperature"]
    with_context = get_sub(client, sub_id, headers=link(url))
    assert with_context["entities"] == [{"type": "Bldg"}]
    assert with_context["watchedAttributes"] == ["temp", "humidity"]
    as_ld = client.get(f"{SUBS}/{sub_id}", headers={**link(url), "Accept": "application/ld+json"}).json()
    assert as_ld["@context"] == url  # as the client named it (a Link header URL: a string)
    stored = {doc["id"]: doc for _, _, doc in stored_subscriptions(client)}[sub_id]
    assert stored["watchedAttributes"] == ["https://example.org/temperature", VOCAB + "humidity"]
    assert stored["entities"] == [{"types": [["https://example.org/Building"]]}]
    assert stored["context"] == url


def stored_subscriptions(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    """The stored subscription documents, read through the store (any backend) on the app's loop."""
    ucity: Ucity = client.app.state.ucity  # type: ignore[attr-defined]
    assert client.portal is not None
    docs: list[tuple[str, str, dict[str, Any]]] = client.portal.call(ucity.store.list_docs, "subscription")
    return docs


def test_subscriptions_survive_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as first:
        sub_id = create_sub(first, subscription("http://a.b/n", watchedAttributes=["temperature"]))
    with TestClient(create_app(settings)) as second:
        assert get_sub(second, sub_id)["watchedAttributes"] == ["temperature"]
        assert second.get("/health").json()["components"]["subscriptions"]["subscriptions"] == 1


# ================================================================================================
# End to end: real uvicorn, real receiver; what the tests show is order, not a stopwatch
# (the latency of a notification is measured in bench/bench_latency.py)
# ================================================================================================


def http_create_building(http: httpx.Client, entity_id: str, temperature: float,
                         headers: dict[str, str] | None = None) -> None:
    body = {"id": entity_id, "type": "Building", "temperature": prop(temperature)}
    response = http.post(ENTITIES, json=body, headers=headers)
    assert response.status_code == 201, response.text


def http_subscribe(http: httpx.Client, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    response = http.post(SUBS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.headers["location"]).rsplit("/", 1)[1]


def http_stats(http: httpx.Client, sub_id: str, attempts: int) -> dict[str, Any]:
    """The delivery counters once `attempts` posts completed (the receipt precedes the response)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        stats: dict[str, Any] = http.get(f"{SUBS}/{sub_id}").json()["notification"]
        if stats.get("timesSent", 0) >= attempts or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def http_patch(http: httpx.Client, entity_id: str, temperature: float, headers: dict[str, str] | None = None) -> None:
    """PATCH the temperature; the write is acknowledged (204)."""
    response = http.patch(f"{ENTITIES}/{entity_id}/attrs", json={"temperature": prop(temperature)}, headers=headers)
    assert response.status_code == 204, response.text


def test_a_notification_goes_out_at_once_with_the_right_body_and_headers(
        settings: Settings, receiver: Receiver) -> None:
    # The platform's clock stands still: a notification held for any timer of the platform (a batching
    # window, a flush) would never arrive. And each one arrives before the next write is made: none
    # waits for a later write to push it out.
    with LiveServer(settings, FakeClock(T0)) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        http_create_building(http, B1, 20.0)
        sub_id = http_subscribe(http, subscription(
            f"{receiver.url}/fast", watchedAttributes=["temperature"],
            notification={"endpoint": {"uri": f"{receiver.url}/fast",
                                       "receiverInfo": [{"key": "X-Auth-Token", "value": "s3cr3t"}]}}))
        for n, value in enumerate((21.0, 22.5, 24.0, 25.5, 27.0), start=1):
            http_patch(http, B1, value)
            got = receiver.wait("/fast", n)[n - 1]
            assert got.body["type"] == "Notification"
            assert got.body["id"].startswith("urn:ngsi-ld:Notification:")
            assert got.body["subscriptionId"] == sub_id
            assert got.body["notifiedAt"] == "2026-03-01T09:00:00.000000Z"  # the platform clock's time
            assert got.body["data"] == [{"id": B1, "type": "Building", "temperature": prop(value)}]
            assert got.headers["content-type"] == "application/json"
            assert got.headers["link"] == f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; ' \
                                          'type="application/ld+json"'
            assert got.headers["x-auth-token"] == "s3cr3t"
            assert "ngsild-tenant" not in got.headers
        assert len({r.body["id"] for r in receiver.on("/fast")}) == 5
        status = http_stats(http, sub_id, attempts=5)
        assert (status["timesSent"], status["status"]) == (5, "ok")
        assert status["lastSuccess"] == status["lastNotification"]


def test_ld_json_endpoint_and_tenant_header(live_server: LiveServer, receiver: Receiver) -> None:
    city = {"NGSILD-Tenant": "city1"}
    with httpx.Client(base_url=live_server.url, timeout=WAIT_S) as http:
        http_create_building(http, B1, 20.0, headers=city)
        http_create_building(http, B1, 5.0)  # the same id in the default tenant must not notify
        http_subscribe(http, subscription(f"{receiver.url}/ld", notification={
            "format": "keyValues", "endpoint": {"uri": f"{receiver.url}/ld", "accept": "application/ld+json"}}),
            headers=city)
        http_patch(http, B1, 6.0)
        http_patch(http, B1, 30.0, headers=city)
        got = receiver.wait("/ld", 1)[0]
        assert got.headers["content-type"] == "application/ld+json"
        assert got.headers["ngsild-tenant"] == "city1"
        assert "link" not in got.headers
        assert got.body["@context"] == CORE
        assert got.body["data"] == [{"id": B1, "type": "Building", "temperature": 30.0}]
        assert len(receiver.on("/ld")) == 1  # the default tenant's write (made first) notified nothing


def test_dead_and_slow_endpoints_delay_neither_writes_nor_other_subscriptions(
        tmp_path: Path, receiver: Receiver) -> None:
    # The slow endpoint holds its first POST until every write below is answered and every notification
    # of the fast subscription received: each of those did not wait for it (order, not a stopwatch). The
    # platform waits for an answer longer than the test takes, so that the held POST does not time out.
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             subscriptions={"notify_timeout_s": GATE_LIMIT_S})
    slow_gate = receiver.gates["/slow"] = threading.Event()
    dead = f"http://127.0.0.1:{free_port()}/dead"  # nothing listens there: connection refused
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        try:
            http_create_building(http, B1, 0.0)
            dead_id = http_subscribe(http, subscription(dead))
            http_subscribe(http, subscription(f"{receiver.url}/slow"))
            http_subscribe(http, subscription(f"{receiver.url}/fast"))
            for n in range(1, 6):
                http_patch(http, B1, float(n))  # answered while the slow endpoint holds its first POST
                receiver.wait("/fast", n)
                receiver.wait("/slow", 1)  # from the first write on, the slow endpoint's POST is in flight
            assert [r.values for r in receiver.on("/fast")] == [[1.0], [2.0], [3.0], [4.0], [5.0]]
            assert [r.values for r in receiver.on("/slow")] == [[1.0]]  # still unanswered: one POST at a time
            failed = http_stats(http, dead_id, attempts=1)
            assert failed["status"] == "failed" and failed["timesFailed"] >= 1 and "lastSuccess" not in failed
        finally:
            slow_gate.set()
        # Once answered, the slow endpoint gets the rest in order: what queued up behind the first POST goes
        # in the second, in one notification.
        slow = receiver.wait("/slow", 2)
        assert [r.values for r in slow] == [[1.0], [2.0, 3.0, 4.0, 5.0]]


# ================================================================================================
# On a fake clock: a started Ucity driven through its handlers
# ================================================================================================


class Broker:
    """A started ucity on a fake clock, called through its framework-free handlers."""

    def __init__(self, ucity: Ucity, clock: FakeClock) -> None:
        self.ucity = ucity
        self.clock = clock

    async def call(self, handler: Any, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None, **path_params: str) -> Resp:
        req = Req(method=method, path=path, headers={"content-type": "application/json", **(headers or {})},
                  body=orjson.dumps(body) if body is not None else b"", path_params=path_params)
        resp: Resp = await handler(req)
        return resp

    async def create(self, entity_id: str, tenant: str | None = None, **attrs: Any) -> None:
        headers = {"ngsild-tenant": tenant} if tenant else {}
        resp = await self.call(self.ucity.ngsild.create_entity, "POST", ENTITIES,
                               {"id": entity_id, "type": "Building", **attrs}, headers)
        assert resp.status == 201
        await self.settle()

    async def update(self, entity_id: str, **attrs: Any) -> None:
        resp = await self.call(self.ucity.ngsild.update_attrs, "PATCH", f"{ENTITIES}/{entity_id}/attrs", attrs,
                               entityId=entity_id)
        assert resp.status == 204, resp.body
        await self.settle()

    async def append(self, entity_id: str, **attrs: Any) -> None:
        resp = await self.call(self.ucity.ngsild.append_attrs, "POST", f"{ENTITIES}/{entity_id}/attrs", attrs,
                               entityId=entity_id)
        assert resp.status == 204, resp.body
        await self.settle()

    async def delete(self, entity_id: str, attr: str | None = None) -> None:
        if attr is None:
            resp = await self.call(self.ucity.ngsild.delete_entity, "DELETE", f"{ENTITIES}/{entity_id}",
                                   entityId=entity_id)
        else:
            resp = await self.call(self.ucity.ngsild.delete_attr, "DELETE", f"{ENTITIES}/{entity_id}/attrs/{attr}",
                                   entityId=entity_id, attrId=attr)
        assert resp.status == 204, resp.body
        await self.settle()

    async def subscribe(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        resp = await self.call(self.ucity.subscriptions.create, "POST", SUBS, body, headers)
        assert resp.status == 201, resp.body
        return resp.headers["Location"].rsplit("/", 1)[1]

    async def patch_sub(self, sub_id: str, fragment: dict[str, Any]) -> None:
        resp = await self.call(self.ucity.subscriptions.update, "PATCH", f"{SUBS}/{sub_id}", fragment,
                               subscriptionId=sub_id)
        assert resp.status == 204, resp.body

    async def status(self, sub_id: str) -> dict[str, Any]:
        resp = await self.call(self.ucity.subscriptions.retrieve, "GET", f"{SUBS}/{sub_id}", subscriptionId=sub_id)
        body: dict[str, Any] = resp.body
        return body

    def sub(self, sub_id: str, tenant: str = "urn:ngsi-ld:tenant:default") -> Subscription:
        return self.ucity.subscriptions.subs[(tenant, sub_id)]

    async def settle(self) -> None:
        """Wait until every committed change went through the bus (matching is synchronous there)."""
        await self.ucity.publisher.drain()


def fake_clock_settings(tmp_path: Path, **subscriptions: Any) -> Settings:
    # not exclusive: test_subscriptions_processes plays two processes on one store with these settings
    return load_settings(environment="test", data_dir=str(tmp_path / "data"),
                         store={"group_commit_ms": 1.0, "exclusive": False},
                         subscriptions={"max_retries": 3, "retry_base_s": 1.0, **subscriptions})


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    clock = FakeClock(T0)
    ucity = Ucity(fake_clock_settings(tmp_path), clock=clock)
    await ucity.start()
    try:
        yield Broker(ucity, clock)
    finally:
        await ucity.stop()


async def test_watched_attributes_filter(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(20), humidity=prop(50))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/w", watchedAttributes=["temperature"]))
    await broker.update(B1, humidity=prop(55))
    assert broker.sub(sub_id).notifications == 0
    await broker.update(B1, temperature=prop(21))
    got = await receiver.await_("/w", 1)
    assert got[0].body["data"] == [{"id": B1, "type": "Building", "temperature": prop(21),
                                    "humidity": prop(55)}]
    assert broker.sub(sub_id).notifications == 1


async def test_q_filter(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(20))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/q", q="temperature>30"))
    await broker.update(B1, temperature=prop(25))
    assert broker.sub(sub_id).notifications == 0
    await broker.update(B1, temperature=prop(35))
    assert [r.values for r in await receiver.await_("/q", 1)] == [[35]]


async def test_geo_filter(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, location=point(128.0, 37.5))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/geo", geoQ={
        "geometry": "Point", "coordinates": [127.0, 37.5], "georel": "near;maxDistance==1000"}))
    await broker.update(B1, location=point(127.5, 37.5))  # about 44 km away
    assert broker.sub(sub_id).notifications == 0
    await broker.update(B1, location=point(127.001, 37.5))  # about 88 m away
    got = await receiver.await_("/geo", 1)
    assert got[0].body["data"][0]["location"] == point(127.001, 37.5)


async def test_id_and_id_pattern_selectors(broker: Broker, receiver: Receiver) -> None:
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/id", entities=[
        {"type": "Building", "idPattern": "^urn:ngsi-ld:Building:a"}, {"type": "Building", "id": B2}]))
    await broker.create(B1, temperature=prop(1))
    assert broker.sub(sub_id).notifications == 0
    await broker.create(A1, temperature=prop(2))
    await broker.create(B2, temperature=prop(3))
    assert [r.body["data"][0]["id"] for r in await receiver.await_("/id", 2)] == [A1, B2]


async def test_default_triggers_notify_creation_and_updates_only(broker: Broker, receiver: Receiver) -> None:
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/d"))
    await broker.create(B1, temperature=prop(1), humidity=prop(40))
    await broker.update(B1, temperature=prop(2))
    await broker.delete(B1, "humidity")
    await broker.delete(B1)
    got = await receiver.await_("/d", 2)
    assert [r.values for r in got] == [[1], [2]]
    assert broker.sub(sub_id).notifications == 2


async def test_entity_deleted_trigger(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(1))
    await broker.subscribe(subscription(f"{receiver.url}/del", notificationTrigger=["entityDeleted"],
                                        notification={"sysAttrs": True}))
    await broker.update(B1, temperature=prop(2))
    await broker.delete(B1)
    got = await receiver.await_("/del", 1)
    stamp = "2026-03-01T09:00:00.000000Z"
    assert got[0].body["data"] == [{"id": B1, "type": "Building", "createdAt": stamp, "modifiedAt": stamp,
                                    "deletedAt": stamp}]


async def test_attribute_triggers(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(1), humidity=prop(40))
    deleted = await broker.subscribe(subscription(f"{receiver.url}/attr-del",
                                                  notificationTrigger=["attributeDeleted"]))
    created = await broker.subscribe(subscription(f"{receiver.url}/attr-new",
                                                  notificationTrigger=["attributeCreated"]))
    await broker.update(B1, temperature=prop(2))
    assert (broker.sub(deleted).notifications, broker.sub(created).notifications) == (0, 0)
    await broker.append(B1, pressure=prop(1013))
    await broker.delete(B1, "humidity")
    got_new = await receiver.await_("/attr-new", 1)
    assert got_new[0].body["data"][0]["pressure"] == prop(1013)
    got_del = await receiver.await_("/attr-del", 1)
    assert got_del[0].body["data"] == [{"id": B1, "type": "Building", "temperature": prop(2),
                                        "pressure": prop(1013), "humidity": prop(NULL)}]
    assert (broker.sub(deleted).notifications, broker.sub(created).notifications) == (1, 1)


async def test_entity_created_only_ignores_updates(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(1))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/new", notificationTrigger=["entityCreated"]))
    await broker.update(B1, temperature=prop(2))
    assert broker.sub(sub_id).notifications == 0
    await broker.create(B2, temperature=prop(3))
    assert [r.values for r in await receiver.await_("/new", 1)] == [[3]]


async def test_key_values_projection_and_paused_subscription(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(1), humidity=prop(40))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/kv", isActive=False, notification={
        "format": "keyValues", "attributes": ["temperature"]}))
    await broker.update(B1, temperature=prop(2))
    assert broker.sub(sub_id).notifications == 0
    await broker.patch_sub(sub_id, {"isActive": True})
    await broker.update(B1, temperature=prop(3))
    got = await receiver.await_("/kv", 1)
    assert got[0].body["data"] == [{"id": B1, "type": "Building", "temperature": 3}]


async def test_other_tenants_changes_are_not_seen(broker: Broker, receiver: Receiver) -> None:
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/t"), headers={"ngsild-tenant": "city1"})
    await broker.create(B1, temperature=prop(1))
    assert broker.sub(sub_id, "city1").notifications == 0
    await broker.create(B1, tenant="city1", temperature=prop(2))
    got = await receiver.await_("/t", 1)
    assert (got[0].values, got[0].headers["ngsild-tenant"]) == ([2], "city1")


async def test_notifications_use_the_subscriptions_context(
        broker: Broker, receiver: Receiver, context_server: ContextServer) -> None:
    url = context_server.serve("/ctx.jsonld", {"temp": "https://example.org/temperature",
                                               "Bldg": "https://example.org/Building"})
    ctx = {"link": link(url)["Link"]}
    resp = await broker.call(broker.ucity.ngsild.create_entity, "POST", ENTITIES,
                             {"id": B1, "type": "Bldg", "temp": prop(1)}, ctx)
    assert resp.status == 201
    await broker.subscribe({"type": "Subscription", "entities": [{"type": "Bldg"}], "watchedAttributes": ["temp"],
                            "notification": {"endpoint": {"uri": f"{receiver.url}/ctx"}}}, ctx)
    resp = await broker.call(broker.ucity.ngsild.update_attrs, "PATCH", f"{ENTITIES}/{B1}/attrs",
                             {"temp": prop(2)}, ctx, entityId=B1)
    assert resp.status == 204
    got = (await receiver.await_("/ctx", 1))[0]
    assert got.body["data"] == [{"id": B1, "type": "Bldg", "temp": prop(2)}]
    assert got.headers["link"].startswith(f"<{url}>")


async def test_throttling_sends_the_latest_state_when_the_window_ends(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(0))
    await broker.create(B2, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/thr", throttling=10))
    await broker.update(B1, temperature=prop(1))  # t0: sent at once
    assert [r.values for r in await receiver.await_("/thr", 1)] == [[1]]
    broker.clock.advance(3)
    await broker.update(B1, temperature=prop(2))
    broker.clock.advance(3)
    await broker.update(B2, temperature=prop(5))
    await broker.update(B1, temperature=prop(3))
    assert broker.sub(sub_id).notifications == 1  # nothing more inside the 10 s window
    broker.clock.advance(3.999)
    assert broker.sub(sub_id).notifications == 1
    broker.clock.advance(0.001)  # t0 + 10 s: one notification, latest state per entity, in order of change
    got = await receiver.await_("/thr", 2)
    assert [e["id"] for e in got[1].body["data"]] == [B2, B1]
    assert got[1].values == [5, 3]
    assert got[1].body["notifiedAt"] == "2026-03-01T09:00:10.000000Z"
    broker.clock.advance(20)
    await broker.update(B1, temperature=prop(4))  # window long over: sent at once
    assert [r.values for r in await receiver.await_("/thr", 3)][2] == [4]


async def test_expired_subscription_stops_notifying(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/exp", expiresAt="2026-03-01T09:01:00Z"))
    broker.clock.advance(59)
    await broker.update(B1, temperature=prop(1))
    assert [r.values for r in await receiver.await_("/exp", 1)] == [[1]]
    assert (await broker.status(sub_id))["status"] == "active"
    broker.clock.advance(1)
    assert (await broker.status(sub_id))["status"] == "expired"
    await broker.update(B1, temperature=prop(2))
    assert broker.sub(sub_id).notifications == 1


async def test_periodic_notifications_follow_the_clock(broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(1))
    await broker.create(B2, temperature=prop(2))
    await broker.create("urn:ngsi-ld:Building:hot", temperature=prop(90))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/every", timeInterval=60, q="temperature<50"))
    await broker.update(B1, temperature=prop(10))
    assert broker.sub(sub_id).notifications == 0  # periodic subscriptions do not react to changes
    broker.clock.advance(59)
    assert broker.sub(sub_id).notifications == 0
    broker.clock.advance(1)
    first = (await receiver.await_("/every", 1))[0]
    assert sorted(e["id"] for e in first.body["data"]) == [B1, B2]
    assert first.body["notifiedAt"] == "2026-03-01T09:01:00.000000Z"
    await broker.update(B2, temperature=prop(70))
    broker.clock.advance(60)
    second = (await receiver.await_("/every", 2))[1]
    assert [(e["id"], e["temperature"]["value"]) for e in second.body["data"]] == [(B1, 10)]


async def test_failed_posts_are_retried_with_exponential_backoff(broker: Broker, receiver: Receiver) -> None:
    receiver.failures["/flaky"] = 2
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/flaky"))
    await broker.update(B1, temperature=prop(1))
    await receiver.await_("/flaky", 1)
    stats = await _stats_after(broker, sub_id, attempts=1)
    assert (stats["status"], stats["timesFailed"], stats["lastFailure"]) == ("failed", 1, "2026-03-01T09:00:00.000000Z")
    broker.clock.advance(0.5)
    broker.clock.advance(0.5)  # the first retry is due retry_base_s = 1 s after the failure
    await receiver.await_("/flaky", 2)
    stats = await _stats_after(broker, sub_id, attempts=2)
    assert (stats["status"], stats["lastFailure"]) == ("failed", "2026-03-01T09:00:01.000000Z")
    broker.clock.advance(2)  # then 2 s later
    got = await receiver.await_("/flaky", 3)
    stats = await _stats_after(broker, sub_id, attempts=3)
    assert (stats["status"], stats["timesSent"], stats["timesFailed"]) == ("ok", 3, 2)
    assert stats["lastSuccess"] == "2026-03-01T09:00:03.000000Z"
    assert len({r.body["id"] for r in got}) == 1  # the same notification, delivered at least once


async def test_a_notification_is_abandoned_after_max_retries_and_the_next_one_goes(
        broker: Broker, receiver: Receiver) -> None:
    receiver.failures["/down"] = 4  # the first attempt and all 3 retries fail
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/down"))
    await broker.update(B1, temperature=prop(1))
    await broker.update(B1, temperature=prop(2))  # queued behind the first: order is kept
    for attempt, wait in enumerate((1, 2, 4), start=2):
        await _stats_after(broker, sub_id, attempts=attempt - 1)
        broker.clock.advance(wait)
    got = await receiver.await_("/down", 5)
    assert [r.values for r in got] == [[1], [1], [1], [1], [2]]
    stats = await _stats_after(broker, sub_id, attempts=5)
    assert (stats["timesSent"], stats["timesFailed"], stats["status"]) == (5, 4, "ok")


async def test_a_post_without_answer_within_notify_timeout_counts_as_failed(tmp_path: Path,
                                                                          receiver: Receiver) -> None:
    receiver.gates["/silent"] = threading.Event()  # answers only at the end of the test, long after 0.2 s
    clock = FakeClock(T0)
    ucity = Ucity(fake_clock_settings(tmp_path, notify_timeout_s=0.2, max_retries=0), clock=clock)
    await ucity.start()
    try:
        broker = Broker(ucity, clock)
        await broker.create(B1, temperature=prop(0))
        sub_id = await broker.subscribe(subscription(f"{receiver.url}/silent"))
        await broker.update(B1, temperature=prop(1))
        stats = await _stats_after(broker, sub_id, attempts=1)
        assert (stats["status"], stats["timesFailed"], stats["lastFailure"]) == ("failed", 1, "2026-03-01T09:00:00.000000Z")
        assert "lastSuccess" not in stats
    finally:
        await ucity.stop()


async def _stats_after(broker: Broker, sub_id: str, attempts: int) -> dict[str, Any]:
    """The delivery counters once `attempts` posts have completed (waits on real I/O only)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        stats: dict[str, Any] = (await broker.status(sub_id))["notification"]
        if stats.get("timesSent", 0) >= attempts:
            return stats
        assert time.monotonic() < deadline, f"{attempts} attempts did not complete: {stats}"
        await asyncio.sleep(0.01)


async def test_delivery_counters_are_persisted_every_few_seconds_not_per_notification(
        broker: Broker, receiver: Receiver) -> None:
    await broker.create(B1, temperature=prop(0))
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/count"))
    for value in (1, 2, 3):  # one at a time: updates queued behind a POST in flight go out together
        await broker.update(B1, temperature=prop(value))
        await receiver.await_("/count", value)
    await _stats_after(broker, sub_id, attempts=3)

    async def stored() -> dict[str, Any]:
        docs = await broker.ucity.store.list_docs("subscription")
        return {key: doc for _, key, doc in docs}[sub_id]["notification"]  # type: ignore[no-any-return]

    assert "timesSent" not in await stored()  # nothing persisted yet: no counter before a delivery
    broker.clock.advance(4.999)
    assert "timesSent" not in await stored()
    broker.clock.advance(0.001)  # the flush timer runs the write as a task: wait for the write (I/O)
    deadline = time.monotonic() + WAIT_S
    while (await stored()).get("timesSent") != 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    persisted = await stored()
    assert (persisted["timesSent"], persisted["status"]) == (3, "ok")


async def test_restart_restores_subscriptions_and_their_counters(tmp_path: Path, receiver: Receiver) -> None:
    settings = fake_clock_settings(tmp_path)
    clock = FakeClock(T0)
    first = Broker(Ucity(settings, clock=clock), clock)
    await first.ucity.start()
    try:
        await first.create(B1, temperature=prop(0))
        sub_id = await first.subscribe(subscription(f"{receiver.url}/again", watchedAttributes=["temperature"]))
        await first.update(B1, temperature=prop(1))
        await receiver.await_("/again", 1)
        await _stats_after(first, sub_id, attempts=1)
    finally:
        await first.ucity.stop()  # flushes the counters
    later = FakeClock(T0 + timedelta(minutes=1))
    second = Broker(Ucity(settings, clock=later), later)
    await second.ucity.start()
    try:
        assert (await second.status(sub_id))["notification"]["timesSent"] == 1
        await second.update(B1, temperature=prop(2))
        assert [r.values for r in await receiver.await_("/again", 2)] == [[1], [2]]
    finally:
        await second.ucity.stop()


# ================================================================================================
# The index (pure)
# ================================================================================================


def _sub(n: int, entity_type: str, watched: list[str] | None) -> Subscription:
    doc: dict[str, Any] = {"id": f"urn:ngsi-ld:Subscription:{n}", "entities": [{"types": [[entity_type]]}],
                           "notification": {"endpoint": {"uri": "http://a.b/n", "accept": "application/json"}}}
    if watched is not None:
        doc["watchedAttributes"] = watched
    return Subscription.compile("t", doc, ctx=None)


def _change(entity_type: str, attrs: list[str], tenant: str = "t") -> EntityChange:
    before = {"id": B1, "type": [entity_type], "attrs": {a: [prop(0)] for a in attrs}}
    after = {"id": B1, "type": [entity_type], "attrs": {a: [prop(1)] for a in attrs}}
    return EntityChange(tenant, B1, "update", before, after, frozenset(attrs))


def test_index_finds_candidates_by_type_and_watched_attribute_only() -> None:
    index = SubscriptionIndex()
    subs = [_sub(n, f"T{n % 100}", [f"a{n % 7}"] if n % 2 else None) for n in range(1000)]
    for sub in subs:
        index.add(sub)
    change = _change("T3", ["a3"])
    found = index.candidates("t", change.types, classify(change).attrs)
    expected = {s.key for s in subs if s.selectors[0].groups[0][0] == "T3" and (s.watched is None or "a3" in s.watched)}
    assert found == expected and 0 < len(found) <= 10
    assert index.candidates("other-tenant", change.types, ["a3"]) == set()
    for sub in subs:
        index.remove(sub)
    assert len(index) == 0 and index.candidates("t", ["T3"], ["a3"]) == set()


def test_index_may_match_never_skips_a_candidate() -> None:
    """`may_match` (the shortcut of _on_changes) is False only where `candidates` finds nothing, and it
    forgets a tenant's types as their subscriptions go."""
    index = SubscriptionIndex()
    typed = [_sub(n, f"T{n}", ["a1"] if n % 2 else None) for n in range(4)]
    untyped = Subscription.compile("t2", {"id": "urn:ngsi-ld:Subscription:any", "type": "Subscription",
                                          "watchedAttributes": ["a1"], "notification": {
                                              "endpoint": {"uri": "http://a.b/n", "accept": "application/json"}}}, ctx=None)
    for sub in [*typed, untyped]:
        index.add(sub)
    for tenant in ("t", "t2", "t3"):
        for types in ([], ["T0"], ["T1", "X"], ["X"], ["X", "T3"]):
            for attrs in ([], ["a1"], ["a2"], ["a1", "a2"]):
                if index.candidates(tenant, types, attrs):
                    assert index.may_match(tenant, types), (tenant, types, attrs)
    assert not index.may_match("t", ["X"]) and not index.may_match("t3", ["T0"])
    assert index.may_match("t2", ["X"]) and index.may_match("t2", [])  # no entities: any type
    for sub in typed[:2]:
        index.remove(sub)
    assert not index.may_match("t", ["T0"]) and index.may_match("t", ["T2"])
    for sub in [*typed[2:], untyped]:
        index.remove(sub)
    assert not any(index.may_match(t, ["T2"]) for t in ("t", "t2")) and index._types == {}


def test_classify_says_what_changed() -> None:
    before = {"id": B1, "type": ["T"], "attrs": {"x": [prop(1)], "y": [prop(1)]}}
    after = {"id": B1, "type": ["T"], "attrs": {"x": [prop(2)], "z": [prop(1)]}}
    update = classify(EntityChange("t", B1, "replace", before, after, frozenset({"x", "y", "z"})))
    assert (update.entity, dict(update.attrs)) == (
        "entityUpdated", {"x": "attributeUpdated", "y": "attributeDeleted", "z": "attributeCreated"})
    assert classify(EntityChange("t", B1, "create", None, after, frozenset())).entity == "entityCreated"
    assert classify(EntityChange("t", B1, "delete", before, None, frozenset())).entity == "entityDeleted"


@pytest.mark.parametrize(("scope_q", "expected"), [
    ("/Seoul", ["c"]),  # exactly /Seoul, not its descendants (§4.19)
    ("/Seoul/#", ["a", "c"]),
    ("/Seoul/Guro", ["a"]),
    ("/Busan,/Seoul/Guro", ["a", "b"]),
    ("/+/Guro", ["a"]),
    ("/#", ["a", "b", "c"]),
    ("/Daegu", []),
    ("/Seoul/#;/+/Guro", ["a"]),
    ("(/Busan,/Seoul);/#", ["b", "c"]),
])
def test_scope_query_reads_like_the_entity_query(scope_q: str, expected: list[str]) -> None:
    scopes = {"a": ["/Seoul/Guro"], "b": ["/Busan"], "c": ["/Seoul"], "none": []}
    test = scope_matcher(parse_scope_query(scope_q))
    assert [name for name, held in scopes.items() if test(held)] == expected


async def test_scope_filter(broker: Broker, receiver: Receiver) -> None:
    sub_id = await broker.subscribe(subscription(f"{receiver.url}/scope", scopeQ="/Seoul/#"))
    await broker.create(B1, scope="/Busan", temperature=prop(1))
    assert broker.sub(sub_id).notifications == 0
    await broker.create(B2, scope="/Seoul/Guro", temperature=prop(2))
    assert [r.values for r in await receiver.await_("/scope", 1)] == [[2]]


async def test_a_full_queue_drops_its_oldest_notification_and_keeps_order() -> None:
    delivered: list[str] = []
    gate = asyncio.Event()

    async def deliver(item: Notification) -> None:
        await gate.wait()
        delivered.append(item.id)

    outbox = Outbox(2, deliver, "test-outbox")
    try:
        outbox.put(Notification("a", "", []))
        await asyncio.sleep(0)  # the worker takes "a" and waits at the gate
        for item in ("b", "c", "d"):
            outbox.put(Notification(item, "", []))
        assert (outbox.dropped, outbox.queue.qsize()) == (1, 2)
        gate.set()
        while len(delivered) < 3:
            await asyncio.sleep(0)
        assert delivered == ["a", "c", "d"]
    finally:
        await outbox.close()



def test_notification_ids_are_unique_uuid4_urns_also_after_a_fork() -> None:
    ids = [notification_id() for _ in range(600)]  # more than one pool of 256
    assert len(set(ids)) == 600
    assert all(uuid.UUID(i.removeprefix("urn:ngsi-ld:Notification:")).version == 4 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next id it makes
        os.write(write, notification_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    assert child.startswith("urn:ngsi-ld:Notification:") and child != notification_id()


async def test_a_poked_idle_outbox_queues_and_delivers_in_its_next_step() -> None:
    entered: list[str] = []
    collected: list[int] = []
    gate = asyncio.Event()
    gate.set()

    async def deliver(item: Notification) -> None:
        entered.append(item.id)
        await gate.wait()

    def collect() -> None:  # what SubscriptionService._notify_key does: queue what was matched
        collected.append(1)
        outbox.put(Notification(f"n{len(collected)}", "", [{}]))

    outbox = Outbox(10, deliver, "test-outbox", coalesce=100, collect=collect)
    try:
        await asyncio.sleep(0)  # the worker starts and waits for work
        assert outbox.poke() and outbox.poke()  # poked twice in one step: collected once
        await asyncio.sleep(0)  # one step of the worker: collected, queued and being delivered
        assert (entered, collected) == (["n1"], [1])
        gate.clear()
        outbox.put(Notification("a", "", [{}]))
        await asyncio.sleep(0)  # the worker posts "a" and waits at the gate: busy
        assert entered == ["n1", "a"]
        assert not outbox.poke()  # a busy worker is not poked; its matches are queued for it
        gate.set()
    finally:
        await outbox.close()


async def test_a_full_outbox_drops_a_poke_before_any_notification() -> None:
    async def deliver(item: Notification) -> None:
        pass

    outbox = Outbox(1, deliver, "test-outbox", collect=lambda: None)
    try:
        await asyncio.sleep(0)
        assert outbox.poke()
        outbox.put(Notification("a", "", []))  # the queue (size 1) holds the poke: it gives way
        assert (outbox.dropped, outbox.queue.qsize()) == (0, 1)
        assert outbox.queue.get_nowait().id == "a"
    finally:
        await outbox.close()


async def test_a_poke_never_queues_behind_a_notification() -> None:
    delivered: list[str] = []

    async def deliver(item: Notification) -> None:
        delivered.append(item.id)

    outbox = Outbox(1, deliver, "test-outbox", coalesce=100, collect=lambda: None)
    try:
        await asyncio.sleep(0)  # the worker waits for work
        outbox.put(Notification("a", "", [{}]))  # queued; the worker has not run yet
        assert not outbox.poke()  # it would sit behind "a" (and the queue is full): left to notify_matched
        while not delivered:
            await asyncio.sleep(0)
        assert delivered == ["a"] and outbox.queue.empty()
    finally:
        await outbox.close()
