"""Shared helpers for the HTTP tests of the NGSI-LD entity API (entities, batch, discovery, errors).

Kept deliberately small: constants for the paths and error types, assertions that check a
ProblemDetails body in full, and a local HTTP server that serves user @contexts (remote contexts
are fetched over HTTP by the broker, so the tests serve them from 127.0.0.1 on a free port).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from httpx import Response
from starlette.testclient import TestClient

NGSI = "/ngsi-ld/v1"
ENTITIES = f"{NGSI}/entities"
BATCH = f"{NGSI}/entityOperations"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
CORE_LINK = f'<{CORE}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'


def link(url: str) -> dict[str, str]:
    """The `Link` header that names a JSON-LD @context for an application/json request."""
    return {"Link": f'<{url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'}


def entity_url(entity_id: str, *rest: str) -> str:
    return "/".join([ENTITIES, entity_id, *rest])


def create(client: TestClient, entity: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    response = client.post(ENTITIES, json=entity, headers=headers)
    assert response.status_code == 201, response.text


def retrieve(client: TestClient, entity_id: str, headers: dict[str, str] | None = None,
             **params: str) -> dict[str, Any]:
    response = client.get(entity_url(entity_id), params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def query_ids(client: TestClient, headers: dict[str, str] | None = None, **params: str) -> list[str]:
    response = client.get(ENTITIES, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()]


def assert_problem(response: Response, status: int, error: str) -> dict[str, Any]:
    """The response is an NGSI-LD ProblemDetails of the given status and error type."""
    assert response.status_code == status, response.text
    # NGSI-LD's own media type under its API (ETSI GS CIM 009), RFC 7807's elsewhere
    ngsi = response.request.url.path.startswith("/ngsi-ld/")
    assert response.headers["content-type"].split(";")[0] == ("application/json" if ngsi else "application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == ERRORS + error
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


class ContextServer:
    """Serves JSON-LD @context documents over HTTP from 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        documents = self.documents

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                document = documents.get(self.path)
                if document is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = orjson.dumps(document)
                self.send_response(200)
                self.send_header("Content-Type", "application/ld+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, path: str, context: dict[str, Any]) -> str:
        """Serve `{"@context": context}` at `path`; returns its URL."""
        self.documents[path] = {"@context": context}
        return self.base + path


@pytest.fixture
def context_server() -> Iterator[ContextServer]:
    server = ContextServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
