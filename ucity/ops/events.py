"""Events of the integrated operation centre (PLAT-R1, PLAT-R2): one record per situation, of any service.

An event has a service (the 5 linkage services, plus `IOT` for alarms of the city's IoT services,
PLAT-R9), a type code, when it occurred and was reported (UTC), where (a point and an address), the
system and reference it came from, a level on the national crisis ladder, a status, a pseudonymised
subject, attachments (metadata only) and the linkages to agencies (linkage.py).

Status machine::

    received -> acknowledged -> sharing -> dispatched -> closed
        \\____________\\______________\\__________\\________-> cancelled

Moves go forward only (a step may be skipped: a 112 video request is shared before anybody
acknowledges it); closing needs at least an acknowledgement; `closed` and `cancelled` are final. Every
move is an audit line with its actor (the event's trail, `GET /api/v1/events/{id}`).

Personal data (the subject's and reporter's name and phone) lives only in the event record, never in
the NGSI-LD entity (that API has only the coarse `data:read`, which readers hold); the packages carry the
subject's pseudonym, an HMAC of the identity under `ops.pseudonym_secret`, so one person's events link up
without naming them. The entity carries no pseudonym, and a sensitive event (`is_sensitive`: police
matters, vulnerable people, listed crimes, events about a person) no address, no source reference and
only a coarse cell as its location (QA7 F3; `event_entity`).

An agency reads an event's trail filtered to what concerns it (`trail_for`, QA7 F1): the event's own lines
without the operators' notes, and the lines of its own linkages, grants and footage accesses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ucity.alarms.dispatch import kst
from ucity.core.bus import Context
from ucity.core.clock import Clock, parse_iso, to_iso, to_micros
from ucity.core.config import OpsSettings
from ucity.core.errors import BadRequest, NotFound, UcityError, Unavailable
from ucity.ngsild import geo
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.audit import AuditLog
from ucity.ops.auth import Permission, Principal, mask_personal
from ucity.ops.freetext import REDACTED, holds_personal, mask_free_text, typed_length
from ucity.rules.events import LEVEL_NAMES, LEVELS, SEVERITY
from ucity.store.base import AuditQuery, AuditRow, Doc, Mutation, OpsEventQuery, OpsEventRow, Store

log = logging.getLogger(__name__)
ENTITY_TYPE = "CityEvent"
ENTITY_PREFIX = f"urn:ngsi-ld:{ENTITY_TYPE}:"

# The 5 linkage services (domain-rules §1.2 [V]) and the IoT services' alarms (PLAT-R9).
SERVICES: dict[str, dict[str, str]] = {
    "112_VIDEO": {"ko": "112센터 긴급영상 지원", "en": "112 emergency video"},
    "112_DISPATCH": {"ko": "112 긴급출동 지원", "en": "112 dispatch support"},
    "119_DISPATCH": {"ko": "119 긴급출동 지원", "en": "119 dispatch support"},
    "DISASTER": {"ko": "재난상황 긴급대응 지원", "en": "Disaster emergency response"},
    "VULNERABLE": {"ko": "사회적 약자 지원", "en": "Support for vulnerable people"},
    "IOT": {"ko": "IoT 서비스 경보", "en": "IoT service alarm"},
}
# Names of the type codes ucity knows; any other code (a-z, 0-9, _) is accepted and shown as is.
TYPE_NAMES: dict[str, dict[str, str]] = {
    "murder": {"ko": "살인", "en": "Murder"},
    "robbery": {"ko": "강도", "en": "Robbery"},
    "pickpocketing": {"ko": "소매치기", "en": "Pickpocketing"},
    "theft": {"ko": "절도", "en": "Theft"},
    "kidnapping": {"ko": "납치·감금", "en": "Kidnapping / confinement"},
    "sexual_violence": {"ko": "성폭력", "en": "Sexual violence"},
    "domestic_violence": {"ko": "가정폭력", "en": "Domestic violence"},
    "assault": {"ko": "폭행", "en": "Assault"},
    "fraud": {"ko": "사기", "en": "Fraud"},
    "noise": {"ko": "소음", "en": "Noise"},
    "fire": {"ko": "화재", "en": "Fire"},
    "rescue": {"ko": "구조", "en": "Rescue"},
    "medical": {"ko": "구급", "en": "Medical emergency"},
    "flood": {"ko": "침수", "en": "Flood"},
    "landslide": {"ko": "산사태", "en": "Landslide"},
    "structural": {"ko": "시설물 붕괴 위험", "en": "Structural danger"},
    "missing_person": {"ko": "실종", "en": "Missing person"},
    "geofence_exit": {"ko": "안심구역 이탈", "en": "Left the safe zone"},
    "sos": {"ko": "긴급호출", "en": "SOS"},
    # Support for vulnerable people (PLAT-R8; QA15 F9b: shown by name, not as a code)
    "dementia_missing": {"ko": "치매 노인 실종", "en": "Missing person with dementia"},
    "child_missing": {"ko": "아동 실종", "en": "Missing child"},
    "disabled_missing": {"ko": "장애인 실종", "en": "Missing person with a disability"},
    "elderly_alone": {"ko": "독거노인 응급", "en": "Elderly person living alone: emergency"},
    "child_abuse": {"ko": "아동학대", "en": "Child abuse"},
    "stalking": {"ko": "스토킹", "en": "Stalking"},
    "women_safety": {"ko": "여성 안심귀가", "en": "Safe return home"},
    "fall": {"ko": "낙상", "en": "Fall"},
    "gas_leak": {"ko": "가스 누출", "en": "Gas leak"},
    "traffic_accident": {"ko": "교통사고", "en": "Traffic accident"},
}

# Sensitive events (QA7 F3): their `CityEvent` entity has no address, no source reference and a coarse location.
# The police services and support for vulnerable people: where such an event is, is where a victim, a suspect or a
# vulnerable person is.
SENSITIVE_SERVICES = frozenset({"112_VIDEO", "112_DISPATCH", "VULNERABLE"})
# Types about one person (health, a missing or lost person, a call for help, violence against a person), sensitive
# whatever the service; the crime types of `ops.video_crime_types` (PLAT-R4) are too.
PERSON_TYPES = frozenset({"murder", "robbery", "pickpocketing", "theft", "kidnapping", "sexual_violence",
                          "domestic_violence", "assault", "medical", "missing_person", "geofence_exit", "sos",
                          "dementia_missing", "child_missing", "disabled_missing", "elderly_alone", "child_abuse",
                          "stalking", "women_safety", "fall"})
# Types whose very name reveals a victim's situation protected by law (성폭력처벌법, 가정폭력처벌법 confidentiality of
# victims): the entity does not even carry the type, only the service.
PROTECTED_TYPES = frozenset({"sexual_violence", "domestic_violence"})
COARSE_CELL_DEG = 0.005  # [D] a sensitive event's location: the centre of its 0.005° cell (about 550 m x 440 m)

RECEIVED, ACKNOWLEDGED, SHARING, DISPATCHED, CLOSED, CANCELLED = (
    "received", "acknowledged", "sharing", "dispatched", "closed", "cancelled")
STATUSES: tuple[str, ...] = (RECEIVED, ACKNOWLEDGED, SHARING, DISPATCHED, CLOSED, CANCELLED)
FINAL = frozenset({CLOSED, CANCELLED})
_ORDER = {RECEIVED: 0, ACKNOWLEDGED: 1, SHARING: 2, DISPATCHED: 3, CLOSED: 4}
STATUS_NAMES: dict[str, dict[str, str]] = {
    RECEIVED: {"ko": "접수", "en": "Received"},
    ACKNOWLEDGED: {"ko": "확인", "en": "Acknowledged"},
    SHARING: {"ko": "영상 공유 중", "en": "Sharing"},
    DISPATCHED: {"ko": "출동", "en": "Dispatched"},
    CLOSED: {"ko": "종결", "en": "Closed"},
    CANCELLED: {"ko": "취소", "en": "Cancelled"},
}

# What a 112/119 room reports back on an event shared with it (QA15 F6): its own progress, beside the centre's status,
# which it does not change (agencies have no events:manage). Forward only, a step may be skipped, a repeat is
# idempotent.
AGENCY_REPORT_STATUSES: tuple[str, ...] = ("acknowledged", "dispatched", "arrived", "on-scene", "completed")
AGENCY_REPORT_NAMES: dict[str, dict[str, str]] = {
    "acknowledged": {"ko": "접수 확인", "en": "Acknowledged"},
    "dispatched": {"ko": "출동", "en": "Dispatched"},
    "arrived": {"ko": "현장 도착", "en": "Arrived"},
    "on-scene": {"ko": "현장 조치 중", "en": "On scene"},
    "completed": {"ko": "조치 완료", "en": "Completed"},
}


class InvalidEventTransition(UcityError):
    status = 409
    type_uri = "urn:ucity:errors:InvalidEventTransition"
    title = "Invalid event transition"


class InvalidAgencyReport(UcityError):
    """An agency's report that goes back on its own earlier one (QA15 F6)."""

    status = 409
    type_uri = "urn:ucity:errors:InvalidAgencyReport"
    title = "Invalid agency report"


def _set_by(by: str | None, at: str | None) -> tuple[str, str]:
    """(ko, en) of who set a status and when (Korea time), for a refusal's detail."""
    if not by or not at:
        return "설정자·시각 기록 없음", "who and when not recorded"
    return f"{by}, {kst(at)}", f"by {by} at {kst(at)}"


def check_transition(current: str, target: str, by: str | None = None, at: str | None = None) -> None:
    """Raise 409 unless `current -> target` is a move of the status machine; `by` and `at` (who set `current`,
    when) go in the refusal's detail (QA15 F7). A repeat of the current status is no move: callers treat it as
    done (`EventService.transition_rows`)."""
    if target not in STATUSES:
        raise BadRequest(f"상태는 {', '.join(STATUSES)} 중 하나 / status must be one of {', '.join(STATUSES)}")
    ko, en = _set_by(by, at)
    extra: dict[str, Any] = {"currentStatus": current, "statusSetBy": by or None, "statusSetAt": at or None}
    if current in FINAL:
        raise InvalidEventTransition(f"이미 {STATUS_NAMES[current]['ko']}된 사건입니다 ({ko}) / the event is already "
                                     f"{current} ({en})", **extra)
    if target == CANCELLED:
        return
    if _ORDER[target] <= _ORDER[current]:
        raise InvalidEventTransition(
            f"되돌릴 수 없습니다: 이미 {STATUS_NAMES[current]['ko']} ({ko}) / {current} -> {target} goes backwards: "
            f"the event is {current} ({en})", **extra)
    if target == CLOSED and current == RECEIVED:
        raise InvalidEventTransition("종결 전에 확인하십시오 / acknowledge the event before closing it", **extra)


def type_name(code: str, rule: dict[str, Any] | None = None) -> dict[str, str]:
    """The names of a type code: ucity's own (`TYPE_NAMES`), else those of the rule whose alarm made the event (an
    event of an alarm has its rule's id as its code, `qa_care_inactive`: `Event.rule_name`), else the code itself.
    A rule's name lacking a language has the other language's (a rule may be named in one)."""
    if code in TYPE_NAMES:
        return TYPE_NAMES[code]
    named = {lang: text.strip() for lang in ("ko", "en")
             if isinstance(text := (rule or {}).get(lang), str) and text.strip()}
    if named:
        return {"ko": named.get("ko") or named["en"], "en": named.get("en") or named["ko"]}
    return {"ko": code, "en": code}


def mask_words(text: str) -> str:
    """Each word (between spaces, `-`, `_`, `.`, `:`, `/`) down to its first letter and a `*` for each other one:
    "kim-younghee-home" -> "k**-y*******-h***" (as names are masked, `auth.mask_name`, and as the dashboard shows
    personal ids, ucity/web/static/js/privacy.js `maskWords`)."""
    return re.sub(r"[^\s\-_.:/]+", lambda m: m.group(0)[0] + "*" * (len(m.group(0)) - 1), text)


def entity_type_of(entity_id: str) -> str:
    """The type of an NGSI-LD entity id (`urn:ngsi-ld:<Type>:<rest>`), "" for anything else."""
    found = re.match(r"urn:ngsi-ld:([^:]+):", entity_id)
    return found.group(1) if found else ""


def mask_entity_id(entity_id: str) -> str:
    """An entity id with what follows its type masked (`mask_words`): `urn:ngsi-ld:CareDevice:kim-younghee-home` ->
    `urn:ngsi-ld:CareDevice:k**-y*******-h***` (the id of an entity of a personal type can be a name)."""
    kind = entity_type_of(entity_id)
    if not kind:
        return mask_words(entity_id)
    prefix = f"urn:ngsi-ld:{kind}:"
    return prefix + mask_words(entity_id[len(prefix):])


def entity_id(event_id: str) -> str:
    return ENTITY_PREFIX + event_id


# -- input ----------------------------------------------------------------------------------------------
class PersonIn(BaseModel):
    """A subject or reporter; personal data (PLAT-R10): masked for roles without need, never in NGSI-LD."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40)
    personId: str | None = Field(None, max_length=100, description="a registry id (e.g. of a registered person)")
    category: str | None = Field(None, max_length=50, description="reporter, victim, suspect, missingPerson ...")
    ageBand: str | None = Field(None, max_length=20)
    sex: str | None = Field(None, max_length=10)
    description: str | None = Field(None, max_length=2000)


class AttachmentIn(BaseModel):
    """Metadata of a file kept elsewhere (ucity stores no media)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field("image", pattern=r"^(image|video|audio|document|other)$")
    name: str = Field(min_length=1, max_length=200)
    mediaType: str | None = Field(None, max_length=100)
    url: str | None = Field(None, max_length=2000)
    sizeBytes: int | None = Field(None, ge=0)
    description: str | None = Field(None, max_length=2000)

    @field_validator("url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        """An http(s) address of a host (QA7 F7): an attachment's URL goes in other agencies' packages and on the
        dashboard, so no `javascript:` / `data:` / `file:` link, and no loopback, link-local (cloud metadata
        169.254.169.254) or unspecified address that would point a receiver at its own machine."""
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("첨부 URL은 http(s) 주소여야 합니다 / an attachment url must be an http(s) address")
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            host = parts.hostname.lower().rstrip(".")
            if host == "localhost" or host.endswith(".localhost"):
                raise ValueError("첨부 URL이 로컬 호스트를 가리킵니다 / an attachment url must not name the local host") \
                    from None
            return value.strip()
        if address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast:
            raise ValueError("첨부 URL이 루프백·링크 로컬 주소를 가리킵니다 / an attachment url must not be a loopback, "
                             "link-local or unspecified address")
        return value.strip()


class EventIn(BaseModel):
    """`POST /api/v1/events`."""

    model_config = ConfigDict(extra="forbid")
    service: str
    typeCode: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    level: str | None = None
    occurredAt: str | None = None
    location: dict[str, Any] | None = Field(None, description='{"lon": .., "lat": ..} or a GeoJSON Point')
    address: str | None = Field(None, max_length=300)
    details: str = Field("", max_length=4000)
    sourceSystem: str | None = Field(None, max_length=100)
    sourceRef: str | None = Field(None, max_length=200)
    subject: PersonIn | None = None
    reporter: PersonIn | None = None
    attachments: list[AttachmentIn] = Field([], max_length=50)

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if value not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        return value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str | None) -> str | None:
        if value is not None and value not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        return value

    @field_validator("occurredAt")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else to_iso(aware_time(value, "occurredAt"))

    @model_validator(mode="after")
    def _location(self) -> EventIn:
        if self.location is not None:
            parse_point(self.location)
        return self


def aware_time(value: str, name: str) -> datetime:
    """An ISO 8601 date-time with its UTC offset (QA15 F4): a time without one is refused, not read as UTC; a 112/119
    terminal sending Korea time without `+09:00` would otherwise be stored 9 hours wrong. ValueError otherwise."""
    try:
        naive = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")).tzinfo is None
    except ValueError:
        raise ValueError(f"{name}: ISO 8601 날짜·시각이 아닙니다 / {name} is no ISO 8601 date-time") from None
    if naive:
        raise ValueError(f"{name}에 UTC 오프셋 필요 (예: 2026-12-07T10:00:00+09:00 또는 2026-12-07T01:00:00Z) / {name} "
                         f"needs a UTC offset (e.g. 2026-12-07T10:00:00+09:00 or 2026-12-07T01:00:00Z)")
    return parse_iso(value)


class AgencyReportIn(BaseModel):
    """`POST /api/v1/events/{id}/agency-reports` (QA15 F6): a 112/119 room's progress on an event shared with it."""

    model_config = ConfigDict(extra="forbid")
    status: str = Field(description=" | ".join(AGENCY_REPORT_STATUSES))
    note: str = Field("", max_length=2000)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value not in AGENCY_REPORT_STATUSES:
            raise ValueError(f"상태는 {', '.join(AGENCY_REPORT_STATUSES)} 중 하나 / status must be one of "
                             f"{', '.join(AGENCY_REPORT_STATUSES)}")
        return value


def parse_point(value: dict[str, Any]) -> tuple[float, float]:
    """(lon, lat) of `{"lon", "lat"}` or a GeoJSON Point; ValueError otherwise."""
    if value.get("type") == "Point":
        coords = value.get("coordinates")
        if not isinstance(coords, list) or len(coords) < 2:
            raise ValueError("a GeoJSON Point needs coordinates [lon, lat]")
        lon, lat = coords[0], coords[1]
    else:
        lon, lat = value.get("lon"), value.get("lat")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lon, lat)):
        raise ValueError("location needs numeric lon and lat")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError("lon must be in [-180, 180] and lat in [-90, 90]")
    if is_null_island((lon, lat)):
        raise ValueError("위치 0,0(경도 0, 위도 0)은 받지 않습니다: 좌표가 비어 있던 값입니다 / location 0,0 (lon 0, lat 0, "
                         "'Null Island' in the Atlantic) is refused: it is what a client sends for a missing position")
    return float(lon), float(lat)


def is_null_island(point: tuple[float, float]) -> bool:
    """lon 0, lat 0: no city's place, but what a client with no fix sends (zeros for a missing position)."""
    return point[0] == 0 and point[1] == 0


# -- the event -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Event:
    id: str
    tenant: str
    service: str
    type_code: str
    level: str
    status: str
    occurred_at: str
    reported_at: str
    updated_at: str
    point: tuple[float, float] | None = None
    address: str | None = None
    details: str = ""
    source_system: str = ""
    source_ref: str = ""
    reported_by: str = ""
    reporter_agency: str | None = None
    subject: dict[str, Any] | None = None  # {"ref": pseudonym or None, "category": ...}
    personal: dict[str, dict[str, Any]] = field(default_factory=dict)  # "subject" / "reporter" -> data
    attachments: list[dict[str, Any]] = field(default_factory=list)
    linkages: list[dict[str, Any]] = field(default_factory=list)
    alarm_id: str | None = None
    # Status notes ({"at", "by", "status", "text"}): kept with the event (retention reaches them with it), never in
    # the audit log, which records only their length (privacy QA10 F3)
    notes: list[dict[str, Any]] = field(default_factory=list)
    # Redactions of a data subject's request (QA10 F4, subjects.py): {"at", "by", "parts"}, never the removed values
    redactions: list[dict[str, Any]] = field(default_factory=list)
    # Who set the current status, and when (QA15 F7: a refused move says so); empty in events stored before
    status_by: str = ""
    status_at: str = ""
    # The agencies' reports back (QA15 F6): {"agency", "status", "at", "by", "note"}; the note is free text
    agency_reports: list[dict[str, Any]] = field(default_factory=list)
    # An event of an alarm (FIX-H): its rule's name ({"ko", "en"}: the alarm's `evidence.ruleName`), which names its
    # type when ucity does not know the code (`type_names`), and whether the alarm is about a person (its entity of
    # a personal type, ucity/core/privacy.py), which makes the event sensitive (`is_sensitive`)
    rule_name: dict[str, str] | None = None
    about_person: bool = False

    @property
    def entity_id(self) -> str:
        return entity_id(self.id)

    @property
    def type_names(self) -> dict[str, str]:
        """The names of its type (`type_name`): ucity's, else its rule's, else the code."""
        return type_name(self.type_code, self.rule_name)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def agencies(self) -> tuple[str, ...]:
        """The agencies that see this event: its reporter's and every agency it is linked to."""
        linked = [str(link["agency"]) for link in self.linkages]
        return tuple(dict.fromkeys([*([self.reporter_agency] if self.reporter_agency else []), *linked]))

    def linkage(self, linkage_id: str) -> dict[str, Any]:
        for link in self.linkages:
            if link["id"] == linkage_id:
                return link
        raise NotFound(f"연계 {linkage_id} 없음 / linkage {linkage_id} does not exist on event {self.id}")

    def visible_to(self, principal: Principal) -> bool:
        return principal.can(Permission.EVENTS_READ_ALL) or (
            principal.can(Permission.EVENTS_READ) and principal.agency is not None and principal.agency in self.agencies)

    # -- stored forms ---------------------------------------------------------------------------------
    def to_doc(self) -> Doc:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["point"] = list(self.point) if self.point else None
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> Event:
        values = {f.name: doc[f.name] for f in fields(cls) if f.name in doc}
        values["point"] = tuple(doc["point"]) if doc.get("point") else None
        return cls(**values)

    def to_row(self) -> OpsEventRow:
        return OpsEventRow(
            self.tenant, self.id, self.service, self.type_code, self.level, self.status, self.source_system,
            self.source_ref, to_micros(parse_iso(self.occurred_at)), to_micros(parse_iso(self.reported_at)),
            to_micros(parse_iso(self.updated_at)), self.point, self.agencies, self.to_doc())

    # -- API form --------------------------------------------------------------------------------------
    def to_wire(self, principal: Principal, history: list[Doc] | None = None, unmask: bool = True) -> Doc:
        """The API form; personal data masked unless the principal has `personal:read` (PLAT-R10) and `unmask`
        (lists and write responses mask for everybody: unmasked data is read, and audited, one event at a time).
        A principal without `events:read-all` (an agency) sees its own linkages only, and of the agencies only
        the reporting one and itself (QA7 F1). Free text (`details`, attachment names, linkage purposes and reasons,
        the operators' status `notes`, which only `events:read-all` reads) is masked as personal data is
        (`freetext.mask_free_text`, QA10 F3)."""
        unmasked = unmask and principal.can(Permission.PERSONAL_READ)
        text = (lambda t: t) if unmasked else mask_free_text
        every = principal.can(Permission.EVENTS_READ_ALL)
        wire: Doc = {
            "id": self.id, "entityId": self.entity_id, "service": self.service, "serviceName": SERVICES[self.service],
            "typeCode": self.type_code, "typeName": self.type_names, "level": self.level,
            "levelName": LEVEL_NAMES[self.level], "status": self.status, "statusName": STATUS_NAMES[self.status],
            "occurredAt": self.occurred_at, "reportedAt": self.reported_at, "updatedAt": self.updated_at,
            "location": point_geojson(self.point), "address": self.address, "details": text(self.details),
            "source": {"system": self.source_system, "ref": self.source_ref}, "reportedBy": self.reported_by,
            "reporterAgency": self.reporter_agency, "subject": self.subject, "alarm": self.alarm_id,
            "personal": {k: (dict(v) if unmasked else mask_personal(v)) for k, v in self.personal.items()},
            "attachments": [_attachment_text(a, text) for a in self.attachments],
            "agencies": [a for a in self.agencies if every or a in (principal.agency, self.reporter_agency)],
            "linkages": [{**link, **{k: text(link[k]) for k in ("purpose", "reason") if isinstance(link.get(k), str)},
                          **({"purposes": [{**p, "purpose": text(str(p.get("purpose", "")))} for p in link["purposes"]]}
                             if isinstance(link.get("purposes"), list) else {})}
                         for link in self.linkages if every or link["agency"] == principal.agency],
        }
        if self.redactions:
            wire["redactions"] = [dict(r) for r in self.redactions]
        reports = [r for r in self.agency_reports if every or r.get("agency") == principal.agency]
        wire["agencyReports"] = [{**r, "statusName": AGENCY_REPORT_NAMES.get(str(r.get("status")), {}),
                                  "note": text(str(r.get("note", "")))} for r in reports]
        latest: dict[str, Doc] = {}
        for r in reports:
            latest[str(r.get("agency"))] = {"status": r.get("status"), "at": r.get("at"),
                                            "statusName": AGENCY_REPORT_NAMES.get(str(r.get("status")), {})}
        wire["agencyStatus"] = latest
        if every:
            wire["notes"] = [{**note, "text": text(str(note.get("text", "")))} for note in self.notes]
        if history is not None:
            wire["history"] = redact_trail(history, self.redacted_until())
        return wire

    def redacted_until(self) -> str | None:
        """When the event's free text was last redacted (a data subject's request, subjects.py), or None."""
        times = [str(r["at"]) for r in self.redactions if "freeText" in (r.get("parts") or {})]
        return max(times) if times else None

    def free_texts(self) -> dict[str, list[str]]:
        """Every text people typed on the event, by part (privacy QA10 F3/F4: what masking, a data subject's search
        and a redaction cover): `details`, the operators' status `notes`, attachment names and descriptions, linkage
        purposes (every stated one) and reasons, the agencies' report notes (`agencyReports`). The personal blocks'
        `description` goes with its role (`personal`); the footage grants' purposes and revocation reasons are kept
        with the grants (subjects.py)."""
        texts: dict[str, list[str]] = {
            "details": [self.details],
            "notes": [str(note.get("text") or "") for note in self.notes],
            "attachments": [str(a.get(k) or "") for a in self.attachments for k in ATTACHMENT_TEXTS],
            "linkages": [*(str(link.get(k) or "") for link in self.linkages for k in LINKAGE_TEXTS),
                         *(str(p.get("purpose") or "") for link in self.linkages for p in _purposes(link))],
            "agencyReports": [str(r.get("note") or "") for r in self.agency_reports],
        }
        return {part: [t for t in found if t] for part, found in texts.items()}

    def free_text_read(self) -> list[str]:
        """Which free texts of the event hold personal data (`holds_personal`): what an unmasked read shows."""
        return [part for part, texts in self.free_texts().items() if any(holds_personal(t) for t in texts)]

    def summary(self) -> Doc:
        """What an agency package says of the event (no personal data but the subject's pseudonym; `details` and
        attachment names masked as for the agency's own reads, `mask_free_text`: the agency role has no `personal:read`)."""
        return {"id": self.id, "service": self.service, "serviceName": SERVICES[self.service], "typeCode": self.type_code,
                "typeName": self.type_names, "level": self.level, "levelName": LEVEL_NAMES[self.level],
                "status": self.status, "occurredAt": self.occurred_at, "reportedAt": self.reported_at,
                "location": point_geojson(self.point), "address": self.address, "details": mask_free_text(self.details),
                "source": {"system": self.source_system, "ref": self.source_ref}, "subject": self.subject,
                "attachments": [_attachment_text(a, mask_free_text) for a in self.attachments]}


ATTACHMENT_TEXTS = ("name", "description")  # an attachment's free text
LINKAGE_TEXTS = ("purpose", "reason")  # a linkage's free text (and each `purposes[].purpose`)


def _purposes(link: dict[str, Any]) -> list[dict[str, Any]]:
    """Every purpose stated for a linkage after its first (`purposes`, QA15 F9a)."""
    found = link.get("purposes")
    return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []


def _attachment_text(attachment: dict[str, Any], text: Callable[[str], str]) -> dict[str, Any]:
    """An attachment with its free text (`ATTACHMENT_TEXTS`) passed through `text` (masking, or as it is)."""
    return {**attachment, **{k: text(attachment[k]) for k in ATTACHMENT_TEXTS if isinstance(attachment.get(k), str)},
            "name": text(str(attachment.get("name", "")))}


def point_geojson(point: tuple[float, float] | None) -> dict[str, Any] | None:
    return {"type": "Point", "coordinates": [point[0], point[1]]} if point else None


# -- the NGSI-LD entity ---------------------------------------------------------------------------------
def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _date(value: str) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}


def is_sensitive(event: Event, crime_types: Iterable[str] = ()) -> bool:
    """Whether where the event is tells about a person (QA7 F3): a police service or support for vulnerable people,
    a type about one person or one of the listed crime types (`ops.video_crime_types`), an event with a subject, or
    one an alarm about a person made (`about_person`: a care household's alarm is where that person lives)."""
    return (event.service in SENSITIVE_SERVICES or event.type_code in PERSON_TYPES or event.type_code in crime_types
            or event.subject is not None or event.about_person)


def coarse_point(point: tuple[float, float], cell: float = COARSE_CELL_DEG) -> tuple[float, float]:
    """The centre of the `cell`-degree cell that holds `point` (the same for every point of the cell)."""
    return geo.coarse_point(point, cell)


def event_entity(event: Event, crime_types: Iterable[str] = ()) -> dict[str, Any]:
    """The event as NGSI-LD `CityEvent` (core-context names), for anybody with `data:read` (readers: a data portal,
    a video wall): no personal data, no pseudonym, no free text. A sensitive event (`is_sensitive`) has no address
    and no source reference (a 112 case number), and as location the centre of its `COARSE_CELL_DEG` cell
    (`locationCellDeg` says so); a protected type (`PROTECTED_TYPES`) is not named at all, only its service."""
    sensitive = is_sensitive(event, crime_types)
    names = None if event.type_code in PROTECTED_TYPES else event.type_names
    entity: dict[str, Any] = {
        "id": event.entity_id, "type": ENTITY_TYPE,
        "service": _prop(event.service), "level": _prop(event.level),
        "severity": _prop(SEVERITY[event.level]), "status": _prop(event.status),
        "occurredAt": _date(event.occurred_at), "reportedAt": _date(event.reported_at),
        "sourceSystem": _prop(event.source_system or "ucity"),
        "description": {"type": "LanguageProperty", "languageMap": {
            lang: SERVICES[event.service][lang] + (f": {names[lang]}" if names else "") for lang in ("ko", "en")}},
    }
    if names is not None:
        entity["eventType"] = _prop(event.type_code)
    if event.source_ref and not sensitive:
        entity["sourceRef"] = _prop(event.source_ref)
    if event.point:
        point = coarse_point(event.point) if sensitive else event.point
        entity["location"] = {"type": "GeoProperty", "value": point_geojson(point)}
        if sensitive:
            entity["locationCellDeg"] = _prop(COARSE_CELL_DEG)
    if event.address and not sensitive:
        entity["address"] = _prop({"streetAddress": event.address})
    if event.alarm_id:
        entity["refAlert"] = {"type": "Relationship", "object": f"urn:ngsi-ld:Alert:{event.alarm_id}"}
    return entity


# -- the trail an agency reads (QA7 F1) -----------------------------------------------------------------
# The event's own lines an agency reads (without the operators' `note`); anything else of kind `event` (reads of
# personal data ...) and every other kind but its own linkages and grants stays with operators.
AGENCY_EVENT_ACTIONS = frozenset({"created", "status", "level", "attachment-added", "alarm-closed"})
AGENCY_REPORT = "agency-report"  # an agency's report back (QA15 F6): its own lines only
INTERNAL_DETAIL = frozenset({"note", "noteChars", "noteMasked"})  # "note": lines written before QA10 F3
# Reads (QA7 F2): in the audit log (`GET /api/v1/audit`, audit:read), not in the trails shown with an event or a grant:
# showing a trail would otherwise add to it, and the people whose reads they record need not browse them.
READ_ACTIONS = frozenset({"personal-read", "token-read"})


def trail_for(docs: list[Doc], principal: Principal) -> list[Doc]:
    """What `principal` may read of an event's audit lines: all of them with `events:read-all` (operators), else
    (an agency) the event's own lines without internal notes and the lines of its own linkages, grants and footage
    accesses (`agency` is the principal's). Read lines (`READ_ACTIONS`) are left out for everybody."""
    docs = [d for d in docs if d.get("action") not in READ_ACTIONS]
    if principal.can(Permission.EVENTS_READ_ALL):
        return docs
    own = principal.agency
    out: list[Doc] = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "event" and doc.get("action") in AGENCY_EVENT_ACTIONS:
            out.append({k: v for k, v in doc.items() if k not in INTERNAL_DETAIL})
        elif own is not None and doc.get("agency") == own and (
                kind in ("linkage", "grant") or (kind == "event" and doc.get("action") == AGENCY_REPORT)):
            out.append(doc)  # its own linkages, grants, footage accesses and reports back
    return out


# What typed text the audit lines of linkages and grants keep (masked, QA10 F3): (kind, key) -> the actions whose
# line holds it as typed (None: every action); other `reason`s are codes (`agency-disabled`, `grant-expired` ...).
TRAIL_TEXTS: dict[tuple[str, str], frozenset[str] | None] = {
    ("linkage", "purpose"): None, ("grant", "purpose"): None,
    ("linkage", "reason"): frozenset({"approved", "rejected"}), ("grant", "reason"): frozenset({"revoked"}),
}


def redact_trail(docs: list[Doc], until: str | None) -> list[Doc]:
    """Audit lines as shown with a redacted event or grant: the typed texts they keep (`TRAIL_TEXTS`) of lines up to
    the redaction (`until`; None: no redaction) shown as `REDACTED`. The audit log itself is append-only and is not
    rewritten (`GET /api/v1/audit`, audit:read, still holds them, masked)."""
    if until is None:
        return docs
    out: list[Doc] = []
    for doc in docs:
        hidden = {key: REDACTED for (kind, key), actions in TRAIL_TEXTS.items()
                  if doc.get("kind") == kind and isinstance(doc.get(key), str) and doc.get(key)
                  and (actions is None or doc.get("action") in actions) and str(doc.get("at", "")) <= until}
        out.append({**doc, **hidden} if hidden else doc)
    return out


class Pseudonymizer:
    """The subject's pseudonym: an HMAC of its identifying fields, stable across events."""

    IDENTIFYING = ("personId", "name", "phone")

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def ref(self, person: dict[str, Any]) -> str | None:
        parts = [str(person[k]).strip().lower() for k in self.IDENTIFYING if person.get(k)]
        if not parts:
            return None
        if self._key is None:
            raise Unavailable("ops.pseudonym_secret 미설정 / ops.pseudonym_secret is not configured")
        digest = hmac.new(self._key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()
        return f"psn-{digest[:20]}"


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Any, asyncio.Lock] = {}
        self._users: defaultdict[Any, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


Change = Callable[[Event], list[AuditRow]]


class Announcement(Protocol):
    """Notices to agencies made for one commit (linkage.Prepared): their outbox entries go in the commit, `send`
    queues them once it is made."""

    @property
    def entries(self) -> list[tuple[str, str, str, Doc]]: ...

    def send(self) -> None: ...


# The notices of an event's move to its current status (the centre sets `linkage.status_notices`: `dispatched`)
Announcer = Callable[[Event], Sequence[Announcement]]


class EventService:
    """Events: create, read, change (one writer per event at a time), each change saved with its audit lines
    and mirrored to the NGSI-LD entity."""

    def __init__(self, store: Store, clock: Clock, settings: OpsSettings, audit: AuditLog,
                 pseudonyms: Pseudonymizer) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.audit = audit
        self.pseudonyms = pseudonyms
        self._locks = KeyedLocks()
        # Set by the centre (center.py): the agencies' notices of a status move, whichever path makes it
        self.announce: Announcer | None = None

    def now(self) -> str:
        return to_iso(self.clock.now())

    # -- create ----------------------------------------------------------------------------------------
    def build(self, tenant: str, data: EventIn, principal: Principal, alarm_id: str | None = None,
              rule_name: dict[str, str] | None = None, about_person: bool = False) -> Event:
        now = self.now()
        occurred = data.occurredAt or now
        self._check_occurred(occurred)
        agency = principal.agency if principal.role == "agency" else None
        event = Event(
            id=uuid.uuid4().hex, tenant=tenant, service=data.service, type_code=data.typeCode,
            level=data.level or self.settings.default_level, status=RECEIVED, occurred_at=occurred, reported_at=now,
            updated_at=now, point=parse_point(data.location) if data.location else None, address=data.address,
            details=data.details, source_system=f"agency:{agency}" if agency else (data.sourceSystem or "operator"),
            source_ref=data.sourceRef or "", reported_by=principal.actor, reporter_agency=agency, alarm_id=alarm_id,
            attachments=[self._attachment(a, principal, now) for a in data.attachments],
            status_by=principal.actor, status_at=now, rule_name=rule_name, about_person=about_person)
        self._people(event, data)
        return event

    def _check_occurred(self, occurred: str) -> None:
        """`occurredAt` within `ops.event_max_age_days` before now and `ops.event_max_ahead_minutes` after (QA15 F4;
        ucity's defaults [D]: 30 days, 5 minutes): a year mistyped or a terminal's reset clock is refused, not
        filed as a decades-old or future event."""
        now, when = self.clock.now(), parse_iso(occurred)
        ahead, age = self.settings.event_max_ahead_minutes, self.settings.event_max_age_days
        if when > now + timedelta(minutes=ahead):
            raise BadRequest(f"발생 시각이 미래입니다 ({kst(occurred)}, 허용 {ahead:g}분 이내) / occurredAt is in the future "
                             f"({occurred}; at most {ahead:g} minutes ahead of now, {to_iso(now)})",
                             reason="occurred-in-future")
        if when < now - timedelta(days=age):
            raise BadRequest(f"발생 시각이 너무 오래되었습니다 ({kst(occurred)}, 허용 {age:g}일 이내) / occurredAt is too "
                             f"old ({occurred}; at most {age:g} days before now, {to_iso(now)})",
                             reason="occurred-too-old")

    def _people(self, event: Event, data: EventIn) -> None:
        for role, person in (("subject", data.subject), ("reporter", data.reporter)):
            if person is None:
                continue
            values = person.model_dump(exclude_none=True)
            if role == "subject":
                event.subject = {"ref": self.pseudonyms.ref(values), "category": values.get("category")}
            personal = {k: v for k, v in values.items() if k != "category" or role == "reporter"}
            if personal:
                event.personal[role] = personal

    @staticmethod
    def _attachment(data: AttachmentIn, principal: Principal, now: str) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex[:12], **data.model_dump(exclude_none=True), "addedAt": now,
                "addedBy": principal.actor}

    async def create(self, event: Event, principal: Principal) -> Event:
        row = self.audit.row(event.tenant, "event", "created", principal.actor, event=event.id,
                             agency=event.reporter_agency, service=event.service, typeCode=event.type_code,
                             level=event.level)
        await self._save(event, [row])
        return event

    # -- read ------------------------------------------------------------------------------------------
    async def load(self, tenant: str, event_id: str) -> Event:
        doc = await self.store.get_ops_event(tenant, event_id)
        if doc is None:
            raise NotFound(f"사건 {event_id} 없음 / event {event_id} does not exist")
        return Event.from_doc(doc)

    async def visible(self, tenant: str, event_id: str, principal: Principal) -> Event:
        """The event if the principal may see it; 404 otherwise (not 403: its existence is not disclosed)."""
        event = await self.load(tenant, event_id)
        if not event.visible_to(principal):
            raise NotFound(f"사건 {event_id} 없음 / event {event_id} does not exist")
        return event

    async def query(self, tenant: str, query: OpsEventQuery) -> tuple[list[Event], int | None]:
        docs, total = await self.store.query_ops_events(tenant, query)
        return [Event.from_doc(d) for d in docs], total

    async def by_source(self, tenant: str, system: str, ref: str) -> Event | None:
        events, _ = await self.query(tenant, OpsEventQuery(source_system=system, source_ref=ref, limit=1))
        return events[0] if events else None

    async def trail(self, tenant: str, event_id: str, principal: Principal | None = None) -> list[Doc]:
        """The event's audit lines; with `principal`, what it may read of them (`trail_for`)."""
        docs, _ = await self.audit.query(tenant, AuditQuery(event_ids=(event_id,), limit=10_000))
        return docs if principal is None else trail_for(docs, principal)

    # -- change ----------------------------------------------------------------------------------------
    async def change(self, tenant: str, event_id: str, change: Change,
                     docs: Callable[[Event], list[tuple[str, str, str, Doc]]] | None = None) -> Event:
        """Apply `change` to the stored event under its lock; save it with the audit lines it returns, and with the
        documents `docs` gives for the changed event (a linkage's queued package), in one commit.

        A change that moves the event to another status is announced to the agencies it is shared with when the
        status has notices (`announce`: `dispatched`, QA15 F6), whatever made the move (an operator, an API, a
        service of the centre): the notices' outbox entries are written in the move's commit and queued once it is
        made. A repeat of the status is no move (`transition_rows` writes nothing): nobody is told again."""
        async with self._locks.hold((tenant, event_id)):
            event = await self.load(tenant, event_id)
            before = event.status
            rows = change(event)
            if rows:
                event.updated_at = self.now()
                made = self.announce(event) if self.announce is not None and event.status != before else []
                entries = [entry for notice in made for entry in notice.entries]
                await self._save(event, rows, [*(docs(event) if docs is not None else []), *entries])
                for notice in made:
                    notice.send()
            return event

    def transition_rows(self, event: Event, target: str, actor: str, note: str = "",
                        generated: bool = False) -> list[AuditRow]:
        """Move `event` to `target` (409 if not allowed); the audit line of the move. A person's `note` (free text)
        is kept on the event (`notes`); its line says only how long it is and whether it held personal data
        (`noteChars`, `noteMasked`: the audit log outlives the event, QA10 F3). A `generated` note (ucity's own:
        ids and codes, `linkage <id>`, `경보 종결 alarm closed: <id>`) stays in the line as `note`."""
        if target == event.status:
            return []  # a repeat (a second operator, a retry after a timeout): done already, nothing to write
        check_transition(event.status, target, event.status_by or None, event.status_at or None)
        previous, event.status = event.status, target
        event.status_by, event.status_at = actor, self.now()
        detail: dict[str, Any] = {"from": previous, "to": target}
        if note and generated:
            detail["note"] = note
        elif note:
            event.notes.append({"at": self.now(), "by": actor, "status": target, "text": note})
            detail.update(typed_length("note", note))
        return [self.audit.row(event.tenant, "event", "status", actor, event=event.id, **detail)]

    def attachment_rows(self, event: Event, data: AttachmentIn, principal: Principal) -> list[AuditRow]:
        if event.final:
            raise InvalidEventTransition(f"종결·취소된 사건 / the event is {event.status}")
        attachment = self._attachment(data, principal, self.now())
        event.attachments.append(attachment)
        return [self.audit.row(event.tenant, "event", "attachment-added", principal.actor, event=event.id,
                               attachment=attachment["id"], name=mask_free_text(attachment["name"]))]

    def agency_report_rows(self, event: Event, data: AgencyReportIn, principal: Principal) -> list[AuditRow]:
        """An agency's report back on an event shared with it (QA15 F6): recorded on the event (`agency_reports`)
        and in its trail (`event` / `agency-report`, with the agency; the note's length, never its text). Forward
        only per agency; a repeat of its latest status is nothing new ([]); the event's own status is not touched."""
        agency = principal.agency
        if agency is None:
            raise BadRequest("기관 토큰만 보고할 수 있습니다 / only an agency token reports back")
        if event.final:
            raise InvalidEventTransition(f"이미 {STATUS_NAMES[event.status]['ko']}된 사건입니다 / the event is already "
                                         f"{event.status}")
        own = [r for r in event.agency_reports if r.get("agency") == agency]
        if own:
            last = own[-1]
            if last["status"] == data.status:
                return []
            rank = AGENCY_REPORT_STATUSES.index
            if rank(data.status) < rank(str(last["status"])):
                ko, en = _set_by(str(last.get("by", "")), str(last.get("at", "")))
                raise InvalidAgencyReport(
                    f"되돌릴 수 없습니다: 이미 {AGENCY_REPORT_NAMES[last['status']]['ko']} 보고 ({ko}) / {last['status']} "
                    f"-> {data.status} goes backwards: {agency} reported {last['status']} ({en})",
                    currentStatus=last["status"], reportedBy=last.get("by"), reportedAt=last.get("at"))
        now = self.now()
        event.agency_reports.append({"agency": agency, "status": data.status, "at": now, "by": principal.actor,
                                     "note": data.note})
        detail: dict[str, Any] = {"status": data.status}
        detail.update(typed_length("note", data.note or ""))
        return [self.audit.row(event.tenant, "event", AGENCY_REPORT, principal.actor, event=event.id, agency=agency,
                               outcome="ok", **detail)]

    def level_rows(self, event: Event, level: str, actor: str) -> list[AuditRow]:
        if level == event.level or event.final:
            return []
        previous, event.level = event.level, level
        return [self.audit.row(event.tenant, "event", "level", actor, event=event.id, previous=previous, level=level)]

    async def _save(self, event: Event, rows: list[AuditRow], docs: list[tuple[str, str, str, Doc]] | None = None) -> None:
        await self.store.save_ops_event(event.to_row(), rows, docs or [])
        doc = normalize_entity(event_entity(event, self.settings.video_crime_types), core_context())
        (result,) = await self.store.mutate(event.tenant, [Mutation(event.entity_id, replace_op(doc, True))],
                                            Context(actor="ucity-ops"))
        if isinstance(result, Exception):
            log.error("CityEvent entity of event %s not written: %s", event.id, result)
