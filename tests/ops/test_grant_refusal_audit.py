"""A footage grant for a disabled agency is refused (400, reason agency-disabled) and, like a linkage for it, audited
as a denied attempt: `grant` / `issued` with outcome `denied`, no grant made, not counted as issued (QA leftover:
`issue_grant` refused without an audit line). On both backends (tests/ops/conftest.py `make_ops`)."""

from __future__ import annotations

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import agency
from tests.ops.test_linkage import audit, event_body, nearest_ids
from ucity.core.errors import UcityError

COAST = agency("coast-122", "other", ["112_DISPATCH"])


async def test_a_grant_for_a_disabled_agency_is_refused_and_audited_as_denied(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        assert (await ops.call("create_agency", "POST", "/", COAST, role="admin")).status == 201
        await ops.call("put_agency", "PUT", "/", {**COAST, "enabled": False}, role="admin", agencyId="coast-122")
        event = (await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"))).body
        cameras = (await nearest_ids(ops))[:2]
        with pytest.raises(UcityError) as refused:
            await ops.call("create_grant", "POST", "/api/v1/grants", {
                "agency": "coast-122", "event": event["id"], "cameras": cameras, "purpose": "용의자 추적"})
        assert refused.value.status == 400 and refused.value.extra["reason"] == "agency-disabled"
        assert refused.value.detail == "기관 coast-122 사용 중지됨 / agency coast-122 is disabled"
        [line] = await audit(ops, kind="grant", agency="coast-122")
        assert (line["action"], line["outcome"], line["reason"], line["event"], line["actor"]) == (
            "issued", "denied", "agency-disabled", event["id"], "operator:op-kim")
        assert line["cameras"] == cameras and line.get("grant") is None
        assert (line["purposeChars"], line["purposeMasked"]) == (len("용의자 추적"), False) and "purpose" not in line
        # no grant was made, and none is counted as issued
        assert (await ops.call("list_grants", params={"event": event["id"]})).body["total"] == 0
        stats = (await ops.call("grant_stats")).body["agencies"].get("coast-122", {})
        assert stats.get("grantsIssued", 0) == 0
        # an unknown agency is still a 404 without an audit line of its own (nothing to refuse it as)
        with pytest.raises(UcityError) as unknown:
            await ops.call("create_grant", "POST", "/api/v1/grants", {
                "agency": "nobody-000", "event": event["id"], "cameras": cameras})
        assert unknown.value.status == 404
        assert await audit(ops, kind="grant", agency="nobody-000") == []
