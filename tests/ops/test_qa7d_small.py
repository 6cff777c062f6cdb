"""Small operations-centre items after QA7, on both backends: a camera at 0,0 (the Gulf of Guinea, what a form sends
for missing coordinates) is refused like an event there; a grant's audit lines show an agency only its own footage
accesses, not the refused tries of other agencies (operators see all)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import Ops
from tests.ops.test_linkage import event_body, fire_and_police, open_link
from ucity.core.errors import BadRequest, NotFound

HEADER = ("관리번호,관리기관명,소재지도로명주소,소재지지번주소,설치목적구분,카메라대수,카메라화소수,촬영방면정보,보관일수,"
          "설치연월,관리기관전화번호,WGS84위도,WGS84경도\r\n")


@pytest.mark.parametrize("where", [{"lon": 0, "lat": 0}, {"lon": 0.0, "lat": -0.0}])
async def test_a_camera_at_null_island_is_refused(ops: Ops, where: dict[str, float]) -> None:
    with pytest.raises(BadRequest) as refused:
        await ops.call("create_camera", "POST", "/api/v1/cameras", {"id": "gate-0", "name": "정문", **where},
                       role="admin")
    assert refused.value.status == 400
    detail = refused.value.detail
    assert "카메라 위치 0,0" in detail and "a camera at lon 0, lat 0" in detail and "Gulf of Guinea" in detail
    with pytest.raises(NotFound):  # nothing was registered
        await ops.call("get_camera", cameraId="gate-0", role="admin")
    # one coordinate zero is a place (a camera on the prime meridian or the equator)
    made = await ops.call("create_camera", "POST", "/api/v1/cameras", {"id": "gate-1", "lon": 0.0, "lat": 51.4779},
                          role="admin")
    assert made.status == 201


async def test_an_imported_row_at_null_island_is_rejected_as_missing(make_ops: MakeOps) -> None:
    async with make_ops(import_bbox=(-180, -90, 180, 90)) as ops:  # even where the area allows 0,0
        csv = (HEADER + "Z-1,구로구청,서울특별시 구로구 가마산로 245,,생활방범,1,200,360도 전방면,30,2020-05,"
                        "02-860-2114,0,0\r\n").encode()
        resp = await ops.call("import_cameras", "POST", "/api/v1/cameras/import", raw=csv, role="admin",
                              content_type="text/csv")
        assert resp.status == 200
        (row,) = resp.body["rejected"]
        assert [r["code"] for r in row["reasons"]] == ["coordinates-missing"]


async def test_an_agency_sees_only_its_own_accesses_of_its_grant(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        package = receiver.on("/119")[-1].json["package"]
        grant_id, stream = package["grant"]["id"], package["cameras"][0]["stream"]
        assert (await open_link(ops, stream, "fire")).status == 307
        assert (await open_link(ops, stream, "police")).extra["reason"] == "other-agency"
        assert (await open_link(ops, stream, "operator")).extra["reason"] == "other-agency"
        assert (await open_link(ops, stream, None)).extra["reason"] == "unauthenticated"

        def accesses(body: dict[str, Any]) -> list[tuple[str, str]]:
            return [(line["actor"], line["outcome"]) for line in body["audit"] if line["action"] == "access"]

        own = (await ops.call("get_grant", role="fire", grantId=grant_id)).body
        assert accesses(own) == [("agency:fire-terminal", "ok")]
        assert [line["action"] for line in own["audit"]] == ["issued", "queued", "delivered", "access"]  # the rest stays
        everything = (await ops.call("get_grant", role="operator", grantId=grant_id)).body
        assert accesses(everything) == [("agency:fire-terminal", "ok"), ("agency:police-terminal", "denied"),
                                        ("operator:op-kim", "denied"), ("anonymous", "denied")]
