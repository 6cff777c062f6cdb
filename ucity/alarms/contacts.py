"""Contact data as data: notifier endpoints, recipient groups and escalation chains.

Each is a collection of validated documents with an `id`:

* from configuration (`alarms.notifiers`, `alarms.recipients`, `alarms.escalations` in the TOML
  file): shared by every tenant and read-only through the API;
* from the API (`/api/v1/notifiers`, `/api/v1/recipients`, `/api/v1/escalations`): per tenant,
  persisted in the store's document table.

A tenant's own entry and a configured one never share an id (a PUT of a configured id is a 409).

Every process (API processes and workers on one store) keeps the tenants' entries in memory and, once started,
re-reads them from the store every `ops.token_refresh_s` (10 s, the bound of the issued tokens too), so that an
entry created, changed or deleted through another process is used here within that bound (at once in the process
that changed it); `on_change` is called for each entry that changed, appeared or disappeared (the dispatcher
builds a changed notifier again).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.core.clock import Clock
from ucity.core.errors import BadRequest, NotFound, UcityError
from ucity.core.refresh import Refresh
from ucity.rules.events import LEVELS
from ucity.store.base import Store

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
ANY = "*"
FAULT_LEVEL = "fault"  # the "level" an escalation chain uses for fault alarms


class ReadOnly(UcityError):
    status = 409
    type_uri = "urn:ucity:errors:ReadOnly"
    title = "Defined in configuration"


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError("id: letters, digits and _ . : - (at most 100), starting with a letter or digit")
    return value


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_id(value)


class NotifierConfig(_Doc):
    """One endpoint of a channel. Webhooks have their URL; e-mail uses `alarms.smtp`."""

    type: Literal["webhook", "email", "sms", "push"]
    provider: str = Field("", description="sms/push: the plugged provider; empty = recording (sends nothing)")
    url: str | None = None
    headers: dict[str, str] = {}
    enabled: bool = True
    description: str = ""

    @model_validator(mode="after")
    def _webhook_url(self) -> NotifierConfig:
        if self.type == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("a webhook needs an http:// or https:// url")
        if self.type != "webhook" and self.url:
            raise ValueError("only a webhook has a url")
        return self


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    notifier: str
    address: str = Field(min_length=1, max_length=320)


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=100)
    language: Literal["ko", "en"] = "ko"
    contacts: list[Contact] = []


class RecipientGroup(_Doc):
    """People (each with their channels) and group endpoints (e.g. a webhook to the 119 link)."""

    name: dict[str, str] = {}
    members: list[Member] = []
    notifiers: list[str] = Field([], description="endpoints notified once for the group (webhooks)")


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    delay_s: float = Field(ge=0, description="seconds after the alarm was raised (or reached its level)")
    group: str


class EscalationChain(_Doc):
    """Ordered steps for alarms of a rule (or any: *) at a level (interest..serious, fault, or *)."""

    rule: str = ANY
    level: str = ANY
    steps: list[EscalationStep] = Field(min_length=1)

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value not in (*LEVELS, FAULT_LEVEL, ANY):
            raise ValueError(f"level must be one of {', '.join((*LEVELS, FAULT_LEVEL, ANY))}")
        return value

    @field_validator("steps")
    @classmethod
    def _ordered(cls, steps: list[EscalationStep]) -> list[EscalationStep]:
        delays = [s.delay_s for s in steps]
        if delays != sorted(delays):
            raise ValueError("step delays must not decrease")
        return steps

    def specificity(self) -> int:
        return (2 if self.rule != ANY else 0) + (1 if self.level != ANY else 0)


M = TypeVar("M", bound=_Doc)


def validation_problem(exc: ValidationError) -> BadRequest:
    errors = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
    return BadRequest(f"잘못된 값 / invalid value: {errors}")


class Collection(Generic[M]):
    """The documents of one kind: configured ones (all tenants) and each tenant's own."""

    def __init__(self, kind: str, model: type[M], store: Store, configured: list[dict[str, Any]]) -> None:
        self.kind = kind
        self.model = model
        self._store = store
        try:
            self._config = {item.id: item for item in (model.model_validate(raw) for raw in configured)}
        except ValidationError as exc:
            raise ValueError(f"alarms.{kind.split('-', 1)[1]} in the configuration: {exc}") from exc
        self._items: dict[tuple[str, str], M] = {}
        self._lock = asyncio.Lock()  # a re-read does not undo a put or a delete made while it read
        self.on_change: Callable[[str, str], None] = lambda tenant, item_id: None

    async def load(self) -> None:
        """(Re-)read the tenants' entries from the store: `on_change` for each that changed, appeared or went."""
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:  # (under the lock)
        items = {(t, k): self.model.model_validate(doc) for t, k, doc in await self._store.list_docs(self.kind)}
        changed = sorted(key for key in self._items.keys() | items.keys() if self._items.get(key) != items.get(key))
        self._items = items
        for key in changed:
            self.on_change(*key)

    def own_count(self) -> int:
        """How many entries the tenants have (the configured ones not counted)."""
        return len(self._items)

    def get(self, tenant: str, item_id: str) -> M | None:
        return self._items.get((tenant, item_id)) or self._config.get(item_id)

    def source(self, tenant: str, item_id: str) -> str:
        return "api" if (tenant, item_id) in self._items else "configuration"

    def all(self, tenant: str) -> list[tuple[M, str]]:
        """(item, "configuration" | "api") of a tenant, by id."""
        mine = [(m, "api") for (t, _), m in self._items.items() if t == tenant]
        return sorted([*((m, "configuration") for m in self._config.values()), *mine], key=lambda p: p[0].id)

    def parse(self, body: Any, item_id: str | None = None) -> M:
        if not isinstance(body, dict):
            raise BadRequest("JSON 객체가 필요합니다 / the body must be a JSON object")
        if item_id is not None and body.setdefault("id", item_id) != item_id:
            raise BadRequest(f"본문의 id가 경로와 다릅니다 / body id {body['id']!r} differs from the path")
        try:
            return self.model.model_validate(body)
        except ValidationError as exc:
            raise validation_problem(exc) from exc

    async def put(self, tenant: str, item: M) -> bool:
        """Create or replace; True when it was created."""
        if item.id in self._config:
            raise ReadOnly(f"{item.id}: 설정 파일에 정의되어 API로 바꿀 수 없습니다 / defined in the configuration "
                           "file, read-only through the API")
        async with self._lock:
            created = (tenant, item.id) not in self._items
            await self._store.put_doc(self.kind, tenant, item.id, item.model_dump(mode="json"))
            self._items[(tenant, item.id)] = item
            self.on_change(tenant, item.id)
        return created

    async def delete(self, tenant: str, item_id: str) -> None:
        if item_id in self._config:
            raise ReadOnly(f"{item_id}: 설정 파일에 정의됨 / defined in the configuration file")
        async with self._lock:
            if (tenant, item_id) not in self._items:
                # Created through another process since the last re-read? The store knows (an admin's call may
                # read it).
                await self._sync()
            if (tenant, item_id) not in self._items:
                raise NotFound(f"{item_id}: 없음 / not found")
            await self._store.delete_doc(self.kind, tenant, item_id)
            del self._items[(tenant, item_id)]
            self.on_change(tenant, item_id)


class Contacts:
    """The three collections, and the escalation chain that applies to an alarm."""

    def __init__(self, store: Store, notifiers: list[dict[str, Any]], recipients: list[dict[str, Any]],
                 escalations: list[dict[str, Any]]) -> None:
        self.notifiers = Collection("alarm-notifiers", NotifierConfig, store, notifiers)
        self.recipients = Collection("alarm-recipients", RecipientGroup, store, recipients)
        self.escalations = Collection("alarm-escalations", EscalationChain, store, escalations)
        self.refresh_s = 10.0
        self._refresh: Refresh | None = None  # (made by `start`, which knows the platform clock)

    async def load(self) -> None:
        """(Re-)read the three collections from the store."""
        await self.notifiers.load()
        await self.recipients.load()
        await self.escalations.load()
        if self._refresh is not None:
            self._refresh.loaded()

    # -- the periodic re-read (on the platform clock, so tests move it) -----------------------------------
    async def start(self, clock: Clock, refresh_s: float) -> None:
        """Load, then re-read every `refresh_s` on `clock` (changes made through other processes on the store)."""
        self.refresh_s = refresh_s
        if self._refresh is None:
            self._refresh = Refresh(clock, "ucity-contacts-refresh", "the alarm contact data", self._reread,
                                    lambda: self.refresh_s)
        await self.load()
        self._refresh.start()

    async def stop(self) -> None:
        if self._refresh is not None:
            await self._refresh.stop()

    async def settle(self) -> None:
        """Until the re-read under way (if any) has finished (tests: after moving the clock past one)."""
        if self._refresh is not None:
            await self._refresh.settle()

    def health(self) -> dict[str, Any]:
        counts = {"notifiers": self.notifiers.own_count(), "recipients": self.recipients.own_count(),
                  "escalations": self.escalations.own_count()}
        return {**counts, **(self._refresh.health() if self._refresh is not None else {})}

    async def _reread(self) -> None:
        await self.load()

    def chain_for(self, tenant: str, rule_id: str, level: str | None) -> EscalationChain | None:
        """The most specific chain: rule and level, then rule, then level, then any (ties: by id)."""
        wanted = level or FAULT_LEVEL
        # A derived (parent) alarm summarises alarms that escalate on their own: only a chain that
        # names its rule (derived:safety / derived:fault) applies, never a catch-all one.
        rules = (rule_id,) if rule_id.startswith("derived:") else (rule_id, ANY)
        fits = [c for c, _ in self.escalations.all(tenant) if c.rule in rules and c.level in (wanted, ANY)]
        fits.sort(key=lambda c: (-c.specificity(), c.id))
        return fits[0] if fits else None

    def check_references(self, tenant: str, item: BaseModel) -> None:
        """A group's notifiers and a chain's groups must exist (400 otherwise)."""
        missing: list[str] = []
        if isinstance(item, RecipientGroup):
            names = [*item.notifiers, *(c.notifier for m in item.members for c in m.contacts)]
            missing = [n for n in names if self.notifiers.get(tenant, n) is None]
        elif isinstance(item, EscalationChain):
            missing = [s.group for s in item.steps if self.recipients.get(tenant, s.group) is None]
        if missing:
            raise BadRequest(f"알 수 없는 참조 / unknown references: {', '.join(sorted(set(missing)))}")
