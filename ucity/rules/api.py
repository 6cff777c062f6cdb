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
its JSON form (model.py); an invalid one is a 400 ProblemDetails saying which member is wrong.
Each rule in a response carries `origin` (`user` or `default`) and `activeEntities`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ucity.core.errors import BadRequest, NotFound
from ucity.core.http import Req, Resp
from ucity.core.openapi import ApiDocs, Doc
from ucity.ngsild.context import core_context
from ucity.ngsild.request import int_param, read_body, tenant_of
from ucity.rules.engine import RulesEngine
from ucity.rules.model import Rule, RuleError, rule_from_json, rule_to_json

BASE = "/api/v1/rules"
JSON = ("application/json",)
FILTERS = ("type", "attribute", "kind", "category", "conditionType", "origin", "enabled")


class RulesApi:
    def __init__(self, engine: RulesEngine) -> None:
        self.engine = engine

    # -- helpers ------------------------------------------------------------------------------------
    def tenant(self, req: Req) -> str:
        return tenant_of(req, self.engine.default_tenant)[0]

    def to_wire(self, tenant: str, rule: Rule, origin: str) -> dict[str, Any]:
        active = sum(1 for _, state in self.engine.states(tenant, rule.id) if state.level is not None)
        return {**rule_to_json(rule), "origin": origin, "activeEntities": active}

    def _found(self, tenant: str, rule_id: str) -> tuple[Rule, str]:
        found = self.engine.effective(tenant, rule_id)
        if found is None:
            raise NotFound(f"rule {rule_id} does not exist")
        return found

    @staticmethod
    def parse(req: Req, tenant: str, path_id: str | None = None) -> Rule:
        body = read_body(req, JSON)
        if not isinstance(body, dict):
            raise BadRequest("a rule is a JSON object")
        if path_id is not None and body.setdefault("id", path_id) != path_id:
            raise BadRequest(f"the body's id {body['id']!r} differs from the path's {path_id!r}")
        if body.get("tenant") not in (None, tenant):
            raise BadRequest(f"the body's tenant {body['tenant']!r} differs from the request's {tenant!r}")
        body.pop("origin", None)  # what a GET returned may be sent back as it is
        body.pop("activeEntities", None)
        try:
            return rule_from_json(body)
        except RuleError as exc:
            raise BadRequest(f"invalid rule: {exc}") from exc

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
        tenant = self.tenant(req)
        rule = await self.engine.create(tenant, self.parse(req, tenant))
        location = f"{req.base_url.rstrip('/')}{BASE}/{rule.id}"
        return Resp(201, self.to_wire(tenant, rule, "user"), {"Location": location})

    async def replace(self, req: Req) -> Resp:
        """Replace a rule (a default rule's id: the tenant's override of it)."""
        tenant = self.tenant(req)
        rule = await self.engine.replace_rule(tenant, self.parse(req, tenant, req.path_params["ruleId"]))
        return Resp(200, self.to_wire(tenant, rule, "user"))

    async def delete(self, req: Req) -> Resp:
        """Delete a rule (204); a default rule can only be disabled (422)."""
        await self.engine.delete(self.tenant(req), req.path_params["ruleId"])
        return Resp(204, None)

    async def enable(self, req: Req) -> Resp:
        """Enable a rule."""
        return await self._set_enabled(req, True)

    async def disable(self, req: Req) -> Resp:
        """Disable a rule (its alarms stop being raised)."""
        return await self._set_enabled(req, False)

    async def _set_enabled(self, req: Req, enabled: bool) -> Resp:
        tenant = self.tenant(req)
        rule = await self.engine.set_enabled(tenant, req.path_params["ruleId"], enabled)
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
        raise BadRequest(f"enabled must be true or false, got {text!r}")
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
