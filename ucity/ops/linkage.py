"""Linkage to agencies: the event package per service (PLAT-R6, R7), the 112 gate (PLAT-R4), delivery.

A linkage is one agency receiving one event through one service. Its life::

    requested --(gate passes, or an operator asked)--> approved -> queued -> delivered | failed
        \\--(gated service, crime type not in the list, asked by an agency or automatically)--> held
    held --operator approves--> approved ...      held --operator rejects, or the event ends--> rejected

A rejection is announced to the agency's webhook (`linkage-rejected`, center.py), as a revoked grant is.

Gate (PLAT-R4): for the services in `ops.gated_services` (default the two police services), video is
shared at once only for the event types in `ops.video_crime_types` (default Daejeon's 7 violent crimes
[V]); any other type waits for an operator. A request made by an operator is that approval.

Package (what the agency's webhook receives, `package` in the body): the event (no personal data but
the subject's pseudonym; `details` masked, `freetext.mask_free_text`: agencies have no `personal:read`), the
nearest cameras (PLAT-R3) with footage links of a new grant (PLAT-R5), and per service:

| service | adds |
|---|---|
| 112_VIDEO | - |
| 112_DISPATCH | stills, attachments, traffic around the scene |
| 119_DISPATCH | a still (PLAT-R7), surroundings: traffic, parking, hydrants, active alarms nearby (PLAT-R6) |
| DISASTER, IOT | stills, active alarms nearby |
| VULNERABLE | the subject's pseudonym and category |

Delivery uses the alarms' notifier contract: a `WebhookNotifier` (signed `X-Ucity-Signature`, same
secret as alarm webhooks) behind an `Outbox` per agency (bounded queue, retries with backoff on the
platform clock, dead letters listed at `/api/v1/notifications/dead-letters`). A queued package is also
stored (ucity/alarms/journal.py) until delivered or dead-lettered: a restart sends it (same id).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
from shapely.geometry import shape

from ucity.alarms.contacts import NotifierConfig
from ucity.alarms.dispatch import KST, Dispatcher, kst
from ucity.alarms.journal import AGENCY, Pending, notification_fields
from ucity.alarms.model import ACTIVE_STATUSES
from ucity.alarms.notifiers import build_notifier
from ucity.alarms.notifiers.base import DeliveryResult, Notification, Notifier, Outbox
from ucity.core.clock import parse_iso
from ucity.core.config import OpsSettings, RetrySettings
from ucity.core.errors import UcityError
from ucity.ngsild.context import core_context
from ucity.ngsild.geo import haversine_m, parse_geoquery
from ucity.ngsild.model import default_geometry
from ucity.ops.agencies import Agency
from ucity.ops.auth import Permission, Principal
from ucity.ops.cameras import CAUSES, local_id
from ucity.ops.events import DISPATCHED, SERVICES, STATUS_NAMES, Event
from ucity.ops.nearest import LOCATION, METRES_PER_DEG, NearCamera, iri
from ucity.rules.events import LEVEL_NAMES
from ucity.store.base import AlarmQuery, Doc, EntityQuery, Store, TypeExpr

if TYPE_CHECKING:
    from ucity.ops.cameras import CameraRegistry
    from ucity.ops.grants import Grant, GrantService

log = logging.getLogger(__name__)
HELD, APPROVED, QUEUED, READY, DELIVERED, FAILED, REJECTED = (
    "held", "approved", "queued", "ready", "delivered", "failed", "rejected")
PACKAGE_SECTIONS: dict[str, frozenset[str]] = {
    "112_VIDEO": frozenset(),
    "112_DISPATCH": frozenset({"stills", "attachments", "traffic"}),
    "119_DISPATCH": frozenset({"stills", "surroundings"}),
    "DISASTER": frozenset({"stills", "alarms"}),
    "IOT": frozenset({"stills", "alarms"}),
    "VULNERABLE": frozenset({"subject"}),
}
SURROUNDING_ITEMS = 10  # entities listed per surroundings section
# A package with no camera says so (QA15 F9c): no location to search from, or none found within the widened radius.
NO_CAMERAS = {"ko": "주변 CCTV 없음", "en": "no CCTV nearby"}
NO_LOCATION = {"ko": "위치 없음: CCTV를 찾지 못함", "en": "no location: no CCTV searched"}


class InvalidLinkageDecision(UcityError):
    """An approval or rejection of a linkage that is not waiting for one (QA15 F9h): decided already, or its event
    ended. Its own type, not the event status machine's `InvalidEventTransition`."""

    status = 409
    type_uri = "urn:ucity:errors:InvalidLinkageDecision"
    title = "Invalid linkage decision"


def gate(service: str, type_code: str, settings: OpsSettings, requester: Principal, automatic: bool) -> str | None:
    """Why a linkage must wait for an operator (PLAT-R4), or None when it may go at once."""
    if service not in settings.gated_services or type_code in settings.video_crime_types:
        return None
    if requester.can(Permission.EVENTS_MANAGE) and not automatic:
        return None
    return "crime-type-not-listed"


# -- the package ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PackageNotification(Notification):
    """A Notification whose body is an event package instead of an alarm."""

    package: dict[str, Any] = field(default_factory=dict)
    linkage: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "event": self.event, "createdAt": self.created_at,
                "subject": self.subject, "text": self.text, "package": self.package}


def camera_entries(selection: list[NearCamera], footage: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    return [{"id": footage[near.camera.id]["camera"] if near.camera.id in footage else near.camera.id,
             "entityId": near.camera.id, "name": near.camera.name, "distanceM": round(near.distance_m, 1),
             "bearingDeg": round(near.bearing_deg, 1), "covers": near.covers,
             "stream": footage.get(near.camera.id, {}).get("stream"), "still": footage.get(near.camera.id, {}).get("still")}
            for near in selection]


def build_package(event: Event, agency: Agency, service: str, linkage_id: str, cameras: list[dict[str, Any]],
                  grant: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The package of one linkage; `extra` holds the sections gathered from the store (surroundings ...)."""
    sections = PACKAGE_SECTIONS.get(service, frozenset())
    package: dict[str, Any] = {
        "version": 1, "linkage": linkage_id, "service": service, "serviceName": SERVICES[service],
        "agency": agency.id, "event": event.summary(), "cameras": cameras, "grant": grant,
    }
    if "stills" in sections or service == "119_DISPATCH":
        package["still"] = next(({"camera": c["id"], "url": c["still"]} for c in cameras if c.get("still")), None)
    if "attachments" not in sections:
        package["event"] = {k: v for k, v in package["event"].items() if k != "attachments"}
    if "subject" not in sections:
        package["event"] = {**package["event"], "subject": None}
    if not cameras:
        package["noCameras"] = NO_CAMERAS if event.point is not None else NO_LOCATION
    package.update(extra)
    return package


# A direct share's service when the agency does not receive the event's own (`share_service`): the services that fit
# the event, best first [D] (ucity's choice: the dispatch service of the situation, then the neighbouring ones).
_TYPE_SERVICES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("fire", "rescue", "medical", "gas_leak", "structural", "fall", "elderly_alone"),
                    ("119_DISPATCH", "DISASTER")),
    **dict.fromkeys(("flood", "landslide"), ("DISASTER", "119_DISPATCH")),
    "traffic_accident": ("119_DISPATCH", "112_DISPATCH"),
    **dict.fromkeys(("murder", "robbery", "pickpocketing", "theft", "kidnapping", "sexual_violence",
                     "domestic_violence", "assault", "fraud", "noise", "stalking", "child_abuse"),
                    ("112_DISPATCH", "112_VIDEO")),
    **dict.fromkeys(("missing_person", "dementia_missing", "child_missing", "disabled_missing", "geofence_exit",
                     "women_safety", "sos"), ("VULNERABLE", "112_DISPATCH", "119_DISPATCH")),
}
_SERVICE_SERVICES: dict[str, tuple[str, ...]] = {
    "112_VIDEO": ("112_DISPATCH",), "112_DISPATCH": ("112_VIDEO",), "119_DISPATCH": ("DISASTER", "112_DISPATCH"),
    "DISASTER": ("119_DISPATCH", "IOT", "112_DISPATCH"), "IOT": ("DISASTER", "119_DISPATCH"),
    "VULNERABLE": ("112_DISPATCH", "119_DISPATCH"),
}


def share_service(event: Event, services: list[str]) -> str:
    """The service of an operator's direct share (center.py `issue_grant`) with an agency receiving `services`: it
    chooses the package's sections only (the texts are labelled by the event's own service, `compose`). The event's
    service if the agency receives it; else the first of the agency's services that fits the event (by its type,
    then by its service: `_TYPE_SERVICES`, `_SERVICE_SERVICES`), not merely the agency's first (a flood reported by
    an IoT sensor and shared with the fire service gets the disaster sections: nearby alarms, not hydrants and
    parking); else the agency's service whose package carries the least (least privilege: never the subject's
    section of `VULNERABLE` for an event that is not about a vulnerable person)."""
    if event.service in services:
        return event.service
    fitting = (*_TYPE_SERVICES.get(event.type_code, ()), *_SERVICE_SERVICES.get(event.service, ()))
    chosen = next((s for s in fitting if s in services), None)
    if chosen is not None:
        return chosen
    return min(services, key=lambda s: ("subject" in PACKAGE_SECTIONS.get(s, frozenset()),
                                        len(PACKAGE_SECTIONS.get(s, frozenset())), services.index(s)))


def compose(event: Event, service: str) -> tuple[dict[str, str], dict[str, str]]:
    """(subject, text) in Korean and English, for people: the level's name in each language and the time in
    Korea time, as the alarm notifications write them (alarms/dispatch.py). The package's fields stay
    machine-readable (level codes, UTC). Labelled by the event's own service (QA15 F9b): the linkage's `service`
    only chooses the package's sections (an operator's direct share with an agency that does not receive the event's
    service takes another one, `share_service`), so it would name the situation wrongly."""
    names, where = event.type_names, event.address or ""
    level = LEVEL_NAMES[event.level]
    when = parse_iso(event.occurred_at).astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")
    place = f" {where}" if where else ""
    label = SERVICES[event.service]
    subject = {lang: f"[{label[lang]}] {names[lang]}{place}" for lang in ("ko", "en")}
    text = {
        "ko": f"{label['ko']}: {names['ko']} (단계 {level['ko']}){place}, 발생 {when}. 사건 {event.id}",
        "en": f"{label['en']}: {names['en']} (level {level['en']}){place}, occurred {when}. "
              f"Event {event.id}",
    }
    return subject, text


def keep_purpose(link: dict[str, Any], purpose: str, actor: str, at: str) -> bool:
    """A repeat request's purpose kept on the linkage it joins (QA15 F9a): the first one stays `purpose`, a different
    later one is added to `purposes` (`at`, `by`, `purpose`), so the operator who decides reads every stated need.
    Whether anything was added (an empty or repeated purpose adds nothing)."""
    if not purpose or purpose == link.get("purpose") or any(
            p.get("purpose") == purpose for p in link.get("purposes", [])):
        return False
    if not link.get("purpose"):
        link["purpose"] = purpose
    else:
        link.setdefault("purposes", []).append({"at": at, "by": actor, "purpose": purpose})
    return True


def with_camera_note(notification: PackageNotification) -> PackageNotification:
    """A linkage package without cameras says so in its text too (`noCameras`, QA15 F9c)."""
    note = notification.package.get("noCameras")
    if notification.event != "linkage" or not isinstance(note, dict):
        return notification
    text = {lang: f"{notification.text.get(lang, '')} {note[lang]}.".strip() for lang in ("ko", "en")}
    return replace(notification, text=text)


# Notices of the centre's own status moves an agency is told of (QA15 F6): it learns of the end through its grants'
# `grant-revoked` and its held requests' `linkage-rejected`, of the dispatch through this one.
STATUS_NOTICES = {DISPATCHED: "event-dispatched"}


def status_notice_agencies(event: Event) -> list[str]:
    """The agencies an event is shared with: its reporter's and those with a linkage neither held nor rejected."""
    shared = [str(link["agency"]) for link in event.linkages if link["status"] not in (HELD, REJECTED)]
    return list(dict.fromkeys([*([event.reporter_agency] if event.reporter_agency else []), *shared]))


def status_notices(links: AgencyLinks, event: Event, notification_id: Callable[[], str], at: str) -> list[Prepared]:
    """The notices of an event's move to a status in `STATUS_NOTICES` (its current one), one per agency it is shared
    with (`status_notice_agencies`), for the commit of that move; nothing for other statuses."""
    kind = STATUS_NOTICES.get(event.status)
    if kind is None:
        return []
    names, status = event.type_names, STATUS_NAMES[event.status]
    label = SERVICES[event.service]
    when = kst(at)
    subject = {lang: f"[{label[lang]}] {names[lang]}: {status[lang]}" for lang in ("ko", "en")}
    text = {"ko": f"통합운영센터가 사건을 {status['ko']} 처리 ({when}). {label['ko']}: {names['ko']}. 사건 {event.id}",
            "en": f"The operations centre marked the event {status['en']} ({when}). {label['en']}: {names['en']}. "
                  f"Event {event.id}"}
    body = {"event": {"id": event.id, "status": event.status, "statusName": status, "service": event.service,
                      "typeCode": event.type_code, "typeName": names}, "at": at}
    return [links.notice(event.tenant, agency, kind, subject, text, body, notification_id(), at)
            for agency in status_notice_agencies(event)]


def camera_dropped_notice(links: AgencyLinks, grant: Grant, camera: str, cause: str, revoked: bool,
                          at: str) -> Prepared:
    """The notice of a camera dropped from a grant (grants.py `drop_camera`) for the grant's agency, named as the
    `grant-revoked` notice names cameras and times (the cameras, UTC in the data, Korea time in the text), with the
    cause in both languages: `grant-narrowed` (the camera's footage ends, the others' links go on working) or, for
    the grant's last camera, `grant-revoked` (`grant.reason` the cause in English, as other revocations')."""
    ko, en = CAUSES[cause]
    when = kst(at)
    change = {"camera": camera, "cause": cause, "causeName": {"ko": ko, "en": en}}
    if revoked:
        kind, subject = "grant-revoked", {"ko": "영상 공유 회수", "en": "Footage grant revoked"}
        cameras = ", ".join(grant.cameras)
        text = {"ko": f"영상 공유 {grant.id} 회수 ({ko}: 카메라 {camera}): 카메라 {cameras}, {when}부터 볼 수 없음. "
                      f"사건 {grant.event}",
                "en": f"Footage grant {grant.id} revoked ({en}: camera {camera}): cameras {cameras}, no longer "
                      f"viewable from {when}. Event {grant.event}"}
        body = {"grant": {"id": grant.id, "reason": grant.revoke_reason, "cameras": grant.cameras, "revokedAt": at,
                          "expiresAt": grant.expires_at}, "event": {"id": grant.event}, "change": change}
    else:
        kind, subject = "grant-narrowed", {"ko": "영상 공유 축소", "en": "Footage grant narrowed"}
        left, until = ", ".join(grant.cameras), kst(grant.expires_at)
        text = {"ko": f"영상 공유 {grant.id} 축소 ({ko}): 카메라 {camera}, {when}부터 볼 수 없음. 남은 카메라 {left}, "
                      f"{until}까지. 사건 {grant.event}",
                "en": f"Footage grant {grant.id} narrowed ({en}): camera {camera}, no longer viewable from {when}. "
                      f"Cameras left {left}, until {until}. Event {grant.event}"}
        body = {"grant": {"id": grant.id, "cameras": grant.cameras, "dropped": [camera], "narrowedAt": at,
                          "expiresAt": grant.expires_at}, "event": {"id": grant.event}, "change": change}
    return links.notice(grant.tenant, grant.agency, kind, subject, text, body,
                        f"urn:ucity:notification:{uuid.uuid4().hex}", at)


def follow_cameras(cameras: CameraRegistry, grants: GrantService, links: AgencyLinks) -> None:
    """Camera changes narrow the grants (the operations centre wires it): a camera deleted, moved or registered again,
    or its footage URL re-pointed, is dropped from every live grant naming it, each agency told
    (`camera_dropped_notice`), in the commit of the grant's change."""
    def notice(grant: Grant, camera: str, cause: str, revoked: bool) -> Prepared:
        at = (grant.revoked_at if revoked else None) or grants.now()
        return camera_dropped_notice(links, grant, camera, cause, revoked, at)

    async def changed(tenant: str, camera: str, cause: str, actor: str) -> None:
        await grants.drop_camera(tenant, local_id(camera), cause, actor)

    grants.camera_notice = notice
    cameras.on_change = changed


async def gather_sections(store: Store, tenant: str, event: Event, service: str, settings: OpsSettings) -> dict[str, Any]:
    """The store-backed sections of a package: traffic, surroundings, nearby active alarms."""
    sections = PACKAGE_SECTIONS.get(service, frozenset())
    if event.point is None:
        return {}
    lon, lat = event.point
    radius = settings.context_radius_m
    out: dict[str, Any] = {}
    if "surroundings" in sections:
        out["surroundings"] = {name: await nearby(store, tenant, types, lon, lat, radius)
                               for name, types in settings.context_types.items()}
        out["surroundings"]["activeAlarms"] = await nearby_alarms(store, tenant, lon, lat, radius)
        out["surroundings"]["radiusM"] = radius
    if "traffic" in sections:
        out["traffic"] = await nearby(store, tenant, settings.context_types.get("traffic", []), lon, lat, radius)
    if "alarms" in sections:
        out["activeAlarms"] = await nearby_alarms(store, tenant, lon, lat, radius)
    return out


async def nearby(store: Store, tenant: str, types: list[str], lon: float, lat: float, radius: float) -> list[Doc]:
    """Entities of `types` within `radius` of the point, nearest first, as {id, type, distanceM, values}."""
    if not types:
        return []
    query = parse_geoquery(f"near;maxDistance=={radius}", "Point", [lon, lat])
    docs, _ = await store.query_entities(tenant, EntityQuery(
        types=TypeExpr(tuple((iri(t),) for t in types)), geo=query, geo_attr=LOCATION, limit=200))
    ctx = core_context()
    items = []
    for doc in docs:
        geometry = default_geometry(doc, LOCATION)
        centre = shape(geometry).centroid if geometry else None
        distance = haversine_m(centre.x, centre.y, lon, lat) if centre is not None else math.inf
        values = {ctx.compact_iri(a): inst[0].get("value") for a, inst in doc.get("attrs", {}).items()
                  if a != LOCATION and inst and inst[0].get("type") == "Property"}
        items.append({"id": doc["id"], "type": ctx.compact_iri(doc["type"][0]), "distanceM": round(distance, 1),
                      "values": values})
    items.sort(key=lambda item: item["distanceM"])
    return items[:SURROUNDING_ITEMS]


async def nearby_alarms(store: Store, tenant: str, lon: float, lat: float, radius: float) -> list[Doc]:
    """Active alarms located within `radius` (hazards of monitored facilities nearby)."""
    dlat = radius / METRES_PER_DEG
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    docs, _ = await store.query_alarms(tenant, AlarmQuery(statuses=ACTIVE_STATUSES, bbox=(lon - dlon, lat - dlat,
                                                                                         lon + dlon, lat + dlat),
                                                          limit=SURROUNDING_ITEMS))
    return [{"id": d["id"], "level": d.get("level"), "kind": d.get("kind"), "rule": d.get("rule_id"),
             "entity": d.get("entity_id"), "category": d.get("category"), "raisedAt": d.get("raised_at"),
             "description": d.get("description")} for d in docs]


# -- delivery ------------------------------------------------------------------------------------------
ResultFn = Callable[[PackageNotification, bool, str], Awaitable[None]]
# Stands for a package's footage token wherever the package is kept (the outbox, its stored entry, a dead letter):
# a token opens footage until its grant expires, and ucity stores none (docs/operations-center.md).
TOKEN_PLACEHOLDER = "{footage-token}"


def redact(notification: PackageNotification) -> PackageNotification:
    """The package with its grant's footage token (`grant.token`, and in every link) replaced by the placeholder."""
    grant = notification.package.get("grant")
    token = grant.get("token") if isinstance(grant, dict) else None
    if not token or token == TOKEN_PLACEHOLDER:
        return notification
    return _swapped(notification, str(token), TOKEN_PLACEHOLDER)


def _swapped(notification: PackageNotification, old: str, new: str) -> PackageNotification:
    """The notification with every occurrence of `old` in its package (the token, in `grant` and in each link)
    replaced by `new`."""
    text = orjson.dumps(notification.package).replace(old.encode(), new.encode())
    return replace(notification, package=orjson.loads(text))


def _event_of(notification: PackageNotification) -> str:
    """The event a package is about (its owner sends it again after a restart, in scale-out)."""
    event = notification.package.get("event")
    return str(event.get("id", "")) if isinstance(event, dict) else ""


async def _no_token(tenant: str, grant_id: str) -> str | None:
    return None


class _Tracked:
    """A notifier that reports each final outcome of a linkage package (delivered, or given up)."""

    kind = "webhook"
    sends = True

    def __init__(self, inner: Notifier, on_result: ResultFn,
                 unredact: Callable[[PackageNotification], Awaitable[PackageNotification]]) -> None:
        self.id = inner.id
        self._inner = inner
        self._on_result = on_result
        self._unredact = unredact

    async def send(self, notification: Notification) -> DeliveryResult:
        # What goes out carries the footage token; what is queued, stored and dead-lettered does not.
        sent = await self._unredact(notification) if isinstance(notification, PackageNotification) else notification
        result = await self._inner.send(sent)
        if result.ok and isinstance(notification, PackageNotification):
            await self._on_result(notification, True, result.detail)
        return result

    def describe(self) -> dict[str, Any]:
        return self._inner.describe()

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Prepared:
    """Packages or notices for agencies, made before the commit that decides them: `entries` (their outbox
    entries, ucity/alarms/journal.py) are written in that commit, so that once it is made a restart sends them;
    then `send` queues them. A commit that fails or is refused leaves them unsent and unstored."""

    prepared: list[tuple[str, Notification]] = field(default_factory=list)
    entries: list[tuple[str, str, str, Doc]] = field(default_factory=list)
    links: AgencyLinks | None = None

    def send(self) -> None:
        if self.prepared and self.links is not None:
            self.links.enqueue(self.prepared, self.entries)


NOTHING = Prepared()


def entries_of(made: list[Prepared]) -> list[tuple[str, str, str, Doc]]:
    return [entry for one in made for entry in one.entries]


class AgencyLinks:
    """One outbox per (tenant, agency): packages and grant notices reach each agency in order, and an
    agency that is down delays only itself."""

    def __init__(self, dispatcher: Dispatcher, agency_of: Callable[[str, str], Agency | None], retry: RetrySettings,
                 queue_size: int, on_result: ResultFn) -> None:
        self.dispatcher = dispatcher
        self.agency_of = agency_of
        self.retry = retry
        self.queue_size = queue_size
        self.on_result = on_result
        self._notifiers: dict[tuple[str, str], Notifier] = {}
        self._outboxes: dict[tuple[str, str], Outbox] = {}
        dispatcher.resumers[AGENCY] = self._resume
        # The footage token of a grant, signed again (None: no such grant): packages are stored and queued without
        # it (`redact`) and get it back when sent. Set by the operations centre.
        self.token_of: Callable[[str, str], Awaitable[str | None]] = _no_token

    def prepare(self, agency_id: str, notification: PackageNotification) -> Prepared:
        """A package (or a notice) and its outbox entry, for the commit that decides it (`EventService.change`,
        `GrantService`'s saves); `Prepared.send` queues it once that commit is made."""
        prepared: list[tuple[str, Notification]] = [(agency_id, redact(with_camera_note(notification)))]
        return Prepared(prepared, self.dispatcher.journal_entries(AGENCY, _event_of(notification), prepared), self)

    def notice(self, tenant: str, agency_id: str, kind: str, subject: dict[str, str], text: dict[str, str],
               package: dict[str, Any], notification_id: str, at: str) -> Prepared:
        """A notice to an agency (if it has a webhook and is enabled: nothing goes to a disabled or deleted one), for
        the commit of the change it tells of."""
        agency = self.agency_of(tenant, agency_id)
        if agency is None or not agency.webhook or not agency.enabled:
            return NOTHING
        return self.prepare(agency_id, PackageNotification(notification_id, tenant, kind, at, {}, subject, text,
                                                           package=package))

    def enqueue(self, prepared: list[tuple[str, Notification]], entries: list[tuple[str, str, str, Doc]]) -> None:
        """Queue prepared packages whose entries are stored."""
        self.dispatcher.enqueue(prepared, entries, self._box)

    def _box(self, tenant: str, agency_id: str) -> Outbox:
        key = (tenant, agency_id)
        box = self._outboxes.get(key)
        if box is None:
            async def dead(given_up: Notification, name: str, attempts: int, error: str) -> None:
                await self._dead(given_up, f"agency:{agency_id}", attempts, error)

            box = self._outboxes[key] = Outbox(f"{key[0]}/agency:{agency_id}", lambda: self._notifier(key),
                                               self.dispatcher.clock, self.retry, self.queue_size, dead,
                                               self.dispatcher.journal)
        return box

    def _resume(self, pending: Pending) -> None:
        """A package a restart left queued (`Dispatcher.resume`): queued again with its attempts so far."""
        notification = PackageNotification(**notification_fields(pending.doc))
        self._box(pending.tenant, pending.endpoint).put(notification, pending.attempts, pending.entry)

    def _notifier(self, key: tuple[str, str]) -> Notifier | None:
        notifier = self._notifiers.get(key)
        agency = self.agency_of(*key)
        deps = self.dispatcher.notifier_deps()
        if notifier is None and agency is not None and agency.webhook and agency.enabled and deps is not None:
            config = NotifierConfig(id=f"agency-{agency.id}", type="webhook", url=agency.webhook, headers=agency.headers)
            notifier = self._notifiers[key] = _Tracked(build_notifier(config, deps), self.on_result, self._unredact)
        return notifier

    async def _dead(self, notification: Notification, name: str, attempts: int, error: str) -> None:
        await self.dispatcher.dead_letter(notification, name, attempts, error)
        if isinstance(notification, PackageNotification):
            await self.on_result(notification, False, error)

    async def _unredact(self, notification: PackageNotification) -> PackageNotification:
        """The package as sent: the footage token put back, signed again from the stored grant."""
        grant = notification.package.get("grant")
        if not isinstance(grant, dict) or grant.get("token") != TOKEN_PLACEHOLDER:
            return notification
        token = await self.token_of(notification.tenant, str(grant.get("id")))
        if token is None:
            log.warning("package %s: its grant %s is gone; sent without footage links", notification.id,
                        grant.get("id"))
            token = ""
        return _swapped(notification, TOKEN_PLACEHOLDER, token)

    def forget(self, tenant: str, agency_id: str) -> None:
        """The agency changed: the next delivery builds its notifier again (new URL or headers)."""
        self._notifiers.pop((tenant, agency_id), None)

    def busy(self) -> bool:
        return self.dispatcher.storing() or any(box.busy for box in self._outboxes.values())

    def owns(self, tenant: str, entity_id: str) -> bool:
        """Whether this process sends again, after a restart, the packages of an event (the alarms' owner of it:
        every process alone, a worker by partition; an API process beside workers none)."""
        return bool(self.dispatcher.owns(tenant, entity_id))

    def describe(self, tenant: str, agency_id: str) -> dict[str, Any] | None:
        box = self._outboxes.get((tenant, agency_id))
        return box.stats.to_wire(box.queued) if box else None

    async def stop(self) -> None:
        for box in self._outboxes.values():
            await box.close()
        self._outboxes.clear()
        self._notifiers.clear()
