"""The CCTV registry: Camera entities (Smart Data Models `Camera`), registered one by one or imported
from a CSV file in the shape of Korea's national CCTV standard dataset (전국CCTV표준데이터).

Cameras are NGSI-LD entities `urn:ngsi-ld:Camera:<id>`, written through `store.mutate`, with the same
attribute names as the simulator's cameras (ucity/sim/entities.py): SDM `cameraName`, `cameraType`,
`cameraUsage`, `location`, `on`, plus ucity's `heading` and `fieldOfView` (degrees), `status` (working,
fault, offline, disabled, maintenance) and the dataset's fields. The nearest-camera index (nearest.py)
follows every write, whoever makes it.

Stream and still URLs are not attributes: they may carry the VMS's credentials, and the NGSI-LD API
serves entities, their history and notifications without a token. They are kept in the store's
document table (kind `camera-access`, per tenant and camera entity id), all of them in memory, written by
this registry only, and read by the admin camera API and the footage redirect (PLAT-R5). Every process re-reads
them from the store every `ops.token_refresh_s` (10 s), so that a URL set, changed or removed, or a record dropped,
through another API process on the same store is what this process's footage links lead to within that bound (at
once in the process that made the change); a record this process is dropping stays dropped. The registry
follows the store's commits (`committed`): a Camera entity deleted by anybody (DELETE through NGSI-LD too)
loses its record at once, and a `streamURL` / `stillImageURL` an NGSI-LD client writes into a Camera entity
is deleted from it and from its history (audited), never moved into the record: the NGSI-LD API has no
roles, and whoever could write it would choose where the agencies' footage links lead.
Camera entities written before this layout carried them as attributes: `migrate` moves those into the
private store and deletes them from the entities and their history (once per tenant; see there).

CSV import: a header row with the dataset's column names (the 18-column file of data.go.kr, or the
older one with `위도`/`경도`), UTF-8 (with or without BOM) or CP949. One entity per camera: a row with
`카메라대수` = 3 gives `<관리번호>-1` … `-3` at the row's point. Rows that cannot be used are rejected,
each with its line number and every reason; the others are imported (re-importing a file updates the
same entities). Rows without `관리번호` get an id from a hash of agency, address and coordinates.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import Clock, SystemClock, to_iso
from ucity.core.errors import BadRequest, NotFound
from ucity.core.refresh import Refresh
from ucity.ngsild.context import core_context
from ucity.ngsild.model import default_geometry, normalize_entity
from ucity.ngsild.ops import delete_op, merge_op, replace_op
from ucity.ops.audit import AuditLog
from ucity.ops.events import is_null_island
from ucity.ops.nearest import CAMERA_TYPE, LOCATION, indexed, iri, is_camera
from ucity.store.base import ApplyFn, Doc, EntityQuery, Mutation, Outcome, Store, TemporalQuery, TypeExpr

log = logging.getLogger(__name__)

PREFIX = "urn:ngsi-ld:Camera:"
CameraType = Literal["FIXED", "PTZ", "DOME", "DAY/NIGHT", "C-MOUNT", "BULLET"]
CameraUsage = Literal["SURVEILLANCE", "RLVD", "ANPR/LPR", "TRAFFIC"]
CameraStatus = Literal["working", "fault", "offline", "disabled", "maintenance"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
BATCH = 500  # cameras per store call during an import
MAX_PER_ROW = 100  # a 카메라대수 above this is taken for a typing error [D]
ACCESS_KIND = "camera-access"  # document (tenant, camera entity id) -> {"streamURL", "stillImageURL"}
MIGRATION_KIND = "camera-access-migration"  # ("*", "since"): first start of this layout; (tenant, "done")
GLOBAL = "*"  # the document table's tenant key of what belongs to no tenant (as ucity/ops/auth.py)
URL_FIELDS = ("streamURL", "stillImageURL")
URL_IRIS = tuple(iri(name) for name in URL_FIELDS)
URL_PATTERNS = {"streamURL": r"^(rtsp|rtsps|rtmp|https?)://", "stillImageURL": r"^https?://"}
MIGRATION_ACTOR = "system:camera-access-migration"
LAYOUT = 2  # of the `camera-access-migration` "done" marks: see CameraRegistry._load


# Why the live grants naming a camera lose it (grants.py `drop_camera`), as the footage links of such a camera are
# refused (the `reason` of the 403), with the words of the audit lines and the agencies' notices.
REMOVED, MOVED, FEED_CHANGED = "camera-removed", "camera-changed", "camera-feed-changed"
CAUSES: dict[str, tuple[str, str]] = {
    REMOVED: ("카메라 삭제", "camera deleted"),
    MOVED: ("카메라 이동 또는 재등록", "camera moved or registered again"),
    FEED_CHANGED: ("카메라 영상 주소 변경", "camera footage URL changed"),
}
# (tenant, camera entity id, cause, actor): a camera granted footage of may no longer be the one granted.
CameraChanged = Callable[[str, str, str, str], Awaitable[None]]


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
    # Kept out of the Camera entity (module docstring); in a PATCH, null removes the URL.
    streamURL: str | None = Field(None, pattern=URL_PATTERNS["streamURL"], max_length=2000)
    stillImageURL: str | None = Field(None, pattern=URL_PATTERNS["stillImageURL"], max_length=2000)
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

    @model_validator(mode="after")
    def _not_null_island(self) -> CameraIn:
        # lon 0, lat 0 is in the Gulf of Guinea: what a form or a file sends for a missing position (as for events,
        # events.parse_point). A camera there would never be found near any event of the city.
        if is_null_island((self.lon, self.lat)):
            raise ValueError("카메라 위치 0,0(경도 0, 위도 0)은 받지 않습니다: 좌표가 비어 있던 값입니다. 실제 경도·위도를 "
                             "넣으십시오 / a camera at lon 0, lat 0 ('Null Island' in the Gulf of Guinea) is refused: it "
                             "is what a form sends for missing coordinates; give the camera's real lon and lat")
        return self


def _prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


_UNITS = {"heading": "DD", "fieldOfView": "DD", "resolutionMP": "MP"}
_NAMES = {"name": "cameraName", "purpose": "installationPurpose", "resolutionMP": "resolution",
          "installed": "installationDate"}


def _attrs(fields: dict[str, Any]) -> dict[str, Any]:
    """Short-named NGSI-LD attributes of the given camera fields (None values left out; never the URLs, which
    only the private store holds)."""
    attrs: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or key in ("id", "lon", "lat", "address", "direction", *URL_FIELDS):
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
    """The camera in NGSI-LD normalized form (core-context names, like the simulator's), without its URLs."""
    return {"id": entity_id(camera.id), "type": "Camera", **_attrs(camera.model_dump()),
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [camera.lon, camera.lat]}}}


def _value(doc: Doc, term: str) -> Any:
    for instance in doc.get("attrs", {}).get(iri(term), ()):
        if "datasetId" not in instance:
            return instance.get("value")
    return None


@dataclass(frozen=True, slots=True)
class CameraAccess:
    """A camera's stream and still URLs (they may carry credentials): the private store's record."""

    stream: str | None = None
    still: str | None = None

    def doc(self) -> Doc:
        return {"streamURL": self.stream, "stillImageURL": self.still}

    @classmethod
    def of(cls, doc: Doc) -> CameraAccess:
        stream, still = doc.get("streamURL"), doc.get("stillImageURL")
        return cls(stream if isinstance(stream, str) else None, still if isinstance(still, str) else None)


NO_ACCESS = CameraAccess()


def feed(url: str | None) -> str | None:
    """Where a URL leads: the URL without its user info (`user:password@`), so that a VMS password changed in it is the
    same feed; scheme and host compared without case. Anything else changed (host, port, path, query) is another."""
    if url is None:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1].lower(), parts.path, parts.query,
                       parts.fragment))


def feed_changed(before: CameraAccess, after: CameraAccess) -> bool:
    """Whether a camera's footage now leads elsewhere: a stream or still URL it had is changed to another feed or
    removed. A first URL given to a camera that had none is not (the camera gets its feed; nobody saw another)."""
    return any(old is not None and feed(old) != feed(new)
               for old, new in ((before.stream, after.stream), (before.still, after.still)))


def camera_wire(doc: Doc, with_stream: bool, access: CameraAccess = NO_ACCESS) -> dict[str, Any]:
    """The API form of a stored camera and its private URLs; the raw URLs only for `cameras:admin` (they may
    hold credentials)."""
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
        "managingAgency": _value(doc, "managingAgency"), "hasStill": access.still is not None,
    }
    if with_stream:
        out["streamURL"] = access.stream
        out["stillImageURL"] = access.still
    return out


def identity(doc: Doc) -> str:
    """What makes a Camera entity the camera a footage grant was given for (grants.py): when it was registered
    (`createdAt`: a camera deleted and registered again under its id, by the API, a CSV re-import or NGSI-LD, is
    another one) and where it stands (to about 0.1 m: a camera moved, or an id re-used for a camera elsewhere, is
    another one). Its other fields may change under a grant: the camera is the same. Its URLs are not part of it, but
    a URL re-pointed at another feed drops the camera from its live grants as a move does (`set_access`)."""
    geometry = default_geometry(doc, LOCATION) or {}
    coordinates = geometry.get("coordinates") if geometry.get("type") == "Point" else None
    place = ",".join(f"{float(c):.6f}" for c in coordinates[:2]) if isinstance(coordinates, list) else "-"
    return f"{doc.get('createdAt', '')}@{place}"


def url_attrs(doc: Doc) -> list[str]:
    """The attribute IRIs of a Camera entity that name a stream or still URL: `streamURL` / `stillImageURL` under
    any @context (the core context's default vocabulary, Smart Data Models', a client's own), so the IRI's last
    segment decides."""
    return [attr for attr in doc.get("attrs", {}) if _is_url(attr)]


def refuse_urls(tenant: str, entity_id: str, after: Doc, touched: frozenset[str]) -> BadRequest | None:
    """The store's write check (Store.add_write_check): a write that puts a `streamURL` / `stillImageURL` (under
    any @context, `url_attrs`) into a Camera entity is refused with 400 before anything is stored, so no reader,
    subscriber or history ever sees it (the temporal API's own history writes run it too: temporal.py
    `_check_writes`): the NGSI-LD API has no roles, and anybody could otherwise read the
    credentials such URLs carry, or choose where the agencies' footage links lead. Nothing of ucity writes one
    (the URLs are private: `set_access`); the migration's deletion of old ones touches attributes it removes."""
    if CAMERA_TYPE not in after.get("type", ()):
        return None
    attrs = after.get("attrs", {})
    found = sorted({_term(a) for a in touched if a in attrs and _is_url(a)}
                   # a sub-attribute of that name (e.g. `info.streamURL`) carries the same credentials
                   | {_term(m) for a in touched for i in attrs.get(a, ()) for m in i if _is_url(m)})
    if not found:
        return None
    return BadRequest(f"카메라 영상 주소({', '.join(found)})는 NGSI-LD로 쓸 수 없습니다: PATCH /api/v1/cameras/{{id}}로 "
                      f"설정하십시오 / camera {', '.join(found)} cannot be written through NGSI-LD (private: it may carry "
                      f"credentials); set it with PATCH /api/v1/cameras/{{id}}")


def _is_url(name: str) -> bool:
    return name in URL_IRIS or _term(name) in URL_FIELDS


def _term(iri_: str) -> str:
    return iri_.rsplit("/", 1)[-1].rsplit("#", 1)[-1].rsplit(":", 1)[-1]


def _legacy_urls(doc: Doc, since: str) -> tuple[dict[str, str | None], list[str]]:
    """Of a Camera entity: the URL attributes written before `since` (this layout's first start) to move
    ({field: value, None if its value is no usable URL}), and every URL attribute IRI to delete. An attribute
    with an instance written at or after `since` came from an NGSI-LD client after the upgrade: deleted, not
    moved (that would let any anonymous client point the agencies' footage links anywhere)."""
    moved: dict[str, str | None] = {}
    drop = url_attrs(doc)
    attrs = doc.get("attrs", {})
    for name, attr in zip(URL_FIELDS, URL_IRIS, strict=True):
        instances = attrs.get(attr)
        if not instances or any(str(i.get("modifiedAt") or "") >= since for i in instances):
            continue
        chosen = next((i for i in instances if "datasetId" not in i), instances[0])
        value = chosen.get("value")
        usable = isinstance(value, str) and len(value) <= 2000 and re.match(URL_PATTERNS[name], value)
        moved[name] = value if usable else None
    return moved, drop


def _strip_op() -> ApplyFn:
    """Delete the URL attributes from a Camera entity: a normal update (subscriptions see the attributes deleted,
    with no value; history gets no instance)."""

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            return Outcome(None, "update", changed=False, result="gone")
        drop = url_attrs(before)
        if not drop:
            return Outcome(before, "update", changed=False, result="unchanged")
        doc = dict(before)
        doc["attrs"] = {k: v for k, v in before.get("attrs", {}).items() if k not in drop}
        doc["modifiedAt"] = now
        return Outcome(doc, "update", frozenset(drop), (), result="updated")

    return apply


class CameraRegistry:
    """Writes Camera entities (read through the store) and the cameras' private URLs (kept in memory)."""

    def __init__(self, store: Store, clock: Clock | None = None, audit: AuditLog | None = None,
                 refresh_s: float = 10.0) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.refresh_s = refresh_s
        self._refresh = Refresh(self.clock, "ucity-camera-url-refresh", "the camera URLs", self._reread,
                                lambda: self.refresh_s)
        self.audit = audit
        self._access: dict[tuple[str, str], CameraAccess] = {}  # (tenant, camera entity id)
        self._since: str | None = None  # when this layout first started: URLs written before it are moved
        self._migrated: set[str] = set()  # tenants whose Camera entities hold no URL of the old layout
        self._lock = asyncio.Lock()
        # Orders the store writes of the records (set_access, dropping one, migrating) and the re-reads of them.
        self._doc_lock = asyncio.Lock()
        self._deleted: set[tuple[str, str]] = set()  # cameras whose last committed change deleted them
        self._dropping: set[tuple[str, str]] = set()  # records being dropped here: a re-read does not bring them back
        self._tasks: set[asyncio.Task[None]] = set()
        # The grants' follower of camera changes (linkage.follow_cameras): a camera deleted, moved or registered
        # again (seen in the commits, whoever wrote them), or its footage URL re-pointed (`set_access`), is dropped
        # from the live grants naming it. Its runs started by commits are awaited by the camera API's writes.
        self.on_change: CameraChanged | None = None
        self._changing: set[asyncio.Task[None]] = set()
        self._following = False
        self._registered = False

    # -- committed changes -----------------------------------------------------------------------------
    def follow(self) -> None:
        """Follow the store's commits from now on (`committed`); `stop` ends it."""
        if not self._following:
            self._following = True
            if not self._registered:  # the store has no way to unregister a callback
                self.store.on_commit(self.committed)
                self.store.add_write_check(refuse_urls)
                self._registered = True

    async def stop(self) -> None:
        self._following = False
        await self._refresh.stop()
        await self.idle()

    async def idle(self) -> None:
        """Until the work the commits started (dropped records, removed URL attributes) and the re-read under way
        (if any) are done."""
        await self._refresh.settle()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def committed(self, context: Context, changes: tuple[EntityChange, ...]) -> None:
        """The store's commit callback: every committed write, whoever made it, in commit order, on the event loop
        and before the write is acknowledged (so before the writer, or anybody it answers, can act on it).

        * A Camera entity deleted (the camera API, or DELETE /ngsi-ld/v1/entities/{id}): its private record goes
          at once from memory (a camera created again under the same id gets no old URL), then from the store; the
          live grants naming it lose it (`on_change`, cause `camera-removed`).
        * A Camera entity moved or registered again (its `identity` changed: a CSV re-import with other coordinates,
          an NGSI-LD write of its `location`, a replace that makes it anew): the live grants naming it lose it
          (cause `camera-changed`).

        (A Camera write carrying a `streamURL` / `stillImageURL` never commits: `refuse_urls`, the store's write
        check, refuses it before.) Runs for every committed change (the ingest's too): a type test per change and
        nothing else."""
        if not self._following:
            return
        for change in changes:
            after, before = change.after, change.before
            if after is None:
                if before is not None and CAMERA_TYPE in before.get("type", ()):
                    self._gone((change.tenant, change.entity_id))
                    self._changed(change.tenant, change.entity_id, REMOVED, context)
            elif CAMERA_TYPE in after.get("type", ()):
                if self._deleted:
                    self._deleted.discard((change.tenant, change.entity_id))
                if before is not None and CAMERA_TYPE in before.get("type", ()) and identity(before) != identity(after):
                    self._changed(change.tenant, change.entity_id, MOVED, context)

    def _changed(self, tenant: str, camera: str, cause: str, context: Context) -> None:
        if self.on_change is not None:
            task = self._spawn(self.on_change(tenant, camera, cause, context.actor or "system"))
            self._changing.add(task)
            task.add_done_callback(self._changing.discard)

    async def changes_done(self) -> None:
        """Until the grants of the cameras changed so far have followed (`on_change` runs the commits started): the
        camera API answers after it, so its caller finds the grants narrowed or revoked."""
        while self._changing:
            await asyncio.gather(*list(self._changing), return_exceptions=True)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("camera URL upkeep failed", exc_info=task.exception())

    def _gone(self, key: tuple[str, str]) -> None:
        self._deleted.add(key)
        self._access.pop(key, None)
        # Dropped from the store even if this process did not know of a record: another process may have written
        # one since this one's last re-read.
        self._dropping.add(key)
        self._spawn(self._drop_doc(key))

    async def _drop_doc(self, key: tuple[str, str]) -> None:
        """Delete a deleted camera's record from the store, unless one was written since (a camera created again
        under the same id with its own URLs: the store holds that one now). The caller put `key` in `_dropping`."""
        try:
            async with self._doc_lock:
                if key not in self._access:
                    await self.store.delete_docs(ACCESS_KIND, [key])
        finally:
            self._dropping.discard(key)

    # -- private URLs ----------------------------------------------------------------------------------
    async def load(self, *tenants: str) -> None:
        """Read every camera's URLs (all tenants) and migrate `tenants` now (the others on first use)."""
        async with self._lock:
            await self._load()
        for tenant in tenants:
            await self._ready(tenant)

    async def _load(self) -> None:
        async with self._doc_lock:
            self._access = {(t, k): CameraAccess.of(d) for t, k, d in await self.store.list_docs(ACCESS_KIND)}
            self._refresh.loaded()
            await self._drop_orphans()
        marks = await self.store.list_docs(MIGRATION_KIND)
        since = next((str(d["at"]) for t, k, d in marks if (t, k) == (GLOBAL, "since")), None)
        if since is None:
            since = to_iso(self.clock.now())
            await self.store.put_doc(MIGRATION_KIND, GLOBAL, "since", {"at": since})
        self._since = since
        # Layout 2 also deletes (without moving) URL attributes an NGSI-LD client wrote after the upgrade, which
        # layout 1 left in place: a tenant migrated by layout 1 is migrated again (it is idempotent).
        self._migrated = {t for t, k, d in marks if k == "done" and t != GLOBAL and d.get("layout", 1) >= LAYOUT}

    # -- the periodic re-read (on the platform clock, so tests move it) -----------------------------------
    def start_refresh(self) -> None:
        """Re-read the records every `refresh_s` from now on (after `load`; `stop` ends it)."""
        self._refresh.start()

    async def _reread(self) -> None:
        """Take the store's records: those another process wrote, changed or dropped since. Under the lock that
        this process's own writes of records take, so none of them is undone; records being dropped here (a
        camera deleted here: `_gone`, `delete`) stay dropped."""
        async with self._doc_lock:
            docs = await self.store.list_docs(ACCESS_KIND)
            self._access = {(t, k): CameraAccess.of(d) for t, k, d in docs if (t, k) not in self._dropping}
            self._refresh.loaded()

    def health(self) -> dict[str, Any]:
        return {"records": len(self._access), **self._refresh.health()}

    async def _ready(self, tenant: str) -> None:
        """The tenant's old-layout URLs moved (once): before any URL is read or written there."""
        if tenant in self._migrated:
            return
        async with self._lock:
            if self._since is None:
                await self._load()
            if tenant not in self._migrated:
                report = await self.migrate(tenant)
                await self.store.put_doc(MIGRATION_KIND, tenant, "done", {"at": to_iso(self.clock.now()),
                                                                          "layout": LAYOUT, **report})
                self._migrated.add(tenant)
                if any(report.values()):
                    log.warning("camera URLs of tenant %s moved out of NGSI-LD: %s", tenant, report)

    async def _drop_orphans(self) -> None:
        """Records of cameras that no longer exist (deleted while ucity was stopped, or just before a crash, the
        record's own deletion not yet written): dropped, so no camera created later under that id inherits them."""
        for tenant in sorted({t for t, _ in self._access}):
            alive = set(await self.store.entity_ids(tenant, EntityQuery(types=TypeExpr(((CAMERA_TYPE,),)))))
            orphans = [key for key in self._access if key[0] == tenant and key[1] not in alive]
            if orphans:
                await self.store.delete_docs(ACCESS_KIND, orphans)
                for key in orphans:
                    del self._access[key]
                log.warning("camera URLs of %d deleted cameras of tenant %s dropped", len(orphans), tenant)

    async def migrate(self, tenant: str) -> dict[str, int]:
        """Move the URL attributes of the tenant's Camera entities written before this layout into the private
        store, delete every URL attribute from the entities (through `store.mutate`; those written later by an
        NGSI-LD client are not moved) and delete their whole history.

        Idempotent, and safe to stop anywhere: the URLs are stored before the entities lose them, a URL the
        private store has already is kept (it is the newer), and the history goes last. Called under the lock."""
        assert self._since is not None
        since = self._since
        query = EntityQuery(types=TypeExpr(((CAMERA_TYPE,),)), attrs_any=URL_IRIS)
        ids = await self.store.entity_ids(tenant, query)
        moved = stripped = unusable = 0
        for start in range(0, len(ids), BATCH):
            batch = tuple(ids[start:start + BATCH])
            docs, _ = await self.store.query_entities(tenant, EntityQuery(ids=batch, limit=len(batch)))
            fresh: list[tuple[str, str, Doc]] = []
            for doc in docs:
                found, _ = _legacy_urls(doc, since)
                unusable += sum(1 for v in found.values() if v is None)
                access = CameraAccess(found.get("streamURL"), found.get("stillImageURL"))
                if (tenant, doc["id"]) not in self._access and access != NO_ACCESS:
                    fresh.append((tenant, doc["id"], access.doc()))
            if fresh:
                async with self._doc_lock:  # (a re-read under way does not drop them from memory)
                    await self.store.put_docs(ACCESS_KIND, fresh)
                    self._access.update({(t, k): CameraAccess.of(d) for t, k, d in fresh})
                moved += len(fresh)
            results = await self.store.mutate(tenant, [Mutation(d["id"], _strip_op()) for d in docs],
                                              Context(actor=MIGRATION_ACTOR))
            for result in results:
                if isinstance(result, Exception):
                    raise result
                stripped += result.result == "updated"
        purged = await self._purge_history(tenant)
        return {"moved": moved, "stripped": stripped, "unusable": unusable, "historyPurged": purged}

    async def _purge_history(self, tenant: str) -> int:
        """Delete the history of the URL attributes of every Camera entity (deleted ones too)."""
        targets: list[tuple[str, str]] = []
        offset = 0
        while True:
            page, _ = await self.store.temporal_query(tenant, TemporalQuery(
                types=TypeExpr(((CAMERA_TYPE,),)), attrs=URL_IRIS, instances_only=True, last_n=1, limit_instances=1,
                entity_limit=BATCH, entity_offset=offset))
            targets += [(e.id, a) for e in page for a in e.attrs]
            if len(page) < BATCH:
                break
            offset += BATCH
        purged = 0
        for start in range(0, len(targets), BATCH):  # concurrent: the stores commit them together
            purged += sum(await asyncio.gather(*(self.store.delete_history(tenant, entity, attr, all_datasets=True)
                                                 for entity, attr in targets[start:start + BATCH])))
        return purged

    async def access(self, tenant: str, camera_id: str) -> CameraAccess:
        """The camera's private URLs (none when it has none)."""
        await self._ready(tenant)
        return self._access.get((tenant, entity_id(camera_id)), NO_ACCESS)

    async def urls(self, tenant: str, camera_id: str) -> tuple[str | None, str | None]:
        """(stream URL, still URL) of a camera, for the footage redirect."""
        access = await self.access(tenant, camera_id)
        return access.stream, access.still

    async def streaming(self, tenant: str) -> Callable[[str], bool]:
        """Whether a camera of the tenant (entity id) has a stream URL now: the nearest-camera selection of a
        package or grant takes only cameras that can give footage (center.py `nearest`; QA15 F5)."""
        await self._ready(tenant)
        return lambda camera: self._access.get((tenant, camera), NO_ACCESS).stream is not None

    async def wire(self, tenant: str, doc: Doc, with_stream: bool) -> dict[str, Any]:
        """`camera_wire` of a stored camera with its private URLs."""
        return camera_wire(doc, with_stream, await self.access(tenant, doc["id"]))

    async def set_access(self, tenant: str, changed: dict[str, CameraAccess], actor: str = "system") -> None:
        """Store the URLs of these cameras (entity id -> URLs; no URL deletes the record), in one commit each.
        The camera writes below use it; so may whoever provisions cameras written through NGSI-LD. A camera whose
        footage now leads elsewhere (`feed_changed`: a URL re-pointed at another feed, or removed) is dropped from
        the live grants naming it (`on_change`, cause `camera-feed-changed`) before this returns: a grant is for the
        footage of the camera granted, not for whatever its URL is pointed at later."""
        await self._ready(tenant)
        # Not for a camera whose deletion committed meanwhile (a PATCH racing DELETE /ngsi-ld/v1/entities/{id}):
        # its record would outlive it and go to a camera created later under that id.
        late = [eid for eid in changed if (tenant, eid) in self._deleted]
        if late:
            log.warning("camera URLs of %s (tenant %s) not stored: the camera was deleted meanwhile", late, tenant)
            changed = {eid: a for eid, a in changed.items() if eid not in late}
        moved = [eid for eid, a in changed.items()
                 if feed_changed(self._access.get((tenant, eid), NO_ACCESS), a)]
        async with self._doc_lock:
            put = [(tenant, eid, a.doc()) for eid, a in changed.items() if a != NO_ACCESS]
            gone = [(tenant, eid) for eid, a in changed.items() if a == NO_ACCESS and (tenant, eid) in self._access]
            if put:
                await self.store.put_docs(ACCESS_KIND, put)
            if gone:
                await self.store.delete_docs(ACCESS_KIND, gone)
            for eid, a in changed.items():
                if a == NO_ACCESS:
                    self._access.pop((tenant, eid), None)
                else:
                    self._access[(tenant, eid)] = a
        if self.on_change is not None:
            for eid in moved:
                await self.on_change(tenant, eid, FEED_CHANGED, actor)

    # -- cameras ---------------------------------------------------------------------------------------
    async def get(self, tenant: str, camera_id: str) -> Doc:
        doc = await self.store.get_entity(tenant, entity_id(camera_id))
        if not is_camera(doc):
            raise NotFound(f"카메라 {camera_id} 없음 / camera {camera_id} does not exist")
        assert doc is not None
        return doc

    async def put(self, tenant: str, cameras: list[CameraIn], actor: str,
                  keep_urls: bool = False) -> list[Outcome | Exception]:
        """Create or replace cameras (in batches), their URLs too (a camera without any has none after it), or, with
        `keep_urls` (a CSV import: the national dataset has no URL columns), the URLs they have, except those of a
        camera it moves or registers again (another camera, `identity`: the feed was the one there before); one
        result per camera. The URLs are written after the entities, for those the store took. A camera moved or
        registered again loses its grants (`committed`) before this returns."""
        await self._ready(tenant)
        ctx = core_context()
        results: list[Outcome | Exception] = []
        for start in range(0, len(cameras), BATCH):
            batch = cameras[start:start + BATCH]
            mutations = [Mutation(entity_id(c.id), replace_op(normalize_entity(camera_entity(c), ctx), True))
                         for c in batch]
            known = await self._identities(tenant, [m.entity_id for m in mutations]) if keep_urls else {}
            done = await self.store.mutate(tenant, mutations, Context(actor=actor))
            await self.changes_done()  # its grants follow a move first (cause `camera-changed`)
            if keep_urls:
                now = await self._identities(tenant, list(known))
                await self.set_access(tenant, {eid: NO_ACCESS for eid, mark in known.items()
                                               if now.get(eid) != mark and (tenant, eid) in self._access}, actor)
            else:
                await self.set_access(tenant, {entity_id(c.id): CameraAccess(c.streamURL, c.stillImageURL) for c, r
                                               in zip(batch, done, strict=True) if not isinstance(r, Exception)}, actor)
            results.extend(done)
        await self.changes_done()
        return results

    async def _identities(self, tenant: str, ids: list[str]) -> dict[str, str]:
        """`identity` of each of these cameras that exists."""
        if not ids:
            return {}
        docs, _ = await self.store.query_entities(tenant, EntityQuery(ids=tuple(ids), limit=len(ids)))
        return {d["id"]: identity(d) for d in docs if is_camera(d)}

    async def patch(self, tenant: str, camera_id: str, fields: CameraFields, actor: str) -> Doc:
        """Change some fields; `streamURL`/`stillImageURL` change the private store only (null removes one)."""
        await self._ready(tenant)
        await self.get(tenant, camera_id)
        given = fields.model_dump(exclude_unset=True)
        attrs = _attrs(given)
        urls = {k: given[k] for k in URL_FIELDS if k in given}
        if not attrs and not urls:
            raise BadRequest("바꿀 항목이 없습니다 / nothing to change")
        if attrs:
            doc = normalize_entity({"id": entity_id(camera_id), **attrs}, core_context(), require_type=False)
            (result,) = await self.store.mutate(tenant, [Mutation(entity_id(camera_id), merge_op(doc))],
                                                Context(actor=actor))
            if isinstance(result, Exception):
                raise result
        if urls:
            before = self._access.get((tenant, entity_id(camera_id)), NO_ACCESS)
            await self.set_access(tenant, {entity_id(camera_id): CameraAccess.of({**before.doc(), **urls})}, actor)
        return await self.get(tenant, camera_id)

    async def delete(self, tenant: str, camera_id: str, actor: str) -> None:
        await self._ready(tenant)
        await self.get(tenant, camera_id)
        (result,) = await self.store.mutate(tenant, [Mutation(entity_id(camera_id), delete_op(camera_id))],
                                            Context(actor=actor))
        if isinstance(result, Exception):
            raise result
        key = (tenant, entity_id(camera_id))
        self._dropping.add(key)
        self._access.pop(key, None)  # (the commit's callback has done it already while following the store)
        await self._drop_doc(key)  # deleted from the store before the camera API answers
        await self.changes_done()  # and its grants narrowed or revoked


# -- URLs of many cameras at once (PATCH /api/v1/cameras) -------------------------------------------------------
BULK_MAX = 1000  # [D] cameras per request (the server's body limit, `server.max_body_bytes`, holds as well)


class CameraUrlIn(BaseModel):
    """One camera of `PATCH /api/v1/cameras`: its id and the URLs to set, as the single PATCH takes them (absent:
    unchanged; null: removed)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    streamURL: str | None = Field(None, pattern=URL_PATTERNS["streamURL"], max_length=2000)
    stillImageURL: str | None = Field(None, pattern=URL_PATTERNS["stillImageURL"], max_length=2000)


class CameraUrlsIn(BaseModel):
    """`PATCH /api/v1/cameras`: the stream and still URLs of up to `BULK_MAX` cameras (documentation model; each
    item is checked on its own, `set_urls`)."""

    model_config = ConfigDict(extra="forbid")
    cameras: list[CameraUrlIn] = Field(min_length=1, max_length=BULK_MAX)


URL_REASONS: dict[str, tuple[str, str]] = {
    "not-an-object": ("항목이 JSON 객체가 아님", "the item is not a JSON object"),
    "id-invalid": ("카메라 id가 없거나 형식이 틀림", "the camera id is missing or malformed"),
    "field-unknown": ("알 수 없는 항목 (id, streamURL, stillImageURL만 받음)",
                      "unknown field (only id, streamURL, stillImageURL)"),
    "url-scheme": ("주소 형식이 틀림 (streamURL: rtsp, rtsps, rtmp, http, https; stillImageURL: http, https)",
                   "the URL has the wrong form (streamURL: rtsp, rtsps, rtmp, http, https; stillImageURL: http, https)"),
    "url-too-long": ("주소가 2000자를 넘음", "the URL is longer than 2000 characters"),
    "url-invalid": ("주소가 문자열이 아님", "the URL is not a string (or null to remove it)"),
    "nothing-to-change": ("바꿀 주소가 없음 (streamURL 또는 stillImageURL)",
                          "nothing to change (streamURL or stillImageURL)"),
    "duplicate-id": ("같은 카메라가 요청에 두 번 있음", "the camera appears twice in the request"),
    "not-found": ("카메라 없음", "the camera does not exist"),
}
_PYDANTIC_REASONS = {"string_pattern_mismatch": "url-scheme", "string_too_long": "url-too-long",
                     "extra_forbidden": "field-unknown"}


def url_reason(code: str, field_name: str | None = None) -> dict[str, Any]:
    ko, en = URL_REASONS[code]
    return {"code": code, "ko": ko, "en": en, **({"field": field_name} if field_name else {})}


def bulk_items(body: dict[str, Any]) -> list[Any]:
    """The `cameras` list of a bulk URL request: 400 (bilingual) unless a list of 1 to `BULK_MAX` items (the items
    are checked one by one: `set_urls`)."""
    unknown = sorted(set(body) - {"cameras"})
    items = body.get("cameras")
    if unknown or not isinstance(items, list) or not items:
        raise BadRequest("본문은 {\"cameras\": [{\"id\": ..., \"streamURL\": ..., \"stillImageURL\": ...}, ...]} "
                         "형식이어야 합니다 / the body must be {\"cameras\": [{\"id\": ..., \"streamURL\": ..., "
                         "\"stillImageURL\": ...}, ...]} with at least one camera")
    if len(items) > BULK_MAX:
        raise BadRequest(f"한 요청에 카메라 {BULK_MAX}대까지 (받은 수 {len(items)}): 나누어 보내십시오 / at most "
                         f"{BULK_MAX} cameras per request (got {len(items)}): send them in parts",
                         limit=BULK_MAX, count=len(items))
    return items


def _check_url_item(item: Any) -> tuple[CameraUrlIn | None, list[dict[str, Any]]]:
    """One item validated as the single PATCH validates its URLs (`CameraFields`), or its reasons."""
    if not isinstance(item, dict):
        return None, [url_reason("not-an-object")]
    try:
        parsed = CameraUrlIn.model_validate(item)
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else None
            if name == "id":
                reasons.append(url_reason("id-invalid", "id"))
            else:
                reasons.append(url_reason(_PYDANTIC_REASONS.get(error["type"], "url-invalid"), name))
        return None, reasons
    if not parsed.model_fields_set & set(URL_FIELDS):
        return None, [url_reason("nothing-to-change")]
    return parsed, []


async def set_urls(registry: CameraRegistry, tenant: str, items: list[Any], actor: str) -> dict[str, Any]:
    """Set the URLs of many cameras (`PATCH /api/v1/cameras`), each item checked as the single PATCH checks it; the
    good ones stored in one call (`set_access`: a URL re-pointed at another feed drops the camera from its live
    grants). One result per item, in order: `updated`, `unchanged` (the URLs it has already) or `failed` with its
    reasons (bilingual); `changed` lists the cameras whose URLs changed, with the fields, for the audit."""
    await registry._ready(tenant)
    checked = [_check_url_item(item) for item in items]
    ids = [entity_id(p.id) for p, _ in checked if p is not None]
    alive = set(await registry.store.entity_ids(tenant, EntityQuery(ids=tuple(dict.fromkeys(ids)),
                                                                    types=TypeExpr(((CAMERA_TYPE,),))))) if ids else set()
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    wanted: dict[str, CameraAccess] = {}
    fields_of: dict[str, list[str]] = {}
    for index, (parsed, reasons) in enumerate(checked):
        raw_id = items[index].get("id") if isinstance(items[index], dict) else None
        result: dict[str, Any] = {"index": index, "id": raw_id if isinstance(raw_id, str) else None}
        if parsed is not None:
            key = entity_id(parsed.id)
            if key in seen:
                reasons = [url_reason("duplicate-id", "id")]
            elif key not in alive:
                reasons = [url_reason("not-found", "id")]
            seen.add(key)
        if parsed is None or reasons:
            results.append({**result, "status": "failed", "reasons": reasons})
            continue
        given = parsed.model_dump(include=set(URL_FIELDS), exclude_unset=True)
        before = registry._access.get((tenant, key), NO_ACCESS)
        after = CameraAccess.of({**before.doc(), **given})
        if after == before:
            results.append({**result, "status": "unchanged"})
            continue
        wanted[key] = after
        fields_of[key] = sorted(given)
        results.append({**result, "status": "updated"})
    if wanted:
        await registry.set_access(tenant, wanted, actor)
    counts = {status: sum(1 for r in results if r["status"] == status) for status in ("updated", "unchanged", "failed")}
    return {**counts, "results": results,
            "changed": [{"camera": local_id(key), "fields": fields} for key, fields in fields_of.items()]}


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
    if is_null_island((lon, lat)):  # zeros for a missing position, whatever `ops.import_bbox` allows
        row.reasons.append(reason("coordinates-missing", f"{lat_col}/{lon_col}", f"{lat_text}, {lon_text}"))
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
    # The dataset has no URL columns: a re-import keeps the URLs registered since (PATCH /api/v1/cameras) of the
    # cameras it leaves in place, with their grants; a camera it moves (another camera) loses both.
    results = await registry.put(tenant, cameras, actor, keep_urls=True)
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

