"""Bearer tokens and roles of the operations API, tokens issued by an admin, masking (PLAT-R10)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TOKENS, Ops, agency
from ucity.core.errors import UcityError
from ucity.core.http import Req
from ucity.ops.agencies import Agency
from ucity.ops.auth import ROLE_PERMISSIONS, Permission, Role, mask_name, mask_personal, mask_phone

AGENCIES = {"agencies": [agency("police-112", "police", ["112_VIDEO"]), agency("fire-119", "fire", ["119_DISPATCH"])]}


async def call_as(ops: Ops, name: str, token: str | None, tenant: str | None = None, **path: str) -> Any:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if tenant is not None:
        headers["ngsild-tenant"] = tenant
    try:
        return await getattr(ops.ucity.ops_api, name)(Req("GET", "/", headers=headers, path_params=path))
    except UcityError as exc:
        return exc


async def test_every_operations_endpoint_needs_a_known_token(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        missing = await call_as(ops, "list_events", None)
        assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        unknown = await call_as(ops, "list_events", "not-a-token-0123456789")
        assert unknown.status == 401
        assert (await call_as(ops, "list_events", TOKENS["operator"])).status == 200


@pytest.mark.parametrize(("role", "handler", "status"), [
    ("operator", "list_audit", 403), ("admin", "list_audit", 200), ("police", "list_audit", 403),
    ("police", "grant_stats", 403), ("operator", "grant_stats", 200), ("operator", "list_tokens", 403),
    ("police", "list_agencies", 200), ("fire", "list_events", 200),
])
async def test_roles(make_ops: MakeOps, role: str, handler: str, status: int) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        assert (await call_as(ops, handler, TOKENS[role])).status == status


async def test_agencies_do_not_see_webhooks_of_agencies(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, agencies=[agency("fire-119", "fire", ["119_DISPATCH"], "https://119.example/in",
                                                        headers={"Authorization": "Bearer receiver-secret"})]) as ops:
        seen_by_fire = (await call_as(ops, "list_agencies", TOKENS["fire"])).body[0]
        assert "webhook" not in seen_by_fire and "headers" not in seen_by_fire
        seen_by_admin = (await call_as(ops, "list_agencies", TOKENS["admin"])).body[0]
        assert seen_by_admin["webhook"] == "https://119.example/in"
        assert seen_by_admin["headers"] == {"Authorization": "***"} and seen_by_admin["source"] == "configuration"


async def test_admin_issues_lists_and_revokes_tokens(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        issued = await ops.call("create_token", "POST", "/", {"id": "fire-tablet-7", "role": "agency",
                                                               "agency": "fire-119", "name": "구로소방서 7호 단말"},
                                role="admin")
        assert issued.status == 201 and issued.body["token"].startswith("uct_")
        token = issued.body["token"]
        me = await call_as(ops, "me", token)
        assert (me.body["id"], me.body["role"], me.body["agency"]) == ("fire-tablet-7", "agency", "fire-119")
        assert "footage:view" in me.body["permissions"] and "personal:read" not in me.body["permissions"]
        listing = (await ops.call("list_tokens", role="admin")).body
        mine = next(t for t in listing if t["id"] == "fire-tablet-7")
        assert mine["createdBy"] == "admin:admin" and "token" not in mine and "sha256" not in mine
        assert token not in str(listing)
        # the token survives a restart (only its hash is stored)
        await ops.ucity.ops.tokens.load()
        assert (await call_as(ops, "list_events", token)).status == 200
        assert (await ops.call("delete_token", "DELETE", "/", role="admin", tokenId="fire-tablet-7")).status == 204
        assert (await call_as(ops, "list_events", token)).status == 401
        with pytest.raises(UcityError) as configured:
            await ops.call("delete_token", "DELETE", "/", role="admin", tokenId="op-kim")
        assert configured.value.status == 400
        with pytest.raises(UcityError) as bad:
            await ops.call("create_token", "POST", "/", {"role": "agency"}, role="admin")  # an agency token names one
        assert bad.value.status == 400
        lines = (await ops.call("list_audit", params={"kind": "auth"}, role="admin")).body["entries"]
        assert [(line["action"], line["token"]) for line in lines] == [("token-issued", "fire-tablet-7"),
                                                                     ("token-revoked", "fire-tablet-7")]


async def test_no_token_for_an_agency_that_does_not_exist(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        with pytest.raises(UcityError) as unknown:
            await ops.call("create_token", "POST", "/", {"id": "x2", "role": "agency", "agency": "nope"}, role="admin")
        assert unknown.value.status == 404 and "nope" in unknown.value.detail  # as POST /grants for that agency
        # an agency registered for one tenant only: a token for that tenant, not for another or for every tenant
        seoul = "urn:ngsi-ld:tenant:seoul"
        await ops.ucity.ops.agencies.put(seoul, Agency.model_validate(agency("seoul-112", "police", ["112_VIDEO"])))
        with pytest.raises(UcityError) as elsewhere:
            await ops.call("create_token", "POST", "/", {"id": "x3", "role": "agency", "agency": "seoul-112"},
                           role="admin")
        assert elsewhere.value.status == 404
        made = await ops.call("create_token", "POST", "/", {"id": "x4", "role": "agency", "agency": "seoul-112",
                                                            "tenant": seoul}, role="admin")
        assert made.status == 201
        assert [t["id"] for t in (await ops.call("list_tokens", role="admin")).body if t["source"] == "api"] == ["x4"]
        lines = (await ops.call("list_audit", params={"kind": "auth"}, role="admin")).body["entries"]
        assert [line["token"] for line in lines] == ["x4"]


async def test_a_token_for_one_tenant_is_refused_elsewhere(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        token = (await ops.call("create_token", "POST", "/", {"role": "operator", "tenant": "urn:ngsi-ld:tenant:seoul"},
                                role="admin")).body["token"]
        assert (await call_as(ops, "list_events", token, "urn:ngsi-ld:tenant:seoul")).status == 200
        assert (await call_as(ops, "list_events", token)).status == 403


async def test_an_agency_asks_only_for_itself(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        event = (await ops.call("create_event", "POST", "/api/v1/events", {
            "service": "112_VIDEO", "typeCode": "robbery", "location": {"lon": POINT[0], "lat": POINT[1]}})).body
        with pytest.raises(UcityError) as other:
            await ops.call("request_linkage", "POST", "/", {"agency": "fire-119"}, role="police", eventId=event["id"])
        assert other.value.status in (400, 404)


def test_masking() -> None:
    assert mask_name("김철수") == "김**" and mask_name("John Smith") == "J*** S****"
    assert mask_phone("010-1234-5678") == "010-****-5678" and mask_phone("01012345678") == "010****5678"
    assert mask_phone("112") == "***"
    assert mask_personal({"name": "이영", "phone": "02-860-2114", "description": "빨간 모자", "ageBand": "70s"}) == {
        "name": "이*", "phone": "02-***-2114", "description": "***", "ageBand": "70s", "masked": True}


def test_roles_are_permission_sets_a_later_role_system_can_replace() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert Permission.PERSONAL_READ in ROLE_PERMISSIONS[Role.OPERATOR]
    assert Permission.PERSONAL_READ not in ROLE_PERMISSIONS[Role.AGENCY]
    assert Permission.FOOTAGE_VIEW not in ROLE_PERMISSIONS[Role.OPERATOR]  # footage links are for agencies
