"""An agency reports only in a tenant where it is registered and only events of the services it receives (QA7 F8): a
police terminal could otherwise open a 119 event, whose automatic linkage shares footage with the fire service with
no operator involved, or report into a city it does not serve."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TOKENS
from tests.ops.test_linkage import event_body, fire_and_police
from ucity.core.errors import UcityError
from ucity.core.http import Req


async def report(ops: Any, body: dict[str, Any], role: str, tenant: str | None = None, token: str | None = None) -> Any:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token or TOKENS[role]}"}
    if tenant is not None:
        headers["ngsild-tenant"] = tenant
    try:
        return await ops.ucity.ops_api.create_event(Req("POST", "/api/v1/events", headers=headers,
                                                        body=orjson.dumps(body)))
    except UcityError as exc:
        return exc


async def test_an_agency_reports_only_its_own_services_in_its_own_tenant(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        fire_by_police = await report(ops, event_body("119_DISPATCH", "fire"), "police")
        assert fire_by_police.status == 403 and "119_DISPATCH" in fire_by_police.detail
        await ops.settle()
        assert receiver.on("/119") == []  # nothing shared with the fire service
        assert (await ops.call("list_grants")).body["total"] == 0
        # an agency registered through the API in one tenant only does not report into another
        seoul = "urn:ngsi-ld:tenant:seoul"
        ambulance = {"id": "ambulance-1", "name": {"ko": "구급대", "en": "Ambulance"}, "kind": "fire",
                     "services": ["119_DISPATCH"]}
        assert (await ops.call("put_agency", "PUT", "/", ambulance, role="admin", agencyId="ambulance-1")).status == 201
        token = (await ops.call("create_token", "POST", "/", {"id": "amb-1", "role": "agency", "agency": "ambulance-1"},
                                role="admin")).body["token"]
        elsewhere = await report(ops, event_body("119_DISPATCH", "fire"), "agency", seoul, token)
        assert elsewhere.status == 403  # the token's agency does not exist there
        assert (await report(ops, event_body("119_DISPATCH", "fire"), "agency", None, token)).status == 201
        own = await report(ops, event_body("112_DISPATCH", "robbery"), "police")
        assert own.status == 201
        by_fire = await report(ops, event_body("119_DISPATCH", "fire"), "fire")
        assert by_fire.status == 201
        # operators report any service
        assert (await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))).status == 201


@pytest.fixture
def receiver() -> Any:
    with Receiver() as running:
        yield running
