"""The operations centre as one platform component: it wires events, cameras, the camera index, agencies,
linkage, grants, the audit log and authentication, and runs the flows that span them.

Flows:

* an event is created (operator, agency or an alarm at `warning`+, PLAT-R9) -> agencies whose
  `autoServices` include its service get a linkage, and an agency that reports an event for a service it
  receives gets one for itself (the 112 room's report asks for the nearest CCTV at once, Daejeon [V]);
* a linkage passes the gate (PLAT-R4) or is held -> on approval: the nearest cameras (PLAT-R3), a grant
  for them (PLAT-R5), the package (PLAT-R6/R7) queued to the agency's webhook, the event `sharing`;
* an event is reported with a `sourceRef` that made an event already (a 112 terminal's retry) -> that event,
  nothing new (`report_event`);
* an operator shares cameras directly (`issue_grant`) -> a grant and a `direct` linkage whose package goes to the
  agency as a linkage's does, so the agency sees the event;
* the alarm that made an event is closed -> the event is closed (or cancelled, for a false alarm) by `system`,
  unless an operator or agency took it up (`_alarm_closed`);
* an event is closed or cancelled -> its held linkages are rejected in the same write, then its grants are
  revoked (each agency is told, `grant-revoked`, as for a revocation by hand; `linkage-rejected` for a
  held request, as for an operator's rejection); a grant being made at that moment (an approval or a
  direct share racing the close) is revoked and announced too, and that request answers 409;
* an agency is disabled or deleted -> its live grants are revoked (audited; not announced: nothing is sent to
  a disabled or deleted agency), its tokens, links and new linkages refused (a deleted agency's issued tokens
  revoked);
* start (`event_privacy`) -> `CityEvent` entities an earlier version wrote are written again in the private form
  and their history loses the pseudonym and sensitive events' places (once per tenant);
* start (`alarm_event_privacy`) -> events of alarms about a person made before stop 27: entity id masked in
  `details`, sensitive (once per tenant);
* start (`sweep`) -> live grants of closed/cancelled events or of disabled/deleted agencies that a crash
  left behind are revoked, orphaned agency tokens revoked, configured tokens of unknown agencies reported, cameras
  changed before the crash dropped from their grants (`GrantService.sweep_cameras`);
* a camera is deleted, moved or registered again, or its footage URL re-pointed -> the live grants naming it lose it
  (revoked for their last camera), each agency told (`linkage.follow_cameras`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from shapely.geometry import shape

from ucity.alarms import AlarmChanged, AlarmService
from ucity.alarms.dispatch import DEAD_LETTERS, kst
from ucity.alarms.journal import AGENCY, notification_fields
from ucity.alarms.notifiers.base import Notification
from ucity.core.clock import parse_iso, to_iso, to_micros
from ucity.core.config import OPS_SECRET_PLACEHOLDER, Settings
from ucity.core.errors import BadRequest, NotFound, Unavailable
from ucity.core.platform import Platform
from ucity.ops import linkage as lk
from ucity.ops.agencies import Agency, AgencyRegistry
from ucity.ops.alarm_event_privacy import AlarmEventPrivacyMigration
from ucity.ops.audit import AuditLog
from ucity.ops.auth import AUTO, SYSTEM, Authenticator, Forbidden, Permission, Principal, TokenRegistry
from ucity.ops.cameras import CameraRegistry, local_id
from ucity.ops.cameras import entity_id as camera_entity_id
from ucity.ops.event_privacy import EventPrivacyMigration
from ucity.ops.events import (
    ACKNOWLEDGED,
    CANCELLED,
    CLOSED,
    FINAL,
    RECEIVED,
    SHARING,
    AttachmentIn,
    Event,
    EventIn,
    EventService,
    InvalidEventTransition,
    KeyedLocks,
    Pseudonymizer,
    entity_type_of,
    is_null_island,
    mask_entity_id,
)
from ucity.ops.freetext import mask_free_text, typed_length
from ucity.ops.grants import Grant, GrantService, InvalidGrantTransition, Issued, TokenSigner, links
from ucity.ops.nearest import CameraIndex, Selection, iri, measure
from ucity.rules.events import level_rank
from ucity.store.base import AuditQuery, AuditRow, Doc, GrantQuery, Store

log = logging.getLogger(__name__)
ALARM_SOURCE = "ucity-alarms"
# Claims of reports' (source system, source reference) in the store (report_event, _claim_source): a report that
# loses the claim waits this long (real seconds) for the winner's event, polling; a claim whose event was never
# stored is taken over once this old on the platform clock (its process stopped between claim and create).
SOURCE_CLAIMS = "ops-source-claim"
SOURCE_CLAIM_WAIT_S = 10.0
SOURCE_CLAIM_POLL_S = 0.02
SOURCE_CLAIM_STALE_S = 120.0
# AgencyRegistry.refusal -> the reason its grants are revoked with
_AGENCY_REASONS = {"agency-disabled": "agency disabled", "agency-unknown": "agency deleted"}
_TRIGGERS = frozenset({"raised", "escalated", "reactivated"})
# Closing outcomes of an alarm (ucity/alarms/model.py OUTCOMES) that mean there was nothing to handle: its event
# is cancelled rather than closed (_alarm_closed).
_NOT_REAL = frozenset({"false-user", "false-device", "test", "duplicate"})
# Audit lines (kind, action) of an event's trail that show somebody handling it (_taken_up).
_HANDLING = frozenset({("event", "status"), ("event", "attachment-added"), ("linkage", "requested"),
                       ("linkage", "approved"), ("linkage", "rejected"), ("linkage", "queued"), ("linkage", "ready"),
                       ("linkage", "resent"), ("event", "agency-report"),  # an agency reported back (QA15 F6)
                       ("grant", "issued"), ("grant", "renewed"), ("grant", "revoked")})


class _TakenUp(Exception):
    """An event moved while its alarm's close was being followed (_alarm_closed): left to whoever moved it."""


class AgencyDisabled(BadRequest):
    """A linkage or a grant for a disabled agency: refused as such (400, `reason` agency-disabled), not as a service
    the agency does not receive; `request_linkage` and `decide` audit it as a denied request or approval,
    `issue_grant` as a denied issue (`grant` / `issued`, outcome `denied`)."""

    def __init__(self, agency_id: str) -> None:
        super().__init__(f"기관 {agency_id} 사용 중지됨 / agency {agency_id} is disabled",
                         reason="agency-disabled")


def _secret(settings: Settings, name: str) -> bytes | None:
    """A signing key from settings; in development an unset one is the placeholder (outside, none)."""
    value = getattr(settings.ops, name)
    if value is not None:
        return str(value.get_secret_value()).encode()
    if settings.environment == "development":
        log.warning("ops.%s is not set: development placeholder in use", name)
        return OPS_SECRET_PLACEHOLDER.encode()
    return None


class OperationsCenter:
    def __init__(self, platform: Platform, store: Store, alarms: AlarmService) -> None:
        settings = platform.settings
        self.platform = platform
        self.settings = settings.ops
        self.store = store
        self.clock = platform.clock
        self.default_tenant = settings.ngsild.default_tenant
        self.base_url = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
        self.audit = AuditLog(store, self.clock)
        self.tokens = TokenRegistry(store, self.settings, self.clock)
        # Agencies and camera URLs are re-read from the store as often as the issued tokens (other API processes).
        self.agencies = AgencyRegistry(store, self.settings.agencies, self.clock, self.settings.token_refresh_s)
        # An agency token, and a footage link, work only while the agency exists and is enabled.
        self.auth = Authenticator([self.tokens], self.agencies.refusal)
        self.events = EventService(store, self.clock, self.settings, self.audit,
                                   Pseudonymizer(_secret(settings, "pseudonym_secret")))
        self.privacy = EventPrivacyMigration(self.events, self.audit)
        self.alarm_privacy = AlarmEventPrivacyMigration(self.events, self.audit, platform.privacy)
        self.cameras = CameraRegistry(store, self.clock, self.audit, self.settings.token_refresh_s)
        self.index = CameraIndex(store, platform.bus, self.settings.nearest)
        self.grants = GrantService(store, self.clock, self.settings, self.audit,
                                   TokenSigner(_secret(settings, "grant_secret")))
        self.grants.agency_refusal = self.agencies.refusal
        self.config_warnings: list[str] = []
        self.links = lk.AgencyLinks(alarms.dispatcher, self.agencies.get, self.settings.retry,
                                    settings.alarms.queue_size, self._delivered)
        self.links.token_of = self._grant_token
        self.agencies.on_change = self.links.forget
        lk.follow_cameras(self.cameras, self.grants, self.links)  # a changed camera leaves its grants (FIX-B)
        self.agencies.on_refused = self._agency_refused
        # `dispatched` is told to the agencies the event is shared with by the event service, whatever path moves it
        self.events.announce = lambda event: lk.status_notices(
            self.links, event, lambda: f"urn:ucity:notification:{uuid.uuid4().hex}", event.updated_at)
        self._alarm_locks = KeyedLocks()
        self._source_locks = KeyedLocks()  # reports of one (tenant, source system, source reference): report_event
        self._alarm_tasks: set[asyncio.Task[None]] = set()
        alarms.add_drainer(self._alarm_events_made)  # the alarms' drain covers the events they make here
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.tokens.start()  # loads the issued tokens, then re-reads them every ops.token_refresh_s
        await self.agencies.start()  # loads the agencies, then re-reads them every ops.token_refresh_s
        self.config_warnings = self._check_configured_tokens()
        self.cameras.follow()  # deleted cameras lose their URLs; URLs written through NGSI-LD are deleted
        await self.cameras.load(self.default_tenant)  # camera URLs; moves old ones out of NGSI-LD
        self.cameras.start_refresh()  # re-reads the camera URLs every ops.token_refresh_s
        await self.index.start(preload=(self.default_tenant,))
        await self.sweep()
        # CityEvent entities and history an earlier version wrote (pseudonym, exact places): once per tenant
        await self.privacy.run()
        await self.alarm_privacy.run()  # events of alarms about a person made before FIX-H: id masked, sensitive
        self._unsubscribe = self.platform.bus.subscribe(AlarmChanged, self._on_alarm)
        # Packages a stop or crash left queued (ucity/alarms/journal.py), now that the agencies are loaded.
        await self.links.dispatcher.resume(self.links.owns, {AGENCY})

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.agencies.stop()
        await self._alarm_events_made()
        await self.cameras.stop()
        await self.links.stop()
        await self.index.stop()
        await self.tokens.stop()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self._unsubscribe is not None, "cameraIndex": self.index.health(),
                               "tokens": self.tokens.health(), "agencies": self.agencies.health(),
                               "cameraUrls": self.cameras.health()}
        if self.config_warnings:
            out["configWarnings"] = self.config_warnings
        return out

    def _check_configured_tokens(self) -> list[str]:
        """A configured agency token whose agency is neither configured nor registered (in the token's tenant, or
        in any tenant for a token without one): a warning, logged at start and shown in /health, not a refusal to
        start. Such a token is refused at every use (403 agency-unknown, audited) until the agency exists, so it
        opens nothing; and the agency may be one an admin registers through the API after the start, which a
        configuration error would make impossible (and would stop the city's monitoring for one terminal's line)."""
        warnings = []
        for spec in self.tokens.configured_agency_tokens():
            assert spec.agency is not None
            known = self.agencies.get(spec.tenant, spec.agency) is not None if spec.tenant else \
                self.agencies.known_anywhere(spec.agency)
            if not known:
                warnings.append(f"ops.tokens: token {spec.id} names agency {spec.agency}, which does not exist"
                                + (f" in tenant {spec.tenant}" if spec.tenant else "")
                                + ": it is refused (403 agency-unknown) until the agency is configured or registered")
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    async def sweep(self) -> None:
        """At start: finish what a crash may have left half-done. Revoke (audited, announced) the live grants of
        closed or cancelled events (closing an event and revoking its grants are separate writes) and of agencies
        disabled or deleted (likewise), and the issued tokens of agencies that no longer exist."""
        now = to_micros(self.clock.now())
        for tenant in await self.store.live_grant_tenants(now):
            grants, _ = await self.grants.query(tenant, GrantQuery(valid_at=now, limit=10_000))
            finals: dict[str, str | None] = {}  # event id -> its final status (None: not final)
            for grant in grants:
                if grant.event not in finals:
                    doc = await self.store.get_ops_event(tenant, grant.event)
                    status = (doc or {}).get("status")
                    finals[grant.event] = status if status in FINAL else None
                refusal = self.agencies.refusal(tenant, grant.agency)
                if finals[grant.event] is not None:
                    reason = f"event {finals[grant.event]}"
                elif refusal is not None:
                    reason = _AGENCY_REASONS[refusal]
                else:
                    continue
                with contextlib.suppress(InvalidGrantTransition):
                    await self.grants.revoke(tenant, grant.id, SYSTEM.actor, reason, self._revoked_notice(reason))
                    log.warning("start: grant %s of tenant %s revoked (%s)", grant.id, tenant, reason)
        await self._revoke_orphan_tokens(SYSTEM.actor, self.default_tenant)
        await self.grants.sweep_cameras()  # cameras changed just before a crash leave their grants (FIX-B)

    # -- agencies --------------------------------------------------------------------------------------
    async def put_agency(self, tenant: str, agency: Agency, principal: Principal, create_only: bool = False) -> bool:
        """Create or replace a tenant's agency; True when created. A disabled agency shares nothing any more: its
        live grants are revoked (audited; `_prepare_notice` sends nothing to a disabled agency), and its tokens, footage
        links and linkages are refused while it stays disabled (auth.Authenticator, GrantService.access,
        `_receiving`)."""
        principal.require(Permission.AGENCIES_ADMIN)
        created = await self.agencies.put(tenant, agency, create_only)
        if not agency.enabled:
            await self._revoke_agency_grants(tenant, agency.id, principal.actor, _AGENCY_REASONS["agency-disabled"])
        return created

    async def delete_agency(self, tenant: str, agency_id: str, principal: Principal) -> None:
        """Delete a tenant's agency: its live grants are revoked as for a disabled one, and its issued tokens too
        (an agency registered again under the same id must not bring old terminals back). The agency goes first:
        from then on its tokens and links are refused, whatever a crash leaves to the next start's sweep."""
        principal.require(Permission.AGENCIES_ADMIN)
        await self.agencies.delete(tenant, agency_id)
        await self._revoke_agency_grants(tenant, agency_id, principal.actor, _AGENCY_REASONS["agency-unknown"])
        await self._revoke_orphan_tokens(principal.actor, tenant)

    async def _agency_refused(self, tenant: str, agency_id: str, refusal: str) -> None:
        """An agency found disabled or deleted by a read of the store (AgencyRegistry: changed through another API
        process): its live grants are revoked here too, by `system`. Those the other process revoked are skipped
        (GrantService.revoke_live: a grant is revoked once, audited once), so this revokes the grants this process
        issued before it learnt of the change. Its issued tokens are left to the process that deleted it, which
        revokes them in the store (the token refresh brings that here): revoking them here too would revoke the
        tokens of an agency created again under that id meanwhile."""
        await self._revoke_agency_grants(tenant, agency_id, SYSTEM.actor, _AGENCY_REASONS[refusal])

    async def _revoke_agency_grants(self, tenant: str, agency_id: str, actor: str, reason: str) -> None:
        await self.grants.revoke_for_agency(tenant, agency_id, actor, reason, self._revoked_notice(reason))

    async def _revoke_orphan_tokens(self, actor: str, tenant: str) -> None:
        """Revoke the issued tokens whose agency exists nowhere they could act (their tenant, or any tenant for a
        token without one), each audited (`auth` / `token-revoked`, reason agency deleted)."""
        for spec in self.tokens.issued_agency_tokens():
            assert spec.agency is not None
            alive = self.agencies.get(spec.tenant, spec.agency) is not None if spec.tenant else \
                self.agencies.known_anywhere(spec.agency)
            if alive:
                continue
            with contextlib.suppress(NotFound):  # revoked meanwhile by an admin
                await self.tokens.revoke(spec.id)
                await self.audit.append(self.audit.row(spec.tenant or tenant, "auth", "token-revoked", actor,
                                                       agency=spec.agency, token=spec.id, reason="agency deleted"))

    async def settle(self, timeout: float = 10.0) -> None:
        """Until every alarm turned into an event and every agency outbox is idle or waiting on the clock (tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._alarm_events_made(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.cameras.idle(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tokens.settle(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.agencies.settle(), timeout)
        while self.links.busy() and loop.time() < deadline:
            await asyncio.sleep(0.002)

    # -- events ----------------------------------------------------------------------------------------
    async def create_event(self, tenant: str, data: EventIn, principal: Principal, base_url: str | None = None,
                           alarm_id: str | None = None, rule_name: dict[str, str] | None = None,
                           about_person: bool = False) -> Event:
        event, _ = await self.report_event(tenant, data, principal, base_url, alarm_id, rule_name, about_person)
        return event

    async def report_event(self, tenant: str, data: EventIn, principal: Principal, base_url: str | None = None,
                           alarm_id: str | None = None, rule_name: dict[str, str] | None = None,
                           about_person: bool = False) -> tuple[Event, bool]:
        """Create an event, or find the one its source reference made: (event, created).

        A report with a `sourceRef` is idempotent on (tenant, source system, source reference): a 112/119 terminal
        that retries after a timeout, or reports the same case number again, gets the event the first report made
        (whatever its status since: a case number names one case), with no second event, linkage or grant; the
        repeat is audited (`event` / `created`, outcome `duplicate`). An agency's source system is always
        `agency:<id>`, so one agency's case numbers never match another's. Reports are taken one at a time per key
        in this process (a retry racing the first report waits for it and gets its event); across API processes on
        one store the key is claimed in the store before the event is made (`_claim_source`): the report that loses
        the claim gets the winner's event (200). Events of alarms are made once per alarm by `_alarm_event`."""
        principal.require(Permission.EVENTS_REPORT)
        self._may_report(tenant, data.service, principal)
        event = self.events.build(tenant, data, principal, alarm_id, rule_name, about_person)
        if alarm_id is not None or not event.source_ref:
            return await self._create(event, principal, base_url), True
        async with self._source_locks.hold((tenant, event.source_system, event.source_ref)):
            existing = await self.events.by_source(tenant, event.source_system, event.source_ref)
            claim: str | None = None
            if existing is None:
                # Across processes (or two operations centres on one store): the key is claimed in the store first.
                claim, existing = await self._claim_source(event)
            if existing is not None and existing.visible_to(principal):
                await self.audit.append(self.audit.row(
                    tenant, "event", "created", principal.actor, event=existing.id, agency=event.reporter_agency,
                    outcome="duplicate", sourceSystem=event.source_system, sourceRef=event.source_ref))
                return existing, False
            try:
                created = await self.events.create(event, principal)
            except BaseException:
                if claim is not None:  # nothing made: the next report of this key may claim it at once
                    with contextlib.suppress(Exception):
                        await self.store.delete_doc(SOURCE_CLAIMS, tenant, claim)
                raise
            if claim is not None:  # the event is stored: `events.by_source` finds it now, so the claim has done its
                await self._release_claims(tenant, claim)  # work (kept, it would be a copy retention never reaches)
            await self._auto_link(created, principal, base_url)
            return created, True

    async def _claim_source(self, event: Event) -> tuple[str | None, Event | None]:
        """Claim (tenant, source system, source reference) for `event` before it is created: (the claim's key, None)
        when this report makes the event, else (None, the event of the report that claimed it first).

        A claim is a document (`ops-source-claim`, key: a hash of system and reference, then `:<generation>`) put
        with `Store.insert_doc`, which one caller wins across processes; it is deleted once its event is stored.
        The loser reads the claim and waits (at most `SOURCE_CLAIM_WAIT_S`, real time) for the event it names to be
        stored. A claim whose event never came (its
        process stopped between claim and create, or retention purged the event) and which is older than
        `SOURCE_CLAIM_STALE_S` on the platform clock is taken over by claiming the next generation, again with
        `insert_doc`, so two takers still make one event. A loser whose winner is still making the event after the
        wait gets 503 (retry)."""
        tenant, digest = event.tenant, hashlib.sha256(f"{event.source_system}\n{event.source_ref}".encode()).hexdigest()
        generation = 0
        while True:
            key = f"{digest}:{generation}"
            # No source system or reference in it (the key is their hash): a 112 case number is personal data
            # kept only with its event, which retention reaches.
            doc = {"event": event.id, "claimedAt": to_iso(self.clock.now()), "generation": generation}
            if await self.store.insert_doc(SOURCE_CLAIMS, tenant, key, doc):
                # An event made since this report looked (its winner already released its claim, or a stale claim's
                # slow winner): that one, and this claim goes again.
                existing = await self.events.by_source(tenant, event.source_system, event.source_ref)
                if existing is not None:
                    await self._release_claims(tenant, key)
                    return None, existing
                return key, None
            stored = await self.store.get_doc(SOURCE_CLAIMS, tenant, key)
            if stored is None:
                continue  # released meanwhile (its create failed): claim it again
            winner = await self._claimed_event(tenant, stored)
            if winner is not None:
                return None, winner
            generation += 1

    async def _release_claims(self, tenant: str, key: str) -> None:
        """Delete the claim `key` and the stale generations before it, once the event exists: claims live only while
        an event is being made. A failure leaves them (taken over when stale); the event is what counts."""
        digest, _, generation = key.rpartition(":")
        with contextlib.suppress(Exception):
            await self.store.delete_docs(SOURCE_CLAIMS, [(tenant, f"{digest}:{g}") for g in range(int(generation) + 1)])

    async def _claimed_event(self, tenant: str, claim: Doc) -> Event | None:
        """The event a claim names once it is stored, or None when the claim is stale and its event was never
        stored; 503 when it is still being made after `SOURCE_CLAIM_WAIT_S`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOURCE_CLAIM_WAIT_S
        while True:
            doc = await self.store.get_ops_event(tenant, str(claim.get("event")))
            if doc is not None:
                return Event.from_doc(doc)
            age = (self.clock.now() - parse_iso(str(claim.get("claimedAt")))).total_seconds()
            if age > SOURCE_CLAIM_STALE_S:
                return None
            if loop.time() >= deadline:
                raise Unavailable("같은 사건번호의 첫 신고를 처리하는 중입니다: 잠시 후 다시 보내십시오 / the first report of "
                                  "this sourceRef is still being recorded by another process: send it again shortly")
            await asyncio.sleep(SOURCE_CLAIM_POLL_S)

    def _may_report(self, tenant: str, service: str, principal: Principal) -> None:
        """An agency reports only in a tenant where it is registered (an agency of the configuration is in every
        tenant: bind its tokens to a tenant to keep them to one), and only events of the services it receives (QA7
        F8): a police terminal's token cannot open a 119 event, whose automatic linkages would share footage with the
        fire service with no operator involved. Operators and systems report any service."""
        if principal.agency is None:
            return
        agency = self.agencies.get(tenant, principal.agency)
        if agency is None:
            raise Forbidden(f"기관 {principal.agency}은(는) 이 지자체(tenant)에 등록되어 있지 않습니다 / agency "
                            f"{principal.agency} is not registered in this tenant")
        if service not in agency.services:
            raise Forbidden(f"기관 {agency.id}은(는) {service} 서비스의 사건을 신고할 수 없습니다 / agency {agency.id} "
                            f"may report only events of its services ({', '.join(agency.services)}), not {service}")

    async def _create(self, event: Event, principal: Principal, base_url: str | None) -> Event:
        event = await self.events.create(event, principal)
        await self._auto_link(event, principal, base_url)
        return event

    async def _auto_link(self, event: Event, principal: Principal, base_url: str | None) -> None:
        """Linkages an event gets on creation (see the module docstring)."""
        wanted: list[tuple[str, Principal]] = []
        if principal.agency is not None:
            reporter = self.agencies.get(event.tenant, principal.agency)
            if reporter is not None and reporter.enabled and event.service in reporter.services:
                wanted.append((reporter.id, principal))
        for agency in self.agencies.all(event.tenant):
            if agency.enabled and event.service in agency.autoServices and agency.id != principal.agency:
                wanted.append((agency.id, AUTO))
        for agency_id, requester in wanted:
            await self.request_linkage(event.tenant, event.id, agency_id, event.service, requester, base_url,
                                       automatic=requester is AUTO)

    async def transition(self, tenant: str, event_id: str, status: str, principal: Principal, note: str = "") -> Event:
        principal.require(Permission.EVENTS_MANAGE)
        return await self._move(tenant, event_id, lambda e: self.events.transition_rows(e, status, principal.actor, note),
                                principal)

    async def _move(self, tenant: str, event_id: str, moves: Callable[[Event], list[AuditRow]],
                    principal: Principal) -> Event:
        """Apply status `moves` to the event; a move to a final status rejects its held linkages in the same write
        and then revokes its grants (`_wind_up`), each agency told."""
        rejected: list[dict[str, Any]] = []

        def move(e: Event) -> list[AuditRow]:
            rows = moves(e)
            if e.final:  # its held linkages are rejected in the same write: no crash leaves one waiting
                for link in e.linkages:
                    if link["status"] == lk.HELD:
                        self._decide(link, lk.REJECTED, principal.actor, f"event {e.status}")
                        rows.append(self._linkage_row(e, link, "rejected", principal.actor, reason=link["reason"]))
                        rejected.append(link)
            return rows

        # Each agency whose request was still held is told it was rejected (`linkage-rejected`), as by an
        # operator's rejection; the notices are stored in the commit that rejects them.
        notices: list[lk.Prepared] = []
        event = await self.events.change(tenant, event_id, move, self._rejection_notices(rejected, notices))
        for notice in notices:
            notice.send()
        if event.final:
            await self._wind_up(event, principal)
        return event

    async def _wind_up(self, event: Event, principal: Principal) -> None:
        """A closed or cancelled event shares nothing any more: its grants are revoked and each revocation is
        announced to the grant's agency (`grant-revoked`) exactly as a revocation by hand, so a 112/119 terminal
        drops the links it holds instead of believing them valid until they expire. The status change was the
        first write: grants a crash leaves live are revoked at the next start (`sweep`)."""
        reason = f"event {event.status}"
        await self.grants.revoke_for_event(event.tenant, event.id, principal.actor, reason, self._revoked_notice(reason))

    async def add_attachment(self, tenant: str, event_id: str, data: AttachmentIn, principal: Principal) -> Event:
        principal.require(Permission.EVENTS_REPORT)
        await self.events.visible(tenant, event_id, principal)
        return await self.events.change(tenant, event_id, lambda e: self.events.attachment_rows(e, data, principal))

    async def nearest(self, event: Event, count: int | None = None, radius_m: float | None = None) -> Selection:
        """The event's nearest cameras that can give footage: working and with a stream URL (QA15 F5: a camera
        without one took a slot, and its link could only answer 404), as its packages and grants take them."""
        if event.point is None:
            raise BadRequest("위치 없는 사건 / the event has no location")
        return await self.index.select(event.tenant, *event.point, count=count, radius_m=radius_m,
                                       usable=await self.cameras.streaming(event.tenant))

    # -- linkage ---------------------------------------------------------------------------------------
    async def request_linkage(self, tenant: str, event_id: str, agency_id: str, service: str | None,
                              principal: Principal, base_url: str | None = None, automatic: bool = False,
                              purpose: str = "") -> dict[str, Any]:
        """Ask for one agency to receive one event (PLAT-R4 gate); delivered at once unless held.

        While a linkage of the same agency and service is held, no second one is made: a request that would be
        held again gets the waiting linkage back (an agency that reported the event already has one, and the
        documented follow-up `POST .../linkages` must not queue the same need twice for the operators); an
        operator's request approves the waiting one."""
        principal.require(Permission.LINKAGE_REQUEST)
        if not principal.can(Permission.EVENTS_MANAGE) and principal.agency not in (None, agency_id):
            raise BadRequest("기관은 자기 기관에만 요청할 수 있습니다 / an agency asks for itself only")
        event = await self.events.visible(tenant, event_id, principal)
        try:
            agency = self._receiving(tenant, agency_id, service or event.service)
        except AgencyDisabled:
            # Audited as the other refusals of a disabled agency (its tokens, its footage links); outcome `denied`
            # is no request in the statistics.
            await self.audit.append(self.audit.row(
                tenant, "linkage", "requested", principal.actor, agency=agency_id, event=event.id, outcome="denied",
                reason="agency-disabled", service=service or event.service, automatic=automatic))
            raise
        held = lk.gate(service or event.service, event.type_code, self.settings, principal, automatic)
        link_id, now = f"lk-{uuid.uuid4().hex[:12]}", to_iso(self.clock.now())
        link: dict[str, Any] = {
            "id": link_id, "agency": agency.id, "service": service or event.service,
            "status": lk.HELD if held else lk.APPROVED, "requestedBy": principal.actor, "requestedAt": now,
            "automatic": automatic, "purpose": purpose, "reason": held, "decidedBy": None if held else principal.actor,
            "decidedAt": None if held else now, "grant": None, "cameras": [], "deliveredAt": None, "error": None}

        waiting: dict[str, Any] | None = None
        noted = False  # a repeat's new purpose kept, and its `duplicate` line written with it (QA15 F9a)

        def add(e: Event) -> list[AuditRow]:
            # Under the event's lock, so two requests at once cannot both add a linkage.
            nonlocal waiting, noted
            if e.final:
                raise InvalidEventTransition(f"종결·취소된 사건 / the event is {e.status}")
            waiting = next((x for x in e.linkages if x["status"] == lk.HELD and x["agency"] == link["agency"]
                            and x["service"] == link["service"]), None)
            if waiting is None:
                e.linkages.append(link)
                return [self._linkage_row(e, link, "requested", principal.actor, lk.HELD if held else "approved",
                                          reason=held, automatic=automatic)]
            if held:
                # The same request again: it is the one already waiting for an operator; a new purpose is kept on it
                # (QA15 F9a), in the commit of the repeat's audit line.
                noted = lk.keep_purpose(waiting, purpose, principal.actor, now)
                return [self._linkage_row(e, waiting, "requested", principal.actor, "duplicate", reason=held,
                                          automatic=automatic, **typed_length("purpose", purpose))] if noted else []
            # An operator's request is the approval the waiting one needs (PLAT-R4): approve that one rather
            # than share twice and leave it in the operators' queue.
            self._decide(waiting, lk.APPROVED, principal.actor, waiting["reason"])
            lk.keep_purpose(waiting, purpose, principal.actor, now)
            return [self._linkage_row(e, waiting, "approved", principal.actor, reason="operator request")]

        event = await self.events.change(tenant, event_id, add)
        if waiting is not None:
            if held:
                # Audited (who asked again) but not counted as a request: one need, one linkage, one statistic.
                if not noted:
                    await self.audit.append(self._linkage_row(event, waiting, "requested", principal.actor, "duplicate",
                                                              reason=held, automatic=automatic))
                return waiting
            link_id = waiting["id"]
        if not held:
            return await self._deliver(tenant, event_id, link_id, principal, base_url)
        return link

    def _receiving(self, tenant: str, agency_id: str, service: str) -> Agency:
        """The agency a linkage goes to: 404 if it does not exist, AgencyDisabled, 400 if it lacks the service."""
        agency = self.agencies.get(tenant, agency_id)
        if agency is None:
            raise NotFound(f"기관 {agency_id} 없음 / agency {agency_id} does not exist")
        if not agency.enabled:
            raise AgencyDisabled(agency_id)
        if service not in agency.services:
            raise BadRequest(f"{agency_id}은(는) {service} 서비스를 받지 않습니다 / agency {agency_id} does not "
                             f"receive {service}")
        return agency

    async def decide(self, tenant: str, event_id: str, linkage_id: str, approve: bool, principal: Principal,
                     reason: str = "", base_url: str | None = None) -> dict[str, Any]:
        """An operator approves or rejects a held linkage (PLAT-R4). An approval for an agency that cannot receive
        it (disabled meanwhile, deleted, the service removed) is refused before anything is written: the linkage
        stays held, rather than `approved` with nothing ever sent."""
        principal.require(Permission.EVENTS_MANAGE)
        refused: list[AuditRow] = []

        def apply(e: Event) -> list[AuditRow]:
            link = e.linkage(linkage_id)
            if link["status"] != lk.HELD:
                raise InvalidEventTransition(f"대기 중이 아닌 연계 / the linkage is {link['status']}, not held")
            if approve and e.final:
                raise InvalidEventTransition(f"종결·취소된 사건 / the event is {e.status}")
            if approve:
                try:
                    self._receiving(tenant, link["agency"], link["service"])
                except AgencyDisabled:
                    refused.append(self._linkage_row(e, link, "approved", principal.actor, "denied",
                                                     reason="agency-disabled"))
                    raise
            self._decide(link, lk.APPROVED if approve else lk.REJECTED, principal.actor, reason or link["reason"])
            return [self._linkage_row(e, link, "approved" if approve else "rejected", principal.actor,
                                      **typed_length("reason", reason))]

        notices: list[lk.Prepared] = []
        try:
            event = await self.events.change(
                tenant, event_id, apply,
                None if approve else lambda e: self._rejection_notices([e.linkage(linkage_id)], notices)(e))
        except AgencyDisabled:
            await self.audit.append(*refused)
            raise
        if approve:
            return await self._deliver(tenant, event_id, linkage_id, principal, base_url)
        for notice in notices:
            notice.send()
        return event.linkage(linkage_id)

    async def resend_linkage(self, tenant: str, event_id: str, linkage_id: str, principal: Principal,
                             reason: str = "") -> dict[str, Any]:
        """An operator sends a failed linkage's package again (QA7 F12): the dead letter its retries left is queued
        again, as an administrator's replay (`POST /api/v1/notifications/dead-letters/{id}/replay`) would, with the
        same delivery id; its footage token is signed again from the stored grant when it is sent (`linkage.redact`).

        The dead letter is claimed by deleting it (`Store.delete_doc` answers whether this call deleted it): one
        resend, or one resend and no replay, sends it; a second resend, or a resend after an administrator's replay,
        is refused (409, `reason` `no-dead-letter`). The linkage moves `failed` -> `queued` and its package's outbox
        entry is written in that commit, with an audit line (`linkage` / `resent`: who, when, the dead letter, its
        attempts); a failed commit puts the dead letter back. Refused (409) unless the linkage is `failed`, while
        the event is closed or cancelled, or when its grant is revoked (`grant-revoked`) or has expired
        (`grant-expired`: renew it first, `POST /api/v1/grants/{id}/renew`, or the agency would get dead links);
        400 for a disabled agency (as an approval is)."""
        principal.require(Permission.EVENTS_MANAGE)
        event = await self.events.load(tenant, event_id)
        link = event.linkage(linkage_id)
        self._resendable(event, link)
        self._receiving(tenant, link["agency"], link["service"])
        if link.get("grant"):
            grant = await self.grants.load(tenant, link["grant"])
            state = grant.state(self.grants.now())
            if state != "active":
                raise InvalidEventTransition(
                    f"연계 {linkage_id}의 영상 공유 {grant.id}가 {'회수' if state == 'revoked' else '만료'}되었습니다"
                    + ("" if state == "revoked" else f": 먼저 연장하십시오 (POST /api/v1/grants/{grant.id}/renew)")
                    + f" / the grant {grant.id} of linkage {linkage_id} is {state}"
                    + ("" if state == "revoked" else f": renew it first (POST /api/v1/grants/{grant.id}/renew)"),
                    reason=f"grant-{state}")
        letter = await self._dead_letter_of(tenant, linkage_id)
        if letter is None or not await self.store.delete_doc(DEAD_LETTERS, tenant, str(letter["id"])):
            raise InvalidEventTransition(
                f"연계 {linkage_id}의 실패 알림이 없습니다: 이미 다시 보냈거나(재전송, 관리자 재전송) 보존 기간이 지나 "
                f"지워졌습니다. 새 연계를 요청하십시오 (POST /api/v1/events/{event_id}/linkages) / linkage {linkage_id} "
                f"has no dead letter: it was sent again already (a resend, an administrator's replay) or purged; request "
                f"a new linkage (POST /api/v1/events/{event_id}/linkages)", reason="no-dead-letter")
        stored = dict(letter["notification"])
        stored["linkage"] = linkage_id
        notification = lk.PackageNotification(**notification_fields(stored))
        prepared: list[tuple[str, Notification]] = [(str(link["agency"]), notification)]
        entries = self.links.dispatcher.journal_entries(AGENCY, event_id, prepared)
        now = to_iso(self.clock.now())

        def resend(e: Event) -> list[AuditRow]:
            current = e.linkage(linkage_id)
            self._resendable(e, current)  # under the event's lock: a second resend of this process waits and sees it
            current.update(status=lk.QUEUED, error=None, resentBy=principal.actor, resentAt=now,
                           resends=int(current.get("resends") or 0) + 1)
            return [self._linkage_row(e, current, "resent", principal.actor, deadLetter=letter["id"],
                                      attempts=letter.get("attempts"), **typed_length("reason", reason))]

        try:
            event = await self.events.change(tenant, event_id, resend, lambda e: entries)
        except BaseException:
            await self.store.put_doc(DEAD_LETTERS, tenant, str(letter["id"]), letter)  # not sent: the letter stays
            raise
        self.links.enqueue(prepared, entries)
        log.info("dead letter %s of linkage %s sent again by %s", letter["id"], linkage_id, principal.actor)
        return event.linkage(linkage_id)

    @staticmethod
    def _resendable(event: Event, link: dict[str, Any]) -> None:
        if event.final:
            raise InvalidEventTransition(f"종결·취소된 사건 / the event is {event.status}", reason="event-final")
        if link["status"] != lk.FAILED:
            raise InvalidEventTransition(
                f"실패한 연계만 다시 보낼 수 있습니다: 연계 {link['id']}은(는) {link['status']} 상태 / only a failed "
                f"linkage is sent again; linkage {link['id']} is {link['status']}", reason="linkage-not-failed")

    async def _dead_letter_of(self, tenant: str, linkage_id: str) -> Doc | None:
        """The dead letter of a linkage's package (`Dispatcher.dead_letter` records the linkage), or None."""
        return next((doc for t, _, doc in await self.store.list_docs(DEAD_LETTERS)
                     if t == tenant and doc.get("linkage") == linkage_id), None)

    def _decide(self, link: dict[str, Any], status: str, actor: str, reason: str | None) -> None:
        """Every decision (approval, an operator's rejection, the rejection at the event's end) records who and when:
        the decision is part of the audit-relevant record of PLAT-R4."""
        link.update(status=status, decidedBy=actor, decidedAt=to_iso(self.clock.now()), reason=reason)

    def _linkage_row(self, event: Event, link: dict[str, Any], action: str, actor: str, outcome: str = "ok",
                     **detail: Any) -> AuditRow:
        """A linkage's audit line. What a person typed (a repeat request's purpose, an operator's reason to approve,
        reject or resend) is not in it, only how long it is and whether it held personal data (`typed_length`:
        `purposeChars`/`purposeMasked`, `reasonChars`/`reasonMasked`): the audit log outlives the event and cannot be
        rewritten, so a data subject's redaction could not reach it (FIX-H, as status notes, QA10 F3). The texts are
        kept on the linkage (`purpose`, `purposes`, `reason`). Other `reason`s are codes (a gate's, `agency-disabled`,
        `event closed`)."""
        return self.audit.row(event.tenant, "linkage", action, actor, agency=link["agency"], event=event.id,
                              grant=link.get("grant"), outcome=outcome, linkage=link["id"], service=link["service"],
                              **detail)

    async def _deliver(self, tenant: str, event_id: str, linkage_id: str, principal: Principal,
                       base_url: str | None) -> dict[str, Any]:
        """Cameras, grant, package, queue; the event moves to `sharing`."""
        event = await self.events.load(tenant, event_id)
        link = event.linkage(linkage_id)
        agency = self._receiving(tenant, link["agency"], link["service"])
        selection = await self.nearest(event) if event.point else None
        near = selection.cameras if selection else []
        issued = await self.grants.issue(tenant, agency.id, event.id, [n.camera.id for n in near],
                                         link["purpose"] or f"{link['service']} linkage", principal.actor,
                                         linkage=linkage_id) if near else None
        package = await self._package(event, agency, link, issued, near, base_url)
        status = lk.QUEUED if agency.webhook else lk.READY

        def record(e: Event) -> list[AuditRow]:
            stored = e.linkage(linkage_id)
            if e.final:  # closed while the cameras and the grant were prepared: nothing goes out
                self._decide(stored, lk.REJECTED, principal.actor, f"event {e.status}")
                return [self._linkage_row(e, stored, "rejected", principal.actor, reason=stored["reason"])]
            stored.update(status=status, grant=issued.grant.id if issued else None,
                          cameras=issued.grant.cameras if issued else [], decidedAt=to_iso(self.clock.now()))
            rows = [self._linkage_row(e, stored, "queued" if agency.webhook else "ready", principal.actor,
                                      cameras=stored["cameras"])]
            if issued and e.status in (RECEIVED, ACKNOWLEDGED):
                rows += self.events.transition_rows(e, SHARING, principal.actor, f"linkage {linkage_id}",
                                                    generated=True)
            return rows

        # The package's outbox entry is written in the linkage's own commit (ucity/alarms/journal.py): once the
        # linkage says `queued`, a restart sends the package.
        made = lk.NOTHING
        if agency.webhook:
            subject, text = lk.compose(event, link["service"])
            made = self.links.prepare(agency.id, lk.PackageNotification(
                f"urn:ucity:notification:{uuid.uuid4().hex}", tenant, "linkage", to_iso(self.clock.now()), {},
                subject, text, package=package, linkage=linkage_id))
        rejection: list[lk.Prepared] = []  # rejected instead (the event ended meanwhile): the agency is told so

        def outbox(e: Event) -> list[tuple[str, str, str, Doc]]:
            return self._rejection_notices([e.linkage(linkage_id)], rejection)(e) if e.final else made.entries

        event = await self.events.change(tenant, event_id, record, outbox)
        if event.final:  # rejected: nothing goes out
            for notice in rejection:
                notice.send()
            await self._revoke_late(event, issued)
        else:
            made.send()
        return {**event.linkage(linkage_id), "package": package}

    async def _package(self, event: Event, agency: Agency, link: dict[str, Any], issued: Issued | None,
                       near: list[Any], base_url: str | None) -> dict[str, Any]:
        footage: dict[str, dict[str, str]] = {}
        grant = None
        if issued is not None:
            by_camera = {entry["camera"]: entry for entry in links(base_url or self.base_url, issued.token,
                                                                   issued.grant.cameras)}
            footage = {n.camera.id: by_camera[local_id(n.camera.id)] for n in near if local_id(n.camera.id) in by_camera}
            await self._drop_missing_links(event.tenant, footage)
            grant = {"id": issued.grant.id, "expiresAt": issued.grant.expires_at, "token": issued.token}
        extra = await lk.gather_sections(self.store, event.tenant, event, link["service"], self.settings)
        package = lk.build_package(event, agency, link["service"], link["id"], lk.camera_entries(near, footage), grant,
                                   extra)
        if link.get("direct"):
            package["direct"] = True  # an operator's share (issue_grant), not a request of the agency's service
        return package

    async def _drop_missing_links(self, tenant: str, footage: dict[str, dict[str, str]]) -> None:
        """A stream link only for cameras that have a stream, a still link only for those with a still image
        source (PLAT-R7: a still when available): an agency is never sent a link that can only answer 404."""
        for camera_id, entry in footage.items():
            doc = await self.store.get_entity(tenant, camera_id)
            stream, still = (None, None) if doc is None else await self.cameras.urls(tenant, camera_id)
            if stream is None:
                entry.pop("stream", None)
            if still is None:
                entry.pop("still", None)

    async def package(self, tenant: str, event_id: str, linkage_id: str, principal: Principal,
                      base_url: str | None) -> dict[str, Any]:
        """The package of a delivered linkage, rebuilt (tokens are derived from the grant, never stored)."""
        event = await self.events.visible(tenant, event_id, principal)
        link = event.linkage(linkage_id)
        if not principal.can(Permission.EVENTS_READ_ALL) and link["agency"] != principal.agency:
            raise NotFound(f"연계 {linkage_id} 없음 / linkage {linkage_id} does not exist")
        if link["status"] in (lk.HELD, lk.REJECTED):
            raise InvalidEventTransition(f"{link['status']} 상태: 꾸러미 없음 / the linkage is {link['status']}")
        agency = self.agencies.require(tenant, link["agency"])
        issued = None
        near: list[Any] = []
        if link.get("grant") and event.point:
            grant = await self.grants.load(tenant, link["grant"])
            issued = Issued(grant, self.grants.token(grant))
            near = await self._measured(event, grant)
        return await self._package(event, agency, link, issued, near, base_url)

    async def _measured(self, event: Event, grant: Grant) -> list[Any]:
        """A grant's cameras measured from the event (distance, bearing), as a package lists them."""
        if event.point is None:
            return []
        grid = await self.index.grid(event.tenant)
        found = (grid.get(camera_entity_id(c)) for c in grant.cameras)
        return [measure(camera, *event.point) for camera in found if camera is not None]

    async def _delivered(self, notification: lk.PackageNotification, ok: bool, detail: str) -> None:
        """The outbox's final word on a package: delivered, or a dead letter."""
        if notification.linkage is None:
            return
        event_id = notification.package["event"]["id"]

        def mark(e: Event) -> list[AuditRow]:
            link = e.linkage(str(notification.linkage))
            link.update(status=lk.DELIVERED if ok else lk.FAILED, error=None if ok else detail,
                        deliveredAt=to_iso(self.clock.now()) if ok else None)
            return [self._linkage_row(e, link, "delivered" if ok else "failed", SYSTEM.actor,
                                      "ok" if ok else "failed", detail=detail)]

        try:
            await self.events.change(notification.tenant, event_id, mark)
        except NotFound:
            log.warning("linkage %s of a deleted event %s", notification.linkage, event_id)

    # -- grants ----------------------------------------------------------------------------------------
    async def issue_grant(self, tenant: str, agency_id: str, event_id: str, cameras: list[str], principal: Principal,
                          minutes: float | None, purpose: str, base_url: str | None) -> tuple[Issued, list[dict[str, str]]]:
        """An operator shares some cameras of an event with an agency directly.

        The share is a linkage of the event (`direct`: true, decided by the operator, no gate: the operator's
        decision is the approval PLAT-R4 asks for): the agency sees the event as for any linkage (its list, `GET
        /events/{id}`, the package at `.../linkages/{id}/package`), and its webhook gets the package with the
        footage links (`linkage`, as for a linkage), its outbox entry stored in the commit that adds the linkage.
        Its service is the event's if the agency receives it, else the agency's that fits the event
        (`linkage.share_service`): it only chooses the package's sections."""
        principal.require(Permission.GRANTS_ISSUE)
        event = await self.events.load(tenant, event_id)
        if event.final:
            raise InvalidEventTransition(f"종결·취소된 사건 / the event is {event.status}")
        agency = self.agencies.require(tenant, agency_id)
        if not agency.enabled:
            # Audited as a linkage for it is (`request_linkage`): outcome `denied`, no grant made, not counted as
            # issued in the statistics.
            await self.audit.append(self.audit.row(
                tenant, "grant", "issued", principal.actor, agency=agency_id, event=event.id, outcome="denied",
                reason="agency-disabled", cameras=[local_id(camera_entity_id(c)) for c in cameras],
                **typed_length("purpose", purpose)))  # its length, never the text (as `GrantService._row`)
            raise AgencyDisabled(agency_id)
        for camera in cameras:
            await self.cameras.get(tenant, camera)
        link_id, purpose = f"lk-{uuid.uuid4().hex[:12]}", purpose or "operator share"
        issued = await self.grants.issue(tenant, agency_id, event_id, cameras, purpose, principal.actor, minutes,
                                         linkage=link_id)
        now = to_iso(self.clock.now())
        link: dict[str, Any] = {
            "id": link_id, "agency": agency.id,
            "service": lk.share_service(event, agency.services),
            "status": lk.QUEUED if agency.webhook else lk.READY, "requestedBy": principal.actor, "requestedAt": now,
            "automatic": False, "direct": True, "purpose": purpose, "reason": None, "decidedBy": principal.actor,
            "decidedAt": now, "grant": issued.grant.id, "cameras": issued.grant.cameras, "deliveredAt": None,
            "error": None}
        package = await self._package(event, agency, link, issued, await self._measured(event, issued.grant), base_url)
        made = lk.NOTHING
        if agency.webhook:
            subject, text = lk.compose(event, link["service"])
            made = self.links.prepare(agency.id, lk.PackageNotification(
                f"urn:ucity:notification:{uuid.uuid4().hex}", tenant, "linkage", now, {}, subject, text,
                package=package, linkage=link_id))

        def share(e: Event) -> list[AuditRow]:
            if e.final:  # closed meanwhile: nothing is added or sent, the grant is revoked below
                return []
            e.linkages.append(link)
            rows = [self._linkage_row(e, link, "queued" if agency.webhook else "ready", principal.actor,
                                      cameras=link["cameras"], direct=True)]
            if e.status in (RECEIVED, ACKNOWLEDGED):
                rows += self.events.transition_rows(e, SHARING, principal.actor, f"grant {issued.grant.id}",
                                                    generated=True)
            return rows

        event = await self.events.change(tenant, event_id, share, lambda e: made.entries)
        if event.final:
            await self._revoke_late(event, issued)
        made.send()
        return issued, links(base_url or self.base_url, issued.token, issued.grant.cameras)

    async def _revoke_late(self, event: Event, issued: Issued | None) -> NoReturn:
        """A grant issued while its event was being closed (the close's revocations may have missed it):
        revoked and announced like the others, then the request fails as it would have a moment earlier."""
        if issued is not None:
            reason = f"event {event.status}"
            with contextlib.suppress(InvalidGrantTransition):  # the close's own revocation came first
                await self.grants.revoke(event.tenant, issued.grant.id, SYSTEM.actor, reason, self._revoked_notice(reason))
        raise InvalidEventTransition(f"종결·취소된 사건 / the event is {event.status}")

    async def renew_grant(self, tenant: str, grant_id: str, principal: Principal, minutes: float | None,
                          base_url: str | None) -> tuple[Issued, list[dict[str, str]]]:
        def renewed(grant: Grant, token: str) -> lk.Prepared:
            return self._prepare_notice(grant.tenant, grant.agency, "grant-renewed", {
                "grant": {"id": grant.id, "expiresAt": grant.expires_at, "token": token},
                "event": {"id": grant.event}, "links": links(base_url or self.base_url, token, grant.cameras)})

        issued = await self.grants.renew(tenant, grant_id, principal, minutes, renewed)
        return issued, links(base_url or self.base_url, issued.token, issued.grant.cameras)

    async def revoke_grant(self, tenant: str, grant_id: str, principal: Principal, reason: str) -> Doc:
        principal.require(Permission.GRANTS_ISSUE)
        grant = await self.grants.revoke(tenant, grant_id, principal.actor, reason, self._revoked_notice(reason),
                                         typed=True)
        return grant.wire(to_iso(self.clock.now()), principal)

    def _revoked_notice(self, reason: str) -> Callable[[Grant, str], lk.Prepared]:
        """The one `grant-revoked` notice, whatever revoked the grant (an operator, the event's end, the agency
        disabled), stored in the revocation's commit (GrantService). The reason goes to the agency masked, as a
        grant's `revokeReason` is shown to it: an operator may have typed a name or a phone into it."""
        reason = mask_free_text(reason) if reason else reason

        def notice(grant: Grant, token: str) -> lk.Prepared:
            # Which footage ends and when (QA15 F9j): the cameras and the revocation time, UTC in the data, Korea
            # time in the text.
            at = grant.revoked_at or to_iso(self.clock.now())
            when = kst(at)
            cameras = ", ".join(grant.cameras)
            why = f" ({reason})" if reason else ""
            text = {"ko": f"영상 공유 {grant.id} 회수{why}: 카메라 {cameras}, {when}부터 볼 수 없음. 사건 {grant.event}",
                    "en": f"Footage grant {grant.id} revoked{why}: cameras {cameras}, no longer viewable from {when}. "
                          f"Event {grant.event}"}
            return self._prepare_notice(grant.tenant, grant.agency, "grant-revoked", {
                "grant": {"id": grant.id, "reason": reason, "cameras": grant.cameras, "revokedAt": at,
                          "expiresAt": grant.expires_at},
                "event": {"id": grant.event}}, text)

        return notice

    def _rejection_notices(self, rejected: list[dict[str, Any]],
                           made: list[lk.Prepared]) -> Callable[[Event], list[tuple[str, str, str, Doc]]]:
        """For `EventService.change`: the one `linkage-rejected` notice of each linkage in `rejected` (filled in by
        the change; an operator's rejection or the event's end), kept in `made` to be sent once the change is
        committed; their outbox entries go in its commit. The agency that asked (a held request answered 202)
        learns that no package will come."""
        def entries(event: Event) -> list[tuple[str, str, str, Doc]]:
            made[:] = [self._prepare_notice(event.tenant, link["agency"], "linkage-rejected", {
                "linkage": {"id": link["id"], "service": link["service"], "reason": link["reason"],
                            "decidedBy": link["decidedBy"]},
                "event": {"id": event.id, "status": event.status}}) for link in rejected]
            return lk.entries_of(made)

        return entries

    def _prepare_notice(self, tenant: str, agency_id: str, kind: str, package: dict[str, Any],
                        text: dict[str, str] | None = None) -> lk.Prepared:
        """A notice telling an agency (if it has a webhook) that its grant or request changed, for the commit of that
        change. A disabled or deleted agency is sent nothing, as no package goes to it (the change is in the audit
        log either way)."""
        agency = self.agencies.get(tenant, agency_id)
        if agency is None or not agency.webhook or not agency.enabled:
            return lk.NOTHING
        names = {"grant-renewed": ("영상 공유 연장", "Footage grant renewed"),
                 "grant-revoked": ("영상 공유 회수", "Footage grant revoked"),
                 "linkage-rejected": ("연계 요청 거절", "Linkage request rejected")}[kind]
        subject = {"ko": names[0], "en": names[1]}
        return self.links.prepare(agency_id, lk.PackageNotification(
            f"urn:ucity:notification:{uuid.uuid4().hex}", tenant, kind, to_iso(self.clock.now()), {}, subject,
            text or subject, package=package))

    async def _grant_token(self, tenant: str, grant_id: str) -> str | None:
        """A grant's footage token, signed again from the stored grant (packages keep none: linkage.redact)."""
        try:
            return self.grants.token(await self.grants.load(tenant, grant_id))
        except NotFound:
            return None

    async def open_footage(self, token: str, camera: str, kind: str, principal: Principal | None) -> str:
        """The camera URL a valid footage link resolves to (the access is audited either way)."""
        async def url_of(tenant: str, camera_id: str, kind: str) -> str | None:
            stream, still = await self.cameras.urls(tenant, camera_id)
            return stream if kind == "stream" else still

        # The camera's existence and identity are checked by the grant (a deleted or replaced camera: 403), its URL
        # before the access is audited (none: 404, audited `failed`, not counted as an allowed access).
        access = await self.grants.access(token, camera, kind, principal, self.default_tenant, url_of)
        assert access.url is not None
        return access.url

    # -- alarms become events (PLAT-R9) -----------------------------------------------------------------
    async def _on_alarm(self, change: AlarmChanged) -> None:
        alarm = change.alarm
        level = alarm.get("level")
        if "closed" in change.events and not alarm.get("derived") and alarm.get("kind") == "safety":
            self._alarm_task(self._alarm_closed(change))
            return
        if alarm.get("derived") or alarm.get("kind") != "safety" or level is None or not _TRIGGERS & set(change.events):
            return  # a parent's derived alarm repeats its children's; their own alarms make the events
        if level_rank(level) < level_rank(self.settings.alarm_event_min_level):
            return
        # The alarm service publishes under the alarm's lock, so an awaited event (several commits, the
        # nearest cameras, linkages) would hold up that alarm's next change, and in an alarm storm every
        # alarm's: the event is made in a task. Tasks start in the order they are created and take the
        # alarm's lock first, so one alarm's changes still make its event in order.
        self._alarm_task(self._alarm_event(change, level))

    def _alarm_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._alarm_tasks.add(task)
        task.add_done_callback(self._alarm_done)

    async def _alarm_events_made(self) -> None:
        while self._alarm_tasks:
            await asyncio.gather(*list(self._alarm_tasks), return_exceptions=True)

    def _alarm_done(self, task: asyncio.Task[None]) -> None:
        self._alarm_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("operations event of an alarm failed", exc_info=task.exception())

    async def _alarm_event(self, change: AlarmChanged, level: str) -> None:
        alarm = change.alarm
        async with self._alarm_locks.hold((change.tenant, alarm["id"])):
            # A raised alarm is new (a fresh id, announced once): no event of this source names it yet, so it
            # is not looked for (in an alarm storm at `warning` that was a store read per alarm). Escalated and
            # re-activated alarms may have their event already.
            existing = None if "raised" in change.events else \
                await self.events.by_source(change.tenant, ALARM_SOURCE, alarm["id"])
            if existing is not None and not existing.final:
                if existing.level == level:
                    # Nothing to change (a re-activated alarm at its event's level): only this method changes
                    # an event's level, under this alarm's lock, so the level just read is still the stored
                    # one; reading the event again under its own lock cost a second read per alarm.
                    return
                await self.events.change(change.tenant, existing.id,
                                         lambda e: self.events.level_rows(e, level, SYSTEM.actor))
                return
            personal = _about_person(alarm, self.platform.privacy.names)
            data = EventIn(service="IOT", typeCode=_type_code(alarm), level=level, location=_alarm_point(alarm),
                           address=await self._address(change.tenant, alarm.get("entity_id")),
                           details=_alarm_details(alarm, personal), sourceSystem=ALARM_SOURCE, sourceRef=alarm["id"])
            await self.create_event(change.tenant, data, SYSTEM, alarm_id=alarm["id"], rule_name=_rule_name(alarm),
                                    about_person=personal)

    async def _alarm_closed(self, change: AlarmChanged) -> None:
        """The alarm that made an event is closed: the event follows, unless somebody took it up.

        Nobody acted on it (every status move, linkage and grant of its trail by the system or the automatic
        linkage): it is closed by `system` (through `acknowledged` when still `received`: closing needs an
        acknowledgement), or cancelled when the alarm was closed as false, test or duplicate; the note names the
        alarm and its outcome, and its grants are revoked and its held linkages rejected as for any close, each
        agency told. An operator or an agency acted on it (acknowledged, shared, dispatched, asked for a linkage):
        it is theirs to close; its trail gets an `alarm-closed` line (by `system`) and it stays as it is."""
        alarm, tenant = change.alarm, change.tenant
        async with self._alarm_locks.hold((tenant, alarm["id"])):  # after the task that made the event
            event = await self.events.by_source(tenant, ALARM_SOURCE, alarm["id"])
            if event is None or event.final:
                return
            outcome = str(alarm.get("outcome") or "")
            note = f"경보 종결 alarm closed: {alarm['id']}" + (f" ({outcome})" if outcome else "")
            if await self._taken_up(event):
                await self.audit.append(self.audit.row(tenant, "event", "alarm-closed", SYSTEM.actor, event=event.id,
                                                       alarm=alarm["id"], alarmOutcome=outcome or None, note=note))
                return
            target = CANCELLED if outcome in _NOT_REAL else CLOSED
            seen = event.status

            def follow(e: Event) -> list[AuditRow]:
                if e.status != seen:  # somebody moved it since the trail was read: theirs to close
                    raise _TakenUp
                rows = []
                if target == CLOSED and e.status == RECEIVED:
                    rows += self.events.transition_rows(e, ACKNOWLEDGED, SYSTEM.actor, note, generated=True)
                return rows + self.events.transition_rows(e, target, SYSTEM.actor, note, generated=True)

            with contextlib.suppress(_TakenUp):
                await self._move(tenant, event.id, follow, SYSTEM)

    async def _taken_up(self, event: Event) -> bool:
        """Whether anybody but the system acted on the event: a status move, an attachment, a linkage, a grant (reads,
        footage accesses and deliveries are no handling)."""
        lines, _ = await self.audit.query(event.tenant, AuditQuery(event_ids=(event.id,), limit=10_000))
        return any((line.get("kind"), line.get("action")) in _HANDLING and line.get("actor") not in
                   (SYSTEM.actor, AUTO.actor) for line in lines)

    async def _address(self, tenant: str, entity_id: Any) -> str | None:
        doc = await self.store.get_entity(tenant, str(entity_id)) if entity_id else None
        instances = (doc or {}).get("attrs", {}).get(iri("address"), [])
        value = instances[0].get("value") if instances else None
        if isinstance(value, dict):
            parts = [value.get(k) for k in ("addressLocality", "district", "streetAddress")]
            return " ".join(str(p) for p in parts if p) or None
        return str(value) if isinstance(value, str) else None


def _type_code(alarm: dict[str, Any]) -> str:
    code = re.sub(r"[^a-z0-9_]+", "_", str(alarm.get("rule_id") or "alarm").lower()).strip("_")
    return (code or "alarm")[:64]


def _alarm_point(alarm: dict[str, Any]) -> dict[str, Any] | None:
    geometry = alarm.get("location")
    if not isinstance(geometry, dict) or "type" not in geometry:
        return None
    try:
        centre = shape(geometry).centroid
    except (ValueError, TypeError, AttributeError):
        return None
    if centre.is_empty or is_null_island((centre.x, centre.y)):
        return None  # an entity at 0,0 has no known place (a device without a fix): the event is made without one
    return {"lon": centre.x, "lat": centre.y}


def _about_person(alarm: dict[str, Any], personal_types: frozenset[str]) -> bool:
    """Whether the alarm is about a person: its entity's type (the alarm's `entity_type`, else the id's) is one of
    the personal types in force (`privacy.personal_entity_types` and those the domains declare, as for its Alert)."""
    kind = str(alarm.get("entity_type") or "") or entity_type_of(str(alarm.get("entity_id") or ""))
    return bool(kind) and kind in personal_types


def _rule_name(alarm: dict[str, Any]) -> dict[str, str] | None:
    """The name ({"ko", "en"}) of the rule that raised the alarm (its `evidence.ruleName`), or None."""
    evidence = alarm.get("evidence")
    found = evidence.get("ruleName") if isinstance(evidence, dict) else None
    if not isinstance(found, dict):
        return None
    named = {lang: found[lang] for lang in ("ko", "en") if isinstance(found.get(lang), str) and found[lang].strip()}
    return named or None


def _alarm_details(alarm: dict[str, Any], personal: bool = False) -> str:
    """The event's `details`: the alarm's description, its id and its entity's id; the id of a person's entity (it
    can be a name, `urn:ngsi-ld:CareDevice:kim-younghee-home`) masked as names are (`mask_entity_id`:
    `urn:ngsi-ld:CareDevice:k**-y*******-h***`) for everybody, as the event is stored: whoever may see the entity
    follows the alarm id to it (`GET /api/v1/alarms/{id}`, its entity for `personal:read`)."""
    description = alarm.get("description") or {}
    text = " / ".join(str(description[lang]) for lang in ("ko", "en") if description.get(lang))
    entity = str(alarm.get("entity_id") or "")
    shown = mask_entity_id(entity) if personal and entity else alarm.get("entity_id")
    return f"{text} (경보 alarm {alarm.get('id')}, {shown})".strip()
