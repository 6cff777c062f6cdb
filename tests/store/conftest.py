"""Fixtures of the store tests that stop and start PostgreSQL under a running ucity (their own cluster, not the
session's server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.test_postgres_unreachable import Cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def running(request: pytest.FixtureRequest, store_backend: str) -> Iterator[Cluster]:
    """The cluster, up again at the end of the test whatever happened."""
    if store_backend != "postgresql":
        pytest.skip("PostgreSQL's own (runs once, on the [postgresql] backend)")
    cluster: Cluster = request.getfixturevalue("cluster")
    yield cluster
    proc = cluster.server.proc
    if proc is None or proc.poll() is not None:
        cluster.start()
