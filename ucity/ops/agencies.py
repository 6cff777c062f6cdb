"""Agencies the operation centre shares with: police 112, fire 119, disaster rooms and others.

An agency has the linkage services it receives, a webhook its event packages are POSTed to (signed like
every ucity webhook: ucity/alarms/notifiers/webhook.py) and optionally the services for which events
are sent to it as soon as they are created (`autoServices`: e.g. a 119 room gets every 119_DISPATCH event,
as in Daegu [V]). Configured agencies (`ops.agencies`) are read-only through the API; an admin adds
others per tenant (`/api/v1/agencies`), kept in the store's document table. A disabled (`enabled: false`)
or deleted agency shares nothing: its live grants are revoked, its tokens and footage links refused
(`refusal`; center.py, auth.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.alarms.contacts import ReadOnly, validation_problem
from ucity.core.errors import AlreadyExists, BadRequest, NotFound
from ucity.ops.events import SERVICES
from ucity.store.base import Store

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
        return {**self.model_dump(mode="json"), "headers": {k: "***" for k in self.headers}, "source": source}


def parse_agency(body: Any, agency_id: str | None = None) -> Agency:
    if not isinstance(body, dict):
        raise BadRequest("JSON 객체가 필요합니다 / the body must be a JSON object")
    if agency_id is not None and body.setdefault("id", agency_id) != agency_id:
        raise BadRequest(f"본문의 id가 경로와 다릅니다 / body id {body['id']!r} differs from the path")
    try:
        return Agency.model_validate(body)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


class AgencyRegistry:
    """Configured agencies (all tenants) and each tenant's own."""

    def __init__(self, store: Store, configured: list[dict[str, Any]]) -> None:
        self._store = store
        try:
            self._config = {a.id: a for a in (Agency.model_validate(raw) for raw in configured)}
        except ValidationError as exc:
            raise ValueError(f"ops.agencies in the configuration: {exc}") from exc
        self._items: dict[tuple[str, str], Agency] = {}
        self.on_change: Callable[[str, str], None] = lambda tenant, agency_id: None

    async def load(self) -> None:
        for tenant, key, doc in await self._store.list_docs(KIND):
            self._items[(tenant, key)] = Agency.model_validate(doc)

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

    async def put(self, tenant: str, agency: Agency, create_only: bool = False) -> bool:
        """Create or replace; True when created. 409 for a configured id (or an existing one if `create_only`)."""
        if agency.id in self._config:
            raise ReadOnly(f"{agency.id}: 설정 파일에 정의됨 / defined in the configuration file, read-only")
        created = (tenant, agency.id) not in self._items
        if create_only and not created:
            raise AlreadyExists(f"기관 {agency.id} 이미 있음 / agency {agency.id} already exists")
        await self._store.put_doc(KIND, tenant, agency.id, agency.model_dump(mode="json"))
        self._items[(tenant, agency.id)] = agency
        self.on_change(tenant, agency.id)
        return created

    async def delete(self, tenant: str, agency_id: str) -> None:
        if agency_id in self._config:
            raise ReadOnly(f"{agency_id}: 설정 파일에 정의됨 / defined in the configuration file, read-only")
        if (tenant, agency_id) not in self._items:
            raise NotFound(f"기관 {agency_id} 없음 / agency {agency_id} does not exist")
        await self._store.delete_doc(KIND, tenant, agency_id)
        del self._items[(tenant, agency_id)]
        self.on_change(tenant, agency_id)
