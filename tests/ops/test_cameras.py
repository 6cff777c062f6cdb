"""The CCTV registry: CSV import in the shape of the national CCTV dataset (good rows in, each bad row
reported with its reasons), camera registration and the raw stream URL kept from non-admins."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from ucity.core.errors import UcityError
from ucity.ops.cameras import read_csv

HEADER = ["개방자치단체코드", "관리번호", "관리기관명", "소재지도로명주소", "소재지지번주소", "설치목적구분", "카메라대수",
          "카메라화소수", "촬영방면정보", "보관일수", "설치연월", "관리기관전화번호", "WGS84위도", "WGS84경도",
          "데이터기준일자", "데이터갱신구분", "데이터갱신시점", "최종수정시점"]


def row(number: str, **over: str) -> dict[str, str]:
    base = {"개방자치단체코드": "3160000", "관리번호": number, "관리기관명": "서울특별시 구로구청",
            "소재지도로명주소": "서울특별시 구로구 디지털로 300", "소재지지번주소": "서울특별시 구로구 구로동 222-1",
            "설치목적구분": "생활방범", "카메라대수": "1", "카메라화소수": "200", "촬영방면정보": "360도 전방면",
            "보관일수": "30", "설치연월": "2019-05", "관리기관전화번호": "02-860-2114", "WGS84위도": "37.4954",
            "WGS84경도": "126.8874", "데이터기준일자": "2025-06-30", "데이터갱신구분": "", "데이터갱신시점": "",
            "최종수정시점": ""}
    base.update(over)
    return base


def csv_bytes(rows: list[dict[str, str]], encoding: str = "utf-8-sig", extra_line: str = "") -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, HEADER, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return (out.getvalue() + extra_line).encode(encoding)


GOOD_AND_BAD = [
    row("3160000-0001", 카메라대수="3", 촬영방면정보="북측 방면"),  # line 2: good, three cameras
    row("3160000-0002", WGS84위도="", WGS84경도=""),  # 3: no coordinates
    row("3160000-0003", WGS84위도="126.8874", WGS84경도="37.4954"),  # 4: swapped
    row("3160000-0004", 카메라대수="0", 보관일수="삼십"),  # 5: two reasons
    row("3160000-0005", 관리기관명="", 소재지도로명주소="", 소재지지번주소=""),  # 6: no agency, no address
    row("3160000-0001"),  # 7: duplicate management number
    row("3160000-0006", WGS84위도="35.1", WGS84경도="139.7"),  # 8: Tokyo, outside Korea
    row("", 설치목적구분="교통단속", 카메라화소수="41만", 보관일수="14일"),  # 9: good, id from a hash
    row("3160000-0007", WGS84위도="37.49x"),  # 10: not a number
]


def reasons(report: dict[str, Any]) -> dict[int, list[str]]:
    return {r["row"]: [x["code"] for x in r["reasons"]] for r in report["rejected"]}


async def test_csv_imports_the_good_rows_and_reports_each_bad_one(ops: Ops) -> None:
    resp = await ops.call("import_cameras", "POST", "/", role="admin", raw=csv_bytes(GOOD_AND_BAD),
                          content_type="text/csv; charset=utf-8", params={"prefix": "gr-"})
    assert resp.status == 200
    report = resp.body
    assert (report["rows"], report["importedRows"], report["rejectedRows"]) == (9, 2, 7)
    assert (report["camerasCreated"], report["camerasUpdated"]) == (4, 0)
    assert reasons(report) == {
        3: ["coordinates-missing"], 4: ["coordinates-swapped"], 5: ["count-invalid", "retention-invalid"],
        6: ["agency-missing", "address-missing"], 7: ["duplicate-id"], 8: ["coordinates-out-of-area"],
        10: ["coordinates-invalid"]}
    first = report["rejected"][0]
    assert first["managementNumber"] == "3160000-0002"
    assert first["reasons"][0]["ko"] == "위도·경도 없음" and first["reasons"][0]["en"] == "latitude or longitude is missing"
    # the good rows are cameras now: one entity per camera of the row, with the dataset's fields
    camera = (await ops.call("get_camera", role="admin", cameraId="gr-3160000-0001-2")).body
    assert camera["location"] == {"type": "Point", "coordinates": [126.8874, 37.4954]}
    assert camera["heading"] == 0.0 and camera["fieldOfView"] is None  # "북측 방면": looking north
    assert camera["managingAgency"] == "서울특별시 구로구청" and camera["purpose"] == "생활방범"
    assert camera["cameraUsage"] == "SURVEILLANCE" and camera["status"] == "working"
    listed = await ops.call("list_cameras", params={"near": "126.8874,37.4954", "n": "50", "radius": "1"})
    imported = sorted(c["id"] for c in listed.body["cameras"] if c["id"].startswith("gr-"))
    assert imported[:3] == ["gr-3160000-0001-1", "gr-3160000-0001-2", "gr-3160000-0001-3"]
    assert len(imported) == 4 and imported[3].startswith("gr-h")
    hashed = (await ops.call("get_camera", role="admin", cameraId=imported[3])).body
    assert hashed["cameraUsage"] == "RLVD" and hashed["fieldOfView"] == 360.0
    doc = await ops.ucity.store.get_entity(TENANT, hashed["entityId"])
    assert doc is not None
    attrs = {k.rsplit("/", 1)[-1]: v[0]["value"] for k, v in doc["attrs"].items()}
    assert attrs["resolution"] == 0.41 and attrs["retentionDays"] == 14
    # the import is in the audit log
    lines = (await ops.call("list_audit", params={"kind": "camera"}, role="admin")).body["entries"]
    assert [(line["action"], line["importedRows"], line["rejectedRows"]) for line in lines] == [("imported", 2, 7)]


async def test_reimporting_updates_the_same_cameras(ops: Ops) -> None:
    data = csv_bytes([row("9-1", 카메라대수="2")])
    first = await ops.call("import_cameras", "POST", "/", role="admin", raw=data, content_type="text/csv")
    again = await ops.call("import_cameras", "POST", "/", role="admin", raw=data, content_type="text/csv")
    assert (first.body["camerasCreated"], again.body["camerasCreated"], again.body["camerasUpdated"]) == (2, 0, 2)


async def test_cp949_files_and_short_rows(ops: Ops) -> None:
    data = csv_bytes([row("7-1")], encoding="cp949", extra_line="3160000,7-2,서울특별시 구로구청\r\n")
    resp = await ops.call("import_cameras", "POST", "/", role="admin", raw=data, content_type="text/csv")
    assert resp.body["importedRows"] == 1
    assert reasons(resp.body) == {3: ["columns"]}


async def test_missing_columns_refuse_the_whole_file(ops: Ops) -> None:
    with pytest.raises(UcityError) as refused:
        await ops.call("import_cameras", "POST", "/", role="admin", raw="관리번호,관리기관명\r\n1,구로구청\r\n".encode(),
                       content_type="text/csv")
    assert refused.value.status == 400
    assert refused.value.extra["missing"] == ["카메라대수", "WGS84위도", "WGS84경도", "소재지도로명주소"]


def test_the_older_dataset_columns_are_understood() -> None:
    text = "관리기관명,소재지도로명주소,소재지지번주소,설치목적구분,카메라대수,카메라화소수,촬영방면정보,보관일수," \
           "관리기관전화번호,위도,경도,데이터기준일자\r\n서울특별시 마포구청,양화로 72,서교동 395-43,주정차단속,1,200," \
           "남서쪽,30,02-3153-8432,37.550747,126.916711,2020-05-20\r\n"
    rows, cameras = read_csv(text, (124.0, 33.0, 132.0, 39.0))
    assert [r.reasons for r in rows] == [[]]
    [camera] = cameras
    assert (camera.lon, camera.lat, camera.heading, camera.cameraUsage) == (126.916711, 37.550747, 225.0, "ANPR/LPR")


async def test_register_and_read_a_camera(ops: Ops) -> None:
    body = {"id": "demo-1", "name": "데모 카메라", "cameraType": "FIXED", "lon": 126.88, "lat": 37.49, "heading": 90,
            "fieldOfView": 70, "streamURL": "rtsp://user:secret@vms.example/live/1"}
    created = await ops.call("create_camera", "POST", "/", body, role="admin")
    assert created.status == 201 and created.body["streamURL"] == "rtsp://user:secret@vms.example/live/1"
    seen_by_operator = (await ops.call("get_camera", cameraId="demo-1")).body
    assert "streamURL" not in seen_by_operator and seen_by_operator["heading"] == 90
    with pytest.raises(UcityError) as duplicate:
        await ops.call("create_camera", "POST", "/", body, role="admin")
    assert duplicate.value.status == 409
    with pytest.raises(UcityError) as forbidden:
        await ops.call("create_camera", "POST", "/", {**body, "id": "demo-2"}, role="operator")
    assert forbidden.value.status == 403
    with pytest.raises(UcityError) as invalid:
        await ops.call("create_camera", "POST", "/", {**body, "id": "demo-3", "lat": 91}, role="admin")
    assert invalid.value.status == 400


async def test_list_pages_through_the_registry(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        page = await ops.call("list_cameras", params={"limit": "3", "offset": "0"})
        assert page.body["total"] == 4100 and len(page.body["cameras"]) == 3
        assert page.body["cameras"][0]["id"] == "guro-cctv-00001"
