"""Bearer tokens, roles and permissions of the operations endpoints (`/api/v1/events` ... `/audit`).

Who calls is a `Principal`: a token's id, its role and, for an agency, the agency id. Handlers never
test a role: they ask for a `Permission` (`principal.require(Permission.GRANTS_ISSUE)`). Roles are
named sets of permissions (`ROLE_PERMISSIONS`); the general role system of a later issue replaces that
table with configurable roles and adds token sources (an `TokenSource` such as OIDC) without touching
a handler.

Roles (issue 5):

* `operator`: the integrated operation centre's staff: every event, sharing, approvals, personal data;
* `agency` (with `agency`: its id): police 112, fire 119, disaster rooms ... see the events shared with
  or reported by their agency, report events, ask for video, open footage with their grants;
* `admin`: everything, plus cameras, agencies, tokens and the audit log;
* `reader`: `data:read` only, for read-only clients (a data portal, a video wall); no operations endpoint.

The platform's other APIs (NGSI-LD, alarms, rules, provisioning, domains ...) take the same tokens when
`server.require_auth` is on, with the coarse permissions `data:read|write` and `config:read|admin`
(ucity/access.py).

Tokens come from configuration (`ops.admin_token`, `ops.tokens`) or are issued by an admin through the
API; an issued token is shown once, and only its SHA-256 is kept (tokens are 256-bit random values, so a
plain hash is enough). Each process re-reads the issued tokens from the store every `ops.token_refresh_s` (10 s)
on the platform clock, so that a token issued or revoked through another API process on the same store works, or
stops working, here within that bound (at once in the process that issued or revoked it). An unknown token never
makes a store read: clients choose them, and a read per request would let anyone load the database.

An admin bound to a tenant (`tenant: citya`) administers the tokens of that tenant only: it issues tokens bound to
it (any other: 403, audited), lists only them, and revokes only them (another tenant's token: 404, as if absent).

Personal data (reporter phone, subject names) is masked for principals without `personal:read` (PLAT-R10,
`mask_*`).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.core.clock import Clock, parse_iso, to_iso
from ucity.core.config import OpsSettings
from ucity.core.errors import AlreadyExists, BadRequest, NotFound, UcityError
from ucity.core.http import Req
from ucity.core.refresh import Refresh, Refreshed
from ucity.store.base import Doc, Store

log = logging.getLogger(__name__)
TOKENS_KIND = "ops-tokens"
GLOBAL = "*"  # the store's tenant key of documents that belong to no tenant
TOKEN_PREFIX = "uct_"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


# HTTP authentication schemes other than Bearer (IANA registry) whose name a 401 may repeat (`Authenticator.bearer`).
OTHER_SCHEMES = frozenset({"basic", "digest", "negotiate", "ntlm", "hoba", "mutual", "scram-sha-1", "scram-sha-256",
                           "vapid", "dpop", "privatetoken", "concealed", "token", "apikey", "aws4-hmac-sha256"})


class Unauthorized(UcityError):
    """No usable bearer token (401, with `WWW-Authenticate: Bearer`)."""

    status = 401
    type_uri = "urn:ucity:errors:Unauthorized"
    title = "Authentication required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="ucity"'}


class Forbidden(UcityError):
    """The principal may not do this (403)."""

    status = 403
    type_uri = "urn:ucity:errors:Forbidden"
    title = "Forbidden"


class AgencyRefused(Forbidden):
    """A known agency token whose agency is disabled or no longer exists (403 with `reason` agency-disabled /
    agency-unknown): the token is genuine, its agency may not act now. Audited by the API (`auth` / `refused`)."""

    def __init__(self, principal: Principal, reason: str) -> None:
        what = ("사용 중지된 기관", "is disabled") if reason == "agency-disabled" else ("없는 기관", "does not exist")
        super().__init__(f"{what[0]} {principal.agency}의 토큰 / the token's agency {principal.agency} {what[1]}",
                         reason=reason)
        self.principal = principal
        self.reason = reason


class Role(enum.StrEnum):
    OPERATOR = "operator"
    AGENCY = "agency"
    ADMIN = "admin"
    READER = "reader"  # read-only data clients (a data portal, a video wall): data:read alone
    INGEST = "ingest"  # data pipelines and gateways writing NGSI-LD: data:read and data:write, nothing personal


class Permission(enum.StrEnum):
    EVENTS_READ = "events:read"  # the events of one's agency (shared with it or reported by it)
    EVENTS_READ_ALL = "events:read-all"  # every event of the tenant
    EVENTS_REPORT = "events:report"  # create events, add attachments
    EVENTS_MANAGE = "events:manage"  # transitions, linkages for any agency, approvals (PLAT-R4)
    LINKAGE_REQUEST = "linkage:request"  # an agency asks for video of an event for itself
    CAMERAS_READ = "cameras:read"
    CAMERAS_ADMIN = "cameras:admin"  # register, import, change cameras; see raw stream URLs
    AGENCIES_READ = "agencies:read"
    AGENCIES_ADMIN = "agencies:admin"
    GRANTS_READ_ALL = "grants:read-all"  # every agency's grants and the per-agency statistics
    GRANTS_ISSUE = "grants:issue"  # issue, renew and revoke any grant
    GRANTS_RENEW_OWN = "grants:renew-own"  # an agency renews its own grants
    FOOTAGE_VIEW = "footage:view"  # open a stream or still with a grant of one's agency
    AUDIT_READ = "audit:read"
    PERSONAL_READ = "personal:read"  # personal data unmasked (PLAT-R10)
    PERSONAL_WRITE = "personal:write"  # NGSI-LD writes and deletes of personal entities (ucity/ngsild/personal.py)
    TOKENS_ADMIN = "tokens:admin"
    PRIVACY_ADMIN = "privacy:admin"  # data-subject requests: search a person's events, redact them (QA10 F4)
    # The platform's other APIs (ucity/access.py maps every mounted route to one of these):
    DATA_READ = "data:read"  # NGSI-LD, alarms and their stream, device health, ingest stats, domains, care areas
    DATA_WRITE = "data:write"  # writes to those (entities, subscriptions, alarm actions, domain writes)
    CONFIG_READ = "config:read"  # rules, escalations, notifiers, recipients, device provisioning, dead letters
    CONFIG_ADMIN = "config:admin"  # changes to those, and the replay of dead letters


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset({P.EVENTS_READ, P.EVENTS_READ_ALL, P.EVENTS_REPORT, P.EVENTS_MANAGE, P.LINKAGE_REQUEST,
                              P.CAMERAS_READ, P.AGENCIES_READ, P.GRANTS_READ_ALL, P.GRANTS_ISSUE, P.PERSONAL_READ,
                              P.PERSONAL_WRITE, P.DATA_READ, P.DATA_WRITE, P.CONFIG_READ}),
    Role.AGENCY: frozenset({P.EVENTS_READ, P.EVENTS_REPORT, P.LINKAGE_REQUEST, P.CAMERAS_READ, P.AGENCIES_READ,
                            P.GRANTS_RENEW_OWN, P.FOOTAGE_VIEW}),
    Role.ADMIN: frozenset(Permission),
    Role.READER: frozenset({P.DATA_READ}),
    Role.INGEST: frozenset({P.DATA_READ, P.DATA_WRITE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: the token's id (the actor written to every audit line), role, agency and permissions."""

    id: str
    role: Role
    permissions: frozenset[Permission]
    agency: str | None = None
    tenant: str | None = None  # the one tenant the token is for (None: any)
    name: str = ""
    label: str | None = None  # the actor name of the platform's own principals

    @property
    def actor(self) -> str:
        return self.label or f"{self.role}:{self.id}"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(f"권한 없음: {permission} / the {self.role} role does not have {permission}",
                            permission=str(permission))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": str(self.role), "agency": self.agency, "tenant": self.tenant,
                "permissions": sorted(str(p) for p in self.permissions)}


# The platform's own principals: SYSTEM acts for ucity (alarms becoming events, revocations on close);
# AUTO asks for linkages on its own and so, lacking events:manage, passes the PLAT-R4 gate like an agency.
SYSTEM = Principal("system", Role.ADMIN, frozenset(Permission), name="ucity", label="system")
AUTO = Principal("auto-linkage", Role.OPERATOR, frozenset({Permission.LINKAGE_REQUEST, Permission.EVENTS_READ_ALL}),
                 name="automatic linkage", label="system:auto-linkage")


class TokenSpec(BaseModel):
    """A token as configured or issued: never its value, only what it grants (and its hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    role: Role
    agency: str | None = None
    tenant: str | None = None
    name: str = Field("", max_length=200)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("id: letters, digits and _ . : - (at most 100), starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _agency_role(self) -> TokenSpec:
        if (self.role == Role.AGENCY) != (self.agency is not None):
            raise ValueError("an agency token names its agency, and only an agency token does")
        return self

    def principal(self) -> Principal:
        return Principal(self.id, self.role, ROLE_PERMISSIONS[self.role], self.agency, self.tenant, self.name)


class ConfiguredToken(TokenSpec):
    token: str = Field(min_length=16, description="the bearer value (configuration only; never returned)")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenSource(Protocol):
    """Where principals come from; a later role system adds others (e.g. OIDC)."""

    def lookup(self, token: str) -> Principal | None: ...


class TokenRegistry(Refreshed):
    """Configured tokens (read-only) and tokens issued through the API (persisted as hashes, re-read from the store
    every `ops.token_refresh_s` once started, so that several API processes on one store agree within that bound)."""

    def __init__(self, store: Store, settings: OpsSettings, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.refresh_s = settings.token_refresh_s
        self._lock = asyncio.Lock()  # a refresh does not undo an issue or a revocation made while it read
        self._refresh = Refresh(clock, "ucity-token-refresh", "the issued tokens", self.load, lambda: self.refresh_s)
        self._configured: dict[str, TokenSpec] = {}
        self._issued: dict[str, tuple[TokenSpec, Doc]] = {}  # hash -> (spec, stored document)
        self._expires: dict[str, datetime] = {}  # hash -> when an issued token with `expiresAt` stops working
        self._principals: dict[str, Principal] = {}  # hash -> the principal of a known token, once looked up
        # Counts changes of the issued tokens (issue, revocation, a re-read that found any): readers that derive
        # something from the tokens (subscriptions' owners, ucity/ngsild/sub_owner.py) rebuild it when it moves.
        self.changes = 0
        for raw in settings.tokens:
            try:
                spec = ConfiguredToken.model_validate(raw)
            except ValidationError as exc:
                raise ValueError(f"ops.tokens in the configuration: {exc}") from exc
            self._configured[token_hash(spec.token)] = TokenSpec(**spec.model_dump(exclude={"token"}))
        if settings.admin_token is not None:
            self._configured[token_hash(settings.admin_token.get_secret_value())] = TokenSpec(
                id="admin", role=Role.ADMIN, name="configured admin (ops.admin_token)")

    async def load(self) -> None:
        """(Re-)read the issued tokens from the store: the ones issued elsewhere are added, the ones revoked
        elsewhere (gone from the store) stop working here at once."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:  # (under the lock)
        issued = {doc["sha256"]: (TokenSpec.model_validate(doc["spec"]), doc)
                  for _, _, doc in await self._store.list_docs(TOKENS_KIND)}
        for digest, (spec, _) in self._issued.items():
            if (digest not in issued or issued[digest][0] != spec) and digest not in self._configured:
                self._principals.pop(digest, None)
        if issued != self._issued:
            self.changes += 1
        self._issued = issued
        self._expires = {digest: parse_iso(str(doc["expiresAt"])) for digest, (_, doc) in issued.items()
                         if doc.get("expiresAt")}
        self._refresh.loaded()

    # -- the periodic refresh (on the platform clock, so tests move it): start, stop, settle of `Refreshed` -----
    def health(self) -> dict[str, Any]:
        return {"issued": len(self._issued), **self._refresh.health()}

    def lookup(self, token: str) -> Principal | None:
        digest = token_hash(token)
        if self._expires and digest in self._expires and self._clock.now() >= self._expires[digest]:
            return None  # expired: answered 401 like an unknown token (`expired` tells which)
        found = self._principals.get(digest)  # every request of every API asks (server.require_auth)
        if found is not None:
            return found
        spec = self._configured.get(digest) or (self._issued[digest][0] if digest in self._issued else None)
        if spec is None:
            return None  # unknown tokens are not remembered: clients choose them
        principal = self._principals[digest] = spec.principal()
        return principal

    def expired(self, token: str) -> bool:
        """Whether `token` is an issued token past its `expiresAt` (asked only for a token lookup refused)."""
        when = self._expires.get(token_hash(token))
        return when is not None and self._clock.now() >= when

    def listing(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every token (never its value or hash); with `tenant` (a tenant-bound admin's), only that tenant's."""
        configured = [{**s.model_dump(mode="json"), "source": "configuration"} for s in self._configured.values()
                      if tenant is None or s.tenant == tenant]
        now = self._clock.now()
        issued = [{**s.model_dump(mode="json"), "source": "api", "createdAt": d["createdAt"],
                   "createdBy": d["createdBy"], "expiresAt": d.get("expiresAt"),
                   "expired": bool(d.get("expiresAt")) and now >= parse_iso(str(d["expiresAt"]))}
                  for s, d in self._issued.values() if tenant is None or s.tenant == tenant]
        return sorted([*configured, *issued], key=lambda t: str(t["id"]))

    async def issue(self, spec: TokenSpec, actor: str, expires_at: datetime | None = None) -> str:
        """A new random token for `spec` (returned once); 409 if the id is taken. The issued tokens are re-read
        first (an admin's call, not every request's), so that an id another process issued since the last refresh
        is refused here; two processes issuing one id at the same instant are decided by the store (`insert_doc`:
        the first write wins, the other is answered 409 too)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        doc: Doc = {"sha256": digest, "spec": spec.model_dump(mode="json"), "createdAt": to_iso(self._clock.now()),
                    "createdBy": actor}
        if expires_at is not None:
            doc["expiresAt"] = to_iso(expires_at)
        async with self._lock:
            await self._reload()
            if any(s.id == spec.id for s in self._specs()):
                raise AlreadyExists(f"토큰 {spec.id} 이미 있음 / token {spec.id} already exists")
            if not await self._store.insert_doc(TOKENS_KIND, GLOBAL, spec.id, doc):
                raise AlreadyExists(f"토큰 {spec.id} 이미 있음 / token {spec.id} already exists")
            self._issued[digest] = (spec, doc)
            self.changes += 1
            if expires_at is not None:
                self._expires[digest] = expires_at
        return token

    async def revoke(self, token_id: str, tenant: str | None = None) -> TokenSpec:
        """Revoke an issued token (here at once, in other processes within `refresh_s`). With `tenant` (a
        tenant-bound admin's), a token of another tenant, or of none, is answered 404 as if it did not exist."""
        async with self._lock:
            for attempt in range(2):
                if attempt:  # issued by another process since the last refresh: the store knows it (an admin's
                    await self._reload()  # call, not every request's, may read the store)
                for digest, (spec, _) in list(self._issued.items()):
                    if spec.id == token_id and (tenant is None or spec.tenant == tenant):
                        await self._store.delete_doc(TOKENS_KIND, GLOBAL, token_id)
                        self._issued.pop(digest, None)
                        self.changes += 1
                        self._principals.pop(digest, None)
                        return spec
        if any(s.id == token_id and (tenant is None or s.tenant == tenant) for s in self._configured.values()):
            raise BadRequest(f"{token_id}: 설정 파일의 토큰은 API로 폐기할 수 없습니다 / a configured token is "
                             "removed from the configuration, not through the API")
        raise NotFound(f"토큰 {token_id} 없음 / token {token_id} does not exist")

    def issued_agency_tokens(self) -> list[TokenSpec]:
        """The issued (revocable) tokens that name an agency."""
        return [s for s, _ in self._issued.values() if s.agency is not None]

    def configured_agency_tokens(self) -> list[TokenSpec]:
        """The configured tokens that name an agency (checked at start: center.py)."""
        return [s for s in self._configured.values() if s.agency is not None]

    def _specs(self) -> Iterable[TokenSpec]:
        yield from self._configured.values()
        yield from (s for s, _ in self._issued.values())


# (tenant, agency id) -> why the agency may not act now ("agency-disabled", "agency-unknown"), or None
AgencyRefusal = Callable[[str, str], str | None]


class Authenticator:
    """Turns a request's `Authorization: Bearer <token>` into a Principal, or refuses it (401/403).

    An agency token is checked against its agency on every request (`agency_refusal`), rather than revoked when
    the agency is disabled: configured tokens cannot be revoked at all, and re-enabling an agency gives its
    terminals back without new tokens. Deleting an agency also revokes its issued tokens (center.py), so that
    an agency created again under the same id does not bring old terminals back."""

    def __init__(self, sources: list[TokenSource], agency_refusal: AgencyRefusal | None = None) -> None:
        self.sources = sources
        self.agency_refusal: AgencyRefusal = agency_refusal or (lambda tenant, agency_id: None)

    def identify(self, req: Req) -> Principal | None:
        """The principal of a bearer token, or None without a known one (footage links audit that)."""
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        for source in self.sources:  # a loop, not generators: every request of every API may ask
            principal = source.lookup(token)
            if principal is not None:
                return principal
        return None

    def authenticate(self, req: Req, tenant: str) -> Principal:
        principal = self.bearer(req)
        self.admit(principal, tenant)
        return principal

    def bearer(self, req: Req) -> Principal:
        """The principal of the request's bearer token; 401 without a token or with an unknown one."""
        header = (req.header("authorization") or "").strip()
        if not header:
            raise Unauthorized("Authorization: Bearer <토큰> 필요 / an Authorization: Bearer <token> header is required")
        scheme = header.partition(" ")[0]
        if scheme.lower() != "bearer":  # Basic, Digest, a bare token...: said as such, not as an unknown token
            # Only a registered scheme's name is repeated: a bare token (no scheme) must not come back in the answer.
            named = scheme if scheme.lower() in OTHER_SCHEMES else ""
            ko = f"({named} 인증은 받지 않음)" if named else ""
            en = f", not {named} authentication" if named else ""
            raise Unauthorized(f"Bearer 토큰만 받습니다{ko}: Authorization: Bearer <토큰> / ucity takes bearer tokens "
                               f"only{en}: send Authorization: Bearer <token>", reason="not-bearer")
        principal = self.identify(req)
        if principal is None:
            token = (req.header("authorization") or "").partition(" ")[2].strip()
            if any(getattr(source, "expired", None) is not None and source.expired(token)  # type: ignore[attr-defined]
                   for source in self.sources):
                raise Unauthorized("만료된 토큰: 관리자에게 새 토큰을 요청하세요 / expired token: ask an administrator "
                                   "for a new one")
            raise Unauthorized("알 수 없거나 폐기된 토큰 / unknown or revoked token")
        return principal

    def admit(self, principal: Principal, tenant: str) -> None:
        """403 for a token of another tenant, or of an agency that may not act now (AgencyRefused)."""
        if principal.tenant is not None and principal.tenant != tenant:
            raise Forbidden(f"이 토큰은 테넌트 {principal.tenant} 전용 / this token is for tenant {principal.tenant}",
                            reason="tenant", tokenTenant=principal.tenant)
        if principal.agency is not None:
            refusal = self.agency_refusal(tenant, principal.agency)
            if refusal is not None:
                raise AgencyRefused(principal, refusal)


def unbound_agency_tokens(specs: Iterable[TokenSpec], reach: Callable[[str], set[str]]) -> list[str]:
    """One warning per agency token bound to no tenant whose agency exists in more than one tenant (`reach`: the
    tenants an agency exists in). Such a token acts in each of them: with `NGSILD-Tenant` it reads that tenant's
    events, grants and footage (QA15 F3). Said at start (log and /health's `configWarnings`, server.py) and by
    `ucity config validate` (from the configuration alone: the tenants it names); not a refusal to start, since a
    city that serves one tenant needs no binding."""
    warnings = []
    for spec in sorted(specs, key=lambda s: s.id):
        if spec.agency is None or spec.tenant is not None:
            continue
        tenants = sorted(reach(spec.agency))
        if len(tenants) > 1:
            shown = ", ".join(tenants[:5]) + (f" … ({len(tenants)})" if len(tenants) > 5 else "")
            warnings.append(
                f"기관 토큰 {spec.id}({spec.agency})은 테넌트에 묶여 있지 않아 NGSILD-Tenant로 여러 테넌트({shown})의 "
                f"사건·영상 공유·영상에 접근합니다: \"tenant\"를 지정하세요 / agency token {spec.id} ({spec.agency}) is "
                f"bound to no tenant while its agency exists in several ({shown}): with NGSILD-Tenant it reads each "
                "one's events, grants and footage; bind it to one with \"tenant\" (ops.tokens, or when issuing it; "
                "docs/operations-center.md §1)")
    return warnings


class AgencyReach(Protocol):
    """What `issued_token_warnings` asks of the agencies (agencies.AgencyRegistry)."""

    def tenants(self) -> set[str]: ...

    def reach(self, agency_id: str, tenants: set[str]) -> set[str]: ...


async def known_tenants(store: Store, default_tenant: str, tokens: TokenRegistry, agencies: AgencyReach) -> set[str]:
    """The tenants an unbound agency token could act in, as far as ucity knows them: the store's, the default one,
    those tokens are bound to and those agencies are registered in (one read of the store's small tenant table)."""
    return {default_tenant, *await store.tenants(), *agencies.tenants(),
            *(str(t["tenant"]) for t in tokens.listing() if t.get("tenant"))}


async def issued_token_warnings(spec: TokenSpec, store: Store, default_tenant: str, tokens: TokenRegistry,
                                agencies: AgencyReach) -> list[str]:
    """The start's warning (`unbound_agency_tokens`) for one token being issued: an agency token bound to no tenant
    whose agency exists in more than one tenant (known now: the store's, the default one, those tokens are bound to
    and those agencies are registered in, as at start). Logged, and returned for the issue's answer (`warnings`), so
    the admin who issues it learns it then rather than at the next start. One read of the store's small tenant
    table, only for such a token."""
    if spec.agency is None or spec.tenant is not None:
        return []
    tenants = await known_tenants(store, default_tenant, tokens, agencies)
    warnings = unbound_agency_tokens([spec], lambda agency: agencies.reach(agency, tenants))
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def configured_unbound_agency_tokens(settings: OpsSettings, default_tenant: str) -> list[str]:
    """`unbound_agency_tokens` from the configuration alone (`ucity config validate`, which opens no store): the
    tenants are the default one and those the configured tokens name, and only configured agencies are known
    (each exists in all of them). The store may hold more tenants: the start's check counts those too."""
    specs = []
    for raw in settings.tokens:
        try:
            specs.append(TokenSpec(**ConfiguredToken.model_validate(raw).model_dump(exclude={"token"})))
        except ValidationError:
            continue  # refused at start with its reason (TokenRegistry)
    tenants = {default_tenant} | {s.tenant for s in specs if s.tenant is not None}
    agencies = {str(raw.get("id")) for raw in settings.agencies}
    return unbound_agency_tokens(specs, lambda agency: tenants if agency in agencies else set())


def new_token_id() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


# -- masking of personal data (PLAT-R10) -----------------------------------------------------------
def mask_name(name: str) -> str:
    """김철수 -> 김**, John Smith -> J*** S****: the first letter of each word stays."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split()) if name.strip() else name


def mask_phone(phone: str) -> str:
    """010-1234-5678 -> 010-****-5678, 02-860-2114 -> 02-***-2114, 01012345678 -> 010****5678."""
    groups = re.findall(r"\d+|\D+", phone)
    digit_groups = [g for g in groups if g.isdigit()]
    if sum(len(g) for g in digit_groups) < 7:
        return "*" * len(phone)
    if len(digit_groups) >= 3:  # written in groups: the first and the last stay
        first, last = groups.index(digit_groups[0]), len(groups) - 1 - groups[::-1].index(digit_groups[-1])
        return "".join(g if not g.isdigit() or k in (first, last) else "*" * len(g) for k, g in enumerate(groups))
    count, seen, out = sum(len(g) for g in digit_groups), 0, []
    for char in phone:  # otherwise the first 3 and last 4 digits stay
        if char.isdigit():
            out.append(char if seen < 3 or seen >= count - 4 else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)


_MASKERS = {"name": mask_name, "phone": mask_phone}


def mask_personal(personal: dict[str, Any]) -> dict[str, Any]:
    """A person's data with names and phone numbers masked and everything else (free text) withheld."""
    out: dict[str, Any] = {}
    for key, value in personal.items():
        masker = _MASKERS.get(key)
        if masker is not None and isinstance(value, str):
            out[key] = masker(value)
        elif key in ("category", "ageBand", "sex"):
            out[key] = value  # not identifying on its own; responders need it
        else:
            out[key] = "***"
    out["masked"] = True
    return out
