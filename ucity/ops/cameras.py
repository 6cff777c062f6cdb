"""The CCTV registry: Camera entities (Smart Data Models `Camera`), registered one by one or imported
from a CSV file in the shape of Korea's national CCTV standard dataset (전국CCTV표준데이터).

Cameras are NGSI-LD entities `urn:ngsi-ld:Camera:<id>`, written through `store.mutate`, with the same
attribute names as the simulator's cameras (ucity/sim/entities.py): SDM `cameraName`, `cameraType`,
`cameraUsage`, `streamURL`, `location`, `on`, plus ucity's `heading` and `fieldOfView` (degrees),
`status` (working, fault, offline, disabled, maintenance), `stillImageURL` and the dataset's fields.
The nearest-camera index (nearest.py) follows every write, whoever makes it.

CSV import: a header row with the dataset's column names (the 18-column file of data.go.kr, or the
older one with `위도`/`경도`), UTF-8 (with or without BOM) or CP949. One entity per camera: a row with
`카메라대수` = 3 gives `<관리번호>-1` … `-3` at the row's point. Rows that cannot be used are rejected,
each with its line number and every reason; the others are imported (re-importing a file updates the
same entities). Rows without `관리번호` get an id from a hash of agency, address and coordinates.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ucity.core.bus import Context
from ucity.core.errors import BadRequest, NotFound
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import delete_op, merge_op, replace_op
from ucity.ops.nearest import LOCATION, indexed, iri, is_camera
from ucity.store.base import Doc, Mutation, Outcome, Store

PREFIX = "urn:ngsi-ld:Camera:"
CameraType = Literal["FIXED", "PTZ", "DOME", "DAY/NIGHT", "C-MOUNT", "BULLET"]
CameraUsage = Literal["SURVEILLANCE", "RLVD", "ANPR/LPR", "TRAFFIC"]
CameraStatus = Literal["working", "fault", "offline", "disabled", "maintenance"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
BATCH = 500  # cameras per store call during an import
MAX_PER_ROW = 100  # a 카메라대수 above this is taken for a typing error [D]


def entity_id(camera_id: str) -> str:
    return camera_id if camera_id.startswith("urn:") else PREFIX + camera_id


def local_id(entity: str) -> str:
    return entity.removeprefix(PREFIX)


class CameraFields(BaseModel):
    """The changeable fields of a camera (PATCH); every one optional."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    cameraType: CameraType | None = None
    cameraUsage: CameraUsage | None = None
    heading: float | None = Field(None, ge=0, lt=360, description="degrees clockwise from north")
    fieldOfView: float | None = Field(None, gt=0, le=360, description="horizontal, degrees; 360 = all-round")
    streamURL: str | None = Field(None, pattern=r"^(rtsp|rtsps|rtmp|https?)://", max_length=2000)
    stillImageURL: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    status: CameraStatus | None = None


class CameraIn(CameraFields):
    """`POST /api/v1/cameras` (and each camera of a CSV row)."""

    id: str = Field(pattern=_ID)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    status: CameraStatus | None = "working"
    purpose: str | None = Field(None, max_length=50, description="설치목적구분")
    direction: str | None = Field(None, max_length=200, description="촬영방면정보")
    address: str | None = Field(None, max_length=300, description="소재지도로명주소")
    lotAddress: str | None = Field(None, max_length=300, description="소재지지번주소")
    managingAgency: str | None = Field(None, max_length=200, description="관리기관명")
    agencyPhone: str | None = Field(None, max_length=40, description="관리기관전화번호")
    resolutionMP: float | None = Field(None, ge=0, description="카메라화소수 / 100")
    retentionDays: int | None = Field(None, ge=0, description="보관일수")
    installed: str | None = Field(None, max_length=20, description="설치연월")
    siteId: str | None = Field(None, max_length=100)


def _prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


_UNITS = {"heading": "DD", "fieldOfView": "DD", "resolutionMP": "MP"}
_NAMES = {"name": "cameraName", "purpose": "installationPurpose", "resolutionMP": "resolution",
          "installed": "installationDate"}


def _attrs(fields: dict[str, Any]) -> dict[str, Any]:
    """Short-named NGSI-LD attributes of the given camera fields (None values left out)."""
    attrs: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or key in ("id", "lon", "lat", "address", "direction"):
            continue
        unit = {"unitCode": _UNITS[key]} if key in _UNITS else {}
        attrs[_NAMES.get(key, key)] = _prop(value, **unit)
    if fields.get("status") is not None:
        attrs["on"] = _prop(fields["status"] == "working")
    if fields.get("direction"):
        attrs["cameraOrientation"] = _prop({"comments": fields["direction"]})
    if fields.get("address"):
        attrs["address"] = _prop({"addressCountry": "KR", "streetAddress": fields["address"]})
    return attrs


def camera_entity(camera: CameraIn) -> dict[str, Any]:
    """The camera in NGSI-LD normalized form (core-context names, like the simulator's)."""
    return {"id": entity_id(camera.id), "type": "Camera", **_attrs(camera.model_dump()),
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [camera.lon, camera.lat]}}}


def _value(doc: Doc, term: str) -> Any:
    for instance in doc.get("attrs", {}).get(iri(term), ()):
        if "datasetId" not in instance:
            return instance.get("value")
    return None


def camera_wire(doc: Doc, with_stream: bool) -> dict[str, Any]:
    """The API form of a stored camera; the raw stream URL only for `cameras:admin` (it may hold credentials)."""
    camera = indexed(doc)
    address = _value(doc, "address")
    out: dict[str, Any] = {
        "id": local_id(doc["id"]), "entityId": doc["id"], "name": _value(doc, "cameraName"),
        "cameraType": _value(doc, "cameraType"), "cameraUsage": _value(doc, "cameraUsage"),
        "purpose": _value(doc, "installationPurpose"), "status": _value(doc, "status") or "working",
        "working": camera.working if camera else False,
        "location": doc.get("attrs", {}).get(LOCATION, [{}])[0].get("value"),
        "heading": _value(doc, "heading"), "fieldOfView": _value(doc, "fieldOfView"),
        "address": address.get("streetAddress") if isinstance(address, dict) else address,
        "managingAgency": _value(doc, "managingAgency"), "hasStill": bool(_value(doc, "stillImageURL")),
    }
    if with_stream:
        out["streamURL"] = _value(doc, "streamURL")
        out["stillImageURL"] = _value(doc, "stillImageURL")
    return out


def stream_urls(doc: Doc) -> tuple[str | None, str | None]:
    """(stream URL, still URL) of a stored camera."""
    stream, still = _value(doc, "streamURL"), _value(doc, "stillImageURL")
    return (stream if isinstance(stream, str) else None), (still if isinstance(still, str) else None)


class CameraRegistry:
    """Writes Camera entities; reads them through the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, tenant: str, camera_id: str) -> Doc:
        doc = await self.store.get_entity(tenant, entity_id(camera_id))
        if not is_camera(doc):
            raise NotFound(f"카메라 {camera_id} 없음 / camera {camera_id} does not exist")
        assert doc is not None
        return doc

    async def put(self, tenant: str, cameras: list[CameraIn], actor: str) -> list[Outcome | Exception]:
        """Create or replace cameras (in batches); one result per camera."""
        ctx = core_context()
        results: list[Outcome | Exception] = []
        for start in range(0, len(cameras), BATCH):
            mutations = [Mutation(entity_id(c.id), replace_op(normalize_entity(camera_entity(c), ctx), True))
                         for c in cameras[start:start + BATCH]]
            results.extend(await self.store.mutate(tenant, mutations, Context(actor=actor)))
        return results

    async def patch(self, tenant: str, camera_id: str, fields: CameraFields, actor: str) -> Doc:
        await self.get(tenant, camera_id)
        attrs = _attrs(fields.model_dump(exclude_unset=True))
        if not attrs:
            raise BadRequest("바꿀 항목이 없습니다 / nothing to change")
        doc = normalize_entity({"id": entity_id(camera_id), **attrs}, core_context(), require_type=False)
        (result,) = await self.store.mutate(tenant, [Mutation(entity_id(camera_id), merge_op(doc))], Context(actor=actor))
        if isinstance(result, Exception):
            raise result
        return await self.get(tenant, camera_id)

    async def delete(self, tenant: str, camera_id: str, actor: str) -> None:
        await self.get(tenant, camera_id)
        (result,) = await self.store.mutate(tenant, [Mutation(entity_id(camera_id), delete_op(camera_id))],
                                            Context(actor=actor))
        if isinstance(result, Exception):
            raise result


# -- CSV import ------------------------------------------------------------------------------------------
LAT_COLUMNS, LON_COLUMNS = ("WGS84위도", "위도"), ("WGS84경도", "경도")
REQUIRED = ("관리기관명", "카메라대수")
_COMPASS = (("북동", 45.0), ("북서", 315.0), ("남동", 135.0), ("남서", 225.0), ("북", 0.0), ("남", 180.0), ("동", 90.0),
            ("서", 270.0))
_USAGE = {"차량방범": "ANPR/LPR", "주정차단속": "ANPR/LPR", "교통단속": "RLVD", "교통정보수집": "TRAFFIC"}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
REASONS: dict[str, tuple[str, str]] = {
    "columns": ("열 개수가 머리글과 다름", "the row has a different number of columns than the header"),
    "agency-missing": ("관리기관명 없음", "managing agency (관리기관명) is missing"),
    "address-missing": ("주소 없음", "no address (소재지도로명주소 or 소재지지번주소)"),
    "coordinates-missing": ("위도·경도 없음", "latitude or longitude is missing"),
    "coordinates-invalid": ("위도·경도가 숫자가 아님", "latitude or longitude is not a number"),
    "coordinates-swapped": ("위도와 경도가 뒤바뀜", "latitude and longitude are swapped"),
    "coordinates-out-of-area": ("위치가 허용 범위(대한민국) 밖", "the point is outside the import area (Korea)"),
    "count-invalid": ("카메라대수가 1 이상의 정수가 아님", "camera count (카메라대수) is not a whole number from 1"),
    "count-too-large": ("카메라대수가 너무 큼", f"camera count (카메라대수) is above {MAX_PER_ROW}"),
    "resolution-invalid": ("카메라화소수가 숫자가 아님", "resolution (카메라화소수) is not a number"),
    "retention-invalid": ("보관일수가 숫자가 아님", "retention days (보관일수) is not a number"),
    "duplicate-id": ("관리번호 중복", "the management number (관리번호) appeared on an earlier row"),
    "store": ("저장 실패", "the store refused the camera"),
}


def reason(code: str, column: str | None = None, value: str | None = None) -> dict[str, Any]:
    ko, en = REASONS[code]
    out: dict[str, Any] = {"code": code, "ko": ko, "en": en}
    if column is not None:
        out["column"] = column
    if value is not None:
        out["value"] = value[:100]
    return out


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    imported_rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"rows": self.rows, "importedRows": self.imported_rows, "rejectedRows": len(self.rejected),
                "camerasCreated": self.created, "camerasUpdated": self.updated, "rejected": self.rejected}


def decode(data: bytes) -> str:
    """UTF-8 (BOM or not), else CP949, the encoding of files from data.go.kr."""
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise BadRequest("CSV 인코딩을 알 수 없음 (UTF-8 또는 CP949) / the CSV is neither UTF-8 nor CP949")


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in header), None)


def check_header(header: list[str]) -> tuple[str, str]:
    """(latitude column, longitude column); 400 naming every missing column."""
    lat, lon = _column(header, LAT_COLUMNS), _column(header, LON_COLUMNS)
    missing = [c for c in REQUIRED if c not in header]
    missing += [] if lat else ["WGS84위도"]
    missing += [] if lon else ["WGS84경도"]
    if "소재지도로명주소" not in header and "소재지지번주소" not in header:
        missing.append("소재지도로명주소")
    if missing:
        raise BadRequest(f"필수 열 없음 / the CSV lacks the columns: {', '.join(missing)}", missing=missing)
    return lat, lon  # type: ignore[return-value]


def _number(text: str) -> float | None:
    match = _NUMBER.match(text)
    return float(match.group(1)) if match else None


def _heading(direction: str) -> tuple[float | None, float | None]:
    """(heading, field of view) from 촬영방면정보: '360도 전방면' is all-round, '북측 방면' looks north."""
    if "360" in direction or "전방" in direction:
        return None, 360.0
    for word, degrees in _COMPASS:
        if word in direction:
            return degrees, None
    return None, None


@dataclass(slots=True)
class _Row:
    line: int
    values: dict[str, str]
    reasons: list[dict[str, Any]] = field(default_factory=list)
    site: str | None = None  # the id its cameras share

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()


def _coordinates(row: _Row, lat_col: str, lon_col: str, bbox: tuple[float, float, float, float]) -> tuple[float, float]:
    lat_text, lon_text = row.get(lat_col), row.get(lon_col)
    if not lat_text or not lon_text:
        row.reasons.append(reason("coordinates-missing", f"{lat_col}/{lon_col}"))
        return 0.0, 0.0
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        row.reasons.append(reason("coordinates-invalid", f"{lat_col}/{lon_col}", f"{lat_text}, {lon_text}"))
        return 0.0, 0.0
    minx, miny, maxx, maxy = bbox
    if not (minx <= lon <= maxx and miny <= lat <= maxy):
        swapped = minx <= lat <= maxx and miny <= lon <= maxy
        row.reasons.append(reason("coordinates-swapped" if swapped else "coordinates-out-of-area",
                                  f"{lat_col}/{lon_col}", f"{lat_text}, {lon_text}"))
    return lon, lat


def _count(row: _Row) -> int:
    text = row.get("카메라대수")
    if not text.isdigit() or int(text) < 1:
        row.reasons.append(reason("count-invalid", "카메라대수", text))
        return 0
    if int(text) > MAX_PER_ROW:
        row.reasons.append(reason("count-too-large", "카메라대수", text))
    return int(text)


def _optional_number(row: _Row, column: str, code: str) -> float | None:
    text = row.get(column)
    if not text:
        return None
    value = _number(text)
    if value is None:
        row.reasons.append(reason(code, column, text))
    return value


def _base_id(row: _Row, prefix: str, lon: float, lat: float) -> str:
    number = re.sub(r"[^A-Za-z0-9_.-]", "", row.get("관리번호"))
    if number:
        return f"{prefix}{number}"
    key = "|".join([row.get("관리기관명"), row.get("소재지도로명주소"), row.get("소재지지번주소"), f"{lon:.6f}", f"{lat:.6f}"])
    return f"{prefix}h{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def parse_row(row: _Row, lat_col: str, lon_col: str, bbox: tuple[float, float, float, float],
              prefix: str) -> list[CameraIn]:
    """The cameras of one data row; reasons appended to `row.reasons` when it cannot be used."""
    if None in row.values or any(v is None for v in row.values.values()):
        row.reasons.append(reason("columns"))
        return []
    if not row.get("관리기관명"):
        row.reasons.append(reason("agency-missing", "관리기관명"))
    if not row.get("소재지도로명주소") and not row.get("소재지지번주소"):
        row.reasons.append(reason("address-missing", "소재지도로명주소"))
    lon, lat = _coordinates(row, lat_col, lon_col, bbox)
    count = _count(row)
    pixels = _optional_number(row, "카메라화소수", "resolution-invalid")
    retention = _optional_number(row, "보관일수", "retention-invalid")
    if row.reasons:
        return []
    purpose = row.get("설치목적구분") or None
    direction = row.get("촬영방면정보") or None
    heading, fov = _heading(direction or "")
    base = row.site = _base_id(row, prefix, lon, lat)
    common = {"lon": lon, "lat": lat, "purpose": purpose, "direction": direction, "heading": heading, "fieldOfView": fov,
              "cameraUsage": _USAGE.get(purpose or "", "SURVEILLANCE"), "address": row.get("소재지도로명주소") or None,
              "lotAddress": row.get("소재지지번주소") or None, "managingAgency": row.get("관리기관명"),
              "agencyPhone": row.get("관리기관전화번호") or None, "installed": row.get("설치연월") or None,
              "resolutionMP": round(pixels / 100.0, 2) if pixels is not None else None,
              "retentionDays": int(retention) if retention is not None else None, "siteId": base}
    return [CameraIn(id=f"{base}-{k}", name=f"{purpose or 'CCTV'} {base}-{k}", **common) for k in range(1, count + 1)]


def read_csv(text: str, bbox: tuple[float, float, float, float], prefix: str = "") -> tuple[list[_Row], list[CameraIn]]:
    """Every data row (with its reasons) and the cameras of the good ones."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    lat_col, lon_col = check_header(header)
    rows: list[_Row] = []
    cameras: list[CameraIn] = []
    seen: set[str] = set()
    for values in reader:
        row = _Row(reader.line_num, values)
        rows.append(row)
        found = parse_row(row, lat_col, lon_col, bbox, prefix)
        number = row.get("관리번호")
        if number and number in seen:
            row.reasons.append(reason("duplicate-id", "관리번호", number))
            continue
        if number:
            seen.add(number)
        cameras.extend(found)
    return rows, cameras


async def import_csv(registry: CameraRegistry, tenant: str, data: bytes, bbox: tuple[float, float, float, float],
                     actor: str, prefix: str = "") -> ImportReport:
    """Import the good rows of a CSV and report the bad ones with their reasons."""
    rows, cameras = read_csv(decode(data), bbox, prefix)
    results = await registry.put(tenant, cameras, actor)
    report = ImportReport(rows=len(rows))
    failed_sites: dict[str, str] = {}
    for camera, result in zip(cameras, results, strict=True):
        if isinstance(result, Exception):
            failed_sites[camera.siteId or camera.id] = str(result)
        elif result.result == "created":
            report.created += 1
        else:
            report.updated += 1
    for row in rows:
        if row.site in failed_sites:
            row.reasons.append({**reason("store"), "detail": failed_sites[row.site]})
        if row.reasons:
            report.rejected.append({"row": row.line, "managementNumber": row.get("관리번호") or None,
                                    "reasons": row.reasons})
    report.imported_rows = report.rows - len(report.rejected)
    return report

