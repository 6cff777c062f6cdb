"""Framework-free handlers of the operations API, and the route table that server.py mounts and that
openapi.py documents at /docs (one table, so the two never drift apart).

Every endpoint needs `Authorization: Bearer <token>` (auth.py) except the footage links
(`/api/v1/cameras/{id}/stream|still?grant=`), which check the grant and the agency's token themselves
so that every attempt, even without a token, is audited. The tenant is the `NGSILD-Tenant` header.
Texts are Korean and English; times are UTC (ISO 8601, `Z`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ucity.alarms.contacts import validation_problem
from ucity.core.clock import to_iso, to_micros
from ucity.core.errors import AlreadyExists, BadRequest, InvalidRequest, UnsupportedMediaType
from ucity.core.http import Req, Resp
from ucity.core.params import bbox_param, int_param, json_object, micros_param, values_param
from ucity.ngsild.request import tenant_of
from ucity.ops import cameras as cam
from ucity.ops import linkage as lk
from ucity.ops.agencies import parse_agency
from ucity.ops.audit import RefusalPacer
from ucity.ops.auth import (
    AgencyRefused,
    Forbidden,
    Permission,
    Principal,
    Role,
    TokenSpec,
    issued_token_warnings,
    new_token_id,
)
from ucity.ops.center import OperationsCenter
from ucity.ops.events import (
    READ_ACTIONS,
    SERVICES,
    STATUSES,
    AgencyReportIn,
    AttachmentIn,
    EventIn,
    InvalidEventTransition,
    aware_time,
    redact_trail,
)
from ucity.ops.freetext import REDACTED
from ucity.ops.grants import links
from ucity.ops.nearest import CAMERA_TYPE, Selection
from ucity.ops.subjects import EraseIn, RedactIn, SubjectSearchIn, erase, personal_iris, redact, search
from ucity.rules.events import LEVELS
from ucity.store.base import AuditQuery, EntityQuery, GrantQuery, OpsEventQuery, TypeExpr

Handler = Callable[[Req], Awaitable[Resp]]
M = TypeVar("M", bound=BaseModel)
MAX_LIMIT = 1000


# -- bodies ---------------------------------------------------------------------------------------------
class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description=" | ".join(STATUSES))
    note: str = Field("", max_length=2000)


class LinkageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency: str | None = Field(None, description="the receiving agency (an agency's own token: itself)")
    service: str | None = Field(None, description="default: the event's service")
    purpose: str = Field("", max_length=500)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency: str
    event: str
    cameras: list[str] = Field(min_length=1, max_length=50, description="camera ids")
    minutes: float | None = Field(None, gt=0, description="default ops.grant_minutes (30)")
    purpose: str = Field("", max_length=500)


class RenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: float | None = Field(None, gt=0)


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    role: Role
    agency: str | None = None
    tenant: str | None = None
    name: str = Field("", max_length=200)
    expiresAt: datetime | None = None  # when an issued token stops working (the API member name)


def parse(req: Req, model: type[M]) -> M:
    try:
        return model.model_validate(json_object(req))
    except ValidationError as exc:
        raise validation_problem(exc) from exc


def _created(body: Any, location: str) -> Resp:
    return Resp(201, body, {"Location": location})


def _selection(selection: Selection) -> dict[str, Any]:
    return {"radiusM": selection.radius_m, "widened": selection.widened, "inRange": selection.in_range,
            "cameras": [{"id": cam.local_id(n.camera.id), "entityId": n.camera.id, "name": n.camera.name,
                         "distanceM": round(n.distance_m, 1), "bearingDeg": round(n.bearing_deg, 1), "covers": n.covers,
                         "location": {"type": "Point", "coordinates": [n.camera.lon, n.camera.lat]}}
                        for n in selection.cameras]}


class OpsApi:
    def __init__(self, center: OperationsCenter) -> None:
        self.center = center
        self._pacer = RefusalPacer(lambda: center.clock.now().timestamp())

    async def _ctx(self, req: Req, permission: Permission) -> tuple[str, Principal]:
        tenant = tenant_of(req, self.center.default_tenant)[0]
        principal = await self._authenticate(req, tenant)
        try:
            principal.require(permission)
        except Forbidden:
            await self._refused(req, tenant, principal, "permission", permission)
            raise
        return tenant, principal

    async def _authenticate(self, req: Req, tenant: str) -> Principal:
        """The caller (401 without a known token); a genuine token of a disabled or deleted agency, or of another
        tenant, is refused (403) and the attempt audited."""
        auth = self.center.auth
        principal = auth.bearer(req)
        try:
            auth.admit(principal, tenant)
        except AgencyRefused as refused:
            who = refused.principal
            await self.center.audit.append(self.center.audit.row(
                tenant, "auth", "refused", who.actor, agency=who.agency, outcome="denied", reason=refused.reason,
                token=who.id, method=req.method, path=req.path))
            raise
        except Forbidden:
            await self._refused(req, tenant, principal, "tenant", None)
            raise
        return principal

    async def _refused(self, req: Req, tenant: str, principal: Principal, reason: str,
                       permission: Permission | None) -> None:
        """A 403 for a token without the permission, or of another tenant, audited (`auth` / `refused`) as the guard
        of the other APIs audits its own (ucity/access.py, QA7 F6): in the tenant asked for, or a tenant-bound
        token's own; one line per token, reason and permission a minute (`RefusalPacer`), counting the others."""
        earlier = self._pacer.admit((principal.id, reason, str(permission) if permission is not None else None))
        if earlier is None:
            return
        detail: dict[str, Any] = {"token": principal.id, "method": req.method, "path": req.path[:500]}
        if reason == "tenant":
            detail["requestedTenant"] = tenant[:255]
        if permission is not None:
            detail["permission"] = str(permission)
        if earlier:
            detail["alsoRefused"] = earlier  # refusals of the same kind since the previous line, not audited
        await self.center.audit.append(self.center.audit.row(
            principal.tenant or tenant, "auth", "refused", principal.actor, agency=principal.agency, outcome="denied",
            reason=reason, **detail))

    async def _token_read(self, tenant: str, principal: Principal, grant: str, agency: str, event: str, via: str,
                          **detail: Any) -> None:
        """A live footage token shown again (QA7 F2): who, which grant, through what; never the token."""
        await self.center.audit.append(self.center.audit.row(
            tenant, "grant", "token-read", principal.actor, agency=agency, event=event, grant=grant, outcome="ok",
            via=via, **detail))

    # -- events ----------------------------------------------------------------------------------------
    async def list_events(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        query = OpsEventQuery(
            services=values_param(req, "service", tuple(SERVICES)), statuses=values_param(req, "status", STATUSES),
            levels=values_param(req, "level", LEVELS), type_codes=values_param(req, "type"), bbox=bbox_param(req.param("bbox")),
            reported_from=_instant(req, "from"), reported_to=_instant(req, "to"),
            limit=int_param(req, "limit", 20, 1, MAX_LIMIT), offset=int_param(req, "offset", 0, 0, 10**9), count=True,
            agency=_own_agency(principal, Permission.EVENTS_READ_ALL))
        events, total = await self.center.events.query(tenant, query)
        # Masked for everybody: a list is no place to read personal data (GET /events/{id} is, audited), and the
        # dashboard polls it (QA7 F2).
        return Resp(200, {"total": total, "limit": query.limit, "offset": query.offset,
                          "events": [e.to_wire(principal, unmask=False) for e in events]})

    async def create_event(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_REPORT)
        event, created = await self.center.report_event(tenant, parse(req, EventIn), principal, req.base_url)
        event = await self.center.events.load(tenant, event.id)  # with the linkages its creation made
        if not created:  # its sourceRef reported again (a retry): the event the first report made, 200
            return Resp(200, event.to_wire(principal), {"Location": f"/api/v1/events/{event.id}"})
        return _created(event.to_wire(principal), f"/api/v1/events/{event.id}")

    async def get_event(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        event = await self.center.events.visible(tenant, req.path_params["eventId"], principal)
        free_text = event.free_text_read() if principal.can(Permission.PERSONAL_READ) else []
        if (event.personal or free_text) and principal.can(Permission.PERSONAL_READ):
            # PLAT-R10 / QA7 F2: who read whose personal data, when; which parts, never their values. Written
            # before the data is shown: no line, no data. Free text holding personal data (QA10 F3) is such a part.
            detail: dict[str, Any] = {"freeText": free_text} if free_text else {}
            await self.center.audit.append(self.center.audit.row(
                tenant, "event", "personal-read", principal.actor, agency=principal.agency, event=event.id,
                outcome="ok", personal={role: sorted(values) for role, values in sorted(event.personal.items())},
                **detail))
        history = await self.center.events.trail(tenant, event.id, principal)  # an agency's: what concerns it
        return Resp(200, event.to_wire(principal, history))

    async def event_status(self, req: Req) -> Resp:
        """A repeat of the event's status (a second operator, a retry) is 200 with the event as it is: no new line,
        no notice (QA15 F7)."""
        tenant, principal = await self._ctx(req, Permission.EVENTS_MANAGE)
        body = parse(req, StatusIn)
        # `dispatched` is announced to the agencies by the event service (EventService.change), not here
        event = await self.center.transition(tenant, req.path_params["eventId"], body.status, principal, body.note)
        return Resp(200, event.to_wire(principal, unmask=False))

    async def agency_report(self, req: Req) -> Resp:
        """A 112/119 room reports back on an event shared with it (QA15 F6): 201 with the event, 200 for a repeat of
        its latest report; 404 for an event not shared with it; 403 for a token of no agency."""
        tenant, principal = await self._ctx(req, Permission.EVENTS_REPORT)
        body = parse(req, AgencyReportIn)
        if principal.agency is None:
            await self._refused(req, tenant, principal, "agency-only", None)
            raise Forbidden("기관(112·119) 토큰만 보고할 수 있습니다; 운영자는 상태를 바꿉니다 (POST .../status) / only an "
                            "agency token reports back; operators move the status (POST .../status)",
                            reason="agency-only")
        events = self.center.events
        event = await events.visible(tenant, req.path_params["eventId"], principal)  # not shared with it: 404
        before = len(event.agency_reports)
        event = await events.change(tenant, event.id, lambda e: events.agency_report_rows(e, body, principal))
        status = 201 if len(event.agency_reports) > before else 200
        return Resp(status, event.to_wire(principal, unmask=False), {"Location": f"/api/v1/events/{event.id}"})

    async def add_attachment(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_REPORT)
        event = await self.center.add_attachment(tenant, req.path_params["eventId"], parse(req, AttachmentIn), principal)
        return _created(event.attachments[-1], f"/api/v1/events/{event.id}")

    async def event_cameras(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_READ)
        event = await self.center.events.visible(tenant, req.path_params["eventId"], principal)
        selection = await self.center.nearest(event, int_param(req, "n", self.center.settings.nearest.count, 1,
                                                          self.center.settings.nearest.max_count),
                                              self._radius(req))
        return Resp(200, {"event": event.id, **_selection(selection)})

    @staticmethod
    def _radius(req: Req) -> float | None:
        text = req.param("radius")
        return float(int_param(req, "radius", 500, 1, 50_000)) if text is not None else None

    # -- linkages --------------------------------------------------------------------------------------
    async def request_linkage(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.LINKAGE_REQUEST)
        body = parse(req, LinkageIn)
        agency = body.agency or principal.agency
        if agency is None:
            raise BadRequest("agency가 필요합니다 / agency is required")
        link = await self.center.request_linkage(tenant, req.path_params["eventId"], agency, body.service, principal,
                                                 req.base_url, purpose=body.purpose)
        return Resp(202 if link["status"] == "held" else 201, link)

    async def approve_linkage(self, req: Req) -> Resp:
        return await self._decide(req, True)

    async def reject_linkage(self, req: Req) -> Resp:
        return await self._decide(req, False)

    async def _decide(self, req: Req, approve: bool) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_MANAGE)
        try:
            link = await self.center.decide(tenant, req.path_params["eventId"], req.path_params["linkageId"], approve,
                                            principal, parse(req, DecisionIn).reason, req.base_url)
        except InvalidEventTransition as exc:  # decided already, or the event ended: the linkage's refusal (QA15 F9h)
            raise lk.InvalidLinkageDecision(exc.detail, **exc.extra) from exc
        return Resp(200, link)

    async def resend_linkage(self, req: Req) -> Resp:
        """An operator sends a failed linkage's package again (QA7 F12): 202, queued."""
        tenant, principal = await self._ctx(req, Permission.EVENTS_MANAGE)
        body = parse(req, DecisionIn) if req.body else DecisionIn()
        link = await self.center.resend_linkage(tenant, req.path_params["eventId"], req.path_params["linkageId"],
                                                principal, body.reason)
        return Resp(202, link)

    async def linkage_package(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        package = await self.center.package(tenant, req.path_params["eventId"], req.path_params["linkageId"],
                                            principal, req.base_url)
        if package.get("grant"):  # it holds the grant's footage token
            await self._token_read(tenant, principal, package["grant"]["id"], package["agency"],
                                   package["event"]["id"], "package", linkage=package["linkage"])
        return Resp(200, package)

    # -- cameras ---------------------------------------------------------------------------------------
    async def list_cameras(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_READ)
        near = req.param("near")
        if near is not None:
            lon, lat = _lon_lat(near)
            settings = self.center.settings.nearest
            selection = await self.center.index.select(
                tenant, lon, lat, int_param(req, "n", settings.count, 1, settings.max_count), self._radius(req))
            return Resp(200, _selection(selection))
        limit, offset = int_param(req, "limit", 20, 1, MAX_LIMIT), int_param(req, "offset", 0, 0, 10**9)
        docs, total = await self.center.store.query_entities(tenant, EntityQuery(
            types=TypeExpr(((CAMERA_TYPE,),)), limit=limit, offset=offset, count=True))
        admin = principal.can(Permission.CAMERAS_ADMIN)
        return Resp(200, {"total": total, "limit": limit, "offset": offset,
                          "cameras": [await self.center.cameras.wire(tenant, d, admin) for d in docs]})

    async def get_camera(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_READ)
        doc = await self.center.cameras.get(tenant, req.path_params["cameraId"])
        return Resp(200, await self.center.cameras.wire(tenant, doc, principal.can(Permission.CAMERAS_ADMIN)))

    async def create_camera(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_ADMIN)
        camera = parse(req, cam.CameraIn)
        if await self.center.store.get_entity(tenant, cam.entity_id(camera.id)) is not None:
            raise AlreadyExists(f"카메라 {camera.id} 이미 있음 / camera {camera.id} already exists")
        (result,) = await self.center.cameras.put(tenant, [camera], principal.actor)
        if isinstance(result, Exception):
            raise result
        await self.center.audit.append(self.center.audit.row(tenant, "camera", "registered", principal.actor,
                                                             camera=camera.id))
        doc = await self.center.cameras.get(tenant, camera.id)
        return _created(await self.center.cameras.wire(tenant, doc, True), f"/api/v1/cameras/{camera.id}")

    async def patch_camera(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_ADMIN)
        fields = parse(req, cam.CameraFields)
        doc = await self.center.cameras.patch(tenant, req.path_params["cameraId"], fields, principal.actor)
        await self.center.audit.append(self.center.audit.row(
            tenant, "camera", "changed", principal.actor, camera=cam.local_id(doc["id"]),
            fields=sorted(fields.model_dump(exclude_unset=True))))
        return Resp(200, await self.center.cameras.wire(tenant, doc, True))

    async def patch_cameras(self, req: Req) -> Resp:
        """The stream and still URLs of many cameras at once (the national dataset has no URL columns; FIX-B): each
        item checked as `PATCH /cameras/{id}` checks its URLs, one result per item; 200 when every item is done,
        207 when some failed (as NGSI-LD batch operations answer); one `camera` / `changed` line per camera changed."""
        tenant, principal = await self._ctx(req, Permission.CAMERAS_ADMIN)
        items = cam.bulk_items(json_object(req))
        report = await cam.set_urls(self.center.cameras, tenant, items, principal.actor)
        changed = report.pop("changed")
        if changed:
            await self.center.audit.append(*(self.center.audit.row(
                tenant, "camera", "changed", principal.actor, camera=c["camera"], fields=c["fields"], bulk=True)
                for c in changed))
        return Resp(207 if report["failed"] else 200, report)

    async def delete_camera(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_ADMIN)
        camera_id = req.path_params["cameraId"]
        await self.center.cameras.delete(tenant, camera_id, principal.actor)
        await self.center.audit.append(self.center.audit.row(tenant, "camera", "deleted", principal.actor,
                                                             camera=camera_id))
        return Resp(204)

    async def import_cameras(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.CAMERAS_ADMIN)
        kind = (req.header("content-type") or "").split(";")[0].strip().lower()
        if kind not in ("text/csv", "application/csv", "text/plain"):
            raise UnsupportedMediaType("Content-Type: text/csv 필요 / send the file as text/csv")
        if not req.body:
            raise InvalidRequest("빈 파일 / the CSV is empty")
        report = await cam.import_csv(self.center.cameras, tenant, req.body, self.center.settings.import_bbox,
                                      principal.actor, req.param("prefix") or "")
        wire = report.to_wire()
        await self.center.audit.append(self.center.audit.row(
            tenant, "camera", "imported", principal.actor, rows=report.rows, importedRows=report.imported_rows,
            rejectedRows=len(report.rejected), created=report.created, updated=report.updated))
        return Resp(200, wire)

    async def camera_stream(self, req: Req) -> Resp:
        return await self._footage(req, "stream")

    async def camera_still(self, req: Req) -> Resp:
        return await self._footage(req, "still")

    async def _footage(self, req: Req, kind: str) -> Resp:
        """A footage link: redirect to the camera's URL when the grant and the agency check out (PLAT-R5)."""
        # No `grant` (or an empty one) is checked, and so audited, by the grant service like any other bad
        # link (400 missing-grant): "every attempt is audited" (PLAT-R5).
        principal = self.center.auth.identify(req)
        url = await self.center.open_footage(req.param("grant") or "", req.path_params["cameraId"], kind, principal)
        # no-referrer: the player that follows must not pass the token on to the camera's server
        return Resp(307, None, {"Location": url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    # -- agencies --------------------------------------------------------------------------------------
    async def list_agencies(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.AGENCIES_READ)
        registry = self.center.agencies
        return Resp(200, [self._agency(tenant, a.id, principal) for a in registry.all(tenant)])

    def _agency(self, tenant: str, agency_id: str, principal: Principal) -> dict[str, Any]:
        registry = self.center.agencies
        body = registry.require(tenant, agency_id).wire(registry.source(tenant, agency_id))
        if principal.can(Permission.AGENCIES_ADMIN):
            body["delivery"] = self.center.links.describe(tenant, agency_id)
        else:
            body.pop("webhook", None)
            body.pop("headers", None)
        return body

    async def get_agency(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.AGENCIES_READ)
        return Resp(200, self._agency(tenant, req.path_params["agencyId"], principal))

    async def create_agency(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.AGENCIES_ADMIN)
        agency = parse_agency(json_object(req))
        await self.center.put_agency(tenant, agency, principal, create_only=True)
        return _created(self._agency(tenant, agency.id, principal), f"/api/v1/agencies/{agency.id}")

    async def put_agency(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.AGENCIES_ADMIN)
        agency = parse_agency(json_object(req), req.path_params["agencyId"])
        created = await self.center.put_agency(tenant, agency, principal)
        return Resp(201 if created else 200, self._agency(tenant, agency.id, principal))

    async def delete_agency(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.AGENCIES_ADMIN)
        await self.center.delete_agency(tenant, req.path_params["agencyId"], principal)
        return Resp(204)

    # -- grants ----------------------------------------------------------------------------------------
    async def list_grants(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        own = _own_agency(principal, Permission.GRANTS_READ_ALL)
        agencies = values_param(req, "agency") if own is None else (own,)
        status = req.param("status")
        if status not in (None, "active", "expired", "revoked", "all"):  # every status a grant shows (QA15 F9d)
            raise BadRequest("status는 active, expired, revoked, all / status is active, expired, revoked or all")
        now = self.center.clock.now()
        query = GrantQuery(agency_ids=agencies, event_ids=values_param(req, "event"),
                           statuses=("revoked",) if status == "revoked" else (),
                           valid_at=to_micros(now) if status == "active" else None,
                           expired_at=to_micros(now) if status == "expired" else None,
                           limit=int_param(req, "limit", 20, 1, MAX_LIMIT), offset=int_param(req, "offset", 0, 0, 10**9),
                           count=True)
        grants, total = await self.center.grants.query(tenant, query)
        return Resp(200, {"total": total, "grants": [g.wire(to_iso(now), principal) for g in grants]})

    async def create_grant(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.GRANTS_ISSUE)
        body = parse(req, GrantIn)
        issued, found = await self.center.issue_grant(tenant, body.agency, body.event, body.cameras, principal,
                                                      body.minutes, body.purpose, req.base_url)
        return _created({**issued.grant.wire(self.center.grants.now(), principal), "token": issued.token, "links": found},
                        f"/api/v1/grants/{issued.grant.id}")

    async def get_grant(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        grant = await self.center.grants.visible(tenant, req.path_params["grantId"], principal)
        body = grant.wire(self.center.grants.now(), principal)
        if body["status"] == "active":  # the holder may fetch its links again (tokens are never stored)
            await self._token_read(tenant, principal, grant.id, grant.agency, grant.event, "grant")
            token = self.center.grants.token(grant)
            body.update(token=token, links=links(req.base_url, token, grant.cameras))
        docs, _ = await self.center.audit.query(tenant, AuditQuery(grant_ids=(grant.id,), limit=10_000))
        docs = redact_trail(docs, self.center.grants.now() if grant.purpose == REDACTED else None)  # subjects.py
        return Resp(200, {**body, "audit": grant_trail_for(docs, principal)})

    async def renew_grant(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.EVENTS_READ)
        issued, found = await self.center.renew_grant(tenant, req.path_params["grantId"], principal,
                                                      parse(req, RenewIn).minutes, req.base_url)
        return Resp(200, {**issued.grant.wire(self.center.grants.now(), principal), "token": issued.token, "links": found})

    async def revoke_grant(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.GRANTS_ISSUE)
        return Resp(200, await self.center.revoke_grant(tenant, req.path_params["grantId"], principal,
                                                        parse(req, RevokeIn).reason))

    async def grant_stats(self, req: Req) -> Resp:
        tenant, _ = await self._ctx(req, Permission.GRANTS_READ_ALL)
        stats = await self.center.grants.stats(tenant, _instant(req, "from"), _instant(req, "to"))
        return Resp(200, {"from": req.param("from"), "to": req.param("to"), "agencies": stats})

    # -- data-subject requests (QA10 F4, subjects.py) ---------------------------------------------------
    async def subject_search(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.PRIVACY_ADMIN)
        body = parse(req, SubjectSearchIn)
        return Resp(200, await search(self.center.events, self.center.audit, tenant, body, principal,
                                      self.center.store))

    async def subject_erase(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.PRIVACY_ADMIN)
        body = parse(req, EraseIn)
        personal = list(self.center.platform.privacy.types)  # settings ∪ what domains declare (QA13 F1)
        return Resp(200, await erase(self.center.store, self.center.audit, tenant, body, principal,
                                     personal_iris(personal)))

    async def redact_event(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.PRIVACY_ADMIN)
        body = parse(req, RedactIn)
        event = await redact(self.center.events, self.center.audit, tenant, req.path_params["eventId"], body, principal)
        return Resp(200, event.to_wire(principal, unmask=False))

    # -- audit -----------------------------------------------------------------------------------------
    async def list_audit(self, req: Req) -> Resp:
        tenant, _ = await self._ctx(req, Permission.AUDIT_READ)
        query = AuditQuery(
            kinds=values_param(req, "kind"), actions=values_param(req, "action"), agency_ids=values_param(req, "agency"),
            event_ids=values_param(req, "event"), grant_ids=values_param(req, "grant"), camera_ids=values_param(req, "camera"),
            outcomes=values_param(req, "outcome"), at_from=_instant(req, "from"), at_to=_instant(req, "to"),
            limit=int_param(req, "limit", 100, 1, MAX_LIMIT), offset=int_param(req, "offset", 0, 0, 10**9), count=True,
            newest_first=req.param("order", "asc") == "desc")
        docs, total = await self.center.audit.query(tenant, query)
        return Resp(200, {"total": total, "limit": query.limit, "offset": query.offset, "entries": docs})

    # -- tokens ----------------------------------------------------------------------------------------
    async def me(self, req: Req) -> Resp:
        tenant = tenant_of(req, self.center.default_tenant)[0]
        return Resp(200, (await self._authenticate(req, tenant)).describe())

    async def list_tokens(self, req: Req) -> Resp:
        _, principal = await self._ctx(req, Permission.TOKENS_ADMIN)
        return Resp(200, self.center.tokens.listing(principal.tenant))  # a tenant-bound admin: its tenant's only

    async def create_token(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.TOKENS_ADMIN)
        body = parse(req, TokenIn)
        try:
            spec = TokenSpec(id=body.id or new_token_id(), role=body.role, agency=body.agency, tenant=body.tenant,
                             name=body.name)
        except ValidationError as exc:
            raise validation_problem(exc) from exc
        if principal.tenant is not None and spec.tenant != principal.tenant:
            # An admin bound to a tenant would otherwise escape it: a token for no tenant reads every tenant.
            await self.center.audit.append(self.center.audit.row(
                tenant, "auth", "refused", principal.actor, outcome="denied", reason="token-tenant", token=principal.id,
                requestedTenant=spec.tenant, method=req.method, path=req.path))
            raise Forbidden(f"테넌트 {principal.tenant} 전용 토큰은 테넌트 {principal.tenant}의 토큰만 발급할 수 있습니다 "
                            f"(\"tenant\": \"{principal.tenant}\") / a token bound to tenant {principal.tenant} issues "
                            f"tokens bound to tenant {principal.tenant} only (\"tenant\": \"{principal.tenant}\")",
                            reason="token-tenant")
        if spec.agency is not None:
            # A token for an agency nobody configured would authenticate as nobody's terminal: refused with the
            # 404 that POST /grants and POST /events/{id}/linkages give for the same unknown agency. It is looked
            # up in the tenant the token is for (its own restriction, else the request's).
            self.center.agencies.require(spec.tenant or tenant, spec.agency)
        expires = _expiry(body.expiresAt, self.center.clock.now())
        token = await self.center.tokens.issue(spec, principal.actor, expires)
        warnings = await issued_token_warnings(spec, self.center.store, self.center.default_tenant,
                                               self.center.tokens, self.center.agencies)
        await self.center.audit.append(self.center.audit.row(
            tenant, "auth", "token-issued", principal.actor, agency=spec.agency, token=spec.id, role=str(spec.role),
            expiresAt=None if expires is None else to_iso(expires)))
        return _created({**spec.model_dump(mode="json"), "token": token,
                         "expiresAt": None if expires is None else to_iso(expires),
                         "notice": {"ko": "토큰은 지금 한 번만 표시됩니다", "en": "the token is shown this once only"},
                         **({"warnings": warnings} if warnings else {})},
                        f"/api/v1/auth/tokens/{spec.id}")

    async def delete_token(self, req: Req) -> Resp:
        tenant, principal = await self._ctx(req, Permission.TOKENS_ADMIN)
        # A tenant-bound admin revokes its tenant's tokens only; another tenant's is 404, as if it did not exist.
        spec = await self.center.tokens.revoke(req.path_params["tokenId"], principal.tenant)
        await self.center.audit.append(self.center.audit.row(tenant, "auth", "token-revoked", principal.actor,
                                                             agency=spec.agency, token=spec.id))
        return Resp(204)


def grant_trail_for(docs: list[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """What `principal` may read of a grant's audit lines: read lines (`READ_ACTIONS`) for nobody; with
    `grants:read-all` (operators, admins) all the others; an agency (the grant's) not the footage accesses of anybody
    else (another agency's refused tries, an operator's, an anonymous one: who else tried its links is the
    operators' business), only its own."""
    docs = [d for d in docs if d.get("action") not in READ_ACTIONS]
    if principal.can(Permission.GRANTS_READ_ALL):
        return docs
    return [d for d in docs if d.get("action") != "access" or (principal.agency is not None
                                                                and d.get("agency") == principal.agency)]


def _own_agency(principal: Principal, see_all: Permission) -> str | None:
    """None when the principal sees every agency's records, else the one agency it sees."""
    if principal.can(see_all):
        return None
    if principal.agency is None:
        raise Forbidden(f"권한 없음: {see_all} / {see_all} is needed without an agency")
    return principal.agency


def _instant(req: Req, name: str) -> int | None:
    """A time bound of the events list, the audit list and the grant statistics: with its UTC offset, as an event's
    `occurredAt` (QA15 F4: a Korea time sent without `+09:00` is refused, 400, not read as UTC; `+` is `%2B` in a
    URL)."""
    text = req.param(name)
    if text is not None:
        try:
            aware_time(text, name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return micros_param(req, name)


def _lon_lat(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise BadRequest("near는 경도,위도 / near is lon,lat") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise BadRequest("near 범위 오류 / near is out of range")
    return lon, lat


# -- the route table -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: where, which handler, and what /docs says of it."""

    path: str
    method: str
    handler: str  # the OpsApi method
    summary: str
    tag: str
    permission: Permission | None  # None: the footage links (grant + agency token) and /auth/me
    body: type[BaseModel] | None = None
    params: tuple[str, ...] = ()  # query parameters
    media: str = "application/json"
    statuses: tuple[int, ...] = (200,)


E, C, A, G, U, T, PV = "events", "cameras", "agencies", "grants", "audit", "auth", "privacy"
P = Permission
ROUTES: tuple[Route, ...] = (
    Route("/api/v1/events", "GET", "list_events", "List events (an agency sees its own)", E, P.EVENTS_READ,
          params=("service", "status", "level", "type", "bbox", "from", "to", "limit", "offset")),
    Route("/api/v1/events", "POST", "create_event", "Create an event (PLAT-R1/R2); a sourceRef reported again gives "
          "its event (200)", E, P.EVENTS_REPORT, EventIn, statuses=(200, 201)),
    Route("/api/v1/events/{eventId}", "GET", "get_event",
          "An event with its audit trail (an agency's: what concerns it); personal data shown unmasked is audited", E,
          P.EVENTS_READ),
    Route("/api/v1/events/{eventId}/status", "POST", "event_status",
          "Move an event along its status machine; a repeat of its status is 200 and writes nothing; a refused move "
          "(409) says who set the current status and when; `dispatched` is announced to the agencies it is shared "
          "with (`event-dispatched`)", E, P.EVENTS_MANAGE, StatusIn),
    Route("/api/v1/events/{eventId}/agency-reports", "POST", "agency_report",
          "An agency (112/119 room) reports back on an event shared with it: acknowledged, dispatched, arrived, "
          "on-scene, completed, with a note; forward only (409 backwards), a repeat of its latest is 200 and writes "
          "nothing; recorded on the event (`agencyReports`, `agencyStatus`) and in its trail (`event` / "
          "`agency-report`); the event's status is not changed; 404 when the event is not shared with it, 403 for a "
          "token of no agency", E, P.EVENTS_REPORT, AgencyReportIn, statuses=(200, 201)),
    Route("/api/v1/events/{eventId}/attachments", "POST", "add_attachment", "Add attachment metadata", E,
          P.EVENTS_REPORT, AttachmentIn, statuses=(201,)),
    Route("/api/v1/events/{eventId}/cameras", "GET", "event_cameras", "The nearest cameras of an event (PLAT-R3)", E,
          P.CAMERAS_READ, params=("n", "radius")),
    Route("/api/v1/events/{eventId}/linkages", "POST", "request_linkage",
          "Share an event with an agency; 202 when held for approval (PLAT-R4), the same linkage while one is "
          "held", E, P.LINKAGE_REQUEST, LinkageIn,
          statuses=(201, 202)),
    Route("/api/v1/events/{eventId}/linkages/{linkageId}/approve", "POST", "approve_linkage",
          "Approve a held linkage", E, P.EVENTS_MANAGE, DecisionIn),
    Route("/api/v1/events/{eventId}/linkages/{linkageId}/reject", "POST", "reject_linkage", "Reject a held linkage",
          E, P.EVENTS_MANAGE, DecisionIn),
    Route("/api/v1/events/{eventId}/linkages/{linkageId}/resend", "POST", "resend_linkage",
          "Send a failed linkage's package again (its dead letter, once; the footage token signed again; audited "
          "`linkage` / `resent`); 409 unless the linkage is failed and its dead letter still there (not resent or "
          "replayed already), or when its grant is revoked or expired", E, P.EVENTS_MANAGE, DecisionIn,
          statuses=(202,)),
    Route("/api/v1/events/{eventId}/linkages/{linkageId}/package", "GET", "linkage_package",
          "The package of a linkage (PLAT-R6/R7)", E, P.EVENTS_READ),
    Route("/api/v1/events/{eventId}/redact", "POST", "redact_event",
          "Erase a data subject's data from one event (PIPA §36): the subject's and/or reporter's personal data (and "
          "the subject's pseudonym), with `freeText` the typed texts; any status; audited `privacy` / `redacted` "
          "(which parts, the reason's length); packages already sent are out of reach", E, P.PRIVACY_ADMIN, RedactIn),
    Route("/api/v1/cameras", "GET", "list_cameras", "List cameras, or the nearest to `near=lon,lat`", C,
          P.CAMERAS_READ, params=("near", "n", "radius", "limit", "offset")),
    Route("/api/v1/cameras", "POST", "create_camera", "Register a camera", C, P.CAMERAS_ADMIN, cam.CameraIn,
          statuses=(201,)),
    Route("/api/v1/cameras", "PATCH", "patch_cameras",
          f"Set the stream and still URLs of up to {cam.BULK_MAX} cameras (`{{\"cameras\": [{{\"id\", \"streamURL\", "
          "\"stillImageURL\"}]}`; absent: unchanged, null: removed), each checked as `PATCH /cameras/{id}`; one "
          "result per item (`updated`, `unchanged`, `failed` with bilingual reasons); 207 when some failed; a URL "
          "re-pointed at another feed drops the camera from its live grants", C, P.CAMERAS_ADMIN, cam.CameraUrlsIn,
          statuses=(200, 207)),
    Route("/api/v1/cameras/import", "POST", "import_cameras",
          "Import a CSV of the national CCTV dataset; reports rejected rows", C, P.CAMERAS_ADMIN, params=("prefix",),
          media="text/csv"),
    Route("/api/v1/cameras/{cameraId}/stream", "GET", "camera_stream",
          "Footage link: 307 to the stream with a valid grant and the grant's agency token (PLAT-R5)", C, None,
          params=("grant",), statuses=(307,)),
    Route("/api/v1/cameras/{cameraId}/still", "GET", "camera_still", "Footage link: 307 to the still image", C, None,
          params=("grant",), statuses=(307,)),
    Route("/api/v1/cameras/{cameraId}", "GET", "get_camera", "A camera", C, P.CAMERAS_READ),
    Route("/api/v1/cameras/{cameraId}", "PATCH", "patch_camera", "Change a camera (status, stream ...); a URL "
          "re-pointed at another feed (not a changed password) drops the camera from its live grants", C,
          P.CAMERAS_ADMIN, cam.CameraFields),
    Route("/api/v1/cameras/{cameraId}", "DELETE", "delete_camera", "Remove a camera; its live grants lose it (revoked "
          "when it was their last camera), each agency told", C, P.CAMERAS_ADMIN, statuses=(204,)),
    Route("/api/v1/agencies", "GET", "list_agencies", "List agencies", A, P.AGENCIES_READ),
    Route("/api/v1/agencies", "POST", "create_agency", "Register an agency", A, P.AGENCIES_ADMIN, statuses=(201,)),
    Route("/api/v1/agencies/{agencyId}", "GET", "get_agency", "An agency", A, P.AGENCIES_READ),
    Route("/api/v1/agencies/{agencyId}", "PUT", "put_agency",
          "Create or replace an agency; disabling one revokes its grants and refuses its tokens (403) until enabled",
          A, P.AGENCIES_ADMIN, statuses=(200, 201)),
    Route("/api/v1/agencies/{agencyId}", "DELETE", "delete_agency",
          "Remove an agency, revoking its grants and its issued tokens", A, P.AGENCIES_ADMIN, statuses=(204,)),
    Route("/api/v1/grants", "GET", "list_grants", "List footage grants (an agency sees its own)", G, P.EVENTS_READ,
          params=("agency", "event", "status", "limit", "offset")),
    Route("/api/v1/grants", "POST", "create_grant", "Share cameras of an event with an agency (PLAT-R5)", G,
          P.GRANTS_ISSUE, GrantIn, statuses=(201,)),
    Route("/api/v1/grants/stats", "GET", "grant_stats", "Video-request statistics per agency", G, P.GRANTS_READ_ALL,
          params=("from", "to")),
    Route("/api/v1/grants/{grantId}", "GET", "get_grant",
          "A grant with its links and audit lines (an agency: its own footage accesses only)", G, P.EVENTS_READ),
    Route("/api/v1/grants/{grantId}/renew", "POST", "renew_grant",
          "Renew a grant (a new token); operators or the grant's agency", G, P.GRANTS_RENEW_OWN, RenewIn),
    Route("/api/v1/grants/{grantId}/revoke", "POST", "revoke_grant", "Revoke a grant", G, P.GRANTS_ISSUE, RevokeIn),
    Route("/api/v1/privacy/subject-search", "POST", "subject_search",
          "The events that hold a person's data (PIPA §35), by name, phone or personId and the subject's pseudonym: "
          "ids, status, role and matched field names, never values; a scan of the tenant's events; audited "
          "`privacy` / `subject-search` (counts, a keyed hash of the query); with `entityId` also where else that "
          "NGSI-LD entity is (`elsewhere`: its state and history, alarms, Alerts, pending notifications, dead letters, "
          "saved NGSI-LD notifications; ids and counts)", PV, P.PRIVACY_ADMIN, SubjectSearchIn),
    Route("/api/v1/privacy/subject-erase", "POST", "subject_erase",
          "Erase a person's NGSI-LD entity (of a type in `privacy.personal_entity_types`) and its whole history in "
          "one call (PIPA §36); 404 when neither exists, 400 for another type; audited `privacy` / `erased` (the "
          "entity id, what was deleted, the reason's length, what is left elsewhere in counts); the answer says "
          "what is left (alarms, Alerts, notifications, dead letters); saved NGSI-LD notifications holding it "
          "are left and the answer says so (`note`)", PV, P.PRIVACY_ADMIN, EraseIn),
    Route("/api/v1/audit", "GET", "list_audit", "The append-only audit log", U, P.AUDIT_READ,
          params=("kind", "action", "agency", "event", "grant", "camera", "outcome", "from", "to", "limit", "offset",
                  "order")),
    Route("/api/v1/auth/me", "GET", "me", "Who the bearer token is", T, None),
    Route("/api/v1/auth/tokens", "GET", "list_tokens", "List tokens (never their values)", T, P.TOKENS_ADMIN),
    Route("/api/v1/auth/tokens", "POST", "create_token", "Issue a token (shown once); an agency token bound to no "
          "tenant while its agency exists in several is issued with `warnings` (it acts in each of them)", T,
          P.TOKENS_ADMIN, TokenIn, statuses=(201,)),
    Route("/api/v1/auth/tokens/{tokenId}", "DELETE", "delete_token", "Revoke an issued token", T, P.TOKENS_ADMIN,
          statuses=(204,)),
)


def handler_of(api: OpsApi, route: Route) -> Handler:
    handler: Handler = getattr(api, route.handler)
    return handler


def _expiry(given: datetime | None, now: datetime) -> datetime | None:
    """An issued token's `expiresAt`: an instant with its UTC offset, in the future (400 otherwise)."""
    if given is None:
        return None
    if given.tzinfo is None:
        raise BadRequest("expiresAt에 UTC 오프셋 필요 (예: 2027-01-31T15:00:00Z) / expiresAt needs a UTC offset "
                         "(e.g. 2027-01-31T15:00:00Z)")
    if given <= now:
        raise BadRequest(f"expiresAt은 미래여야 함 (지금 {to_iso(now)}) / expiresAt must be in the future (now is "
                         f"{to_iso(now)})")
    return given.astimezone(UTC)
