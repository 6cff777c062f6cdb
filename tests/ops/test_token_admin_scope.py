"""Token administration by a tenant-bound admin (QA F2) and the periodic re-reading of issued tokens by every API
process (QA F3): two processes on one store agree within `ops.token_refresh_s`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import StoreFactory
from tests.ops.conftest import MakeOps
from tests.ops.support import TOKENS, Ops
from ucity.core.clock import FakeClock
from ucity.core.config import OpsSettings
from ucity.core.errors import UcityError
from ucity.core.http import Req
from ucity.ops.auth import TokenRegistry, TokenSpec
from ucity.store.base import AuditQuery

CITY_A, CITY_B = "urn:ngsi-ld:tenant:citya", "urn:ngsi-ld:tenant:cityb"


async def call(ops: Ops, name: str, token: str, tenant: str | None = None, body: Any = None,
               method: str = "GET", **path: str) -> Any:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["ngsild-tenant"] = tenant
    req = Req(method, f"/api/v1/auth/tokens/{path.get('tokenId', '')}".rstrip("/"), headers=headers,
              body=orjson.dumps(body) if body is not None else b"", path_params=path)
    try:
        return await getattr(ops.ucity.ops_api, name)(req)
    except UcityError as exc:
        return exc


async def issue(ops: Ops, token: str, body: dict[str, Any], tenant: str | None = None) -> Any:
    return await call(ops, "create_token", token, tenant, body, "POST")


# -- F2: a tenant-bound admin administers its tenant's tokens only ------------------------------------------
async def test_a_tenant_bound_admin_issues_only_tokens_of_its_tenant(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        admin_a = (await issue(ops, TOKENS["admin"], {"id": "adm-citya", "role": "admin", "tenant": CITY_A})).body["token"]
        for body in ({"id": "escape", "role": "admin"}, {"id": "escape", "role": "admin", "tenant": CITY_B},
                     {"id": "escape", "role": "reader"}):
            refused = await issue(ops, admin_a, body, CITY_A)
            assert refused.status == 403, body
            assert refused.extra["reason"] == "token-tenant"
            assert CITY_A in refused.detail and "전용" in refused.detail and "bound to tenant" in refused.detail
        assert all(t["id"] != "escape" for t in (await call(ops, "list_tokens", TOKENS["admin"])).body)
        lines, _ = await ops.center.audit.query(CITY_A, AuditQuery(limit=100))
        refusals = [d for d in lines if d["action"] == "refused" and d["kind"] == "auth"]
        assert len(refusals) == 3 and refusals[0]["outcome"] == "denied"
        assert {r["reason"] for r in refusals} == {"token-tenant"}
        assert {r["token"] for r in refusals} == {"adm-citya"} and refusals[0]["actor"] == "admin:adm-citya"
        # its own tenant: issued (and the new token works there only)
        own = await issue(ops, admin_a, {"id": "reader-a", "role": "reader", "tenant": CITY_A}, CITY_A)
        assert own.status == 201 and own.body["tenant"] == CITY_A


async def test_a_tenant_bound_admin_lists_and_revokes_only_its_tenants_tokens(make_ops: MakeOps) -> None:
    configured = [{"id": "cfg-a", "token": "cfg-a-token-0123456789", "role": "reader", "tenant": CITY_A},
                  {"id": "cfg-b", "token": "cfg-b-token-0123456789", "role": "reader", "tenant": CITY_B}]
    async with make_ops(cameras=False) as ops:
        ops.center.tokens._configured.update(  # (ops_settings sets its own ops.tokens: these are added alongside)
            TokenRegistry(ops.ucity.store, OpsSettings(tokens=configured), ops.clock)._configured)
        root = TOKENS["admin"]
        admin_a = (await issue(ops, root, {"id": "adm-citya", "role": "admin", "tenant": CITY_A})).body["token"]
        for body in ({"id": "victim", "role": "operator", "tenant": CITY_B}, {"id": "everywhere", "role": "reader"},
                     {"id": "mine", "role": "operator", "tenant": CITY_A}):
            assert (await issue(ops, root, body)).status == 201
        seen = {t["id"] for t in (await call(ops, "list_tokens", admin_a, CITY_A)).body}
        assert seen == {"adm-citya", "mine", "cfg-a"}
        # another tenant's token, or one of no tenant: 404, as if it did not exist; it is not revoked
        for other in ("victim", "everywhere", "cfg-b", "admin", "op-kim"):
            gone = await call(ops, "delete_token", admin_a, CITY_A, method="DELETE", tokenId=other)
            assert gone.status == 404, other
        assert {"victim", "everywhere"} <= {t["id"] for t in (await call(ops, "list_tokens", root)).body}
        assert (await call(ops, "delete_token", admin_a, CITY_A, method="DELETE", tokenId="mine")).status == 204
        configured_own = await call(ops, "delete_token", admin_a, CITY_A, method="DELETE", tokenId="cfg-a")
        assert configured_own.status == 400  # its tenant's configured token: removed from the configuration
        # an unbound admin keeps today's behaviour: sees and revokes every tenant's tokens
        listing = {t["id"] for t in (await call(ops, "list_tokens", root)).body}
        assert {"victim", "everywhere", "cfg-b", "cfg-a", "adm-citya", "admin"} <= listing and "mine" not in listing
        assert (await call(ops, "delete_token", root, CITY_B, method="DELETE", tokenId="victim")).status == 204


# -- F3: several API processes on one store --------------------------------------------------------------------
@pytest.fixture
async def two_processes(make_store: StoreFactory) -> Any:
    clock = FakeClock()
    store_a, store_b = make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)
    await store_a.start()
    await store_b.start()
    settings = OpsSettings(token_refresh_s=10)
    a, b = TokenRegistry(store_a, settings, clock), TokenRegistry(store_b, settings, clock)
    await a.start()
    await b.start()
    yield clock, a, b
    await a.stop()
    await b.stop()
    await store_a.stop()
    await store_b.stop()


async def test_a_token_issued_or_revoked_on_one_process_reaches_the_other_within_the_refresh(
        two_processes: Any) -> None:
    clock, a, b = two_processes
    token = await a.issue(TokenSpec(id="pgrev", role="operator"), "admin:admin")
    assert a.lookup(token) is not None and b.lookup(token) is None
    clock.advance(9.9)
    await b.settle()
    assert b.lookup(token) is None  # not before the period: an unknown token makes no store read
    clock.advance(0.1)
    await b.settle()
    found = b.lookup(token)
    assert found is not None and found.id == "pgrev"
    await a.revoke("pgrev")
    assert a.lookup(token) is None  # at once where revoked
    assert b.lookup(token) is not None  # (cached principal) until B's next refresh
    clock.advance(10)
    await b.settle()
    assert b.lookup(token) is None
    assert "pgrev" not in {t["id"] for t in b.listing()}
    assert b.health()["refreshes"] == 2 and b.health()["failures"] == 0


async def test_unknown_tokens_never_read_the_store(two_processes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, _, b = two_processes
    reads: list[str] = []
    original = b._store.list_docs

    async def counted(kind: str) -> Any:
        reads.append(kind)
        return await original(kind)

    monkeypatch.setattr(b._store, "list_docs", counted)
    for n in range(200):
        assert b.lookup(f"uct_guess-{n}-0123456789") is None
    assert reads == []
    clock.advance(10)
    await b.settle()
    assert len(reads) == 1


async def test_a_revocation_or_an_issue_on_a_process_that_has_not_refreshed_yet(two_processes: Any) -> None:
    clock, a, b = two_processes
    await a.issue(TokenSpec(id="late", role="reader"), "admin:admin")
    # B has not refreshed: it still revokes the token (it reads the store on a miss: an admin's call) ...
    assert (await b.revoke("late")).id == "late"
    clock.advance(10)
    await a.settle()
    assert "late" not in {t["id"] for t in a.listing()}
    # ... and refuses an id another process took since its last refresh, rather than overwrite it
    await a.issue(TokenSpec(id="taken", role="reader"), "admin:admin")
    with pytest.raises(UcityError) as taken:
        await b.issue(TokenSpec(id="taken", role="reader"), "admin:admin")
    assert taken.value.status == 409


async def test_a_failed_refresh_keeps_the_known_tokens_and_is_retried(two_processes: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock, a, b = two_processes
    token = await a.issue(TokenSpec(id="kept", role="reader"), "admin:admin")
    clock.advance(10)
    await b.settle()
    assert b.lookup(token) is not None

    async def down(kind: str) -> Any:
        raise ConnectionError("store down")

    monkeypatch.setattr(b._store, "list_docs", down)
    clock.advance(10)
    await b.settle()
    assert b.lookup(token) is not None and b.health()["failures"] == 1
    assert "store down" in b.health()["lastError"]
    monkeypatch.undo()
    await a.revoke("kept")
    clock.advance(10)
    await b.settle()
    assert b.lookup(token) is None


async def test_the_operations_centre_refreshes_its_tokens_on_the_platform_clock(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        # another API process on the same store (its registry writes where this one reads)
        other = TokenRegistry(ops.ucity.store, ops.ucity.settings.ops, ops.clock)
        token = await other.issue(TokenSpec(id="from-b", role="operator"), "admin:admin")
        headers = {"authorization": f"Bearer {token}"}
        assert ops.center.auth.identify(Req("GET", "/", headers=headers)) is None
        await ops.advance(ops.ucity.settings.ops.token_refresh_s)
        assert ops.center.auth.identify(Req("GET", "/", headers=headers)) is not None
        assert (await call(ops, "list_events", token)).status == 200
        await other.revoke("from-b")
        await ops.advance(ops.ucity.settings.ops.token_refresh_s)
        assert (await call(ops, "list_events", token)).status == 401
        assert ops.center.health()["tokens"]["refreshes"] >= 2


async def test_one_token_id_issued_on_two_processes_at_once_is_given_once(two_processes: Any) -> None:
    """Both processes have re-read the tokens and found the id free; the store takes the first write only, and the
    second process answers 409 instead of overwriting the first token (whose holder would be locked out)."""
    clock, a, b = two_processes
    reload = b._reload

    async def already_read() -> None:  # b's re-read happened before a's write landed
        return None

    b._reload = already_read
    first = await a.issue(TokenSpec(id="duty-desk", role="operator"), "admin:kim")
    with pytest.raises(UcityError) as refused:
        await b.issue(TokenSpec(id="duty-desk", role="reader"), "admin:lee")
    assert refused.value.status == 409 and "already exists" in refused.value.detail
    b._reload = reload
    clock.advance(10)
    await b.settle()
    found = b.lookup(first)
    assert found is not None and found.role == "operator"  # the first token stands, on both processes
    assert [t["createdBy"] for t in b.listing() if t["id"] == "duty-desk"] == ["admin:kim"]
