"""Issued tokens may carry `expiresAt` (QA12: issued tokens never expired, so a contractor's or a tablet's token
worked until someone remembered to revoke it). Past it the token is refused with 401 saying it expired, here and
after a re-read in another process; the listing and the audit line show the instant; a past or offset-less instant
is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.test_auth import AGENCIES, call_as
from ucity.core.clock import to_iso
from ucity.core.errors import UcityError


async def test_an_issued_token_stops_at_its_expiry(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        until = ops.clock.now() + timedelta(days=7)
        issued = await ops.call("create_token", "POST", "/", {"id": "vendor-lee", "role": "reader",
                                                               "expiresAt": to_iso(until)}, role="admin")
        assert issued.status == 201 and issued.body["expiresAt"] == to_iso(until)
        token = issued.body["token"]
        assert (await call_as(ops, "me", token)).status == 200
        mine = next(t for t in (await ops.call("list_tokens", role="admin")).body if t["id"] == "vendor-lee")
        assert (mine["expiresAt"], mine["expired"]) == (to_iso(until), False)
        ops.clock.advance(timedelta(days=7) - timedelta(seconds=1))
        assert (await call_as(ops, "me", token)).status == 200
        ops.clock.advance(timedelta(seconds=1))
        refused = await call_as(ops, "me", token)
        assert refused.status == 401 and "expired token" in refused.detail and "만료" in refused.detail
        await ops.ucity.ops.tokens.load()  # as another process reads it from the store
        assert (await call_as(ops, "me", token)).status == 401
        mine = next(t for t in (await ops.call("list_tokens", role="admin")).body if t["id"] == "vendor-lee")
        assert mine["expired"] is True
        unknown = await call_as(ops, "me", "uct_not-a-token-0123456789")
        assert unknown.status == 401 and "expired" not in unknown.detail
        [line] = [e for e in (await ops.call("list_audit", params={"kind": "auth"}, role="admin")).body["entries"]
                  if e["action"] == "token-issued"]
        assert line["expiresAt"] == to_iso(until)


async def test_a_token_without_expiry_keeps_working(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        issued = await ops.call("create_token", "POST", "/", {"id": "wall-1", "role": "reader"}, role="admin")
        assert issued.body["expiresAt"] is None
        ops.clock.advance(timedelta(days=3650))
        assert (await call_as(ops, "me", issued.body["token"])).status == 200


@pytest.mark.parametrize("when", ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00"])
async def test_a_past_or_local_expiry_is_refused(make_ops: MakeOps, when: str) -> None:
    async with make_ops(cameras=False, **AGENCIES) as ops:
        with pytest.raises(UcityError) as refused:
            await ops.call("create_token", "POST", "/", {"id": "x-1", "role": "reader", "expiresAt": when}, role="admin")
        assert refused.value.status == 400 and "expiresAt" in refused.value.detail
        assert all(t["id"] != "x-1" for t in (await ops.call("list_tokens", role="admin")).body)
