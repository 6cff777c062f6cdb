"""A renewal and a revocation of one grant in two API processes on one database (scale-out): process A reads the
grant to renew it, process B revokes it, A writes its renewed copy. The store's conditional write (the document's
`version`, `Store.save_grant(..., expected_version)`) refuses A's stale write; A re-reads, finds the grant revoked and
answers 409: the grant stays revoked, its link is refused, and one revocation is audited. On both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock
from ucity.core.config import OpsSettings
from ucity.ops.audit import AuditLog
from ucity.ops.auth import ROLE_PERMISSIONS, Principal, Role
from ucity.ops.grants import REVOKED, AccessDenied, GrantService, InvalidGrantTransition, TokenSigner
from ucity.store.base import AuditQuery, Doc, Store

T = "seoul"
AGENCY = Principal("police-1", Role.AGENCY, ROLE_PERMISSIONS[Role.AGENCY], agency="police-112")


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock())
    await s.start()
    yield s
    await s.stop()


def service(store: Store, clock: FakeClock) -> GrantService:
    """One API process's grant service (its own per-process locks) on the shared database."""
    return GrantService(store, clock, OpsSettings(), AuditLog(store, clock), TokenSigner(b"k" * 32))


class _RevokeAfterRead:
    """Process A's view of the store: right after A's first read of the grant, process B revokes it."""

    def __init__(self, store: Store, other: GrantService) -> None:
        self._store, self._other, self.fired = store, other, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_grant(self, tenant: str, grant_id: str) -> Doc | None:
        doc = await self._store.get_grant(tenant, grant_id)
        if not self.fired:
            self.fired = True
            await self._other.revoke(tenant, grant_id, "operator:op-lee", "사건 종료")
        return doc


async def _lines(store: Store, grant_id: str, action: str) -> list[Doc]:
    docs, _ = await store.query_audit(T, AuditQuery(grant_ids=(grant_id,), limit=100))
    return [d for d in docs if d["action"] == action]


async def test_a_renewal_read_before_a_revocation_in_another_process_does_not_revive_the_grant(store: Store) -> None:
    clock = FakeClock()
    b = service(store, clock)
    issued = await b.issue(T, "police-112", "event-1", ["cam-1"], "추적", "operator:op-kim")
    racing = _RevokeAfterRead(store, b)
    a = service(racing, clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidGrantTransition) as refused:
        await a.renew(T, issued.grant.id, AGENCY)
    assert racing.fired and refused.value.status == 409
    stored = await b.load(T, issued.grant.id)
    assert stored.status == REVOKED and stored.renewals == 0 and stored.revoked_by == "operator:op-lee"
    with pytest.raises(AccessDenied) as denied:
        await a.access(issued.token, "cam-1", "still", AGENCY, T)
    assert denied.value.reason == "revoked"
    assert len(await _lines(store, issued.grant.id, "revoked")) == 1
    # the refused renewal is audited as refused (QA15 F9i), never as made
    assert [(d["outcome"], d["reason"]) for d in await _lines(store, issued.grant.id, "renewed")] == [
        ("denied", "grant-revoked")]


async def test_a_second_revocation_across_processes_is_a_409_and_audited_once(store: Store) -> None:
    clock = FakeClock()
    b = service(store, clock)
    issued = await b.issue(T, "police-112", "event-1", ["cam-1"], "추적", "operator:op-kim")
    a = service(_RevokeAfterRead(store, b), clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidGrantTransition):
        await a.revoke(T, issued.grant.id, "operator:op-kim")
    assert len(await _lines(store, issued.grant.id, "revoked")) == 1
    assert (await b.load(T, issued.grant.id)).revoked_by == "operator:op-lee"


async def test_a_grant_written_before_versions_is_renewed_then_revoked(store: Store) -> None:
    clock = FakeClock()
    a = service(store, clock)
    issued = await a.issue(T, "police-112", "event-1", ["cam-1"], "추적", "operator:op-kim")
    legacy = issued.grant.to_doc()
    del legacy["version"]  # a row stored before the version existed counts as version 0
    await store.save_grant(replace(issued.grant.to_row(a.now()), doc=legacy), [])
    renewed = await a.renew(T, issued.grant.id, AGENCY)
    assert renewed.grant.renewals == 1 and renewed.grant.version == 1
    assert (await a.revoke(T, issued.grant.id, "operator:op-kim")).version == 2
    assert (await a.load(T, issued.grant.id)).status == REVOKED


async def test_the_store_refuses_a_stale_conditional_write_and_its_audit_lines(store: Store) -> None:
    clock = FakeClock()
    a = service(store, clock)
    grant = (await a.issue(T, "police-112", "event-1", ["cam-1"], "추적", "operator:op-kim")).grant
    line = a.audit.row(T, "grant", "renewed", "test", grant=grant.id, outcome="ok")
    assert await store.save_grant(replace(grant, version=1).to_row(a.now()), [line], expected_version=0)
    assert not await store.save_grant(replace(grant, version=1).to_row(a.now()), [line], expected_version=0)
    assert not await store.save_grant(replace(grant, id="nobody", version=1).to_row(a.now()), [line],
                                      expected_version=0)
    assert len(await _lines(store, grant.id, "renewed")) == 1
    assert (await a.load(T, grant.id)).version == 1
