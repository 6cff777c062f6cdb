"""Framework-free handlers of `/api/v1/rules` (server.py maps the routes).

* `GET    /api/v1/rules` the tenant's effective rules (user rules and the defaults they do not
  override); filters `type`, `attribute`, `kind`, `category`, `conditionType`, `origin`,
  `enabled`; paging `limit` (default 100, at most 1000) and `offset`; `X-Total-Count` header.
* `POST   /api/v1/rules` create (201, `Location`); 409 if the tenant already has a rule with
  that id. A rule with the id of a default rule overrides that default in the tenant.
* `GET    /api/v1/rules/{ruleId}`, `PUT` replace (the default's override when it is a default),
  `DELETE` (204; a default rule cannot be deleted, only disabled: 422).
* `POST   /api/v1/rules/{ruleId}/enable` and `/disable`.
* `GET    /api/v1/rules/{ruleId}/states` the entities the rule currently tracks.

The tenant is the `NGSILD-Tenant` header (the default tenant when absent). Every body is a rule in
its JSON form (model.py); an invalid one is a 400 ProblemDetails saying which member is wrong
("한국어 / English"). Each rule in a response carries `origin` (`user` or `default`) and
`activeEntities`; a created or replaced rule also `warnings` when no current entity of its types has
one of its attributes (a typo is accepted, but said: QA9 F11).

Every change (create, replace, delete, enable, disable) is a line of the operations audit log
(`GET /api/v1/audit?kind=config`, ucity/ops/audit.py): action `rule-created` / `rule-changed` /
`rule-deleted` / `rule-enabled` / `rule-disabled`, the actor (`X-Ucity-Actor`; with
`server.require_auth` the token's principal), the rule id, the members changed and, when small, their
old and new values (QA9 F4). The actor also goes with the rule's events (`changedBy`, engine.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ucity.core.errors import BadRequest, NotFound
from ucity.core.http import Req, Resp
from ucity.core.openapi import ApiDocs, Doc
from ucity.core.params import actor_header
from ucity.ngsild.context import core_context
from ucity.ngsild.request import int_param, read_body, tenant_of
from ucity.ops.audit import AuditLog
from ucity.rules.engine import RulesEngine
from ucity.rules.model import Rule, RuleError, rule_from_json, rule_to_json
from ucity.store.base import EntityQuery, TypeExpr

BASE = "/api/v1/rules"
JSON = ("application/json",)
FILTERS = ("type", "attribute", "kind", "category", "conditionType", "origin", "enabled")
AUDIT_KIND = "config"  # configuration changes in the operations audit log (QA9 F4)
ANONYMOUS = "anonymous"  # the actor of a change without `X-Ucity-Actor` (only with `server.require_auth` off)
AUDIT_VALUE_MAX = 2000  # old/new values of a changed member are kept in the audit line up to this many JSON bytes


class RulesApi:
    def __init__(self, engine: RulesEngine, audit: AuditLog | None = None) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine.store, engine.clock)

    # -- helpers ------------------------------------------------------------------------------------
    def tenant(self, req: Req) -> str:
        return tenant_of(req, self.engine.default_tenant)[0]

    def to_wire(self, tenant: str, rule: Rule, origin: str) -> dict[str, Any]:
        active = sum(1 for _, state in self.engine.states(tenant, rule.id) if state.level is not None)
        return {**rule_to_json(rule), "origin": origin, "activeEntities": active}

    def _found(self, tenant: str, rule_id: str) -> tuple[Rule, str]:
        found = self.engine.effective(tenant, rule_id)
        if found is None:
            raise NotFound(f"규칙 {rule_id}이(가) 없습니다 / rule {rule_id} does not exist")
        return found

    @staticmethod
    def actor(req: Req) -> str:
        """Who changes a rule: the bearer token's principal with `server.require_auth` on (the access guard puts it
        in `X-Ucity-Actor`), else the header if sent, else `anonymous`."""
        return actor_header(req, required=False, default=ANONYMOUS)

    @staticmethod
    def parse(req: Req, tenant: str, path_id: str | None = None) -> Rule:
        body = read_body(req, JSON)
        if not isinstance(body, dict):
            raise BadRequest("규칙은 JSON 객체입니다 / a rule is a JSON object")
        if path_id is not None and body.setdefault("id", path_id) != path_id:
            raise BadRequest(f"본문의 id가 경로와 다릅니다 / the body's id {body['id']!r} differs from the path's "
                             f"{path_id!r}")
        if body.get("tenant") not in (None, tenant):
            raise BadRequest(f"본문의 tenant가 요청의 테넌트와 다릅니다 / the body's tenant {body['tenant']!r} differs "
                             f"from the request's {tenant!r}")
        body.pop("origin", None)  # what a GET returned may be sent back as it is
        body.pop("activeEntities", None)
        body.pop("warnings", None)
        try:
            return rule_from_json(body)
        except RuleError as exc:
            raise BadRequest(f"규칙이 올바르지 않습니다 / invalid rule: {exc}") from exc

    async def _audit(self, tenant: str, action: str, actor: str, rule_id: str, old: Rule | None,
                     new: Rule | None, origin: str | None = None) -> None:
        """One `config` line: the rule, the members that changed and, when small, their old and new values (a rule
        holds no contact data or secret: thresholds, attributes, areas)."""
        before = rule_to_json(old) if old is not None else {}
        after = rule_to_json(new) if new is not None else {}
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and k != "tenant")
        detail: dict[str, Any] = {"rule": rule_id, "changed": changed}
        if origin is not None:
            detail["origin"] = origin  # what the rule was before: a default's override, or the tenant's own
        for name, side in (("old", before), ("new", after)):
            if not side:
                detail[name] = None
                continue
            values = {k: side[k] for k in changed if k in side}
            if len(orjson.dumps(values)) <= AUDIT_VALUE_MAX:
                detail[name] = values
            else:
                detail[name] = {"omitted": f"larger than {AUDIT_VALUE_MAX} bytes", "members": sorted(values)}
        await self.audit.append(self.audit.row(tenant, AUDIT_KIND, action, actor, outcome="ok", **detail))

    async def warnings(self, tenant: str, rule: Rule) -> list[dict[str, Any]]:
        """Hints for a rule that watches nothing yet: no current entity of its types, or none of them has one of its
        attributes (a typo such as `tiltx`). One `limit 1` query per type and per attribute."""
        ctx, store, out = core_context(), self.engine.store, []
        known = []
        for name in rule.entity_types:
            found, _ = await store.query_entities(tenant, EntityQuery(types=TypeExpr(((ctx.expand_type(name),),)),
                                                                      limit=1))
            if found:
                known.append(ctx.expand_type(name))
            else:
                out.append({"code": "unknown-type", "entityType": name,
                            "message": f"현재 {name} 유형의 엔터티가 없습니다 / no current entity has type {name}"})
        if rule.entity_types and not known:
            return out
        types = TypeExpr(tuple((t,) for t in known)) if known else None
        where_ko = f"{', '.join(rule.entity_types)} 유형의 엔터티 중" if rule.entity_types else "엔터티 중"
        where_en = f"of type {', '.join(rule.entity_types)} " if rule.entity_types else ""
        for attr in rule.attributes:
            found, _ = await store.query_entities(tenant, EntityQuery(types=types, attrs_any=(ctx.expand_term(attr),),
                                                                      limit=1))
            if not found:
                out.append({"code": "unknown-attribute", "attribute": attr,
                            "message": f"현재 {where_ko} {attr} 속성을 가진 것이 없습니다 / no current entity "
                                       f"{where_en}has the attribute {attr}"})
        return out

    # -- handlers -----------------------------------------------------------------------------------
    async def list(self, req: Req) -> Resp:
        """The tenant's effective rules (its own and the defaults it does not override); `X-Total-Count`."""
        tenant = self.tenant(req)
        selected = [(r, o) for r, o in self.engine.rules(tenant) if _selected(req, r, o)]
        offset = int_param(req, "offset", 0)
        limit = int_param(req, "limit", 100, minimum=1, maximum=1000)
        page = [self.to_wire(tenant, r, o) for r, o in selected[offset:offset + limit]]
        return Resp(200, page, {"X-Total-Count": str(len(selected))})

    async def retrieve(self, req: Req) -> Resp:
        """One effective rule with its origin and active entity count."""
        tenant = self.tenant(req)
        rule, origin = self._found(tenant, req.path_params["ruleId"])
        return Resp(200, self.to_wire(tenant, rule, origin))

    async def create(self, req: Req) -> Resp:
        """Create a rule (201, Location); 409 if the tenant has one with that id."""
        tenant, actor = self.tenant(req), self.actor(req)
        parsed = self.parse(req, tenant)
        old = self.engine.effective(tenant, parsed.id)  # a default it overrides
        rule = await self.engine.create(tenant, parsed, actor)
        await self._audit(tenant, "rule-created", actor, rule.id, old[0] if old else None, rule,
                          old[1] if old else None)
        location = f"{req.base_url.rstrip('/')}{BASE}/{rule.id}"
        return Resp(201, await self._with_warnings(tenant, rule), {"Location": location})

    async def replace(self, req: Req) -> Resp:
        """Replace a rule (a default rule's id: the tenant's override of it)."""
        tenant, actor = self.tenant(req), self.actor(req)
        parsed = self.parse(req, tenant, req.path_params["ruleId"])
        old = self.engine.effective(tenant, parsed.id)
        rule = await self.engine.replace_rule(tenant, parsed, actor)
        await self._audit(tenant, "rule-changed", actor, rule.id, old[0] if old else None, rule,
                          old[1] if old else None)
        return Resp(200, await self._with_warnings(tenant, rule))

    async def _with_warnings(self, tenant: str, rule: Rule) -> dict[str, Any]:
        body = self.to_wire(tenant, rule, "user")
        warnings = await self.warnings(tenant, rule)
        if warnings:
            body["warnings"] = warnings
        return body

    async def delete(self, req: Req) -> Resp:
        """Delete a rule (204); a default rule can only be disabled (422)."""
        tenant, actor, rule_id = self.tenant(req), self.actor(req), req.path_params["ruleId"]
        old = self.engine.effective(tenant, rule_id)
        await self.engine.delete(tenant, rule_id, actor)
        new = self.engine.effective(tenant, rule_id)  # the default that shows through again, if any
        await self._audit(tenant, "rule-deleted", actor, rule_id, old[0] if old else None, new[0] if new else None,
                          old[1] if old else None)
        return Resp(204, None)

    async def enable(self, req: Req) -> Resp:
        """Enable a rule."""
        return await self._set_enabled(req, True)

    async def disable(self, req: Req) -> Resp:
        """Disable a rule (its alarms stop being raised)."""
        return await self._set_enabled(req, False)

    async def _set_enabled(self, req: Req, enabled: bool) -> Resp:
        tenant, actor, rule_id = self.tenant(req), self.actor(req), req.path_params["ruleId"]
        old = self.engine.effective(tenant, rule_id)
        rule = await self.engine.set_enabled(tenant, rule_id, enabled, actor)
        await self._audit(tenant, "rule-enabled" if enabled else "rule-disabled", actor, rule_id,
                          old[0] if old else None, rule, old[1] if old else None)
        return Resp(200, self.to_wire(tenant, rule, "user"))

    async def states(self, req: Req) -> Resp:
        """The entities the rule currently tracks, with their state."""
        tenant = self.tenant(req)
        rule, _ = self._found(tenant, req.path_params["ruleId"])
        body = [{"entityId": entity_id, **state.to_json()} for entity_id, state in self.engine.states(tenant, rule.id)]
        return Resp(200, body)


def _selected(req: Req, rule: Rule, origin: str) -> bool:
    """Whether a rule passes the list filters of the request."""
    ctx = core_context()
    wanted = {name: req.param(name) for name in FILTERS}
    checks: dict[str, Callable[[str], bool]] = {
        "type": lambda v: not rule.entity_types or ctx.expand_type(v) in {ctx.expand_type(t) for t in rule.entity_types},
        "attribute": lambda v: ctx.expand_term(v) in {ctx.expand_term(a) for a in rule.attributes},
        "kind": lambda v: rule.kind == v,
        "category": lambda v: rule.category == v,
        "conditionType": lambda v: rule.condition.type == v,
        "origin": lambda v: origin == v,
        "enabled": lambda v: _bool(v) == rule.enabled,
    }
    return all(value is None or checks[name](value) for name, value in wanted.items())


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise BadRequest(f"enabled는 true 또는 false입니다 / enabled must be true or false, got {text!r}")
    return text == "true"


# -- /docs (ucity/openapi.py): what the route table in server.py does not say ------------------------------------
_RULE: dict[str, Any] = {"type": "object", "description": "a rule in its JSON form (ucity/rules/README.md)"}
OPENAPI = ApiDocs(
    routes={
        ("GET", BASE): Doc(params=(*FILTERS, "limit", "offset")),
        ("POST", BASE): Doc(body=_RULE, statuses=(201,), problems=("400", "409", "4XX", "5XX")),
        ("PUT", f"{BASE}/{{ruleId}}"): Doc(body=_RULE),
        ("DELETE", f"{BASE}/{{ruleId}}"): Doc(statuses=(204,), problems=("404", "422", "4XX", "5XX")),
    },
    params={"type": "entity type the rule applies to", "attribute": "attribute the rule reads",
            "kind": "`safety` or `fault`", "category": "the rule's category", "conditionType": "condition type",
            "origin": "`user` or `default`", "enabled": "`true` or `false`", "limit": "page size (default 100, 1..1000)"},
    tags={"rules": "Rules as data: thresholds, rates, silence ... over entity attributes, raising alarms "
                   "(ucity/rules/README.md); default rules of the domains, overridable per tenant."},
)
