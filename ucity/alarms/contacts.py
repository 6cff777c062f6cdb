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
import functools
import logging
import re
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.core.clock import Clock
from ucity.core.errors import BadRequest, NotFound, UcityError
from ucity.core.refresh import Refresh
from ucity.rules.events import LEVELS
from ucity.store.base import Store

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
ANY = "*"
FAULT_LEVEL = "fault"  # the "level" an escalation chain uses for fault alarms


class ReadOnly(UcityError):
    status = 409
    type_uri = "urn:ucity:errors:ReadOnly"
    title = "Defined in configuration"


class InUse(UcityError):
    """A delete (or replace) that would leave another entry pointing at nothing (409, `usedBy` names them)."""

    status = 409
    type_uri = "urn:ucity:errors:InUse"
    title = "Referenced by other entries"


class Duplicate(UcityError):
    """Two escalation chains for the same rule and level (409): which one applies would be an accident of ids."""

    status = 409
    type_uri = "urn:ucity:errors:DuplicateChain"
    title = "Escalation chain already defined"


# An e-mail address as a mail server takes it: one `@`, no space, control character or address-list syntax
# (`<>,;:"()[]\`), a domain of dot-separated labels with a top level (`not-an-email` fails only at send otherwise).
_EMAIL = re.compile(r"^[^\s@<>,;:\"()\[\]\\]{1,64}@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$")
SILENT_PROVIDERS = ("", "recording")  # sms/push providers that record and send nothing (notifiers/recording.py)


def valid_email(address: str) -> bool:
    """Whether `address` looks like an e-mail address a mail server would take (F11: checked when entered)."""
    return bool(_EMAIL.match(address)) and not any(ord(c) < 0x20 or c == "\x7f" for c in address)


def sends_nothing(item: NotifierConfig) -> bool:
    """An sms/push notifier on the built-in recording provider: it records and sends nothing."""
    return item.type in ("sms", "push") and item.provider in SILENT_PROVIDERS


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
    """The 400 of a body pydantic refused, for every API that validates bodies with pydantic (ops, alarms).

    A validator's own ValueError comes as pydantic's "Value error, <its text>": the prefix is dropped, and its
    "한국어 / English" text goes half to each half of the detail, so that the detail has one " / " (the dashboard's
    `localText` splits there). pydantic's own messages are English: they stand in both halves."""
    ko: list[str] = []
    en: list[str] = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        korean, bar, english = message.partition(" / ")
        ko.append(f"{where}: {korean}")
        en.append(f"{where}: {english if bar else message}")
    return BadRequest(f"잘못된 값: {'; '.join(ko)} / invalid value: {'; '.join(en)}")


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

    def tenants(self) -> set[str]:
        """The tenants that have entries of their own."""
        return {tenant for tenant, _ in self._items}

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
        # What `config_warnings` judges by (set by the platform, ucity/alarms/api.py `AlarmApi`): outside
        # development a notifier that sends nothing is a warning; `rule_known(tenant, rule id)` tells a chain's rule.
        self.development = True
        self.rule_known: Callable[[str, str], bool] | None = None
        self._said: set[str] = set()  # the warnings logged already (each once, while it holds)

    async def load(self) -> None:
        """(Re-)read the three collections from the store."""
        await self.notifiers.load()
        await self.recipients.load()
        await self.escalations.load()
        if self._refresh is not None:
            self._refresh.loaded()
            self._say_warnings()

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
        warnings = self.warnings()
        return {**counts, **(self._refresh.health() if self._refresh is not None else {}),
                **({"configWarnings": warnings} if warnings else {})}

    def warnings(self) -> list[str]:
        return self.config_warnings(self.development, self.rule_known)

    def _say_warnings(self) -> None:
        """Log each warning once when it appears (at start; a chain's unknown rule once the rules engine has read
        its rules, at the first re-read after the start); /health lists them while they hold."""
        warnings = self.warnings()
        for warning in warnings:
            if warning not in self._said:
                log.warning("%s", warning)
        self._said = set(warnings)

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
        """A group's notifiers and a chain's groups must exist, and a member's e-mail contact must be an e-mail
        address (400 otherwise)."""
        missing: list[str] = []
        if isinstance(item, RecipientGroup):
            missing = [n for n in group_notifiers(item) if self.notifiers.get(tenant, n) is None]
            for problem in bad_addresses(item, lambda n: self.notifiers.get(tenant, n)):
                raise BadRequest(problem)
        elif isinstance(item, EscalationChain):
            missing = [s.group for s in item.steps if self.recipients.get(tenant, s.group) is None]
        if missing:
            raise BadRequest(f"알 수 없는 참조 / unknown references: {', '.join(sorted(set(missing)))}")

    def check_chain(self, tenant: str, chain: EscalationChain) -> None:
        """409 when another chain of the tenant (or a configured one) has the same rule and level."""
        for other, _ in self.escalations.all(tenant):
            if other.id != chain.id and (other.rule, other.level) == (chain.rule, chain.level):
                raise Duplicate(f"규칙 {chain.rule}, 단계 {chain.level}의 에스컬레이션은 이미 {other.id}에 있습니다 / "
                                f"escalation chain {other.id} already covers rule {chain.rule!r} at level "
                                f"{chain.level!r}", existing=other.id)

    def users(self, tenant: str, kind: str, item_id: str) -> list[dict[str, str]]:
        """The entries that point at `item_id` of collection `kind` (`notifiers`: recipient groups; `recipients`:
        escalation chains), the tenant's and the configured ones."""
        if kind == "notifiers":
            return [{"collection": "recipients", "id": g.id} for g, _ in self.recipients.all(tenant)
                    if item_id in group_notifiers(g)]
        if kind == "recipients":
            return [{"collection": "escalations", "id": c.id} for c, _ in self.escalations.all(tenant)
                    if any(step.group == item_id for step in c.steps)]
        return []

    def check_unused(self, tenant: str, kind: str, item_id: str) -> None:
        """F5: 409 for deleting an entry others still point at (the next alarm would notify nobody)."""
        users = self.users(tenant, kind, item_id)
        if users:
            names = ", ".join(f"{u['collection']}/{u['id']}" for u in users)
            raise InUse(f"{item_id}을(를) 쓰는 항목이 있어 삭제할 수 없습니다: {names} / {item_id} is still used by "
                        f"{names}: change or delete them first", usedBy=users)

    def unknown_rule_warning(self, chain: EscalationChain, rule_known: Callable[[str], bool]) -> str | None:
        """A warning for a chain that names a rule nobody has (yet): it applies to no alarm until one exists."""
        if chain.rule == ANY or chain.rule.startswith("derived:") or rule_known(chain.rule):
            return None
        return (f"에스컬레이션 {chain.id}: 규칙 {chain.rule}이(가) 없어 아직 어떤 경보에도 적용되지 않습니다 / "
                f"escalation chain {chain.id}: no rule {chain.rule!r} exists (yet): it applies to no alarm until one "
                "does")

    def config_warnings(self, development: bool, rule_known: Callable[[str, str], bool] | None = None) -> list[str]:
        """What a running configuration should not be, as warnings (logged at start, /health `configWarnings`):
        outside development, sms/push notifiers that send nothing (the recording provider); chains for rules
        that do not exist (when `rule_known(tenant, rule)` is given)."""
        warnings: list[str] = []
        tenants = sorted(self.notifiers.tenants() | self.escalations.tenants())
        if not development:
            silent = sorted({(("" if source == "configuration" else t), n.id)
                             for t in [*tenants, ""] for n, source in self.notifiers.all(t) if sends_nothing(n)})
            for tenant, notifier_id in silent:
                where = f" (tenant {tenant})" if tenant else ""
                warnings.append(f"알림 수단 {notifier_id}{where}은(는) 기록만 하고 실제로 보내지 않습니다(provider "
                                f"recording) / notifier {notifier_id}{where} sends nothing: the recording provider "
                                "only records its messages; plug a real provider in (register_provider)")
        if rule_known is not None:
            seen: set[tuple[str, str]] = set()
            for tenant in [*tenants, ""]:
                for chain, source in self.escalations.all(tenant):
                    key = ("" if source == "configuration" else tenant, chain.id)
                    if key in seen:
                        continue
                    seen.add(key)
                    warning = self.unknown_rule_warning(chain, functools.partial(rule_known, tenant))
                    if warning is not None:
                        warnings.append(warning + (f" (tenant {tenant})" if key[0] else ""))
        return warnings


def group_notifiers(group: RecipientGroup) -> list[str]:
    """The notifier ids a recipient group uses: its group endpoints and its members' contacts."""
    return [*group.notifiers, *(c.notifier for m in group.members for c in m.contacts)]


def bad_addresses(group: RecipientGroup, notifier: Callable[[str], NotifierConfig | None]) -> list[str]:
    """F11: a member's contact on an e-mail notifier whose address is no e-mail address (one line each)."""
    problems = []
    for member in group.members:
        for contact in member.contacts:
            found = notifier(contact.notifier)
            if found is not None and found.type == "email" and not valid_email(contact.address):
                problems.append(f"{member.name}의 {contact.notifier} 주소가 올바른 전자우편 주소가 아닙니다 / the "
                                f"{contact.notifier} address of member {member.name!r} is not an e-mail address")
    return problems


def _pydantic_lines(where: str, exc: ValidationError) -> list[str]:
    return [f"{where}: {'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()]


def configuration_problems(notifiers: list[dict[str, Any]], recipients: list[dict[str, Any]],
                           escalations: list[dict[str, Any]], production: bool,
                           endpoint_check: Callable[[str], str | None] | None = None) -> list[str]:
    """F7: the configured notifiers, recipient groups and escalation chains (`alarms.*` in the TOML file) checked
    as the API checks them: one line per problem (`ucity config validate` and `ucity serve` say them and exit 1).
    `endpoint_check(url)`: why a webhook url is refused (the SSRF guard of production), or None."""
    problems: list[str] = []
    parsed: dict[str, dict[str, Any]] = {"notifiers": {}, "recipients": {}, "escalations": {}}
    models: dict[str, type[_Doc]] = {"notifiers": NotifierConfig, "recipients": RecipientGroup,
                                     "escalations": EscalationChain}
    for name, raws in (("notifiers", notifiers), ("recipients", recipients), ("escalations", escalations)):
        for index, raw in enumerate(raws):
            label = f"alarms.{name}[{index}]" + (f" ({raw['id']})" if isinstance(raw, dict) and "id" in raw else "")
            try:
                item = models[name].model_validate(raw)
            except ValidationError as exc:
                problems.extend(_pydantic_lines(label, exc))
                continue
            if item.id in parsed[name]:
                problems.append(f"{label}: id {item.id!r} is defined twice")
                continue
            parsed[name][item.id] = (label, item)
    for label, notifier in parsed["notifiers"].values():
        if production and sends_nothing(notifier) and notifier.provider == "":
            problems.append(f"{label}: {SILENT_REFUSAL_EN}")
        if notifier.type == "webhook" and endpoint_check is not None and notifier.url:
            why = endpoint_check(notifier.url)
            if why:
                problems.append(f"{label}: url: {why}")
    for label, group in parsed["recipients"].values():
        missing = sorted({n for n in group_notifiers(group) if n not in parsed["notifiers"]})
        if missing:
            problems.append(f"{label}: unknown notifiers {', '.join(missing)} (configured groups use configured "
                            "notifiers)")
        problems.extend(f"{label}: {p.split(' / ', 1)[-1]}" for p in bad_addresses(
            group, lambda n: parsed["notifiers"][n][1] if n in parsed["notifiers"] else None))
    chains: dict[tuple[str, str], str] = {}
    for label, chain in parsed["escalations"].values():
        missing = sorted({s.group for s in chain.steps if s.group not in parsed["recipients"]})
        if missing:
            problems.append(f"{label}: unknown recipient groups {', '.join(missing)}")
        other = chains.setdefault((chain.rule, chain.level), chain.id)
        if other != chain.id:
            problems.append(f"{label}: chain {other} already covers rule {chain.rule!r} at level {chain.level!r}")
    return problems


SILENT_REFUSAL_KO = ("SMS/푸시 제공자가 지정되지 않아 기록만 하고 보내지 않습니다. 실제 제공자를 지정하거나, 보내지 않을 것이면 "
                     "provider를 \"recording\"으로 명시하십시오")
SILENT_REFUSAL_EN = ("an sms/push notifier without a provider sends nothing (the recording provider) outside "
                     "development: name the city's provider, or set provider \"recording\" explicitly to keep one "
                     "that sends nothing")


def settings_problems(settings: Any) -> list[str]:
    """`configuration_problems` of a whole configuration (`ucity config validate`, `ucity serve`: ucity/cli.py),
    webhook urls judged by the guard the platform will use (production: no loopback/private/link-local)."""
    from ucity.alarms.notifiers import webhook_guard, webhook_refusal

    guard = webhook_guard(settings)
    alarms = settings.alarms
    return configuration_problems(alarms.notifiers, alarms.recipients, alarms.escalations,
                                  settings.environment == "production",
                                  None if guard is None else functools.partial(webhook_refusal, guard))
