"""Footage sharing grants (PLAT-R5): signed, time-limited, renewable, revocable, scoped, audited.

A grant lets one agency see the stream and still of some cameras for one event until it expires
(default 30 minutes [D], `ops.grant_minutes`). Its token is `v1.<payload>.<signature>`: the payload
(base64url JSON: grant, tenant, agency, event, camera ids, expiry) signed with HMAC-SHA256 under
`ops.grant_secret`. ucity hands out links `/api/v1/cameras/{id}/stream?grant=<token>` (and `/still`);
such a link resolves only when

1. the token's signature is valid (nobody can forge or widen one),
2. the grant exists and is not revoked, and neither the token nor the grant has expired,
3. the camera is in the grant's scope and still the camera granted (`cameras.identity` recorded at the issue: a
   camera deleted, registered again under its id or moved since is refused, `camera-removed` / `camera-changed`; the
   live grants naming such a camera, or one whose footage URL is re-pointed, lose it at once, or are revoked when it
   was their last camera, each agency told: `drop_camera`), and
4. the caller authenticates as the grant's agency (a link passed to another agency is useless), and that
   agency exists and is enabled, and the grant's event is neither closed nor cancelled (such grants are
   revoked; these checks hold the links shut even before, or after a crash in between).

Renewing extends the grant by another lifetime from now and gives a new token (old links still end
at their own expiry). An operator (grants:issue) renews without limit; the grant's agency renews its own grant at
most `ops.grant_max_renewals` times (default 3 [D]) and never past `ops.grant_max_total_minutes` after the issue
(default 480 [D]; the renewal is shortened to that end): beyond, 409 `RenewalRefused`, audited, and the agency asks
an operator (ucity's choice, not an official value: a grant should not outlive the need an operator judged).
Renewing an expired or revoked grant is a 409, audited the same way (reason `grant-expired` / `grant-revoked`).
Revoking ends every token of the grant at once. Closing or cancelling the event
revokes its grants (center.py announces every revocation to the agency); so does disabling or deleting
the agency. A renewal and a revocation of one grant take turns: a lock per grant within a process, and across
API processes on one database a conditional write (the stored document's `version`, bumped by every change;
`Store.save_grant(..., expected_version)`): a write of a grant changed since it was read is refused, and the
change is re-read and re-decided (a renewal of a grant found revoked is a 409, as is a second revocation),
so a revoked grant never comes back to life. Every issue, renewal,
revocation and access (allowed or denied, with the reason; a link without its token, or tried while no
`ops.grant_secret` is set, too; a link of a camera without a URL of its kind: outcome `failed`, not allowed) is a
line of the append-only audit log; per-agency request statistics are
counted from it (the MOIS platform's "video-request statistics").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ucity.core.clock import Clock, iso_micros, parse_iso, to_iso, to_micros
from ucity.core.config import OpsSettings
from ucity.core.errors import BadRequest, NotFound, UcityError, Unavailable
from ucity.ops.audit import AuditLog
from ucity.ops.auth import Forbidden, Permission, Principal, Unauthorized
from ucity.ops.cameras import CAUSES, MOVED, REMOVED, identity, local_id
from ucity.ops.cameras import entity_id as camera_entity_id
from ucity.ops.events import FINAL, KeyedLocks
from ucity.ops.freetext import mask_free_text, typed_length
from ucity.store.base import AuditQuery, AuditRow, Doc, GrantQuery, GrantRow, Store

if TYPE_CHECKING:
    from ucity.ops.linkage import Prepared

log = logging.getLogger(__name__)
ACTIVE, REVOKED, EXPIRED = "active", "revoked", "expired"
# A grant that cannot be renewed, in the refusal's words (an/a: "an expired grant", "a revoked grant")
_ENDED = {EXPIRED: ("만료된", "an expired"), REVOKED: ("회수된", "a revoked")}
TOKEN_VERSION = "v1"


class InvalidGrantTransition(UcityError):
    status = 409
    type_uri = "urn:ucity:errors:InvalidGrantTransition"
    title = "Invalid grant transition"


class RenewalRefused(InvalidGrantTransition):
    """An agency's own renewal beyond the renewal policy (`ops.grant_max_renewals`, `ops.grant_max_total_minutes`):
    409 with `reason` renewal-limit or lifetime-limit, audited (`grant` / `renewed`, outcome `denied`). An operator
    (grants:issue) may still renew the grant."""

    type_uri = "urn:ucity:errors:RenewalRefused"
    title = "Grant renewal refused"

    def __init__(self, reason: str, ko: str, en: str) -> None:
        super().__init__(f"{ko} / {en}", reason=reason)
        self.reason = reason


class AccessDenied(Forbidden):
    """A footage link that does not resolve; `reason` is audited and returned."""

    def __init__(self, reason: str, ko: str, en: str) -> None:
        super().__init__(f"{ko} / {en}", reason=reason)
        self.reason = reason


class AccessUnauthenticated(AccessDenied):
    """A footage link used without an agency's bearer token: 401 and, like every other 401 of ucity, the
    `Unauthorized` type and title (a client tells "log in" from "not allowed" by them, not by the status only)."""

    status = 401
    type_uri = Unauthorized.type_uri
    title = Unauthorized.title
    headers = Unauthorized.headers

    def __init__(self) -> None:
        super().__init__("unauthenticated", "기관 인증 필요", "authenticate with the bearer token of the grant's agency")


class MissingGrant(AccessDenied):
    """A footage link without its `grant` (absent or empty): 400, audited like every other attempt."""

    status = 400
    type_uri = BadRequest.type_uri
    title = BadRequest.title

    def __init__(self) -> None:
        super().__init__("missing-grant", "grant 매개변수가 필요합니다", "the grant parameter is required")


@dataclass(slots=True)
class Grant:
    id: str
    tenant: str
    agency: str
    event: str
    cameras: list[str]  # local camera ids
    purpose: str
    status: str  # active | revoked (expiry is a time, not a write)
    issued_at: str
    expires_at: str
    issued_by: str
    renewals: int = 0
    agency_renewals: int = 0  # the renewals the grant's agency made itself (bounded: ops.grant_max_renewals)
    linkage: str | None = None
    revoked_at: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    version: int = 0  # bumped by every write after the first; 0 in documents older than it
    # Each camera's identity when granted (local id -> cameras.identity: registration time and place; QA15 F1), or
    # None in grants issued before it was kept: those accept a camera registered before the grant's issue.
    marks: dict[str, str] | None = None
    # The cameras dropped from the grant since its issue (local id -> cause: `cameras.CAUSES`; `drop_camera`): their
    # links are refused with that cause as the reason. A grant whose last camera goes is revoked, its cameras kept.
    dropped: dict[str, str] | None = None

    def state(self, now: str) -> str:
        if self.status == REVOKED:
            return REVOKED
        return EXPIRED if now >= self.expires_at else ACTIVE

    def to_doc(self) -> Doc:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_doc(cls, doc: Doc) -> Grant:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})

    def to_row(self, now: str) -> GrantRow:
        return GrantRow(self.tenant, self.id, self.agency, self.event, self.status, iso_micros(self.issued_at),
                        iso_micros(self.expires_at), iso_micros(now), self.to_doc())

    def wire(self, now: str, principal: Principal) -> Doc:
        """The API form. The operator's typed `purpose` and revocation `revokeReason` (they may name a person or a
        phone) are masked (`freetext.mask_free_text`, as an event's free text) unless the principal has
        `personal:read` (operators); an agency sees them masked (FIX-I)."""
        text = (lambda t: t) if principal.can(Permission.PERSONAL_READ) else mask_free_text
        reason = self.revoke_reason
        return {"id": self.id, "agency": self.agency, "event": self.event, "cameras": self.cameras,
                "purpose": text(self.purpose), "status": self.state(now), "issuedAt": self.issued_at,
                "expiresAt": self.expires_at, "issuedBy": self.issued_by, "renewals": self.renewals,
                "agencyRenewals": self.agency_renewals,
                "linkage": self.linkage, "revokedAt": self.revoked_at, "revokedBy": self.revoked_by,
                "revokeReason": text(reason) if isinstance(reason, str) else reason, "droppedCameras": dict(self.dropped or {})}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """HMAC-SHA256 over the version and the payload; the key never leaves this object."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def _mac(self, signed: str) -> bytes:
        if self._key is None:
            raise Unavailable("ops.grant_secret 미설정: 영상 공유 불가 / ops.grant_secret is not configured: "
                              "footage cannot be shared")
        return hmac.new(self._key, signed.encode(), hashlib.sha256).digest()

    def sign(self, payload: dict[str, Any]) -> str:
        signed = f"{TOKEN_VERSION}.{_b64(orjson.dumps(payload))}"
        return f"{signed}.{_b64(self._mac(signed))}"

    def verify(self, token: str) -> dict[str, Any]:
        """The payload of a genuine token; AccessDenied otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            raise AccessDenied("malformed", "잘못된 공유 토큰", "the grant token is malformed")
        try:
            mac, payload = _unb64(parts[2]), orjson.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            raise AccessDenied("malformed", "잘못된 공유 토큰", "the grant token is malformed") from None
        if not hmac.compare_digest(mac, self._mac(f"{parts[0]}.{parts[1]}")) or not isinstance(payload, dict):
            raise AccessDenied("bad-signature", "서명이 맞지 않음", "the grant token's signature is not valid")
        return payload


@dataclass(frozen=True, slots=True)
class Issued:
    grant: Grant
    token: str


@dataclass(slots=True)
class AccessResult:
    grant: Grant
    camera: str
    tenant: str
    url: str | None = None  # the footage URL, when `access` was given a way to find it


# (tenant, camera entity id, "stream" | "still") -> the camera's URL of that kind, or None (it has none)
UrlOf = Callable[[str, str, str], Awaitable[str | None]]


class NoFootage(NotFound):
    """A footage link that resolves to a camera without a URL of its kind: 404, audited with outcome `failed` (not
    an allowed access: nobody saw footage; QA15 F5)."""

    def __init__(self, camera: str, kind: str) -> None:
        super().__init__(f"{camera}: {'영상' if kind == 'stream' else '정지영상'} 주소 없음 / the camera has no {kind} URL")
        self.reason = f"no-{kind}-url"


# (action, outcome) of an audit line -> the statistic it counts in
_STAT_OF: dict[tuple[str, str], str] = {
    ("requested", "approved"): "requested", ("requested", "held"): "requested",
    ("approved", "ok"): "approved", ("rejected", "ok"): "rejected", ("delivered", "ok"): "delivered",
    ("failed", "failed"): "failed", ("issued", "ok"): "grantsIssued", ("renewed", "ok"): "renewed",
    ("revoked", "ok"): "revoked", ("narrowed", "ok"): "narrowed",
    ("access", "ok"): "accessAllowed", ("access", "denied"): "accessDenied",
}
STATS = ("requested", "held", "approved", "rejected", "delivered", "failed", "grantsIssued", "renewed", "revoked",
         "narrowed", "accessAllowed", "accessDenied")


# The notice of a grant's change for its agency (center.py), made before the grant's save: its outbox entry is
# written in that commit and it is queued once the commit is made (`Prepared.send`). Given the changed grant and
# its footage token (a renewal's new one; revocations: "").
Notice = Callable[[Grant, str], "Prepared"]
# The notice of a camera dropped from a grant (`drop_camera`), made the same way: given the changed grant, the camera,
# the cause (`cameras.CAUSES`) and whether the grant was revoked (its last camera) rather than narrowed.
DropNotice = Callable[[Grant, str, str, bool], "Prepared"]


class GrantService:
    def __init__(self, store: Store, clock: Clock, settings: OpsSettings, audit: AuditLog, signer: TokenSigner) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.audit = audit
        self.signer = signer
        # Renew and revoke read a grant, change it and write it back: one at a time per grant, or a revocation
        # racing a renewal (or a second revocation) is lost, or announced twice. The lock orders this process's
        # changes; the conditional write (`_save`) orders those of several processes on one database.
        self._locks = KeyedLocks()
        # Why the agency may not use footage now ("agency-disabled", "agency-unknown"), or None (center.py wires
        # it to the agency registry): a disabled agency's links are refused even before its grants are revoked.
        self.agency_refusal: Callable[[str, str], str | None] = lambda tenant, agency_id: None
        # The agency's notice of a camera dropped from its grant (`drop_camera`; linkage.follow_cameras wires it).
        self.camera_notice: DropNotice | None = None

    def now(self) -> str:
        return to_iso(self.clock.now())

    def _lifetime(self, minutes: float | None) -> timedelta:
        value = minutes or self.settings.grant_minutes
        if not 0 < value <= self.settings.grant_max_minutes:
            raise BadRequest(f"minutes는 0 초과 {self.settings.grant_max_minutes} 이하 / minutes must be in "
                             f"(0, {self.settings.grant_max_minutes}]")
        return timedelta(minutes=value)

    def token(self, grant: Grant) -> str:
        expires = int(parse_iso(grant.expires_at).timestamp())
        return self.signer.sign({"g": grant.id, "t": grant.tenant, "a": grant.agency, "e": grant.event,
                                 "c": grant.cameras, "x": expires, "n": grant.renewals})

    # -- issue, renew, revoke --------------------------------------------------------------------------
    async def issue(self, tenant: str, agency: str, event: str, cameras: list[str], purpose: str, actor: str,
                    minutes: float | None = None, linkage: str | None = None) -> Issued:
        if not cameras:
            raise BadRequest("카메라가 없습니다 / a grant needs at least one camera")
        now = self.clock.now()
        grant = Grant(uuid.uuid4().hex, tenant, agency, event, [local_id(camera_entity_id(c)) for c in cameras],
                      purpose, ACTIVE, to_iso(now), to_iso(now + self._lifetime(minutes)), actor, linkage=linkage)
        grant.marks = await self._marks(tenant, grant.cameras)
        token = self.token(grant)  # fails before anything is written when no secret is configured
        row = self._row(grant, "issued", actor, cameras=grant.cameras, start=grant.issued_at, end=grant.expires_at,
                        **typed_length("purpose", purpose))
        await self.store.save_grant(grant.to_row(self.now()), [row])
        return Issued(grant, token)

    async def _marks(self, tenant: str, cameras: list[str]) -> dict[str, str]:
        """The identity of each granted camera now (`cameras.identity`); a camera that does not exist has none, and
        no camera registered later passes for it."""
        marks = {}
        for camera in cameras:
            doc = await self.store.get_entity(tenant, camera_entity_id(camera))
            if doc is not None:
                marks[camera] = identity(doc)
        return marks

    async def renew(self, tenant: str, grant_id: str, principal: Principal, minutes: float | None = None,
                    notice: Notice | None = None) -> Issued:
        if not (principal.can(Permission.GRANTS_ISSUE) or principal.can(Permission.GRANTS_RENEW_OWN)):
            raise Forbidden("갱신 권한 없음 / the principal may not renew grants")
        async with self._locks.hold((tenant, grant_id)):
            while True:  # until written, or refused: a write refused as stale re-reads and re-decides
                issued = await self._renew(tenant, grant_id, principal, minutes, notice)
                if issued is not None:
                    return issued

    async def _save(self, grant: Grant, now: str, audit: list[AuditRow], notice: Notice | None, token: str = "") -> bool:
        """Write a changed grant if nobody changed it since it was read (another API process), with the outbox entry
        of its agency's notice in the same commit, then queue the notice: False if refused (nothing written, nothing
        sent)."""
        read = grant.version
        grant.version = read + 1
        made = notice(grant, token) if notice is not None else None
        if not await self.store.save_grant(grant.to_row(now), audit, expected_version=read,
                                           docs=made.entries if made is not None else ()):
            return False
        if made is not None:
            made.send()
        return True

    async def _renew(self, tenant: str, grant_id: str, principal: Principal, minutes: float | None,
                     notice: Notice | None) -> Issued | None:
        grant = await self.visible(tenant, grant_id, principal)
        now = self.now()
        if grant.state(now) != ACTIVE:
            # Audited as the limit refusals are (`renewed`, outcome `denied`; QA15 F9i): who tried, and why not.
            state = grant.state(now)
            ko, en = _ENDED[state]
            await self.audit.append(self._row(grant, "renewed", principal.actor, "denied", reason=f"grant-{state}"))
            raise InvalidGrantTransition(f"{ko} 공유는 갱신할 수 없습니다 / {en} grant cannot be renewed: request a new one")
        previous = grant.expires_at
        end = self.clock.now() + self._lifetime(minutes)
        own = not principal.can(Permission.GRANTS_ISSUE)
        if own:
            end = await self._bounded(grant, end, principal)
            grant.agency_renewals += 1
        grant.expires_at = to_iso(end)
        grant.renewals += 1
        token = self.token(grant)
        detail: dict[str, Any] = {"previous": previous, "end": grant.expires_at}
        if own:
            detail["agencyRenewals"] = grant.agency_renewals
        row = self._row(grant, "renewed", principal.actor, **detail)
        if not await self._save(grant, now, [row], notice, token):
            return None
        return Issued(grant, token)

    async def _bounded(self, grant: Grant, end: datetime, principal: Principal) -> datetime:
        """The end an agency's own renewal may give the grant (PLAT-R5: footage for as long as the need, which an
        operator judges): at most `ops.grant_max_renewals` of them, none past `ops.grant_max_total_minutes` after
        the issue (shortened to that end). A renewal beyond (the budget spent, or the grant running to that limit
        already) is refused with 409 and audited."""
        limit = parse_iso(grant.issued_at) + timedelta(minutes=self.settings.grant_max_total_minutes)
        refusal = None
        if grant.agency_renewals >= self.settings.grant_max_renewals:
            refusal = RenewalRefused(
                "renewal-limit", f"기관의 갱신 한도({self.settings.grant_max_renewals}회) 초과: 운영자에게 요청하십시오",
                f"the agency's renewal limit ({self.settings.grant_max_renewals}) is reached: ask an operator")
        elif parse_iso(grant.expires_at) >= limit:
            refusal = RenewalRefused(
                "lifetime-limit", f"공유 최대 기간({self.settings.grant_max_total_minutes:g}분)에 도달: 운영자에게 "
                "요청하십시오", f"the grant has reached its longest lifetime ({self.settings.grant_max_total_minutes:g} "
                "min after issue): ask an operator")
        if refusal is not None:
            await self.audit.append(self._row(grant, "renewed", principal.actor, "denied", reason=refusal.reason,
                                              agencyRenewals=grant.agency_renewals))
            raise refusal
        return min(end, limit)

    async def revoke(self, tenant: str, grant_id: str, actor: str, reason: str = "",
                     notice: Notice | None = None, typed: bool = False) -> Grant:
        """Revoke a grant (409 if it is revoked already: whoever comes second of two revocations learns it); its
        agency's `notice` is stored in the revocation's commit. A `typed` reason (an operator's, free text) is
        audited by its length only (`reasonChars`/`reasonMasked`, `typed_length`); other reasons are codes
        (`event closed`, `agency disabled` ...) and audited as they are."""
        async with self._locks.hold((tenant, grant_id)):
            while True:  # until written, or refused: a write refused as stale re-reads and re-decides
                grant = await self._revoke(tenant, grant_id, actor, reason, notice, typed)
                if grant is not None:
                    return grant

    async def _revoke(self, tenant: str, grant_id: str, actor: str, reason: str, notice: Notice | None,
                      typed: bool = False) -> Grant | None:
        grant = await self.load(tenant, grant_id)
        if grant.status == REVOKED:
            raise InvalidGrantTransition("이미 회수된 공유 / the grant is already revoked")
        now = self.now()
        grant.status, grant.revoked_at, grant.revoked_by, grant.revoke_reason = REVOKED, now, actor, reason or None
        detail = typed_length("reason", reason) if typed else {"reason": reason}
        if not await self._save(grant, now, [self._row(grant, "revoked", actor, **detail)], notice):
            return None
        return grant

    async def revoke_for_event(self, tenant: str, event: str, actor: str, reason: str,
                               notice: Notice | None = None) -> list[Grant]:
        """Revoke the event's live grants, each with its agency's `notice`; the ones revoked here."""
        return await self.revoke_live(tenant, GrantQuery(event_ids=(event,)), actor, reason, notice)

    async def revoke_for_agency(self, tenant: str, agency_id: str, actor: str, reason: str,
                                notice: Notice | None = None) -> list[Grant]:
        """Revoke the agency's live grants in a tenant (it was disabled or deleted)."""
        return await self.revoke_live(tenant, GrantQuery(agency_ids=(agency_id,)), actor, reason, notice)

    async def revoke_live(self, tenant: str, query: GrantQuery, actor: str, reason: str,
                          notice: Notice | None = None) -> list[Grant]:
        """Revoke the live grants `query` selects; the ones revoked here.

        A grant revoked by hand meanwhile is skipped, not an error (one 409 must not leave the others live), and
        so is one the store fails to revoke, after logging it: the others still end, footage links check the
        grant's agency themselves, and the next start revokes what is left (OperationsCenter.sweep)."""
        query.valid_at, query.limit = to_micros(self.clock.now()), 10_000
        grants, _ = await self.query(tenant, query)
        revoked = []
        for grant in grants:
            try:
                revoked.append(await self.revoke(tenant, grant.id, actor, reason, notice))
            except InvalidGrantTransition:
                continue
            except Exception:
                log.exception("grant %s of tenant %s not revoked (%s)", grant.id, tenant, reason)
        return revoked

    # -- cameras that changed -------------------------------------------------------------------------------
    async def drop_camera(self, tenant: str, camera: str, cause: str, actor: str, notice: DropNotice | None = None,
                          grant_ids: frozenset[str] | None = None) -> list[Grant]:
        """A camera deleted, moved or registered again, or its footage URL re-pointed (`cause`, cameras.py): every
        live grant naming it loses it (`narrowed`, audited `grant` / `narrowed` with the camera, the cause and the
        cameras left), or is revoked when it was the grant's last camera (`revoked`, reason the cause in English as
        the other revocation reasons, `cause`), each with its agency's `notice` in the same commit. The grants that
        changed. A grant the store fails to change is logged and left: its link for the camera is refused anyway
        (`_check_camera`: `camera-removed` / `camera-changed`), except after a URL change. `notice` defaults to
        `camera_notice`; `grant_ids` keeps to those grants (`sweep_cameras`)."""
        camera = local_id(camera_entity_id(camera))
        notice = notice or self.camera_notice
        live, _ = await self.query(tenant, GrantQuery(valid_at=to_micros(self.clock.now()), limit=10_000))
        changed = []
        for grant in live:
            if camera not in grant.cameras or (grant_ids is not None and grant.id not in grant_ids):
                continue
            try:
                async with self._locks.hold((tenant, grant.id)):
                    while True:  # until written or found with nothing to do (a write refused as stale re-reads)
                        done = await self._drop(tenant, grant.id, camera, cause, actor, notice)
                        if done is not False:
                            break
            except Exception:
                log.exception("camera %s not dropped from grant %s of tenant %s (%s)", camera, grant.id, tenant, cause)
                continue
            if isinstance(done, Grant):
                changed.append(done)
        return changed

    async def sweep_cameras(self) -> int:
        """At start: a camera deleted, moved or registered again while no process followed its commit (a crash
        between the camera's write and its grants' narrowing) is dropped from the live grants it is no longer the
        granted camera of (each judged against its own record, `_check_camera`), by `system`, audited and announced
        as usual. How many grants changed. (A URL re-pointed just before a crash is not seen: grants keep no URL.)"""
        now = to_micros(self.clock.now())
        changed = 0
        for tenant in await self.store.live_grant_tenants(now):
            grants, _ = await self.query(tenant, GrantQuery(valid_at=now, limit=10_000))
            stale: dict[tuple[str, str], set[str]] = {}  # (camera, cause) -> grants
            for grant in grants:
                for camera in grant.cameras:
                    try:
                        await self._check_camera(grant, camera)
                    except AccessDenied as refusal:
                        stale.setdefault((camera, refusal.reason), set()).add(grant.id)
            for (camera, cause), ids in sorted(stale.items()):
                done = await self.drop_camera(tenant, camera, cause, "system", grant_ids=frozenset(ids))
                changed += len(done)
                if done:
                    log.warning("start: camera %s (%s) dropped from %d grants of tenant %s", camera, cause, len(done),
                                tenant)
        return changed

    async def _drop(self, tenant: str, grant_id: str, camera: str, cause: str, actor: str,
                    notice: DropNotice | None) -> Grant | bool | None:
        """One grant loses one camera: the grant written, None (nothing to do: ended, or the camera gone from it
        meanwhile), or False (refused as stale: read again)."""
        grant = await self.load(tenant, grant_id)
        now = self.now()
        if grant.state(now) != ACTIVE or camera not in grant.cameras:
            return None
        # Judged against the grant's own record (one issued since the move keeps the camera); a grant older than those
        # records (`marks` None) cannot tell a move: it loses the camera as told.
        if cause in (REMOVED, MOVED) and grant.marks is not None:
            try:
                await self._check_camera(grant, camera)
                return None
            except AccessDenied as refusal:
                cause = refusal.reason
        grant.dropped = {**(grant.dropped or {}), camera: cause}
        left = [c for c in grant.cameras if c != camera]
        reason = CAUSES[cause][1]
        if left:
            grant.cameras = left
            row = self._row(grant, "narrowed", actor, camera=camera, cause=cause, cameras=left)
        else:
            grant.status, grant.revoked_at, grant.revoked_by, grant.revoke_reason = REVOKED, now, actor, reason
            row = self._row(grant, "revoked", actor, camera=camera, cause=cause, reason=reason)
        made = (lambda g, _token: notice(g, camera, cause, not left)) if notice is not None else None
        if not await self._save(grant, now, [row], made):
            return False
        return grant

    def _row(self, grant: Grant, action: str, actor: str, outcome: str = "ok", **detail: Any) -> AuditRow:
        """A grant's audit line. What an operator typed (the purpose, a revocation's reason) is not in it, only its
        length (`typed_length`, as linkage lines): the audit log cannot be rewritten, so a data subject's redaction
        could not reach the text (FIX-I). A `reason` here is a code (`grant-expired`, `event closed` ...), masked
        anyway in case (QA10 F3)."""
        if isinstance(detail.get("reason"), str):
            detail["reason"] = mask_free_text(detail["reason"])
        return self.audit.row(grant.tenant, "grant", action, actor, agency=grant.agency, event=grant.event,
                              grant=grant.id, outcome=outcome, **detail)

    # -- read ------------------------------------------------------------------------------------------
    async def load(self, tenant: str, grant_id: str) -> Grant:
        doc = await self.store.get_grant(tenant, grant_id)
        if doc is None:
            raise NotFound(f"영상 공유 {grant_id} 없음 / grant {grant_id} does not exist")
        return Grant.from_doc(doc)

    async def visible(self, tenant: str, grant_id: str, principal: Principal) -> Grant:
        grant = await self.load(tenant, grant_id)
        if not principal.can(Permission.GRANTS_READ_ALL) and grant.agency != principal.agency:
            raise NotFound(f"영상 공유 {grant_id} 없음 / grant {grant_id} does not exist")
        return grant

    async def query(self, tenant: str, query: GrantQuery) -> tuple[list[Grant], int | None]:
        docs, total = await self.store.query_grants(tenant, query)
        return [Grant.from_doc(d) for d in docs], total

    # -- access ----------------------------------------------------------------------------------------
    async def access(self, token: str, camera: str, kind: str, principal: Principal | None,
                     default_tenant: str, url_of: UrlOf | None = None) -> AccessResult:
        """Check a footage link (see the module docstring); every attempt is audited, then denied or allowed,
        an empty or absent token included (`missing-grant`, 400). Nothing of a token is audited but what its
        verified payload names, and never the token itself: it is the credential. With `url_of`, the camera's URL
        of that kind is found before the access is audited: none is a 404 (`NoFootage`) audited `failed`, not an
        allowed access."""
        camera_id = local_id(camera_entity_id(camera))
        payload: dict[str, Any] = {}
        try:
            if not token:
                raise MissingGrant()
            try:
                payload = self.signer.verify(token)
            except Unavailable:
                # No ops.grant_secret: no link can be checked (503), but the attempt is still one (PLAT-R5).
                await self._audit_access(default_tenant, payload, camera_id, kind, principal, "failed",
                                         "grant-secret-not-configured")
                raise
            if principal is None:
                raise AccessUnauthenticated()
            grant = await self._grant_of(payload)
            self._check(grant, payload, camera_id, principal, await self._dropped(grant, camera_id))
            await self._check_event(grant)
            await self._check_camera(grant, camera_id)
        except AccessDenied as denied:
            await self._audit_access(str(payload.get("t") or default_tenant), payload, camera_id, kind, principal,
                                     "denied", denied.reason)
            raise
        url = None
        if url_of is not None:
            url = await url_of(grant.tenant, camera_entity_id(camera_id), kind)
            if url is None:
                missing = NoFootage(camera_id, kind)
                await self._audit_access(grant.tenant, payload, camera_id, kind, principal, "failed", missing.reason)
                raise missing
        await self._audit_access(grant.tenant, payload, camera_id, kind, principal, "ok", "")
        return AccessResult(grant, camera_id, grant.tenant, url)

    async def _grant_of(self, payload: dict[str, Any]) -> Grant:
        doc = await self.store.get_grant(str(payload.get("t")), str(payload.get("g")))
        if doc is None:
            raise AccessDenied("unknown-grant", "없는 공유", "the grant does not exist")
        return Grant.from_doc(doc)

    async def _dropped(self, grant: Grant, camera_id: str) -> AccessDenied | None:
        """The refusal of a camera dropped from the grant (`drop_camera`; a grant revoked for its last camera too):
        what the camera is now if it was deleted or is another (`camera-removed` / `camera-changed`), else the cause
        it was dropped for (`camera-feed-changed`). None for a camera not dropped."""
        cause = (grant.dropped or {}).get(camera_id)
        if cause is None:
            return None
        try:
            await self._check_camera(grant, camera_id)
        except AccessDenied as refusal:
            return refusal
        return _camera_refusal(cause)

    def _check(self, grant: Grant, payload: dict[str, Any], camera_id: str, principal: Principal,
               dropped: AccessDenied | None = None) -> None:
        now = self.clock.now()
        refusal = self.agency_refusal(grant.tenant, grant.agency)
        if refusal is not None:  # its grants are being (or were) revoked; its terminals' links end at once
            raise AccessDenied(refusal, "사용 중지되었거나 없는 기관의 공유",
                               "the grant's agency is disabled or does not exist")
        if dropped is not None:  # the camera left the grant (or ended it): why, rather than "revoked"
            raise dropped
        if grant.status == REVOKED:
            raise AccessDenied("revoked", "회수된 공유", "the grant was revoked")
        if now.timestamp() >= float(payload.get("x", 0)) or to_iso(now) >= grant.expires_at:
            raise AccessDenied("expired", "만료된 공유", "the grant (or this link) has expired")
        if camera_id not in grant.cameras or camera_id not in payload.get("c", ()):
            raise AccessDenied("camera-not-granted", "공유되지 않은 카메라", "this camera is not in the grant")
        if not principal.can(Permission.FOOTAGE_VIEW) or principal.agency != grant.agency or \
                principal.tenant not in (None, grant.tenant):
            raise AccessDenied("other-agency", "다른 기관의 공유", "the grant belongs to another agency")

    async def _check_event(self, grant: Grant) -> None:
        """A live grant of a closed or cancelled event is one whose revocation has not happened yet (a crash between
        the close and the revocation, repaired at the next start): its links are refused meanwhile."""
        doc = await self.store.get_ops_event(grant.tenant, grant.event)
        if doc is not None and doc.get("status") in FINAL:
            raise AccessDenied("event-closed", "종결·취소된 사건의 공유", "the grant's event is closed or cancelled")

    async def _check_camera(self, grant: Grant, camera_id: str) -> None:
        """The camera is still the one granted (QA15 F1: a camera deleted and registered again under its id, maybe
        elsewhere with another feed, or moved, is not): its identity (`cameras.identity`) as recorded at the issue.
        A grant issued before identities were recorded accepts a camera registered before its issue (so an id
        re-used since is refused; a move is not seen)."""
        doc = await self.store.get_entity(grant.tenant, camera_entity_id(camera_id))
        if doc is None:
            raise _camera_refusal(REMOVED)
        if grant.marks is None:
            same = str(doc.get("createdAt", "")) <= grant.issued_at
        else:
            same = grant.marks.get(camera_id) == identity(doc)
        if not same:
            raise _camera_refusal(MOVED)

    async def _audit_access(self, tenant: str, payload: dict[str, Any], camera: str, kind: str,
                            principal: Principal | None, outcome: str, reason: str) -> None:
        actor = principal.actor if principal else "anonymous"
        agency = principal.agency if principal else None
        row = self.audit.row(tenant, "grant", "access", actor, agency=agency, event=payload.get("e"),
                             grant=payload.get("g"), camera=camera, outcome=outcome, footage=kind,
                             grantAgency=payload.get("a"), reason=reason or None)
        await self.audit.append(row)

    # -- statistics --------------------------------------------------------------------------------------
    async def stats(self, tenant: str, at_from: int | None, at_to: int | None) -> dict[str, dict[str, int]]:
        """Per agency: video requests and their outcomes, grants and accesses (from the audit log)."""
        rows = await self.audit.counts(tenant, AuditQuery(kinds=("grant", "linkage"), at_from=at_from, at_to=at_to))
        out: dict[str, dict[str, int]] = {}
        for agency, action, outcome, count in rows:
            if not agency:
                continue
            stats = out.setdefault(agency, dict.fromkeys(STATS, 0))
            name = _STAT_OF.get((action, outcome))
            if name is not None:
                stats[name] += count
            if (action, outcome) == ("requested", "held"):
                stats["held"] += count
        return out


_CAMERA_REFUSALS = {
    REMOVED: ("공유 이후 카메라가 삭제됨", "the camera was deleted since the grant"),
    MOVED: ("공유 이후 카메라가 다시 등록되었거나 옮겨짐: 새 공유가 필요합니다",
            "the camera was registered again or moved since the grant: a new grant is needed"),
}


def _camera_refusal(cause: str) -> AccessDenied:
    """The refusal of a link of a camera that is not the one granted any more (its reason: the cause)."""
    ko, en = _CAMERA_REFUSALS.get(cause) or (
        f"공유 이후 {CAUSES[cause][0]}: 새 공유가 필요합니다", f"{CAUSES[cause][1]} since the grant: a new grant is needed")
    return AccessDenied(cause, ko, en)


def links(base_url: str, token: str, cameras: list[str]) -> list[dict[str, str]]:
    """The footage links of a grant's cameras."""
    base = base_url.rstrip("/")
    return [{"camera": c, "stream": f"{base}/api/v1/cameras/{c}/stream?grant={token}",
             "still": f"{base}/api/v1/cameras/{c}/still?grant={token}"} for c in cameras]
