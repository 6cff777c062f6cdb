"""Tests of ucity.ngsild.context: compiled @contexts, name renaming, the resolver and the registry.

Remote contexts come from a real HTTP server on 127.0.0.1 started here; PyLD (a full JSON-LD
processor, never on the hot path) is the oracle for expansion.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from ucity.core import errors
from ucity.core.clock import FakeClock
from ucity.ngsild.context import (
    CORE_CONTEXT_URL,
    CORE_CONTEXT_URLS,
    DEFAULT_VOCAB,
    ENTITY_MEMBERS,
    INSTANCE_MEMBERS,
    VOCAB_MEMBERS,
    CompiledContext,
    ContextBadRequest,
    ContextError,
    ContextNotFound,
    ContextRegistry,
    ContextResolver,
    InvalidContext,
    LdContextNotAvailable,
    StoredContext,
    compact_attrs,
    compact_names,
    compile_local,
    core_context,
    core_document,
    expand_attrs,
    expand_names,
)

NGSI = "https://uri.etsi.org/ngsi-ld/"
SDM = "https://smartdatamodels.org/"
T = TypeVar("T")
GATE_LIMIT_S = 60.0  # the longest a gated route holds its answer (its test opens the gate long before)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# A real HTTP server serving contexts, counting hits per path
# ---------------------------------------------------------------------------------------------


@dataclass
class Route:
    body: bytes
    status: int = 200
    delay: float = 0.0
    gate: threading.Event | None = None  # held until the test opens it (at most GATE_LIMIT_S)
    location: str | None = None  # a redirect's target


@dataclass
class ContextServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, str] = field(default_factory=dict)  # path -> the Host header of its last request

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, document: Any, *, status: int = 200, delay: float = 0.0,
              gate: threading.Event | None = None) -> str:
        body = document if isinstance(document, bytes) else orjson.dumps(document)
        url = self.url(path)
        self.routes[urlsplit(url).path] = Route(body, status, delay, gate)
        return url


def _handler(server: ContextServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits[self.path] += 1
            server.hosts[self.path] = self.headers.get("Host", "")
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            time.sleep(route.delay)
            if route.gate is not None:
                route.gate.wait(GATE_LIMIT_S)
            self.send_response(route.status)
            if route.location is not None:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", "application/ld+json")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)  # the client may have given up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def http_server() -> Iterator[ContextServer]:
    state = ContextServer(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(http_server: ContextServer, request: pytest.FixtureRequest) -> ContextServer:
    """The shared server, with paths unique to the test (so hit counts are the test's own)."""
    prefix = "/" + re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    return ContextServer(http_server.base + prefix, http_server.routes, http_server.hits, http_server.hosts)


def hits(server: ContextServer, url: str) -> int:
    return server.hits[urlsplit(url).path]


def unused_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


SDM_CONTEXT: dict[str, Any] = {
    "@context": {
        "sdm": SDM,
        "schema": "https://schema.org/",
        "Building": "sdm:dataModel.Building/Building",
        "name": "schema:name",
        "address": "schema:address",
        "category": {"@id": "sdm:category", "@type": "@vocab"},
        "owner": {"@id": "sdm:owner", "@type": "@id"},
        "floorsAboveGround": {"@id": "sdm:floorsAboveGround", "@type": "http://www.w3.org/2001/XMLSchema#integer"},
    }
}


# ---------------------------------------------------------------------------------------------
# The core context
# ---------------------------------------------------------------------------------------------


def test_every_core_url_maps_to_the_bundled_file() -> None:
    expected = {f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld" for n in range(3, 10)}
    expected.add("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld")
    assert set(CORE_CONTEXT_URLS) == expected
    assert CORE_CONTEXT_URL in CORE_CONTEXT_URLS
    shared = Path("/work/shared/ngsi-ld/ngsi-ld-core-context-v1.9.jsonld")
    if shared.exists():
        assert core_document() == orjson.loads(shared.read_bytes())


def test_core_terms_expand_and_compact() -> None:
    core = core_context()
    cases = {
        "location": NGSI + "location",
        "observationSpace": NGSI + "observationSpace",
        "Property": NGSI + "Property",
        "GeoProperty": NGSI + "GeoProperty",
        "observedAt": NGSI + "observedAt",
        "value": NGSI + "hasValue",
        "Point": "https://purl.org/geojson/vocab#Point",
        "description": "http://purl.org/dc/terms/description",
    }
    for term, iri in cases.items():
        assert core.expand_term(term) == iri
        assert core.compact_iri(iri) == term
    assert core.vocab == DEFAULT_VOCAB
    assert not core.has_user_terms
    assert core.terms["createdAt"].type == "DateTime"
    assert core.terms["location"].protected and core.terms["location"].core


def test_undefined_terms_expand_with_the_default_vocab() -> None:
    core = core_context()
    assert core.expand_term("temperature") == DEFAULT_VOCAB + "temperature"
    assert core.expand_type("Streetlight") == DEFAULT_VOCAB + "Streetlight"
    assert core.compact_iri(DEFAULT_VOCAB + "temperature") == "temperature"
    assert core.compact_type(DEFAULT_VOCAB + "Streetlight") == "Streetlight"


def test_absolute_iris_and_blank_nodes_stay() -> None:
    core = core_context()
    for iri in ["https://example.org/a#b", "http://x.org/y", "urn:ngsi-ld:Thing:1", "_:b0", "mailto:a@b.c"]:
        assert core.expand_term(iri) == iri
        assert core.compact_iri(iri) == iri


def test_core_prefixes_make_curies() -> None:
    core = core_context()
    assert core.expand_term("ngsi-ld:foo") == NGSI + "foo"
    assert core.expand_term("geojson:Point") == "https://purl.org/geojson/vocab#Point"
    assert core.compact_iri(NGSI + "foo") == "ngsi-ld:foo"  # no term, so the shortest CURIE


# ---------------------------------------------------------------------------------------------
# User contexts
# ---------------------------------------------------------------------------------------------


def test_user_terms_prefixes_and_definition_details() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
    assert ctx.expand_term("name") == "https://schema.org/name"
    assert ctx.expand_term("sdm:height") == SDM + "height"
    assert ctx.compact_iri(SDM + "height") == "sdm:height"
    assert ctx.compact_type(SDM + "dataModel.Building/Building") == "Building"
    assert ctx.terms["category"].type == "@vocab"
    assert ctx.terms["owner"].type == "@id"
    assert not ctx.terms["owner"].core
    assert ctx.has_user_terms
    assert ctx.expand_term("temperature") == DEFAULT_VOCAB + "temperature"


def test_terms_may_refer_to_each_other_in_any_order() -> None:
    ctx = compile_local([{"Car": "ex:vehicles/Car", "speed": "ex:speed", "ex": "https://ex.org/"}])
    assert ctx.expand_type("Car") == "https://ex.org/vehicles/Car"
    assert ctx.expand_term("speed") == "https://ex.org/speed"


def test_only_gen_delim_terms_or_explicit_prefixes_make_curies() -> None:
    ctx = compile_local(
        [
            {
                "ex": {"@id": "https://ex.org/ns", "@prefix": True},
                "exx": "https://ex.org/thing",
                "exy": "https://ex.org/y/",
            }
        ]
    )
    assert ctx.expand_term("ex:foo") == "https://ex.org/nsfoo"
    assert ctx.expand_term("exx:bar") == "exx:bar"  # not a prefix: an IRI with scheme "exx"
    assert ctx.expand_term("exy:baz") == "https://ex.org/y/baz"


def test_core_terms_always_win() -> None:
    user = {
        "location": "https://evil.example/location",
        "Property": "https://evil.example/Property",
        "type": "https://evil.example/type",
        "observedAt": "https://evil.example/observedAt",
        "@vocab": "https://evil.example/vocab/",
    }
    ctx = compile_local([user])
    assert ctx.expand_term("location") == NGSI + "location"
    assert ctx.expand_term("Property") == NGSI + "Property"
    assert ctx.expand_term("type") == "@type"
    assert ctx.expand_term("observedAt") == NGSI + "observedAt"
    assert ctx.expand_term("anything") == DEFAULT_VOCAB + "anything"  # the core @vocab too
    assert ctx.compact_iri(NGSI + "location") == "location"


def test_a_user_alias_of_a_core_iri_is_preferred_for_compaction() -> None:
    ctx = compile_local([{"loc": NGSI + "location"}])
    assert ctx.expand_term("loc") == NGSI + "location"
    assert ctx.expand_term("location") == NGSI + "location"
    assert ctx.compact_iri(NGSI + "location") == "loc"


def test_user_vocab_resolves_only_the_users_own_definitions() -> None:
    ctx = compile_local([{"@vocab": "https://ex.org/v/"}, {"speed": "velocity"}])
    assert ctx.expand_term("speed") == "https://ex.org/v/velocity"  # @vocab carries to later objects
    assert ctx.expand_term("other") == DEFAULT_VOCAB + "other"


def test_later_contexts_override_earlier_ones_and_null_resets() -> None:
    first = {"name": "https://a.org/name", "height": "https://a.org/height"}
    second = {"name": "https://b.org/name"}
    ctx = compile_local([first, second])
    assert ctx.expand_term("name") == "https://b.org/name"
    assert ctx.expand_term("height") == "https://a.org/height"
    reset = compile_local([first, None, second])
    assert reset.expand_term("height") == DEFAULT_VOCAB + "height"


def test_compaction_never_returns_a_name_that_expands_elsewhere() -> None:
    ctx = compile_local([{"name": "https://schema.org/name", "ex": "https://ex.org/", "ex:a": "https://other.org/a"}])
    # "name" is taken by schema.org, so the default-vocab IRI cannot compact to "name".
    assert ctx.compact_iri(DEFAULT_VOCAB + "name") == "ngsi-ld:default-context/name"
    assert ctx.compact_iri("https://ex.org/a") == "https://ex.org/a"  # "ex:a" means something else
    assert ctx.compact_iri("https://other.org/a") == "ex:a"
    for iri in [DEFAULT_VOCAB + "name", "https://ex.org/a", "https://ex.org/b", "https://other.org/a"]:
        assert ctx.expand_term(ctx.compact_iri(iri)) == iri


def test_undeclared_core_prefix_in_a_user_context_resolves_with_the_core() -> None:
    ctx = compile_local([{"myProp": "ngsi-ld:myProp", "alias": "location"}])
    assert ctx.expand_term("myProp") == NGSI + "myProp"
    assert ctx.expand_term("alias") == NGSI + "location"


@pytest.mark.parametrize(
    "local",
    [
        {"a": 12},
        {"a": {"@id": 12}},
        {"@vocab": 3},
        {"a": "b", "b": "a"},  # cyclic
        {"": "https://x.org/"},
    ],
)
def test_invalid_term_definitions_are_rejected(local: dict[str, Any]) -> None:
    with pytest.raises(InvalidContext) as caught:
        compile_local([local])
    assert caught.value.status == 400
    assert caught.value.type_uri == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert isinstance(caught.value, errors.BadRequest) and isinstance(caught.value, ContextError)


def test_compiled_context_is_immutable() -> None:
    ctx = core_context()
    with pytest.raises(AttributeError):
        ctx.vocab = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.terms["x"] = ctx.terms["location"]  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# Renaming entities
# ---------------------------------------------------------------------------------------------

BUILDING: dict[str, Any] = {
    "id": "urn:ngsi-ld:Building:b1",
    "type": "Building",
    "scope": "/Seoul/Guro",
    "@context": "https://example.org/ctx.jsonld",
    "name": {"type": "Property", "value": "City Hall", "source": {"type": "Property", "value": "survey"}},
    "address": {"type": "Property", "value": {"streetAddress": "Sejong-daero 110", "addressLocality": "Seoul"}},
    "category": {"type": "VocabProperty", "vocab": ["office", "sdm:public"]},
    "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1", "objectType": "Person"},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.97, 37.56]}},
    "floorsAboveGround": {"type": "Property", "value": 13, "observedAt": "2026-11-22T02:00:00Z", "unitCode": "C62"},
    "temperature": [
        {"type": "Property", "value": 20.5, "datasetId": "urn:ngsi-ld:Dataset:roof"},
        {"type": "Property", "value": 21.0, "accuracy": {"type": "Property", "value": 0.1}},
    ],
    "sdm:height": {"type": "Property", "value": 60},
    "https://example.org/custom": {"type": "JsonProperty", "json": {"a": {"b": 1}}},
    "label": {"type": "LanguageProperty", "languageMap": {"ko": "시청", "en": "City Hall"}},
    "readings": {"type": "ListProperty", "valueList": [1, 2, 3]},
    "neighbours": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Building:b2"}]},
}


def test_expand_names_renames_attributes_types_and_sub_attributes() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    out = expand_names(BUILDING, ctx)
    assert out["type"] == SDM + "dataModel.Building/Building"
    for kept in ("id", "scope", "@context"):
        assert out[kept] == BUILDING[kept]
    name = out["https://schema.org/name"]
    assert name == {
        "type": "Property",
        "value": "City Hall",
        DEFAULT_VOCAB + "source": {"type": "Property", "value": "survey"},
    }
    assert out["https://schema.org/address"]["value"] == BUILDING["address"]["value"]  # values untouched
    assert out[SDM + "category"]["vocab"] == [DEFAULT_VOCAB + "office", SDM + "public"]
    assert out[SDM + "owner"]["objectType"] == DEFAULT_VOCAB + "Person"
    assert out[SDM + "owner"]["object"] == "urn:ngsi-ld:Person:p1"
    assert out[NGSI + "location"] == BUILDING["location"]
    floors = out[SDM + "floorsAboveGround"]
    assert floors == BUILDING["floorsAboveGround"]  # only reserved members inside
    temperature = out[DEFAULT_VOCAB + "temperature"]
    assert isinstance(temperature, list) and len(temperature) == 2  # multi-attribute shape kept
    assert temperature[1][DEFAULT_VOCAB + "accuracy"] == {"type": "Property", "value": 0.1}
    assert out[SDM + "height"] == {"type": "Property", "value": 60}
    assert out["https://example.org/custom"]["json"] == {"a": {"b": 1}}
    assert out[DEFAULT_VOCAB + "label"]["languageMap"] == BUILDING["label"]["languageMap"]
    assert out[DEFAULT_VOCAB + "neighbours"]["objectList"] == BUILDING["neighbours"]["objectList"]


def test_compact_names_is_the_inverse() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    expected = copy.deepcopy(BUILDING)
    expected["category"]["vocab"] = ["office", "sdm:public"]
    assert compact_names(expand_names(BUILDING, ctx), ctx) == expected
    core = core_context()
    round_trip = compact_names(expand_names(BUILDING, core), core)
    assert round_trip == BUILDING


def test_renaming_is_pure() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    original = copy.deepcopy(BUILDING)
    expanded = expand_names(BUILDING, ctx)
    snapshot = copy.deepcopy(expanded)
    compact_names(expanded, ctx)
    assert original == BUILDING
    assert snapshot == expanded


def test_type_lists_keep_their_shape() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    out = expand_names({"id": "urn:x:1", "type": ["Building", "Thing"]}, ctx)
    assert out["type"] == [SDM + "dataModel.Building/Building", DEFAULT_VOCAB + "Thing"]
    assert compact_names(out, ctx)["type"] == ["Building", "Thing"]


def test_compact_names_accepts_a_stored_document() -> None:
    ctx = compile_local([SDM_CONTEXT["@context"]])
    stored: dict[str, Any] = {
        "id": "urn:ngsi-ld:Building:b1",
        "type": [SDM + "dataModel.Building/Building"],
        "createdAt": "2026-11-22T02:00:00.000000Z",
        "attrs": {
            "https://schema.org/name": [
                {"type": "Property", "value": "x", DEFAULT_VOCAB + "source": {"type": "Property", "value": 1}}
            ],
            NGSI + "location": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [0, 0]}}],
        },
    }
    out = compact_names(stored, ctx)
    assert out["type"] == ["Building"]
    assert out["createdAt"] == stored["createdAt"]
    assert out["attrs"] == {
        "name": [{"type": "Property", "value": "x", "source": {"type": "Property", "value": 1}}],
        "location": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [0, 0]}}],
    }
    assert compact_attrs(stored["attrs"], ctx) == out["attrs"]
    assert expand_attrs(out["attrs"], ctx) == stored["attrs"]


def test_two_names_for_one_iri_are_merged() -> None:
    core = core_context()
    out = expand_names(
        {
            "speed": {"type": "Property", "value": 1},
            DEFAULT_VOCAB + "speed": {"type": "Property", "value": 2, "datasetId": "urn:d"},
        },
        core,
    )
    assert out[DEFAULT_VOCAB + "speed"] == [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": "urn:d"},
    ]


def test_fragments_and_concise_values() -> None:
    core = core_context()
    out = expand_names({"@context": [CORE_CONTEXT_URL], "speed": 12, "tags": ["a", "b"]}, core)
    assert out == {"@context": [CORE_CONTEXT_URL], DEFAULT_VOCAB + "speed": 12, DEFAULT_VOCAB + "tags": ["a", "b"]}


# ---------------------------------------------------------------------------------------------
# The resolver, against a real HTTP server
# ---------------------------------------------------------------------------------------------


def test_none_and_core_urls_give_the_core_without_http() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected HTTP request to {request.url}")

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            resolver = ContextResolver(client=client)
            assert await resolver.compile(None) is core_context()
            for url in CORE_CONTEXT_URLS:
                assert await resolver.compile(url) is core_context()
            listed = await resolver.compile(list(CORE_CONTEXT_URLS))
            assert listed.expand_term("location") == NGSI + "location"
            assert (await resolver.document(CORE_CONTEXT_URL))["@context"]["location"] == "ngsi-ld:location"

    run(scenario())


def test_remote_context_is_fetched_once_and_cached(server: ContextServer) -> None:
    url = server.serve("/sdm.jsonld", SDM_CONTEXT)

    async def scenario() -> None:
        async with ContextResolver() as resolver:
            first = await resolver.compile(url)
            second = await resolver.compile(url)
            assert first is second
            assert first.expand_type("Building") == SDM + "dataModel.Building/Building"
            listed = await resolver.compile([url, {"extra": "https://ex.org/extra"}])
            assert listed.expand_term("extra") == "https://ex.org/extra"
            assert listed.expand_term("name") == "https://schema.org/name"
            assert resolver.usage(url)[0] == 3

    run(scenario())
    assert hits(server, url) == 1


def test_cached_documents_expire_after_the_ttl(server: ContextServer) -> None:
    url = server.serve("/ttl.jsonld", SDM_CONTEXT)
    clock = FakeClock()

    async def scenario() -> None:
        async with ContextResolver(ttl=timedelta(minutes=10), now=clock.now) as resolver:
            await resolver.compile(url)
            clock.advance(timedelta(minutes=9))
            await resolver.compile(url)
            assert hits(server, url) == 1
            clock.advance(timedelta(minutes=2))
            await resolver.compile(url)
            assert hits(server, url) == 2

    run(scenario())


def test_a_stale_copy_is_served_when_the_refetch_fails(server: ContextServer) -> None:
    url = server.serve("/stale.jsonld", SDM_CONTEXT)
    clock = FakeClock()

    async def scenario() -> None:
        async with ContextResolver(ttl=timedelta(minutes=1), now=clock.now) as resolver:
            await resolver.compile(url)
            server.serve("/stale.jsonld", b"gone", status=500)
            clock.advance(timedelta(minutes=2))
            ctx = await resolver.compile(url)
            assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
            assert hits(server, url) == 2

    run(scenario())


def test_concurrent_requests_share_one_fetch(server: ContextServer) -> None:
    url = server.serve("/slowish.jsonld", SDM_CONTEXT, delay=0.2)

    async def scenario() -> list[CompiledContext]:
        async with ContextResolver() as resolver:
            return await asyncio.gather(*(resolver.compile(url) for _ in range(8)))

    results = run(scenario())
    assert all(ctx.expand_term("name") == "https://schema.org/name" for ctx in results)
    assert hits(server, url) == 1


def test_nested_remote_contexts_are_resolved(server: ContextServer) -> None:
    sdm = server.serve("/nested/sdm.jsonld", SDM_CONTEXT)
    server.serve(
        "/nested/vehicle.jsonld", {"@context": {"Vehicle": "https://ex.org/Vehicle", "name": "https://ex.org/name"}}
    )
    # relative reference, resolved against the referring document's URL
    top = server.serve("/nested/top.jsonld", {"@context": [sdm, "vehicle.jsonld", {"speed": "https://ex.org/speed"}]})

    async def scenario() -> None:
        async with ContextResolver() as resolver:
            ctx = await resolver.compile(top)
            assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
            assert ctx.expand_type("Vehicle") == "https://ex.org/Vehicle"
            assert ctx.expand_term("name") == "https://ex.org/name"  # the later definition wins
            assert ctx.expand_term("speed") == "https://ex.org/speed"
            assert {info.url for info in resolver.cached()} == {sdm, top, server.url("/nested/vehicle.jsonld")}

    run(scenario())


def test_import_merges_a_remote_context(server: ContextServer) -> None:
    sdm = server.serve("/import/sdm.jsonld", SDM_CONTEXT)

    async def scenario() -> None:
        async with ContextResolver() as resolver:
            ctx = await resolver.compile({"@import": sdm, "name": "https://ex.org/name"})
            assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
            assert ctx.expand_term("name") == "https://ex.org/name"

    run(scenario())


def test_recursive_and_too_deep_contexts_are_invalid(server: ContextServer) -> None:
    server.serve("/loop/a.jsonld", {"@context": ["b.jsonld"]})
    server.serve("/loop/b.jsonld", {"@context": ["a.jsonld"]})
    server.serve("/deep/1.jsonld", {"@context": "2.jsonld"})
    server.serve("/deep/2.jsonld", {"@context": "3.jsonld"})
    server.serve("/deep/3.jsonld", {"@context": {"x": "https://ex.org/x"}})

    async def scenario() -> None:
        async with ContextResolver(max_depth=2) as resolver:
            with pytest.raises(InvalidContext, match="recursive"):
                await resolver.compile(server.url("/loop/a.jsonld"))
            with pytest.raises(InvalidContext, match="deeper"):
                await resolver.compile(server.url("/deep/1.jsonld"))
            ok = await resolver.compile(server.url("/deep/2.jsonld"))
            assert ok.expand_term("x") == "https://ex.org/x"

    run(scenario())


def test_timeout_gives_ld_context_not_available(server: ContextServer) -> None:
    # The server got the request but holds its (valid) answer until the resolver has given up: the error
    # can only come from the resolver's own 0.3 s timeout (order, not a stopwatch).
    held = threading.Event()
    url = server.serve("/slow.jsonld", SDM_CONTEXT, gate=held)

    async def scenario() -> None:
        async with ContextResolver(timeout=0.3) as resolver:
            with pytest.raises(LdContextNotAvailable) as caught:
                await resolver.compile(url)
            assert caught.value.status == 503
            assert caught.value.type_uri == "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
            assert isinstance(caught.value, errors.LdContextNotAvailable)

    try:
        run(scenario())
        assert hits(server, url) == 1 and not held.is_set()  # reached the server, which had not answered
    finally:
        held.set()


def test_unreachable_or_failing_urls_give_ld_context_not_available(server: ContextServer) -> None:
    server.serve("/broken.jsonld", b"oops", status=500)

    async def scenario() -> None:
        async with ContextResolver(timeout=2.0) as resolver:
            for url in [unused_port_url() + "/ctx.jsonld", server.url("/missing.jsonld"), server.url("/broken.jsonld")]:
                with pytest.raises(LdContextNotAvailable):
                    await resolver.compile(url)
            with pytest.raises(LdContextNotAvailable):
                await resolver.compile([{"a": "https://ex.org/a"}, unused_port_url() + "/x.jsonld"])
            assert resolver.cached() == []

    run(scenario())


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("not-json", b"<html>not json</html>"),
        ("array", b"[1, 2]"),
        ("no-context-member", b'{"name": "https://ex.org/name"}'),
        ("context-number", b'{"@context": 42}'),
        ("bad-definition", b'{"@context": {"a": 12}}'),
    ],
)
def test_invalid_content_gives_invalid_context(server: ContextServer, name: str, body: bytes) -> None:
    url = server.serve(f"/{name}.jsonld", body)

    async def scenario() -> None:
        async with ContextResolver() as resolver:
            with pytest.raises(InvalidContext) as caught:
                await resolver.compile(url)
            assert caught.value.status == 400

    run(scenario())


@pytest.mark.parametrize("ctx", ["file:///etc/passwd", "relative.jsonld", 42, [["nested"]], {"a": {"@id": 1}}])
def test_invalid_request_contexts(ctx: Any) -> None:
    async def scenario() -> None:
        async with ContextResolver() as resolver:
            with pytest.raises(InvalidContext):
                await resolver.compile(ctx)

    run(scenario())


def test_oversized_context_is_refused(server: ContextServer) -> None:
    big = {"@context": {f"term{i}": f"https://ex.org/{i}" for i in range(2000)}}
    url = server.serve("/big.jsonld", big)

    async def scenario() -> None:
        async with ContextResolver(max_bytes=10_000) as resolver:
            with pytest.raises(InvalidContext, match="larger"):
                await resolver.compile(url)

    run(scenario())


def test_inline_contexts_are_compiled_once() -> None:
    async def scenario() -> None:
        async with ContextResolver() as resolver:
            one = await resolver.compile({"a": "https://ex.org/a", "b": "https://ex.org/b"})
            two = await resolver.compile({"b": "https://ex.org/b", "a": "https://ex.org/a"})
            other = await resolver.compile([{"a": "https://ex.org/a"}, {"b": "https://ex.org/b"}])
            assert one is two
            assert other is not one and other.expand_term("b") == "https://ex.org/b"

    run(scenario())


def test_hosted_contexts_are_served_without_http() -> None:
    url = unused_port_url() + "/ngsi-ld/v1/jsonldContexts/abc"

    async def scenario() -> None:
        async with ContextResolver(hosted={url: SDM_CONTEXT}) as by_mapping:
            ctx = await by_mapping.compile(url)
            assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
        async with ContextResolver(hosted=lambda u: SDM_CONTEXT if u == url else None) as by_function:
            ctx = await by_function.compile([url])
            assert ctx.expand_term("name") == "https://schema.org/name"

    run(scenario())


# ---------------------------------------------------------------------------------------------
# The registry (/jsonldContexts)
# ---------------------------------------------------------------------------------------------


def test_registry_hosts_lists_serves_and_deletes() -> None:
    base = unused_port_url()  # proves hosted contexts are never fetched over HTTP
    clock = FakeClock()

    async def scenario() -> None:
        resolver = ContextResolver(now=clock.now)
        registry = ContextRegistry(base + "/", resolver, now=clock.now)
        url = await registry.add(SDM_CONTEXT)
        local_id = url.rsplit("/", 1)[1]
        assert url == f"{base}/ngsi-ld/v1/jsonldContexts/{local_id}"
        assert registry.list() == [url]
        assert registry.list(kind="Hosted") == [url]
        assert registry.list(kind="Cached") == []
        assert registry.get(local_id) == SDM_CONTEXT
        assert registry.get(url) == SDM_CONTEXT
        [info] = registry.list(details=True)
        assert info == {
            "URL": url,
            "localId": local_id,
            "kind": "Hosted",
            "createdAt": "2026-01-01T00:00:00.000000Z",
            "numberOfHits": 0,
        }
        clock.advance(timedelta(seconds=5))
        ctx = await registry.resolver.compile(url)
        assert ctx.expand_type("Building") == SDM + "dataModel.Building/Building"
        await registry.resolver.compile(url)
        details = registry.get(local_id, details=True)
        assert details["numberOfHits"] == 2
        assert details["lastUsage"] == "2026-01-01T00:00:05.000000Z"
        await registry.delete(local_id)
        assert registry.list() == []
        with pytest.raises(ContextNotFound) as caught:
            registry.get(local_id)
        assert caught.value.status == 404
        assert caught.value.type_uri == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
        with pytest.raises(LdContextNotAvailable):
            await registry.resolver.compile(url)  # gone: now it would have to be fetched
        await resolver.aclose()  # passed in, so ours to close

    run(scenario())


def test_registry_lists_evicts_and_reloads_cached_contexts(server: ContextServer) -> None:
    url = server.serve("/cached.jsonld", SDM_CONTEXT)

    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example")
        await registry.resolver.compile(url)
        assert registry.list(kind="Cached") == [url]
        [info] = registry.list(details=True, kind="Cached")
        assert info["kind"] == "Cached" and info["numberOfHits"] == 1 and "lastUsage" in info
        assert registry.get(info["localId"]) == SDM_CONTEXT
        assert registry.get(url)["@context"]["sdm"] == SDM
        await registry.delete(info["localId"], reload=True)
        assert hits(server, url) == 2
        assert registry.list(kind="Cached") == [url]
        await registry.delete(url)  # evict
        assert registry.list(kind="Cached") == []
        await registry.resolver.compile(url)
        assert hits(server, url) == 3
        await registry.aclose()

    run(scenario())


def test_a_failed_reload_keeps_the_cached_copy(server: ContextServer) -> None:
    url = server.serve("/reload-fails.jsonld", SDM_CONTEXT)

    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example")
        await registry.resolver.compile(url)
        server.serve("/reload-fails.jsonld", b"", status=503)
        with pytest.raises(LdContextNotAvailable):
            await registry.delete(url, reload=True)
        assert registry.get(url) == SDM_CONTEXT
        await registry.aclose()

    run(scenario())


@pytest.mark.parametrize(
    "body", [None, [], "https://ex.org/ctx", {"no": "context"}, {"@context": "https://ex.org/ctx"}, {"@context": 3}]
)
def test_registry_refuses_bodies_that_are_not_a_context(body: Any) -> None:
    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example")
        with pytest.raises(ContextBadRequest) as caught:
            await registry.add(body)
        assert caught.value.status == 400
        assert registry.list() == []

    run(scenario())


def test_registry_error_cases() -> None:
    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example")
        with pytest.raises(InvalidContext):
            await registry.add({"@context": {"a": 12}})
        with pytest.raises(LdContextNotAvailable):
            await registry.add({"@context": [unused_port_url() + "/x.jsonld"]})
        with pytest.raises(ContextNotFound):
            registry.get("nope")
        with pytest.raises(ContextNotFound):
            await registry.delete("nope")
        with pytest.raises(ContextBadRequest):
            registry.list(kind="Whatever")
        url = await registry.add({"@context": {"a": "https://ex.org/a"}})
        with pytest.raises(ContextBadRequest):
            await registry.delete(url, reload=True)
        with pytest.raises(ContextBadRequest):
            await registry.delete(CORE_CONTEXT_URL)
        assert registry.get(CORE_CONTEXT_URL) == core_document()
        assert registry.list() == [url]

    run(scenario())


def test_registry_persistence_hooks_and_restore() -> None:
    saved: list[StoredContext] = []
    deleted: list[str] = []

    async def save(record: StoredContext) -> None:
        saved.append(record)

    async def delete(local_id: str) -> None:
        deleted.append(local_id)

    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example", save=save, delete=delete)
        url = await registry.add(SDM_CONTEXT)
        [record] = saved
        assert record.url == url and record.kind == "Hosted" and record.document == SDM_CONTEXT
        stored = orjson.loads(orjson.dumps(record.to_dict()))

        restarted = ContextRegistry("http://broker.example")
        restarted.restore([StoredContext.from_dict(stored)])
        assert restarted.list() == [url]
        ctx = await restarted.resolver.compile(url)
        assert ctx.expand_term("name") == "https://schema.org/name"

        await registry.delete(record.local_id)
        assert deleted == [record.local_id]

    run(scenario())


def test_implicitly_created_contexts_are_idempotent() -> None:
    async def scenario() -> None:
        registry = ContextRegistry("http://broker.example")
        inline = [{"a": "https://ex.org/a"}, {"b": "https://ex.org/b"}]
        first = await registry.add_implicit(inline)
        second = await registry.add_implicit(copy.deepcopy(inline))
        assert first == second
        assert registry.list(kind="ImplicitlyCreated") == [first]
        assert registry.get(first) == {"@context": inline}
        ctx = await registry.resolver.compile(first)
        assert ctx.expand_term("b") == "https://ex.org/b"
        await registry.delete(first)
        assert registry.list() == []

    run(scenario())


# ---------------------------------------------------------------------------------------------
# Oracle: PyLD (a complete JSON-LD processor) expands to the same IRIs
# ---------------------------------------------------------------------------------------------

ORACLE_BASE = "https://contexts.test/"
ORACLE_DOCS: dict[str, Any] = {
    ORACLE_BASE + "sdm.jsonld": SDM_CONTEXT,
    ORACLE_BASE + "override.jsonld": {"@context": {"name": "https://ex.org/name", "speed": "https://ex.org/speed"}},
    ORACLE_BASE + "vehicle.jsonld": {
        "@context": [ORACLE_BASE + "sdm.jsonld", {"Vehicle": "https://ex.org/Vehicle", "brand": "sdm:brand"}]
    },
    ORACLE_BASE + "protected.jsonld": {
        "@context": {
            "location": "https://evil.example/location",
            "Property": "https://evil.example/Property",
            "observedAt": "https://evil.example/observedAt",
            "Shop": "https://ex.org/Shop",
        }
    },
    ORACLE_BASE + "prefixes.jsonld": {
        "@context": {
            "ex": {"@id": "https://ex.org/ns", "@prefix": True},
            "exx": "https://ex.org/thing",
            "exy": "https://ex.org/y/",
            "@vocab": "https://ex.org/vocab/",
            "speed": "velocity",
        }
    },
    # The core context refers to this one from a scoped context (ngsildproof); PyLD validates it.
    "https://w3id.org/security/data-integrity/v2": {"@context": {}},
}
for _url in CORE_CONTEXT_URLS:
    ORACLE_DOCS[_url] = core_document()


def memory_loader(url: str, options: Any = None) -> dict[str, Any]:
    if url not in ORACLE_DOCS:
        raise AssertionError(f"PyLD asked for {url}; the oracle never uses the network")
    return {"contextUrl": None, "documentUrl": url, "document": copy.deepcopy(ORACLE_DOCS[url])}


@dataclass(frozen=True)
class OracleCase:
    name: str
    context: Any
    entity: dict[str, Any]


ORACLE_CASES = [
    OracleCase("smart-data-models", ORACLE_BASE + "sdm.jsonld", BUILDING),
    OracleCase(
        "list-later-wins",
        [ORACLE_BASE + "sdm.jsonld", ORACLE_BASE + "override.jsonld", {"height": "sdm:height"}],
        {
            "id": "urn:ngsi-ld:Building:b2",
            "type": ["Building", "Landmark"],
            "name": {"type": "Property", "value": "Tower"},
            "speed": {"type": "Property", "value": 3, "observedAt": "2026-11-22T02:00:00Z"},
            "height": {"type": "Property", "value": 555, "unitCode": "MTR"},
            "address": {"type": "Property", "value": "somewhere", "verified": {"type": "Property", "value": True}},
        },
    ),
    OracleCase(
        "nested-remote",
        ORACLE_BASE + "vehicle.jsonld",
        {
            "id": "urn:ngsi-ld:Vehicle:v1",
            "type": "Vehicle",
            "brand": {"type": "Property", "value": "Hyundai"},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}},
            "speed": [
                {"type": "Property", "value": 50, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                {"type": "Property", "value": 52, "datasetId": "urn:ngsi-ld:Dataset:obd"},
            ],
        },
    ),
    OracleCase(
        "core-is-protected",
        [ORACLE_BASE + "protected.jsonld"],
        {
            "id": "urn:ngsi-ld:Shop:s1",
            "type": "Shop",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
            "observationSpace": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
            "open": {"type": "Property", "value": True, "observedAt": "2026-11-22T02:00:00Z"},
        },
    ),
    OracleCase(
        "prefix-flags-and-user-vocab",
        ORACLE_BASE + "prefixes.jsonld",
        {
            "id": "urn:ngsi-ld:Thing:t1",
            "type": "ex:Thing",
            "ex:foo": {"type": "Property", "value": 1},
            "exx:bar": {"type": "Property", "value": 2},
            "exy:baz": {"type": "Property", "value": 3, "exy:qux": {"type": "Property", "value": 4}},
            "speed": {"type": "Property", "value": 5},
            "undefinedThing": {"type": "Property", "value": 6},
            "https://example.org/absolute": {"type": "Property", "value": 7},
        },
    ),
    OracleCase(
        "inline-object-and-value-kinds",
        {"sdm": SDM, "Sensor": "sdm:Sensor", "status": "sdm:status"},
        {
            "id": "urn:ngsi-ld:Sensor:x",
            "type": "Sensor",
            "status": {"type": "VocabProperty", "vocab": "operational"},
            "label": {"type": "LanguageProperty", "languageMap": {"ko": "센서", "en": "sensor"}},
            "config": {"type": "JsonProperty", "json": {"rate": 5, "nested": {"x": 1}}},
            "history": {"type": "ListProperty", "valueList": [1, 2]},
            "peers": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Sensor:y"}]},
            "sdm:serial": {
                "type": "Property",
                "value": "A1",
                "sdm:checkedBy": {"type": "Relationship", "object": "urn:x:1"},
            },
        },
    ),
]

Names = tuple[list[str], set[tuple[str, ...]], set[tuple[tuple[str, ...], str]]]


def _oracle_reserved() -> set[str]:
    core = core_context()
    return {core.expand_term(member) for member in ENTITY_MEMBERS | INSTANCE_MEMBERS | VOCAB_MEMBERS}


def oracle_names(entity: dict[str, Any], context: Any) -> Names:
    """Entity types, attribute paths and vocab values as PyLD expands them."""
    from pyld import jsonld

    document = {**entity, "@context": [*(context if isinstance(context, list) else [context]), CORE_CONTEXT_URL]}
    [node] = jsonld.expand(document, {"documentLoader": memory_loader})
    reserved = _oracle_reserved()
    vocab_iris = {core_context().expand_term(member) for member in VOCAB_MEMBERS}
    paths: set[tuple[str, ...]] = set()
    vocab: set[tuple[tuple[str, ...], str]] = set()

    def walk(obj: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, values in obj.items():
            if key in vocab_iris:
                vocab.update((prefix, item["@id"]) for item in values)
            if key.startswith("@") or key in reserved:
                continue
            paths.add((*prefix, key))
            for value in values:
                if isinstance(value, dict) and "@value" not in value:
                    walk(value, (*prefix, key))

    walk(node, ())
    return list(node["@type"]), paths, vocab


def our_names(entity: dict[str, Any], ctx: CompiledContext) -> Names:
    expanded = expand_names(entity, ctx)
    types = expanded["type"] if isinstance(expanded["type"], list) else [expanded["type"]]
    paths: set[tuple[str, ...]] = set()
    vocab: set[tuple[tuple[str, ...], str]] = set()

    def walk_instance(instance: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in instance.items():
            if key in VOCAB_MEMBERS:
                vocab.update((prefix, item) for item in (value if isinstance(value, list) else [value]))
            elif key not in INSTANCE_MEMBERS:
                add(key, value, prefix)

    def add(name: str, value: Any, prefix: tuple[str, ...]) -> None:
        paths.add((*prefix, name))
        for instance in value if isinstance(value, list) else [value]:
            if isinstance(instance, dict):
                walk_instance(instance, (*prefix, name))

    for key, value in expanded.items():
        if key not in ENTITY_MEMBERS and not key.startswith("@"):
            add(key, value, ())
    return types, paths, vocab


@pytest.mark.parametrize("case", ORACLE_CASES, ids=lambda case: case.name)
def test_expansion_matches_pyld(case: OracleCase) -> None:
    async def compile_case() -> CompiledContext:
        async with ContextResolver(hosted=lambda url: ORACLE_DOCS.get(url)) as resolver:
            return await resolver.compile(case.context)

    ctx = run(compile_case())
    expected_types, expected_paths, expected_vocab = oracle_names(case.entity, case.context)
    types, paths, vocab = our_names(case.entity, ctx)
    assert types == expected_types
    assert paths == expected_paths
    assert vocab == expected_vocab
    assert len(paths) >= 3


@pytest.mark.parametrize(
    "case",
    [c for c in ORACLE_CASES if c.name in {"list-later-wins", "prefix-flags-and-user-vocab"}],
    ids=lambda c: c.name,
)
def test_compaction_matches_pyld_for_plain_terms(case: OracleCase) -> None:
    """Where terms carry no @type coercion, JSON-LD compaction picks the same short names."""
    from pyld import jsonld

    context = [*(case.context if isinstance(case.context, list) else [case.context]), CORE_CONTEXT_URL]
    options = {"documentLoader": memory_loader}
    expanded = jsonld.expand({**case.entity, "@context": context}, options)
    compacted = jsonld.compact(expanded, {"@context": context}, options)

    async def compile_case() -> CompiledContext:
        async with ContextResolver(hosted=lambda url: ORACLE_DOCS.get(url)) as resolver:
            return await resolver.compile(case.context)

    ctx = run(compile_case())
    ours = compact_names(expand_names(case.entity, ctx), ctx)
    attributes = {key for key in compacted if key not in ENTITY_MEMBERS and not key.startswith("@")}
    assert attributes == {key for key in ours if key not in ENTITY_MEMBERS and not key.startswith("@")}
    assert compacted["type"] == ours["type"]


def test_private_network_context_urls_are_refused_when_blocking() -> None:
    """With the SSRF guard on, a Link to a loopback address is refused before any byte is sent."""
    from ucity.ngsild.context import ContextBadRequest, ContextResolver

    async def run() -> None:
        resolver = ContextResolver(block_private_networks=True, timeout=2)
        try:
            with pytest.raises(ContextBadRequest, match="non-public address"):
                await resolver.compile("http://127.0.0.1:9/context.jsonld")
        finally:
            await resolver.aclose()

    asyncio.run(run())


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]], calls: list[str]) -> None:
    """The running loop resolves the names in `answers` (each lookup takes the next answer, the last one
    repeating) and every other name as before; `calls` records the lookups of those names."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            calls.append(host)
            address = answers[host][min(len(calls), len(answers[host])) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


def test_guarded_fetches_go_to_the_checked_address_of_an_allowed_network(
        server: ContextServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers an allowed address to the check, the metadata address afterwards; the
    fetch still goes to the checked address, with the name as its Host."""
    url = server.serve("/ctx.jsonld", {"@context": {"temp": "https://example.org/temp"}})
    port = urlsplit(url).port
    named = url.replace("127.0.0.1", "contexts.city.test")

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # this is the direct path

    async def main() -> None:
        calls: list[str] = []
        _fake_dns(monkeypatch, {"contexts.city.test": ["127.0.0.1", "169.254.169.254"]}, calls)
        async with ContextResolver(block_private_networks=True, allowed_networks=["127.0.0.0/8"], timeout=5) as r:
            ctx = await r.compile(named)
            assert ctx.expand_term("temp") == "https://example.org/temp"
        assert calls == ["contexts.city.test"]
        assert server.hosts[urlsplit(url).path] == f"contexts.city.test:{port}"
        async with ContextResolver(block_private_networks=True, timeout=5) as r:  # loopback not allowed
            with pytest.raises(ContextBadRequest, match=r"non-public address \(127\.0\.0\.1\).*context_allowed"):
                await r.compile(url)

    run(main())


def test_a_redirect_to_a_refused_address_is_refused(server: ContextServer) -> None:
    url = server.serve("/moved.jsonld", b"", status=302)
    server.routes[urlsplit(url).path].location = "http://169.254.169.254/latest/meta-data/"

    async def main() -> None:
        async with ContextResolver(block_private_networks=True, allowed_networks=["127.0.0.0/8"], timeout=5) as r:
            with pytest.raises(ContextBadRequest, match=r"169\.254\.169\.254"):
                await r.compile(url)

    run(main())
    assert server.hits[urlsplit(url).path] == 1  # the first hop was allowed and asked, the second never sent


def test_behind_a_proxy_the_name_is_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: a request that got there would fail

    async def main() -> None:
        async with ContextResolver(block_private_networks=True, timeout=5) as r:
            with pytest.raises(ContextBadRequest, match="non-public address"):
                await r.compile("http://10.1.2.3/context.jsonld")

    run(main())
