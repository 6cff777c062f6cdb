"""Personal data in the NGSI-LD API: least privilege and a read audit (QA10 F5, docs/operations.md §4).

Entities whose type is one of `privacy.personal_entity_types` (default `Person` and ucity's care types `ElderlyHome`,
`CareDevice`, `ChildTracker`, `SafeReturnWalk` (QA12 F8) [D]; short names of the core @context or full IRIs), or one
a domain declares in `setup` (`platform.get("privacy").declare`, ucity/core/privacy.py, QA13 F1), describe a person.
With the token guard on (`server.require_auth`, ucity/access.py), the request's `Req.principal` is the token's
principal, and:

- reads (entity retrieve, queries GET and POST, temporal retrieve and queries) of such entities need
  `personal:read` besides `data:read`. A query naming only personal types, or the retrieval of a personal entity,
  is a 403 with `permission` (the guard's shape), audited as `auth` / `refused` and paced like the guard's
  refusals. The personal groups of a type selection with other types are dropped from the store query itself
  (`narrow`); what still comes back of a personal type (a query without type, an entity with several types) is
  removed from the page (`reveal`). `NGSILD-Results-Count` is then corrected by one counting query of the personal
  entities the query matches (`personal_expr`), so a count is no oracle for a phone number in `q`; a page can
  hold fewer than `limit` entities (paging offsets count the entities before the filter).
- every read that returns personal entities to an authenticated caller writes one audit line: kind `data`,
  action `personal-read`, the actor, the tenant, `route` (method and path template), `types` (short names) and
  `entities` (how many); never attribute values, ids or the `q` text.
- creating or changing a subscription that can match a personal type (no entity selector, or a selector naming
  one) needs `personal:read`; creating, changing and deleting one are audited (`personal-subscription-*`). One
  created or last changed by a caller without `personal:read` is marked (`subscriptions.WITHHOLD`, stored, never
  shown): its notifications leave out every entity of a personal type however it matched (several types, a type
  added later, `id` / `idPattern`, periodic), counted on /health, never its values (`is_personal`); so are those
  of one whose setter's token is later revoked, expires or loses `personal:read`, and, with the guard on, of one
  stored before its setter was recorded (`sub_owner.py`).

- writes and deletions of such entities (create, PATCH / POST / PUT of an entity or an attribute, DELETE of an
  entity or an attribute, merge, purge, every batch operation, and the temporal API's writes and deletes) need
  `personal:write` besides `data:write` (`operator` and `admin` hold it; `ingest` and `reader` do not: a data
  pipeline's token cannot rewrite a Person). A refused entity is a 403 with `permission` (in a batch: its error in
  the 207, the other entities written), audited as `auth` / `refused` and paced like the reads'. Every request
  that writes personal entities writes one audit line (not one per entity): kind `data`, action
  `personal-write`, the actor, the tenant, `route`, `operations` ({create: n, delete: n, ...}, what the store
  did), `types`, `entities` (how many) and `entityIds` (at most `MAX_AUDIT_IDS`); never attribute values. Entity
  writes are watched in the mutation itself (`WriteWatch`: the stored document before and the one written are
  tested, so a DELETE or a PATCH without a type is seen too, with no extra read).

With the guard off (development) `principal` is None: nothing is checked, filtered or audited (one test of None).
A read that returns no personal entity costs one `isdisjoint` per entity and writes nothing; with the guard on a write of another
type costs a closure and two `isdisjoint` per entity (about 0.7 µs in all, against tens of µs for the write itself)
and writes nothing; with the guard off, one test of None per request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, TypeVar
from urllib.parse import quote

from ucity.core.http import Req
from ucity.core.privacy import PersonalTypes
from ucity.ngsild.context import core_context
from ucity.ops.audit import AuditLog, RefusalPacer
from ucity.ops.auth import Forbidden, Permission, Principal
from ucity.store.base import Doc, Mutation, Outcome, TypeExpr

PERSONAL_READ = Permission.PERSONAL_READ
PERSONAL_WRITE = Permission.PERSONAL_WRITE
MAX_AUDIT_IDS = 100  # entity ids named by one `personal-write` line (a batch of 1,000 Persons: its count, 100 ids)
T = TypeVar("T")


doc_types: Callable[[Any], Any] = itemgetter("type")  # a stored document's type IRIs (C-level, as below)
entity_types: Callable[[Any], Any] = attrgetter("types")  # a temporal entity's


class PersonalData:
    """The personal entity types (expanded IRIs) and what the NGSI-LD API does about them."""

    def __init__(self, types: Iterable[str] | PersonalTypes, audit: AuditLog | None, now: Callable[[], float]) -> None:
        self.audit = audit
        self.pacer = RefusalPacer(now)
        if isinstance(types, PersonalTypes):  # the kernel's list: settings ∪ what domains declare (QA13 F1)
            registry = types
            self._use(registry.types)
            registry.watch(lambda: self._use(registry.types))
        else:
            self._use(types)

    def _use(self, types: Iterable[str]) -> None:
        core = core_context()
        self.iris = frozenset(core.expand_type(t) for t in types)
        self._short = {iri: core.compact_iri(iri) for iri in self.iris}

    # -- what may be seen -----------------------------------------------------------------------
    def withheld(self, req: Req) -> bool:
        """Personal entities are withheld from this caller: an authenticated one without `personal:read` (and
        there are personal types: an empty `privacy.personal_entity_types` turns all of this off)."""
        principal = req.principal
        return principal is not None and bool(self.iris) and not principal.can(PERSONAL_READ)

    def is_personal(self, types: Iterable[str]) -> bool:
        return not self.iris.isdisjoint(types)

    def expr_is_personal(self, groups: Sequence[Sequence[str]] | None) -> bool:
        """A type selection (OR of AND-groups; None or empty: any type) can select a personal entity."""
        return not groups or any(not self.iris.isdisjoint(group) for group in groups)

    async def narrow(self, req: Req, tenant: str, types: TypeExpr | None) -> TypeExpr | None:
        """The type selection of a read by a caller without `personal:read`: without its groups naming a personal
        type; a 403 (audited) when only those were asked for. None (any type) stays None."""
        if types is None or not self.withheld(req):
            return types
        kept = tuple(group for group in types.any_of if self.iris.isdisjoint(group))
        if not kept:
            await self.refuse(req, tenant, sorted({self._short[t] for g in types.any_of for t in g if t in self.iris}))
        return types if len(kept) == len(types.any_of) else TypeExpr(kept)

    def personal_expr(self, types: TypeExpr | None) -> TypeExpr:
        """The entities of `types` that have a personal type (to count what `reveal` removes from a query)."""
        iris = sorted(self.iris)
        if types is None:
            return TypeExpr(tuple((iri,) for iri in iris))
        return TypeExpr(tuple(dict.fromkeys(tuple(dict.fromkeys((*group, iri))) for group in types.any_of
                                            for iri in iris)))

    async def reveal(self, req: Req, tenant: str, route: str, found: list[T],
                     types_of: Callable[[T], Any] = doc_types) -> list[T]:
        """What of `found` (stored documents, or temporal entities with `types_of=entity_types`) the caller sees:
        without the personal entities for a caller without `personal:read`; for one with it, the read is audited
        when personal entities are in it. Unchanged, and nothing written, with the guard off or none personal."""
        principal = req.principal
        if principal is None or not found:
            return found
        iris = self.iris
        if iris.isdisjoint(chain.from_iterable(map(types_of, found))):  # one C-level pass: the usual case
            return found
        personal = [item for item in found if not iris.isdisjoint(types_of(item))]
        if not principal.can(PERSONAL_READ):
            hidden = {id(item) for item in personal}
            return [item for item in found if id(item) not in hidden]
        types = sorted({self._short[t] for item in personal for t in types_of(item) if t in iris})
        await self.write(principal, tenant, "personal-read", route=route, types=types, entities=len(personal))
        return found

    # -- refusals and audit lines ---------------------------------------------------------------
    async def refuse(self, req: Req, tenant: str, types: list[str]) -> None:
        """403 with `permission` personal:read, audited as the guard audits its refusals (`auth` / `refused`,
        one line per token per minute with `alsoRefused`)."""
        refused = forbidden(req.principal, PERSONAL_READ, types)
        await self.audit_refusal(req, tenant, PERSONAL_READ, types)
        raise refused

    async def audit_refusal(self, req: Req, tenant: str, permission: Permission, types: list[str]) -> None:
        """The `auth` / `refused` line of a refusal for lack of `permission`, paced per token and permission."""
        principal: Principal = req.principal
        also = self.pacer.admit((principal.id, "permission", str(permission)))
        if also is not None and self.audit is not None:
            detail: dict[str, Any] = {"token": principal.id, "method": req.method, "path": req.path[:500],
                                      "permission": str(permission), "types": types}
            if also:
                detail["alsoRefused"] = also
            await self.audit.append(self.audit.row(principal.tenant or tenant, "auth", "refused", principal.actor,
                                                   agency=principal.agency, outcome="denied", reason="permission",
                                                   **detail))

    # -- writes ---------------------------------------------------------------------------------
    def watch(self, req: Req) -> WriteWatch | None:
        """The watch of a write request's mutations; None (nothing to do) with the guard off or no personal type."""
        principal = req.principal
        if principal is None or not self.iris:
            return None
        return WriteWatch(self, principal)

    async def written(self, req: Req, tenant: str, watch: WriteWatch, results: Sequence[Any]) -> None:
        """After the store's answer: the refusal line (if any entity was refused) and the one `personal-write` line
        of the personal entities the request wrote (those whose mutation succeeded)."""
        if watch.refused:
            await self.audit_refusal(req, tenant, PERSONAL_WRITE, self.short_types(watch.refused.values()))
        done = [(n, op, types) for n, (op, types) in watch.touched.items() if results[n].__class__ is Outcome]
        if done:
            ids = list(dict.fromkeys(watch.ids[n] for n, _, _ in done))
            await self.write(watch.principal, tenant, "personal-write", route=route_of(req),
                             operations=dict(Counter(op for _, op, _ in done)),
                             types=self.short_types(types for _, _, types in done), entities=len(ids),
                             entityIds=ids[:MAX_AUDIT_IDS], **({"idsTruncated": True} if len(ids) > MAX_AUDIT_IDS
                                                               else {}))

    async def check_history_write(self, req: Req, tenant: str, types: Iterable[str]) -> bool:
        """A temporal write or delete of an entity whose type IRIs (body, current state, history) are `types`:
        403 (audited) for a caller without `personal:write` when one is personal; True when it is personal (then
        `history_written` audits it once done)."""
        principal = req.principal
        personal = sorted({t for t in types if t in self.iris})
        if principal is None or not personal:
            return False
        if not principal.can(PERSONAL_WRITE):
            short = self.short_types([personal])
            await self.audit_refusal(req, tenant, PERSONAL_WRITE, short)
            raise forbidden(principal, PERSONAL_WRITE, short)
        return True

    async def history_written(self, req: Req, tenant: str, entity_id: str, types: Iterable[str], operation: str,
                              count: int | None = None) -> None:
        """The `personal-write` line of one temporal write or delete (`count`: instances, when known)."""
        detail: dict[str, Any] = {"route": route_of(req), "operations": {operation: 1},
                                  "types": self.short_types([types]), "entities": 1, "entityIds": [entity_id]}
        if count is not None:
            detail["instances"] = count
        await self.write(req.principal, tenant, "personal-write", **detail)

    async def write(self, principal: Principal, tenant: str, action: str, **detail: Any) -> None:
        """One `data` audit line (never values). Written before the answer: a read whose line cannot be written
        fails (500), it is not answered unaudited."""
        if self.audit is not None:
            await self.audit.append(self.audit.row(tenant, "data", action, principal.actor, agency=principal.agency,
                                                   **detail))

    def short_types(self, groups: Iterable[Iterable[str]]) -> list[str]:
        return sorted({self._short[t] for group in groups for t in group if t in self.iris})


class WriteWatch:
    """The mutations of one write request, watched: which entities of a personal type they touch (the document
    before or after), refused for a caller without `personal:write`. The apply functions run in the store's
    writer; what they record is read after `Store.mutate` has answered."""

    __slots__ = ("data", "ids", "may_write", "principal", "refused", "touched")

    def __init__(self, data: PersonalData, principal: Principal) -> None:
        self.data = data
        self.principal = principal
        self.may_write = principal.can(PERSONAL_WRITE)
        self.ids: list[str] = []
        # By mutation index (a store that applies a group again after a failed commit records it once):
        self.touched: dict[int, tuple[str, tuple[str, ...]]] = {}  # (operation, personal types)
        self.refused: dict[int, tuple[str, ...]] = {}  # the personal types of each refused entity

    def wrap(self, mutations: list[Mutation]) -> list[Mutation]:
        """The mutations with their apply functions watched (a closure each: about 0.7 µs per entity in all)."""
        self.ids = [m.entity_id for m in mutations]
        disjoint = self.data.iris.isdisjoint
        seen = self._seen

        def watched(n: int, fn: Callable[[Doc | None, str], Outcome]) -> Callable[[Doc | None, str], Outcome]:
            def apply(before: Doc | None, now: str) -> Outcome:
                outcome = fn(before, now)
                after = outcome.doc
                if (before is None or disjoint(before.get("type", ()))) and (
                        after is None or disjoint(after.get("type", ()))):
                    return outcome  # the usual case: no personal type before nor after
                return seen(n, before, outcome)

            return apply

        return [Mutation(m.entity_id, watched(n, m.apply)) for n, m in enumerate(mutations)]

    def _seen(self, n: int, before: Doc | None, outcome: Outcome) -> Outcome:
        """A mutation of a personal entity: recorded, or refused (403) without `personal:write`."""
        iris = self.data.iris
        types = tuple(sorted({t for doc in (before, outcome.doc) if doc is not None for t in doc.get("type", ())
                              if t in iris}))
        if not self.may_write:
            self.refused[n] = types
            raise forbidden(self.principal, PERSONAL_WRITE, self.data.short_types([types]))
        self.touched[n] = (outcome.operation, types)
        return outcome


def forbidden(principal: Principal, permission: Permission, types: list[str]) -> Forbidden:
    """The 403 of a personal entity for a caller without `permission`."""
    return Forbidden(f"권한 없음: {permission} (개인정보 엔터티 유형 {', '.join(types)}) / the {principal.role} role "
                     f"does not have {permission}, needed for entities of type {', '.join(types)}",
                     permission=str(permission))


def route_of(req: Req) -> str:
    """The method and path template of a request (`PATCH /ngsi-ld/v1/entities/{entityId}/attrs/{attrId}`): its
    identifying path parameters named, not their values (a batch's operation stays: `.../entityOperations/upsert`)."""
    path = req.path
    named = ((k, v) for k, v in req.path_params.items() if k in ("entityId", "attrId", "instanceId"))
    for name, value in sorted(named, key=lambda item: -len(item[1])):
        for form in (value, quote(value, safe=":")):
            if form and form in path:
                path = path.replace(form, "{" + name + "}", 1)
                break
    return f"{req.method} {path}"


__all__ = ["PersonalData", "WriteWatch", "doc_types", "entity_types", "route_of"]
