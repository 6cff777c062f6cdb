"""Personal data in the NGSI-LD API: least privilege and a read audit (QA10 F5, docs/operations.md §4).

Entities whose type is one of `privacy.personalentity_types` (default `Person` [D]; short names of the core
@context or full IRIs) describe a person. With the token guard on (`server.require_auth`, ucity/access.py), the
request's `Req.principal` is the token's principal, and:

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
  one) needs `personal:read`; creating, changing and deleting one are audited (`personal-subscription-*`).

With the guard off (development) `principal` is None: nothing is checked, filtered or audited (one test of None).
A read that returns no personal entity costs one `isdisjoint` per entity and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from ucity.core.http import Req
from ucity.ngsild.context import core_context
from ucity.ops.audit import AuditLog, RefusalPacer
from ucity.ops.auth import Forbidden, Permission, Principal
from ucity.store.base import TypeExpr

PERSONAL_READ = Permission.PERSONAL_READ
T = TypeVar("T")


doc_types: Callable[[Any], Any] = itemgetter("type")  # a stored document's type IRIs (C-level, as below)
entity_types: Callable[[Any], Any] = attrgetter("types")  # a temporal entity's


class PersonalData:
    """The personal entity types (expanded IRIs) and what the NGSI-LD API does about them."""

    def __init__(self, types: Iterable[str], audit: AuditLog | None, now: Callable[[], float]) -> None:
        core = core_context()
        self.iris = frozenset(core.expand_type(t) for t in types)
        self._short = {iri: core.compact_iri(iri) for iri in self.iris}
        self.audit = audit
        self.pacer = RefusalPacer(now)

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
        principal: Principal = req.principal
        refused = Forbidden(f"권한 없음: {PERSONAL_READ} (개인정보 엔터티 유형 {', '.join(types)}) / the "
                            f"{principal.role} role does not have {PERSONAL_READ}, needed for entities of type "
                            f"{', '.join(types)}", permission=str(PERSONAL_READ))
        also = self.pacer.admit((principal.id, "permission", str(PERSONAL_READ)))
        if also is not None and self.audit is not None:
            detail: dict[str, Any] = {"token": principal.id, "method": req.method, "path": req.path[:500],
                                      "permission": str(PERSONAL_READ), "types": types}
            if also:
                detail["alsoRefused"] = also
            await self.audit.append(self.audit.row(principal.tenant or tenant, "auth", "refused", principal.actor,
                                                   agency=principal.agency, outcome="denied", reason="permission",
                                                   **detail))
        raise refused

    async def write(self, principal: Principal, tenant: str, action: str, **detail: Any) -> None:
        """One `data` audit line (never values). Written before the answer: a read whose line cannot be written
        fails (500), it is not answered unaudited."""
        if self.audit is not None:
            await self.audit.append(self.audit.row(tenant, "data", action, principal.actor, agency=principal.agency,
                                                   **detail))

    def short_types(self, groups: Iterable[Iterable[str]]) -> list[str]:
        return sorted({self._short[t] for group in groups for t in group if t in self.iris})


__all__ = ["PersonalData", "doc_types", "entity_types"]
