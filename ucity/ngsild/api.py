"""NGSI-LD entity, batch and discovery handlers (ETSI GS CIM 009 §5.6, §5.7, §6.3–§6.7, §6.14–§6.17).

Framework-free: each handler takes a `Req` and returns a `Resp`. Writes become `Mutation`s that
the store applies and group-commits; the commit publishes the changes on the bus.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from itertools import repeat
from operator import contains
from typing import Any
from urllib.parse import quote

from ucity.core.bus import Context
from ucity.core.clock import Clock, SystemClock, to_iso
from ucity.core.config import NgsiLdSettings, PrivacySettings
from ucity.core.errors import BadRequest, InvalidRequest, NonexistentTenant, NotFound, UcityError
from ucity.core.http import Req, Resp
from ucity.core.params import actor_header
from ucity.core.privacy import PersonalTypes
from ucity.ngsild import ops
from ucity.ngsild.model import (
    RenderOptions,
    check_entity_id,
    check_name,
    default_geometry,
    expand_attr_name,
    normalize_attribute,
    normalize_attrs,
    normalize_entity,
    normalize_instance,
    normalize_owned_batch,
    normalize_owned_entity,
    render_entity,
    to_geojson_feature,
)
from ucity.ngsild.personal import PersonalData
from ucity.ngsild.request import (
    GEOJSON,
    JSON,
    JSONLD,
    MERGE_PATCH,
    add_links,
    bool_param,
    csv_param,
    int_param,
    negotiate,
    options,
    page_links,
    read_body,
    request_context,
    response_context_header,
    response_context_value,
    tenant_of,
)
from ucity.ngsild.scope import parse_scope_query
from ucity.ngsild.typeq import parse_type_expr
from ucity.ops.auth import Forbidden
from ucity.store.base import Doc, EntityQuery, Mutation, Outcome, QFilter, Store, TypeExpr

ENTITIES = "/ngsi-ld/v1/entities/"
# Representation names of `options` / `format` -> RenderOptions.fmt (`simplified` is `keyValues`).
_FORMATS = {"normalized": "normalized", "concise": "concise", "keyValues": "keyValues", "simplified": "keyValues"}
# `options` values a read may carry (the temporal ones pass through to the temporal API). `count` is the
# pre-v1.3 way of asking for a count that ngsildclient and FiLiP still send: tolerated and ignored
# (docs/clients.md); any other unknown value is 400 (TP 018_16).
_READ_OPTIONS = frozenset({*_FORMATS, "sysAttrs", "temporalValues", "aggregatedValues", "count"})


class NgsiLdApi:
    """The NGSI-LD entity API over a store and a context resolver."""

    def __init__(self, store: Store, resolver: Any, settings: NgsiLdSettings, clock: Clock | None = None,
                 privacy: PrivacySettings | None = None, personal_types: PersonalTypes | None = None) -> None:
        from ucity.ops.audit import AuditLog

        self.store = store
        self.resolver = resolver
        self.settings = settings
        # The platform clock (the store's) bounds observedAt: `ngsild.max_future_s` (QA10 F1).
        self.clock: Clock = clock or getattr(store, "clock", None) or SystemClock()
        self.max_future = timedelta(seconds=settings.max_future_s)
        # Personal entity types: `personal:read` and the read audit with the token guard on (QA10 F5, personal.py);
        # `personal_types`, the platform's list, adds those the domains declare in setup (QA13 F1).
        self.personal = PersonalData(personal_types or (privacy or PrivacySettings()).personal_entity_types,
                                     AuditLog(store, self.clock), lambda: self.clock.now().timestamp())

    def horizon(self) -> str:
        """The latest observedAt a write may record now (stored form: times sort as text)."""
        return to_iso(self.clock.now() + self.max_future)

    def check_future(self, attrs: Mapping[str, Any]) -> None:
        """400 for an attribute instance whose observedAt is after `horizon()` (QA10 F1)."""
        check_future(attrs, self.horizon(), self.settings.max_future_s)

    # -- shared helpers ------------------------------------------------------------------------
    async def compile(self, req: Req, body: Any = None) -> tuple[Any, Any]:
        ctx_input = request_context(req, body)
        return ctx_input, await self.resolver.compile(ctx_input)

    async def read_tenant(self, req: Req) -> str:
        tenant, explicit = tenant_of(req, self.settings.default_tenant)
        if explicit and not await self.store.tenant_exists(tenant):
            raise NonexistentTenant(f"테넌트 {tenant} 없음 / tenant {tenant} does not exist")
        return tenant

    def write_tenant(self, req: Req) -> str:
        return tenant_of(req, self.settings.default_tenant)[0]

    @staticmethod
    def tenant_headers(req: Req) -> dict[str, str]:
        tenant = req.headers.get("ngsild-tenant")  # Req.headers' names are lower-case
        return {"NGSILD-Tenant": tenant} if tenant else {}

    def reply(self, req: Req, body: Any, ctx_input: Any, accept: str, status: int = 200,
              headers: dict[str, str] | None = None) -> Resp:
        out_headers = {**self.tenant_headers(req), **(headers or {})}
        if accept == JSONLD:
            context = response_context_value(ctx_input)
            if isinstance(body, list):
                body = [{**item, "@context": context} for item in body]
            elif isinstance(body, dict):
                body = {**body, "@context": context}
        elif accept == JSON:
            out_headers["Link"] = response_context_header(ctx_input)
        return Resp(status, body, out_headers, media_type=accept)

    def no_content(self, req: Req, status: int = 204, headers: dict[str, str] | None = None) -> Resp:
        return Resp(status, None, {**self.tenant_headers(req), **(headers or {})})

    async def run(self, req: Req, tenant: str, mutations: list[Mutation]) -> list[Outcome | Exception]:
        context = Context(actor=actor_header(req, False, "ngsi-ld"))
        # Writes of personal entities need `personal:write` and are audited, one line per request (personal.py).
        watch = self.personal.watch(req)
        if watch is None:
            return await self.store.mutate(tenant, mutations, context)
        results = await self.store.mutate(tenant, watch.wrap(mutations), context)
        await self.personal.written(req, tenant, watch, results)
        return results

    async def run_one(self, req: Req, tenant: str, entity_id: str, fn: Any) -> Outcome:
        # `run` inline: one coroutine less on the path of every single-entity write (PATCH of one attribute).
        context = Context(actor=actor_header(req, False, "ngsi-ld"))
        mutations = [Mutation(entity_id, fn)]
        watch = None if req.principal is None else self.personal.watch(req)  # the guard off: one test of None
        if watch is not None:
            mutations = watch.wrap(mutations)
        result = (await self.store.mutate(tenant, mutations, context))[0]
        if watch is not None:
            await self.personal.written(req, tenant, watch, [result])
        if isinstance(result, Exception):
            raise _entity_error(entity_id, result)
        return result

    def render_options(self, req: Req, ctx: Any, accept: str, attrs: list[str] | None = None) -> RenderOptions:
        """How to show entities, from the request; `attrs` overrides the attrs parameter (query bodies)."""
        opts = options(req)
        fmt_param = req.param("format")
        if fmt_param is not None and fmt_param not in _FORMATS:
            formats = ", ".join(sorted(_FORMATS))
            raise InvalidRequest(f"format은 {formats} 중 하나여야 함({fmt_param!r}) / "
                                 f"format must be one of {formats}, got {fmt_param!r}")
        listed = {o for value in (req.params.get("options") or []) for o in value.split(",") if o}
        if unknown := sorted(listed - _READ_OPTIONS):
            said, known = ", ".join(unknown), ", ".join(sorted(_READ_OPTIONS))
            raise InvalidRequest(f"알 수 없는 options {said}(가능: {known}) / unknown options {said}; known: {known}")
        # `format` takes precedence over the representation named in `options` (v1.8.1 §6.3.7, 018_15_07).
        asked = {_FORMATS[fmt_param]} if fmt_param is not None else {_FORMATS[o] for o in listed & _FORMATS.keys()}
        if len(asked) > 1:
            both = ", ".join(sorted(asked))
            raise BadRequest(f"서로 다른 표현을 함께 요청함: {both} / conflicting representations requested: {both}")
        fmt = asked.pop() if asked else "normalized"
        pick = projection_param(req, "pick")
        omit = projection_param(req, "omit")
        attrs = csv_param(req, "attrs") if attrs is None else attrs
        if pick and omit:
            raise BadRequest("pick과 omit은 함께 쓸 수 없음 / pick and omit cannot be used together")
        if (pick or omit) and csv_param(req, "attrs"):
            raise BadRequest("attrs(폐지 예정: pick과 q를 합친 것)는 pick이나 omit과 함께 쓸 수 없음 / "
                             "attrs (deprecated: pick and q in one) cannot be combined with pick or omit")
        keep: frozenset[str] | None = None
        members = ("id", "type", "scope")
        names = [n for n in (pick or attrs) if n not in members]
        if pick or attrs:
            keep = frozenset(ctx.expand_term(check_name(n)) for n in names)
        datasets = csv_param(req, "datasetId")
        return RenderOptions(
            fmt=fmt, sys_attrs="sysAttrs" in opts, attrs=keep,
            omit=frozenset(ctx.expand_term(n) for n in omit if n not in members),
            pick_id=("id" in pick) if pick else "id" not in omit,
            pick_type=("type" in pick) if pick else "type" not in omit,
            pick_scope=("scope" in pick) if pick else "scope" not in omit,
            lang=req.param("lang"),
            dataset_ids=frozenset(datasets) if datasets else None,
        )

    @staticmethod
    def geometry_iri(req: Req, ctx: Any) -> str:
        return str(ctx.expand_term(check_name(req.param("geometryProperty") or "location", "geometryProperty")))

    def present(self, req: Req, docs: list[Doc], ctx: Any, accept: str,
                attrs: list[str] | None = None) -> list[dict[str, Any]]:
        opts = self.render_options(req, ctx, accept, attrs)
        return [render_entity(doc, ctx, opts) for doc in docs]

    # -- entities ------------------------------------------------------------------------------
    async def create_entity(self, req: Req) -> Resp:
        """Create an entity (§5.6.1): 201 with its Location; 409 if it exists."""
        body = read_body(req)
        _, ctx = await self.compile(req, body)
        doc = normalize_entity(body, ctx)
        self.check_future(doc["attrs"])
        await self.run_one(req, self.write_tenant(req), doc["id"], ops.create_op(doc))
        return self.no_content(req, 201, {"Location": ENTITIES + quote(doc["id"], safe=":")})

    async def retrieve_entity(self, req: Req) -> Resp:
        """An entity (§5.7.1), in the representation `options` / `format` and `Accept` ask for."""
        accept = negotiate(req, allow_geojson=True)
        entity_id = check_entity_id(req.path_params["entityId"])
        tenant = await self.read_tenant(req)
        ctx_input, ctx = await self.compile(req)
        self.render_options(req, ctx, accept)  # a faulty format/options is a 400 even for a missing entity
        doc = await self.store.get_entity(tenant, entity_id)
        if doc is None:
            raise NotFound(f"엔티티 {entity_id} 없음 / entity {entity_id} does not exist")
        if req.principal is not None and self.personal.is_personal(doc["type"]):
            if self.personal.withheld(req):
                await self.personal.refuse(req, tenant, self.personal.short_types([doc["type"]]))
            await self.personal.reveal(req, tenant, "GET /ngsi-ld/v1/entities/{entityId}", [doc])
        entity = self.present(req, [doc], ctx, accept)[0]
        if accept == GEOJSON:
            feature = to_geojson_feature(entity, default_geometry(doc, self.geometry_iri(req, ctx)))
            feature["@context"] = response_context_value(ctx_input)
            return Resp(200, feature, self.tenant_headers(req), media_type=GEOJSON)
        return self.reply(req, entity, ctx_input, accept)

    async def delete_entity(self, req: Req) -> Resp:
        """Delete an entity (§5.6.6)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        await self.run_one(req, self.write_tenant(req), entity_id, ops.delete_op(entity_id))
        return self.no_content(req)

    async def merge_entity(self, req: Req) -> Resp:
        """Merge into an entity (§5.6.17): attributes added or merged, `urn:ngsi-ld:null` deletes."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req, (JSON, JSONLD, MERGE_PATCH))
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("병합(merge) 본문은 JSON 객체여야 함 / a merge body must be a JSON object")
        ops.check_same_id(body.get("id"), entity_id)
        doc = normalize_entity({**body, "id": entity_id}, ctx, require_type=False, allow_null=True)
        self.check_future(doc["attrs"])
        await self.run_one(req, self.write_tenant(req), entity_id, ops.merge_op(doc))
        return self.no_content(req)

    async def replace_entity(self, req: Req) -> Resp:
        """Replace an entity (§5.6.18): its attributes become exactly the body's."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("본문은 JSON 객체여야 함 / the body must be a JSON object")
        ops.check_same_id(body.get("id"), entity_id)
        doc = normalize_entity({**body, "id": entity_id}, ctx, require_type=False)
        self.check_future(doc["attrs"])
        await self.run_one(req, self.write_tenant(req), entity_id, ops.replace_op(doc))
        return self.no_content(req)

    async def append_attrs(self, req: Req) -> Resp:
        """Append attributes to an entity (§5.6.3); `options=noOverwrite` keeps existing ones (207 then)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("본문은 속성들의 JSON 객체여야 함 / the body must be a JSON object of attributes")
        ops.check_same_id(body.get("id"), entity_id)
        doc = normalize_entity({**body, "id": entity_id}, ctx, require_type=False)
        self.check_future(doc["attrs"])
        overwrite = "noOverwrite" not in options(req)
        fn = ops.of_type(ops.append_op(doc, overwrite), self.type_selector(req, ctx))
        outcome = await self.run_one(req, self.write_tenant(req), entity_id, fn)
        return self.update_report(req, outcome)

    async def update_attrs(self, req: Req) -> Resp:
        """Update existing attributes of an entity (§5.6.2); unknown ones are reported (207)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("본문은 속성들의 JSON 객체여야 함 / the body must be a JSON object of attributes")
        ops.check_same_id(body.get("id"), entity_id)
        doc = normalize_entity({**body, "id": entity_id}, ctx, require_type=False, allow_null=True)
        self.check_future(doc["attrs"])
        fn = ops.of_type(ops.update_op(doc), self.type_selector(req, ctx))
        outcome = await self.run_one(req, self.write_tenant(req), entity_id, fn)
        return self.update_report(req, outcome)

    @staticmethod
    def type_selector(req: Req, ctx: Any) -> TypeExpr | None:
        """The optional entity type selection (`?type=`, §4.17) of an attribute operation."""
        selection = req.param("type")
        return parse_type_expr(selection, ctx.expand_term) if selection else None

    def update_report(self, req: Req, outcome: Outcome) -> Resp:
        report = outcome.result
        if not report["notUpdated"]:
            return self.no_content(req)
        # Attribute names as expanded IRIs, as the ETSI conformance suite expects (§5.2.18 says
        # only "represented by their name").
        body = {"updated": report["updated"], "notUpdated": report["notUpdated"]}
        return Resp(207, body, self.tenant_headers(req))

    def _attr_target(self, req: Req, ctx: Any) -> str:
        return expand_attr_name(req.path_params["attrId"], ctx)

    async def partial_attr(self, req: Req) -> Resp:
        """Partially update one attribute (§5.6.4): only the members given change."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req, (JSON, JSONLD, MERGE_PATCH))
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict) or not body:
            raise BadRequest("본문은 비어 있지 않은 JSON 객체여야 함 / the body must be a non-empty JSON object")
        name = req.path_params["attrId"]
        patch = {k: v for k, v in body.items() if k != "@context"} if "@context" in body else body  # read only
        instance = normalize_instance(name, patch, ctx, allow_null=True) if _has_value(patch) else _subs_only(name, patch, ctx)
        if "type" not in patch:
            instance.pop("type", None)
        self.check_future({name: [instance]})
        await self.run_one(req, self.write_tenant(req), entity_id,
                           ops.partial_attr_op(self._attr_target(req, ctx), instance, patch.get("datasetId")))
        return self.no_content(req)

    async def replace_attr(self, req: Req) -> Resp:
        """Replace one attribute (§5.6.19)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("본문은 속성 하나를 담은 JSON 객체여야 함 / the body must be a JSON object: the attribute")
        name = req.path_params["attrId"]
        value = {k: v for k, v in body.items() if k != "@context"}
        instances = normalize_attribute(name, value, ctx)
        self.check_future({name: instances})
        await self.run_one(req, self.write_tenant(req), entity_id, ops.replace_attr_op(self._attr_target(req, ctx), instances))
        return self.no_content(req)

    async def delete_attr(self, req: Req) -> Resp:
        """Delete one attribute (§5.6.5), one dataset (`datasetId`) or all of them (`deleteAll=true`)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        _, ctx = await self.compile(req)
        fn = ops.delete_attr_op(self._attr_target(req, ctx), req.param("datasetId"), bool_param(req, "deleteAll"))
        await self.run_one(req, self.write_tenant(req), entity_id, fn)
        return self.no_content(req)

    # -- query ---------------------------------------------------------------------------------
    async def build_query(self, req: Req, ctx: Any, params: dict[str, Any]) -> EntityQuery:
        """An EntityQuery from query parameters or the body of /entityOperations/query."""
        from ucity.ngsild.geo import GeoQueryError, parse_geoquery, parse_geoquery_json
        from ucity.ngsild.qlang import QueryError, parse_q

        query = EntityQuery()
        ids = params.get("id") or []
        for entity_id in ids:
            check_entity_id(entity_id)
        query.ids = tuple(ids)
        query.id_pattern = check_id_pattern(params.get("idPattern"))
        if params.get("type") and params["type"] != ANY_TYPE:
            query.types = parse_type_expr(params["type"], ctx.expand_term)
        if params.get("attrs"):
            query.attrs_any = tuple(expand_attr_name(a, ctx) for a in params["attrs"])
        if params.get("q"):
            try:
                query.q = QFilter(parse_q(params["q"]), ctx.expand_term)
            except QueryError as exc:
                raise BadRequest(exc.bilingual()) from exc
        try:
            geo = (parse_geoquery_json(params["geoQ"]) if params.get("geoQ") is not None else
                   parse_geoquery(params.get("georel"), params.get("geometry"), params.get("coordinates"),
                                  params.get("geoproperty")))
        except GeoQueryError as exc:
            raise BadRequest(exc.bilingual("잘못된 지오쿼리", "invalid geo-query")) from exc
        if geo is not None:
            query.geo = geo
            query.geo_attr = ctx.expand_term(geo.geoproperty)
        if params.get("scopeQ"):
            query.scope = parse_scope_query(params["scopeQ"])
        return query

    def paging(self, req: Req) -> tuple[int, int, bool]:
        limit = int_param(req, "limit", self.settings.default_limit, 0, self.settings.max_limit)
        offset = int_param(req, "offset", 0, 0)
        count = bool_param(req, "count")
        if limit == 0 and not count:
            raise BadRequest("limit=0은 count=true와 함께만 쓸 수 있음 / limit=0 is only allowed together with count=true")
        return limit, offset, count

    async def query_entities(self, req: Req) -> Resp:
        """Query entities (§5.7.2): by id, type, attributes, `q`, geo-query and scope, paged."""
        accept = negotiate(req, allow_geojson=True)
        ctx_input, ctx = await self.compile(req)
        params: dict[str, Any] = {k: req.param(k) for k in ("idPattern", "type", "q", "georel", "geometry",
                                                             "coordinates", "geoproperty", "scopeQ")}
        params["id"] = csv_param(req, "id")
        params["attrs"] = csv_param(req, "attrs")
        check_selection(req, params)
        query = await self.build_query(req, ctx, params)
        query.limit, query.offset, query.count = self.paging(req)
        docs, total, more = await self.query_page(await self.read_tenant(req), query, req, "GET /ngsi-ld/v1/entities")
        return self.query_reply(req, docs, total, more, query, ctx_input, ctx, accept)

    async def query_page(self, tenant: str, query: EntityQuery, req: Req | None = None,
                         route: str = "") -> tuple[list[Doc], int | None, bool]:
        """One page of a query, its count if asked, and whether more entities follow the page.

        With a request of an authenticated caller: personal entities withheld without `personal:read` (the type
        selection narrowed, what still matches removed and not counted), the read audited with it (personal.py)."""
        withheld = req is not None and self.personal.withheld(req)
        if withheld:
            assert req is not None
            query.types = await self.personal.narrow(req, tenant, query.types)
        # One entity beyond the page tells whether a next page exists, without counting them all.
        probe = dataclasses.replace(query, limit=query.limit + 1) if query.limit > 0 else query
        docs, total = await self.store.query_entities(tenant, probe)
        more = len(docs) > query.limit
        docs = docs[:query.limit]
        if req is not None and req.principal is not None:
            shown = await self.personal.reveal(req, tenant, route, docs)
            if withheld and total is not None:
                # What the filter removes is not counted: the personal entities the query matches, counted.
                personal = dataclasses.replace(query, types=self.personal.personal_expr(query.types), limit=0,
                                               offset=0, count=True)
                total -= (await self.store.query_entities(tenant, personal))[1] or 0
            docs = shown
        return docs, total, more

    def query_reply(self, req: Req, docs: list[Doc], total: int | None, more: bool, query: EntityQuery,
                    ctx_input: Any, ctx: Any, accept: str, attrs: list[str] | None = None) -> Resp:
        entities = self.present(req, docs, ctx, accept, attrs)
        headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
        links = page_links(req, query.offset, query.limit, more, accept)
        if accept == GEOJSON:
            geo_iri = self.geometry_iri(req, ctx)
            features = [to_geojson_feature(e, default_geometry(d, geo_iri)) for d, e in zip(docs, entities, strict=True)]
            body = {"type": "FeatureCollection", "features": features,
                    "@context": response_context_value(ctx_input)}
            return add_links(Resp(200, body, {**self.tenant_headers(req), **headers}, media_type=GEOJSON), links)
        return add_links(self.reply(req, entities, ctx_input, accept, headers=headers), links)

    async def query_post(self, req: Req) -> Resp:
        """POST /entityOperations/query: the query in the body (CIM 009 §5.7.2, Query data type)."""
        accept = negotiate(req)
        body = read_body(req)
        ctx_input, ctx = await self.compile(req, body)
        if not isinstance(body, dict) or body.get("type") != "Query":
            raise BadRequest('본문은 "type": "Query"인 Query 객체여야 함 / '
                             'the body must be a Query object with "type": "Query"')
        attrs = body.get("attrs") or []
        if not isinstance(attrs, list) or not all(isinstance(a, str) and a for a in attrs):
            raise BadRequest("attrs는 속성 이름의 배열이어야 함 / attrs must be an array of attribute names")
        params: dict[str, Any] = {"q": body.get("q"), "geoQ": body.get("geoQ"), "attrs": attrs,
                                  "scopeQ": body.get("scopeQ"), **query_selectors(body.get("entities"))}
        check_selection(req, params)
        query = await self.build_query(req, ctx, params)
        query.limit, query.offset, query.count = self.paging(req)
        docs, total, more = await self.query_page(await self.read_tenant(req), query, req,
                                                  "POST /ngsi-ld/v1/entityOperations/query")
        return self.query_reply(req, docs, total, more, query, ctx_input, ctx, accept, attrs or None)

    async def purge_entities(self, req: Req) -> Resp:
        """DELETE /entities?type=...: delete every entity matching the selection."""
        _, ctx = await self.compile(req)
        params: dict[str, Any] = {k: req.param(k) for k in ("idPattern", "type", "q")}
        params["id"] = csv_param(req, "id")
        if not any(params.values()):
            raise BadRequest("일괄 삭제에는 type, id, idPattern, q 중 하나가 필요함 / purging needs type, id, idPattern or q")
        query = await self.build_query(req, ctx, params)
        tenant = self.write_tenant(req)
        ids = await self.store.entity_ids(tenant, query)
        if ids:
            results = await self.run(req, tenant, [Mutation(i, ops.delete_op(i)) for i in ids])
            # The personal entities of a caller without `personal:write` stay: the purge says so (403).
            refused = next((r for r in results if isinstance(r, Forbidden)), None)
            if refused is not None:
                raise refused
        return self.no_content(req)

    # -- batch ---------------------------------------------------------------------------------
    async def batch(self, req: Req) -> Resp:
        """Batch operation (§5.6.7-§5.6.10, §5.6.20): `create`, `upsert`, `update`, `merge` or `delete`."""
        kind = req.path_params["op"]
        handlers = {"create": self._batch_create, "upsert": self._batch_upsert, "update": self._batch_update,
                    "delete": self._batch_delete, "merge": self._batch_merge}
        if kind not in handlers:
            raise NotFound(f"일괄 작업 {kind} 없음 / no batch operation {kind}")
        body = read_body(req)
        check_batch(req, kind, body)
        return await handlers[kind](req, body)

    async def _normalize_all(self, req: Req, body: list[Any], require_type: bool = True, allow_null: bool = False,
                             plain: list[bool] | None = None) -> tuple[list[tuple[str, Doc]], list[dict[str, Any]]]:
        """Normalize each entity of a batch; invalid ones become errors, not a failed batch.

        `body` (the request's, read by `batch`) is consumed: each entity leaves it once normalized, so
        that what of it the stored form does not share is freed while it is still in the CPU's cache,
        not as a thousand cold objects once the whole batch has been committed. The stored forms take
        the body's plain attribute instances as their own (`normalize_owned_entity`); whether each
        document has only those is appended to `plain`, if given.

        Entities without their own @context (the usual batch) share the request's context, compiled
        once, and are normalized in one loop (`normalize_owned_batch`); the loop below handles the rest.
        """
        if not any(map(contains, body, repeat("@context"))):  # C-level; `check_batch` let only objects in
            try:
                ctx: Any = (await self.compile(req, None))[1]
            except UcityError:  # each entity reports it, as below
                ctx = None
            if ctx is not None:
                docs, flags, failed = normalize_owned_batch(body, ctx, require_type, allow_null)
                if plain is not None:
                    plain.extend(flags)
                return self._drop_future(docs, [{"entityId": entity_id, "error": exc.to_problem()}
                                                for entity_id, exc in failed], plain)
        docs = []
        errors: list[dict[str, Any]] = []
        link_ctx = None
        normalize = normalize_owned_entity
        for n, item in enumerate(body):
            body[n] = None
            own_context = isinstance(item, dict) and "@context" in item
            entity_id = item.get("id") if isinstance(item, dict) else None
            try:
                if link_ctx is None or own_context:
                    _, ctx = await self.compile(req, item if isinstance(item, dict) else None)
                    link_ctx = None if own_context else ctx
                else:
                    ctx = link_ctx
                doc, only_plain = normalize(item, ctx, require_type, allow_null)
            except UcityError as exc:
                errors.append({"entityId": entity_id, "error": exc.to_problem()})
                continue
            docs.append((entity_id if entity_id.__class__ is str else str(entity_id), doc))
            if plain is not None:
                plain.append(only_plain)
        return self._drop_future(docs, errors, plain)

    def _drop_future(self, docs: list[tuple[str, Doc]], errors: list[dict[str, Any]], plain: list[bool] | None
                     ) -> tuple[list[tuple[str, Doc]], list[dict[str, Any]]]:
        """The batch's entities without those that have an observedAt after `horizon()`: each of those is an
        error of its own (400 BadRequestData in the 207), as any other invalid entity of a batch (QA10 F1)."""
        horizon = self.horizon()
        future: set[int] = set()
        # `check_future` inline, and only for the entities it refuses: this runs for every instance of a batch
        for n, (_, doc) in enumerate(docs):
            for instances in doc["attrs"].values():
                for instance in instances:
                    observed = instance.get("observedAt")
                    if observed is not None and observed > horizon:
                        future.add(n)
        for n in sorted(future):
            entity_id, doc = docs[n]
            try:
                check_future(doc["attrs"], horizon, self.settings.max_future_s)
            except BadRequest as exc:
                errors.append({"entityId": entity_id, "error": exc.to_problem()})
        if not future:
            return docs, errors
        if plain is not None:  # one flag per document, in the same order
            plain[:] = [flag for n, flag in enumerate(plain) if n not in future]
        return [item for n, item in enumerate(docs) if n not in future], errors

    async def _execute(self, req: Req, docs: list[tuple[str, Doc]], errors: list[dict[str, Any]],
                       make: Any, flags: list[bool] | None = None) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Run one mutation per entity, `make(doc)`, or with `flags` (one per doc) the mutations
        `make(docs, flags)` makes; returns (created ids, other success ids, errors)."""
        tenant = self.write_tenant(req)
        mutations = [Mutation(i, make(d)) for i, d in docs] if flags is None else make(docs, flags)
        results = await self.run(req, tenant, mutations) if docs else []
        created: list[str] = []
        succeeded: list[str] = []
        for (entity_id, _), result in zip(docs, results, strict=True):
            if result.__class__ is Outcome and result.result.__class__ is str:  # no update report: done
                (created if result.operation == "create" else succeeded).append(entity_id)
                continue
            error = _entity_error(entity_id, result) if isinstance(result, Exception) else _skipped(result)
            if error is not None:
                errors.append({"entityId": entity_id, "error": error.to_problem()})
            elif isinstance(result, Outcome) and result.operation == "create":
                created.append(entity_id)
            else:
                succeeded.append(entity_id)
        return created, succeeded, errors

    def _batch_reply(self, req: Req, created: list[str], succeeded: list[str], errors: list[dict[str, Any]],
                     created_status: int) -> Resp:
        if errors:
            return Resp(207, {"success": created + succeeded, "errors": errors}, self.tenant_headers(req))
        if created and created_status == 201:
            return Resp(201, created, self.tenant_headers(req))
        return self.no_content(req)

    async def _batch_create(self, req: Req, body: list[Any]) -> Resp:
        docs, errors = await self._normalize_all(req, body)
        created, ok, errors = await self._execute(req, docs, errors, ops.create_op)
        return self._batch_reply(req, created, ok, errors, 201)

    async def _batch_upsert(self, req: Req, body: list[Any]) -> Resp:
        plain: list[bool] = []
        docs, errors = await self._normalize_all(req, body, plain=plain)
        if "update" in options(req):
            make = lambda d: ops.append_op(d, overwrite=True, create_if_missing=True)  # noqa: E731
            created, ok, errors = await self._execute(req, docs, errors, make)
        else:  # the normalized documents are handed over to upsert_op: the batch does not use them again
            created, ok, errors = await self._execute(req, docs, errors, ops.upsert_mutations, plain)
        return self._batch_reply(req, created, ok, errors, 201)

    async def _batch_update(self, req: Req, body: list[Any]) -> Resp:
        docs, errors = await self._normalize_all(req, body, require_type=False)
        overwrite = "noOverwrite" not in options(req)
        _, ok, errors = await self._execute(req, docs, errors, lambda d: ops.append_op(d, overwrite))
        return self._batch_reply(req, [], ok, errors, 204)

    async def _batch_merge(self, req: Req, body: list[Any]) -> Resp:
        docs, errors = await self._normalize_all(req, body, require_type=False, allow_null=True)
        _, ok, errors = await self._execute(req, docs, errors, ops.merge_op)
        return self._batch_reply(req, [], ok, errors, 204)

    async def _batch_delete(self, req: Req, body: list[Any]) -> Resp:
        docs: list[tuple[str, Doc]] = []
        errors: list[dict[str, Any]] = []
        for entity_id in body:
            try:
                docs.append((check_entity_id(entity_id), {"id": entity_id}))
            except UcityError as exc:
                errors.append({"entityId": entity_id, "error": exc.to_problem()})
        _, ok, errors = await self._execute(req, docs, errors, lambda d: ops.delete_op(d["id"]))
        return self._batch_reply(req, [], ok, errors, 204)

    # -- discovery -----------------------------------------------------------------------------
    async def types(self, req: Req) -> Resp:
        """The entity types in use (§5.7.5); `details=true` with their attributes."""
        accept = negotiate(req)
        tenant = await self.read_tenant(req)
        ctx_input, ctx = await self.compile(req)
        summary = await self.store.types_summary(tenant)
        if bool_param(req, "details"):
            body: Any = [{"id": t, "type": "EntityType", "typeName": ctx.compact_iri(t),
                          "attributeNames": [ctx.compact_iri(a) for a in attrs]} for t, attrs, _ in summary]
        else:
            body = {"id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}", "type": "EntityTypeList",
                    "typeList": [ctx.compact_iri(t) for t, _, _ in summary]}
        return self.reply(req, body, ctx_input, accept)

    async def type_detail(self, req: Req) -> Resp:
        """One entity type: its attributes and entity count (§5.7.7)."""
        accept = negotiate(req)
        tenant = await self.read_tenant(req)
        ctx_input, ctx = await self.compile(req)
        wanted = ctx.expand_term(req.path_params["type"])
        summary = {t: (attrs, n) for t, attrs, n in await self.store.types_summary(tenant)}
        if wanted not in summary:
            raise NotFound(f"유형 {req.path_params['type']}의 엔티티 없음 / no entity of type {req.path_params['type']}")
        attrs, count = summary[wanted]
        kinds = {a: k for a, _, k, _ in await self.store.attributes_summary(tenant)}
        body = {"id": wanted, "type": "EntityTypeInfo", "typeName": ctx.compact_iri(wanted), "entityCount": count,
                "attributeDetails": [{"id": a, "type": "Attribute", "attributeName": ctx.compact_iri(a),
                                      "attributeTypes": kinds.get(a, ["Property"])} for a in attrs]}
        return self.reply(req, body, ctx_input, accept)

    async def attributes(self, req: Req) -> Resp:
        """The attributes in use (§5.7.8); `details=true` with their types."""
        accept = negotiate(req)
        tenant = await self.read_tenant(req)
        ctx_input, ctx = await self.compile(req)
        summary = await self.store.attributes_summary(tenant)
        if bool_param(req, "details"):
            body: Any = [{"id": a, "type": "Attribute", "attributeName": ctx.compact_iri(a),
                          "typeNames": [ctx.compact_iri(t) for t in types]} for a, types, _, _ in summary]
        else:
            body = {"id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}", "type": "AttributeList",
                    "attributeList": [ctx.compact_iri(a) for a, _, _, _ in summary]}
        return self.reply(req, body, ctx_input, accept)

    async def attribute_detail(self, req: Req) -> Resp:
        """One attribute: its types and entity count (§5.7.10)."""
        accept = negotiate(req)
        tenant = await self.read_tenant(req)
        ctx_input, ctx = await self.compile(req)
        wanted = ctx.expand_term(req.path_params["attrId"])
        for attr, types, kinds, count in await self.store.attributes_summary(tenant):
            if attr == wanted:
                body = {"id": attr, "type": "Attribute", "attributeName": ctx.compact_iri(attr), "attributeCount": count,
                        "attributeTypes": kinds, "typeNames": [ctx.compact_iri(t) for t in types]}
                return self.reply(req, body, ctx_input, accept)
        raise NotFound(f"속성 {req.path_params['attrId']} 없음 / no attribute {req.path_params['attrId']}")


ANY_TYPE = "*"
"""`type=*`: entities of any type (§4.17); it implies local=true (Table 6.4.3.2-1)."""
SELECTORS = ("type", "attrs", "q", "georel", "geoQ")
"""What makes a query selective enough (§5.7.2): id, idPattern and scopeQ only narrow one of these."""


def projection_param(req: Req, name: str) -> list[str]:
    """pick / omit: entity members and attribute names. Nested projections (`attr{sub}`) belong to
    linked entity retrieval (join), which ucity does not implement: braces are refused."""
    names = csv_param(req, name)
    if any("{" in n or "}" in n for n in names):
        raise BadRequest(f"{name}: {{ }}로 중첩한 투영(연결 엔티티 조회)은 지원하지 않음 / "
                         f"{name}: nested projections with {{ }} (linked entity retrieval) are not supported")
    return names


def check_selection(req: Req, params: Mapping[str, Any]) -> None:
    """A query names entity types, attributes, a q or a geo-query, unless it asks for local=true."""
    local = bool_param(req, "local")
    if params.get("type") == ANY_TYPE:
        if req.param("local") is not None and not local:
            raise BadRequest("type=*는 local=true를 뜻하므로 local=false와 함께 쓸 수 없음 / "
                             "type=* implies local=true; it cannot be combined with local=false")
        return
    if not local and not any(params.get(k) for k in SELECTORS):
        raise BadRequest("조회에는 type, attrs, q, 지오쿼리 중 하나 이상(또는 local=true)이 필요하며 id, idPattern, scopeQ는 "
                         "그 조회를 좁히기만 함 / "
                         "a query needs at least one of type, attrs, q or a geo-query (or local=true); "
                         "id, idPattern and scopeQ only narrow such a query")


def check_id_pattern(value: Any) -> str | None:
    """An idPattern, checked to be a regular expression (400 otherwise)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("idPattern은 문자열이어야 함 / idPattern must be a string")
    try:
        re.compile(value)
    except re.error as exc:
        raise BadRequest(f"idPattern이 올바른 정규식이 아님({exc}) / idPattern is not a valid regular expression: {exc}") from exc
    return value


def query_selectors(selectors: Any) -> dict[str, Any]:
    """id / idPattern / type parameters from the `entities` of a Query (§5.2.23)."""
    if selectors is None:
        return {}
    if not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
        raise BadRequest("entities는 EntitySelector 객체의 배열이어야 함 / entities must be an array of EntitySelector objects")
    if len(selectors) > 1:
        ids = [s.get("id") for s in selectors]
        if all(ids) and len({s.get("type") for s in selectors}) == 1:
            return {"id": ids, "type": selectors[0].get("type")}
        if all(set(s) == {"type"} for s in selectors):
            # Selectors are ORed (§5.7.2): type-only selectors are one type expression.
            return {"type": "|".join(f"({s['type']})" for s in selectors)}
        raise BadRequest("엔티티 선택자 여러 개는 id만 또는 type만 다를 때 지원함 / "
                         "several entity selectors are supported when they only differ by id or by type")
    if not selectors:
        return {}
    sel = selectors[0]
    return {"id": [sel["id"]] if sel.get("id") else [], "idPattern": sel.get("idPattern"), "type": sel.get("type")}


def check_batch(req: Req, kind: str, body: Any) -> None:
    """What makes a whole batch request invalid (§5.6.7.4, §6.3.5): nothing of it is applied.

    The body is a non-empty array of entities (of entity ids for delete) with no null or other
    item in between; an application/ld+json body carries its @context in its entities, never in
    a Link header.
    """
    if not isinstance(body, list):
        raise BadRequest("일괄 작업 본문은 JSON 배열이어야 함 / a batch operation body must be a JSON array")
    if not body:
        raise BadRequest("일괄 작업에는 엔티티가 하나 이상 필요함 / a batch operation needs at least one entity")
    item_type, what, what_ko = (str, "entity ids", "엔티티 id") if kind == "delete" else (dict, "entity objects", "엔티티 객체")
    if not all(map(isinstance, body, repeat(item_type))):  # C-level: it runs over every entity of a batch
        raise BadRequest(f"일괄 {kind}의 모든 항목은 {what_ko}여야 함(null 등 다른 값 불가) / "
                         f"every item of a batch {kind} must be one of its {what} (no null or other values)")
    if kind != "delete":
        request_context(req, body)  # 400 for ld+json with a Link header, or json with an @context


def check_future(attrs: Mapping[str, Any], horizon: str, max_future_s: float) -> None:
    """400 BadRequestData for an attribute instance (of `attrs`, name -> instances in stored form) whose
    observedAt is after `horizon` (the platform clock plus `ngsild.max_future_s`). History is keyed by
    observedAt and retention deletes by it: an instance dated 2099 would outlive every retention limit
    (QA10 F1). Stored times have one format (`to_iso`), so they compare as text."""
    for name, instances in attrs.items():
        for instance in instances:
            observed = instance.get("observedAt") if instance.__class__ is dict else None
            if observed is not None and observed > horizon:
                raise BadRequest(f"{name}: 관측 시각(observedAt)이 너무 먼 미래임 / observedAt too far in the future: "
                                 f"{observed} is after {horizon}, the platform clock plus ngsild.max_future_s "
                                 f"({max_future_s:g} s)")


def _skipped(outcome: Outcome) -> UcityError | None:
    """An entity update that left attributes as they were (noOverwrite) is a batch error of that entity."""
    report = outcome.result
    if not isinstance(report, dict) or not report.get("notUpdated"):
        return None
    # Each reason is "한국어 / English" (ops.NOT_UPDATED_*): the detail lists the Korean ones, then the English ones.
    halves = [(n["attributeName"], *n["reason"].partition(" / ")[::2]) for n in report["notUpdated"]]
    ko = "; ".join(f"{name}: {reason_ko}" for name, reason_ko, _ in halves)
    en = "; ".join(f"{name}: {reason_en or reason_ko}" for name, reason_ko, reason_en in halves)
    return BadRequest(f"갱신되지 않은 속성: {ko} / attributes not updated: {en}",
                      updated=report["updated"], notUpdated=report["notUpdated"])


def _entity_error(entity_id: str, error: Exception) -> UcityError:
    """A mutation's failure as the error reported for its entity (ops do not always know the id)."""
    if isinstance(error, ops.EntityNotFound):
        return NotFound(f"엔티티 {entity_id} 없음 / entity {entity_id} does not exist")
    return error if isinstance(error, UcityError) else UcityError(str(error))


_VALUE_MEMBERS = frozenset({"value", "object", "languageMap", "valueList", "objectList", "json", "vocab"})


def _has_value(patch: dict[str, Any]) -> bool:
    return not _VALUE_MEMBERS.isdisjoint(patch)


def _subs_only(name: str, patch: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A partial update that changes only sub-attributes or observedAt/unitCode."""
    instance = normalize_instance(name, {**patch, "value": 0}, ctx, allow_null=True)
    instance.pop("value", None)
    return instance


__all__ = ["NgsiLdApi", "normalize_attrs"]
