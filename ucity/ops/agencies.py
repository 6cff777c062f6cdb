"""Agencies the operation centre shares with: police 112, fire 119, disaster rooms and others.

An agency has the linkage services it receives, a webhook its event packages are POSTed to (signed like
every ucity webhook: ucity/alarms/notifiers/webhook.py) and optionally the services for which events
are sent to it as soon as they are created (`autoServices`: e.g. a 119 room gets every 119_DISPATCH event,
as in Daegu [V]). Configured agencies (`ops.agencies`) are read-only through the API; an admin adds
others per tenant (`/api/v1/agencies`), kept in the store's document table. A disabled (`enabled: false`)
or deleted agency shares nothing: its live grants are revoked, its tokens and footage links refused
(`refusal`; center.py, auth.py). What GET answers is a valid PUT body (an admin's GET, edit, PUT): the read-only
`source` and `delivery` are ignored, and a header value shown masked (`***`) keeps the stored one.

Every process keeps the tenants' agencies in memory and re-reads them from the store every `ops.token_refresh_s`
(10 s, the bound of the issued tokens too), so that an agency created, changed, disabled or deleted through
another API process on the same store is seen here within that bound (at once in the process that changed it):
`on_change` is called for each agency that changed, appeared or disappeared (the agency links rebuild its
notifier), and `on_refused` for each that a re-read found newly disabled or deleted (center.py revokes its live
grants here too: grants this process issued before it learnt of the change would otherwise stay live).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.alarms.contacts import ReadOnly, validation_problem
from ucity.core.clock import Clock, SystemClock
from ucity.core.errors import AlreadyExists, BadRequest, NotFound
from ucity.core.masking import MASK, unmasked
from ucity.core.refresh import Refresh, Refreshed
from ucity.ops.events import SERVICES
from ucity.store.base import Store

log = logging.getLogger(__name__)
KIND = "ops-agencies"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    kind: Literal["police", "fire", "disaster", "other"]
    name: dict[str, str] = Field(description='{"ko": ..., "en": ...}')
    services: list[str] = Field(min_length=1, description="linkage services it receives")
    autoServices: list[str] = Field([], description="services whose new events are sent to it at once")
    webhook: str | None = Field(None, description="where its event packages are POSTed (http or https)")
    headers: dict[str, str] = Field({}, description="extra headers of its webhook (may hold credentials)")
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("id: letters, digits and _ . : - (at most 100), starting with a letter or digit")
        return value

    @field_validator("services", "autoServices")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in SERVICES]
        if unknown:
            raise ValueError(f"unknown services {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> Agency:
        if not set(self.autoServices) <= set(self.services):
            raise ValueError("autoServices must be among services")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return self

    def wire(self, source: str) -> dict[str, Any]:
        # Header values may hold the receiver's credentials: shown masked, like every secret.
        return {**self.model_dump(mode="json"), "headers": {k: MASK for k in self.headers}, "source": source}


# What GET shows of an agency besides its fields: where it is defined, and (to an admin) its webhook's delivery.
# Read-only: a body that carries them back (an admin's GET, edit, PUT) has them ignored, not refused (QA15 F9e).
READ_ONLY = ("source", "delivery")


def parse_agency(body: Any, agency_id: str | None = None) -> Agency:
    """An agency from a request body: what GET answers, edited, is a valid body (the read-only members
    `READ_ONLY` are dropped, masked header values are resolved by `AgencyRegistry.put`)."""
    if not isinstance(body, dict):
        raise BadRequest("JSON 객체가 필요합니다 / the body must be a JSON object")
    body = {k: v for k, v in body.items() if k not in READ_ONLY}
    if agency_id is not None and body.setdefault("id", agency_id) != agency_id:
        raise BadRequest(f"본문의 id가 경로와 다릅니다 / body id {body['id']!r} differs from the path")
    try:
        return Agency.model_validate(body)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


Key = tuple[str, str]  # (tenant, agency id)


def _unmasked(agency: Agency, current: Agency | None) -> Agency:
    """`agency` with each masked header value (`***`) replaced by `current`'s value of that header (core/masking)."""
    if MASK not in agency.headers.values():
        return agency
    return agency.model_copy(update={"headers": unmasked(agency.headers, current.headers if current else None)})


class AgencyRegistry(Refreshed):
    """Configured agencies (all tenants) and each tenant's own (re-read from the store every `refresh_s` once
    started, so that several API processes on one store agree within that bound)."""

    def __init__(self, store: Store, configured: list[dict[str, Any]], clock: Clock | None = None,
                 refresh_s: float = 10.0) -> None:
        self._store = store
        try:
            self._config = {a.id: a for a in (Agency.model_validate(raw) for raw in configured)}
        except ValidationError as exc:
            raise ValueError(f"ops.agencies in the configuration: {exc}") from exc
        self._items: dict[Key, Agency] = {}
        self._lock = asyncio.Lock()  # a re-read does not undo a put or a delete made while it read
        self.refresh_s = refresh_s
        self._refresh = Refresh(clock or SystemClock(), "ucity-agency-refresh", "the agencies", self._reread,
                                lambda: self.refresh_s)
        self.on_change: Callable[[str, str], None] = lambda tenant, agency_id: None
        # (tenant, agency id, refusal): an agency that a read of the store found newly disabled or deleted
        self.on_refused: Callable[[str, str, str], Awaitable[None]] | None = None

    async def load(self) -> None:
        """(Re-)read the tenants' agencies from the store (`on_refused` is left to the caller's start sweep)."""
        async with self._lock:
            await self._sync()

    async def _sync(self) -> list[tuple[str, str, str]]:
        """Replace the tenants' agencies by the store's (under the lock): `on_change` for each that differs; the
        ones now refused that were not (for `on_refused`)."""
        items = {(t, k): Agency.model_validate(doc) for t, k, doc in await self._store.list_docs(KIND)}
        changed = sorted(key for key in self._items.keys() | items.keys() if self._items.get(key) != items.get(key))
        before = {key: self.refusal(*key) for key in changed}
        self._items = items
        self._refresh.loaded()
        newly: list[tuple[str, str, str]] = []
        for key in changed:
            self.on_change(*key)
            reason = self.refusal(*key)
            if reason is not None and before[key] is None:
                newly.append((*key, reason))
        return newly

    async def _refused(self, newly: list[tuple[str, str, str]]) -> None:
        """`on_refused` of each agency newly refused (outside the lock: it revokes grants)."""
        for tenant, agency_id, reason in newly:
            if self.on_refused is None:
                return
            if self.refusal(tenant, agency_id) is None:  # enabled again here meanwhile (this process's own put)
                continue
            try:
                await self.on_refused(tenant, agency_id, reason)
            except Exception:  # the next start's sweep revokes what is left
                log.exception("agency %s of tenant %s is refused (%s): revoking its grants here failed", agency_id,
                              tenant, reason)

    async def _reread(self) -> None:
        async with self._lock:
            newly = await self._sync()
        await self._refused(newly)

    # -- the periodic re-read (on the platform clock, so tests move it): start, stop, settle of `Refreshed` ------
    def health(self) -> dict[str, Any]:
        return {"registered": len(self._items), **self._refresh.health()}

    # -- reads -------------------------------------------------------------------------------------------------
    def get(self, tenant: str, agency_id: str) -> Agency | None:
        return self._items.get((tenant, agency_id)) or self._config.get(agency_id)

    def require(self, tenant: str, agency_id: str) -> Agency:
        agency = self.get(tenant, agency_id)
        if agency is None:
            raise NotFound(f"기관 {agency_id} 없음 / agency {agency_id} does not exist")
        return agency

    def refusal(self, tenant: str, agency_id: str) -> str | None:
        """Why the agency may not act in the tenant now (its tokens and footage links are refused), or None."""
        agency = self.get(tenant, agency_id)
        if agency is None:
            return "agency-unknown"
        return None if agency.enabled else "agency-disabled"

    def known_anywhere(self, agency_id: str) -> bool:
        """Configured, or registered in some tenant (a token without a tenant may act in any of them)."""
        return agency_id in self._config or any(a == agency_id for _, a in self._items)

    def source(self, tenant: str, agency_id: str) -> str:
        return "api" if (tenant, agency_id) in self._items else "configuration"

    def all(self, tenant: str) -> list[Agency]:
        mine = [a for (t, _), a in self._items.items() if t == tenant]
        return sorted([*self._config.values(), *mine], key=lambda a: a.id)

    def tenants(self) -> set[str]:
        """The tenants with an agency registered through the API (configured ones are in every tenant)."""
        return {t for t, _ in self._items}

    def reach(self, agency_id: str, tenants: set[str]) -> set[str]:
        """The tenants (of `tenants`, and those it is registered in) where the agency exists: where a token of it
        bound to no tenant may act. A configured agency exists in every tenant."""
        registered = {t for t, a in self._items if a == agency_id}
        return tenants | registered if agency_id in self._config else registered

    # -- writes (an admin's calls: each reads the store first, so that an agency created or deleted through
    # another process since the last re-read is not overwritten unknowingly, nor answered 404) ----------------
    async def put(self, tenant: str, agency: Agency, create_only: bool = False) -> bool:
        """Create or replace; True when created. 409 for a configured id (or an existing one if `create_only`).
        A header whose value is the mask `***` (as GET shows it) keeps the value stored under that name; 400 when
        there is none (a new agency, a new header name): the mask must not become the webhook's credential."""
        if agency.id in self._config:
            raise ReadOnly(f"{agency.id}: 설정 파일에 정의됨 / defined in the configuration file, read-only")
        newly: list[tuple[str, str, str]] = []
        try:
            async with self._lock:
                newly = await self._sync()
                created = (tenant, agency.id) not in self._items
                exists = AlreadyExists(f"기관 {agency.id} 이미 있음 / agency {agency.id} already exists")
                if create_only and not created:
                    raise exists
                agency = _unmasked(agency, self._items.get((tenant, agency.id)))
                if create_only:  # created meanwhile through another process: the store decides (first wins)
                    if not await self._store.insert_doc(KIND, tenant, agency.id, agency.model_dump(mode="json")):
                        raise exists
                else:
                    await self._store.put_doc(KIND, tenant, agency.id, agency.model_dump(mode="json"))
                self._items[(tenant, agency.id)] = agency
                self.on_change(tenant, agency.id)
        finally:
            await self._refused(newly)
        return created

    async def delete(self, tenant: str, agency_id: str) -> None:
        if agency_id in self._config:
            raise ReadOnly(f"{agency_id}: 설정 파일에 정의됨 / defined in the configuration file, read-only")
        newly: list[tuple[str, str, str]] = []
        try:
            async with self._lock:
                newly = await self._sync()
                if (tenant, agency_id) not in self._items:
                    raise NotFound(f"기관 {agency_id} 없음 / agency {agency_id} does not exist")
                await self._store.delete_doc(KIND, tenant, agency_id)
                del self._items[(tenant, agency_id)]
                self.on_change(tenant, agency_id)
        finally:
            await self._refused(newly)
