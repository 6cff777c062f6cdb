"""NGSI-LD temporal API: the history of entities (ETSI GS CIM 009 §5.6.11–5.6.16, §5.7.3–5.7.4,
§6.18–6.22), in the normalized (§4.5.9), simplified (`temporalValues`, §4.5.20) and aggregated
(`aggregatedValues`, §4.5.19) temporal representations.

History is written by every entity write (the store appends each written instance) and directly
by `POST /temporal/entities`, which never changes the current state. Direct history writes (POST, append,
instance PATCH) pass the store's write checks like entity writes (`_check_writes`): e.g. a Camera's
`streamURL` is refused with 400 before anything is recorded. Reading selects entities like
an entity query (`q`, geo-queries and `scopeQ` are evaluated on the *current* state of entities,
so they only select entities that still exist), then a time window over one time property:

- `before`: t < timeAt; `after`: t >= timeAt; `between`: timeAt <= t < endTimeAt.
- Each attribute holds at most `temporal_page_size` instances (or periods) per response, oldest
  first, or the newest `lastN`. When an attribute has more, the answer is 206 with
  `Content-Range: date-time <start>-<end>/<lastN or *>`; every attribute is cut at `<end>`, and the
  next page starts there (`timerel=after&timeAt=<end>`, or `before` when paging back with lastN).
  Instances at exactly `<end>` may appear on both pages; none is skipped.
- `timeproperty=createdAt` and `modifiedAt` both select by the time an instance was recorded.
- `timeAt` / `endTimeAt` need a UTC offset (`Z`, `+09:00`): without one (or a date alone) they are a 400,
  not read as UTC (QA17 F4).
- Entity pages: `next` is decided on the page as the store returned it, before personal entities are
  withheld, since offsets count them (as the entity API; QA17 F2).

Aggregation runs in the database (`Store.temporal_aggregate`); this module only parses, pages
and renders. Handlers are framework-free: `Req` in, `Resp` out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from ucity.core.clock import from_micros, parse_iso_clamped, require_offset, to_iso, to_micros
from ucity.core.errors import BadRequest, NotFound
from ucity.core.http import Req, Resp
from ucity.ngsild.api import NgsiLdApi, check_selection, query_selectors
from ucity.ngsild.model import (
    ENTITY_RESERVED,
    VALUE_KEY,
    Ctx,
    RenderOptions,
    check_entity_id,
    check_name,
    expand_types,
    is_uri,
    looks_like_instance,
    normalize_instance,
    render_instance,
)
from ucity.ngsild.ops import check_same_id
from ucity.ngsild.personal import entity_types
from ucity.ngsild.request import add_links, bool_param, csv_param, negotiate, options, page_links, read_body
from ucity.store.base import (
    AGGREGATE_METHODS,
    AggregatedEntity,
    AggregateSeries,
    Aggregation,
    EntityQuery,
    HistorySeries,
    TemporalEntity,
    TemporalQuery,
)

TEMPORAL_ENTITIES = "/ngsi-ld/v1/temporal/entities/"
E = TypeVar("E", TemporalEntity, AggregatedEntity)
TIMERELS = ("before", "after", "between")
TIME_PROPERTIES = ("observedAt", "modifiedAt", "createdAt")
# Simplified temporal representation (§4.5.20): the member holding [value, time] pairs per type.
PAIRS_KEY = {
    "Property": "values", "GeoProperty": "values", "Relationship": "objects", "LanguageProperty": "languageMaps",
    "ListProperty": "valueLists", "JsonProperty": "jsons", "VocabProperty": "vocabs", "ListRelationship": "objectLists",
}
_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?$"
)
_MICROS = {"W": 604_800_000_000, "D": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000}
Rows = list[tuple[str, dict[str, Any]]]


# -- parsing (pure) ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class TimeWindow:
    """A parsed temporal query: [time_from, time_to) in micros over `timeproperty`."""

    time_from: int | None = None
    time_to: int | None = None
    timeproperty: str = "observedAt"


@dataclasses.dataclass(frozen=True, slots=True)
class TemporalParams:
    """Everything about time and representation in a temporal request."""

    window: TimeWindow
    last_n: int | None
    fmt: str  # normalized | concise | temporalValues | aggregatedValues
    aggregation: Aggregation | None


def parse_time(value: Any, name: str) -> int:
    """An ISO 8601 date-time parameter as micros since the epoch (400 if it is not one)."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name}은(는) ISO 8601 날짜·시각이어야 함({value!r}) / "
                         f"{name} must be an ISO 8601 date-time, got {value!r}")
    try:
        require_offset(value, name)  # a Korea time without +09:00 would select 9 hours off (QA17 F4)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    try:
        # A bound beyond the range ucity stores (clock.MIN_INSTANT..MAX_INSTANT) selects the same as the range's
        # end, as the q language does: `timeAt=0001-01-01T00:00:00Z` stays "from the beginning".
        return to_micros(parse_iso_clamped(value))
    except ValueError as exc:
        raise BadRequest(f"{name}이(가) 올바른 ISO 8601 날짜·시각이 아님: {value!r} / "
                         f"{name} is not a valid ISO 8601 date-time: {value!r}") from exc


def parse_window(timerel: Any, time_at: Any, end_time_at: Any, timeproperty: Any) -> TimeWindow:
    """The time window of timerel/timeAt/endTimeAt/timeproperty (§4.11), validated."""
    prop = timeproperty or "observedAt"
    if prop not in TIME_PROPERTIES:
        raise BadRequest(f"timeproperty는 {', '.join(TIME_PROPERTIES)} 중 하나여야 함({prop!r}) / "
                         f"timeproperty must be one of {', '.join(TIME_PROPERTIES)}, got {prop!r}")
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise BadRequest("timeAt과 endTimeAt에는 timerel(before, after, between)이 필요함 / "
                             "timeAt and endTimeAt need timerel (before, after or between)")
        return TimeWindow(timeproperty=prop)
    if timerel not in TIMERELS:
        raise BadRequest(f"timerel은 {', '.join(TIMERELS)} 중 하나여야 함({timerel!r}) / "
                         f"timerel must be one of {', '.join(TIMERELS)}, got {timerel!r}")
    if time_at is None:
        raise BadRequest(f"timerel={timerel}에는 timeAt이 필요함 / timerel={timerel} needs timeAt")
    start = parse_time(time_at, "timeAt")
    if timerel == "before":
        return _no_end(end_time_at, timerel, TimeWindow(None, start, prop))
    if timerel == "after":
        return _no_end(end_time_at, timerel, TimeWindow(start, None, prop))
    if end_time_at is None:
        raise BadRequest("timerel=between에는 endTimeAt이 필요함 / timerel=between needs endTimeAt")
    end = parse_time(end_time_at, "endTimeAt")
    if end <= start:
        raise BadRequest(f"endTimeAt({end_time_at})은 timeAt({time_at})보다 나중이어야 함 / "
                         f"endTimeAt ({end_time_at}) must be later than timeAt ({time_at})")
    return TimeWindow(start, end, prop)


def _no_end(end_time_at: Any, timerel: str, window: TimeWindow) -> TimeWindow:
    if end_time_at is not None:
        raise BadRequest(f"endTimeAt은 timerel=between에만 씀({timerel} 불가) / "
                         f"endTimeAt is only used with timerel=between, not {timerel}")
    return window


def parse_duration(value: str) -> int:
    """An ISO 8601 duration (PT1H, P1D, P1W, PT0.5S ...) in micros; 0 means the whole window."""
    match = _DURATION.match(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise BadRequest(f"aggrPeriodDuration은 PT1H, P1D 같은 ISO 8601 기간이어야 함({value!r}) / "
                         f"aggrPeriodDuration must be an ISO 8601 duration such as PT1H or P1D, got {value!r}")
    if match["Y"] or match["M"]:
        raise BadRequest(f"aggrPeriodDuration {value!r}: 연과 월은 길이가 일정하지 않으니 주나 일을 쓰세요 / "
                         f"aggrPeriodDuration {value!r}: years and months have no fixed length; use weeks or days")
    micros = sum(int(match[unit]) * size for unit, size in _MICROS.items() if match[unit])
    seconds = match["s"]
    return micros + (round(float(seconds.replace(",", ".")) * 1_000_000) if seconds else 0)


def parse_last_n(value: Any) -> int | None:
    if value is None:
        return None
    try:
        last_n = int(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"lastN은 양의 정수여야 함({value!r}) / lastN must be a positive integer, got {value!r}") from exc
    if last_n < 1 or isinstance(value, bool):
        raise BadRequest(f"lastN은 양의 정수여야 함({value!r}) / lastN must be a positive integer, got {value!r}")
    return last_n


def parse_aggregation(methods: Any, duration: Any, wanted: bool) -> Aggregation | None:
    """aggrMethods/aggrPeriodDuration, required with (and only with) the aggregated representation."""
    if not wanted:
        if methods is not None or duration is not None:
            raise BadRequest("aggrMethods와 aggrPeriodDuration에는 options=aggregatedValues가 필요함 / "
                             "aggrMethods and aggrPeriodDuration need options=aggregatedValues")
        return None
    names = _as_list(methods)
    if not names:
        raise BadRequest("options=aggregatedValues에는 aggrMethods가 필요함(예: aggrMethods=avg,max) / "
                         "options=aggregatedValues needs aggrMethods, e.g. aggrMethods=avg,max")
    unknown = [n for n in names if n not in AGGREGATE_METHODS]
    if unknown:
        said, known = ", ".join(map(str, unknown)), ", ".join(AGGREGATE_METHODS)
        raise BadRequest(f"알 수 없는 aggrMethods {said}(가능: {known}) / unknown aggrMethods {said}; use {known}")
    if duration is not None and not isinstance(duration, str):
        raise BadRequest(f"aggrPeriodDuration은 ISO 8601 기간 문자열이어야 함({duration!r}) / "
                         f"aggrPeriodDuration must be an ISO 8601 duration string, got {duration!r}")
    return Aggregation(tuple(dict.fromkeys(names)), parse_duration(duration) if duration else 0)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return value
    raise BadRequest(f"목록이나 쉼표로 구분한 이름이 필요함({value!r}) / expected a list or comma-separated names, got {value!r}")


def representation(opts: set[str]) -> str:
    """normalized, concise, temporalValues or aggregatedValues from options/format."""
    if "aggregatedValues" in opts:
        if opts & {"temporalValues", "simplified", "keyValues"}:
            raise BadRequest("aggregatedValues와 temporalValues는 함께 쓸 수 없음 / "
                             "aggregatedValues and temporalValues cannot be combined")
        return "aggregatedValues"
    if opts & {"temporalValues", "simplified", "keyValues"}:
        return "temporalValues"
    return "concise" if "concise" in opts else "normalized"


TEMPORAL_FORMATS = ("normalized", "concise", "temporalValues", "aggregatedValues", "simplified", "keyValues")


def temporal_options(req: Req) -> set[str]:
    """options and format of a temporal request (an unknown format is a 400)."""
    fmt = req.param("format")
    if fmt is not None and fmt not in TEMPORAL_FORMATS:
        raise BadRequest(f"format은 {', '.join(TEMPORAL_FORMATS)} 중 하나여야 함({fmt!r}) / "
                         f"format must be one of {', '.join(TEMPORAL_FORMATS)}, got {fmt!r}")
    return options(req)


def parse_temporal(source: dict[str, Any], opts: set[str]) -> TemporalParams:
    """TemporalParams from query parameters (or a POST query's temporalQ merged over them)."""
    fmt = representation(opts)
    window = parse_window(source.get("timerel"), source.get("timeAt"), source.get("endTimeAt"),
                          source.get("timeproperty"))
    aggregation = parse_aggregation(source.get("aggrMethods"), source.get("aggrPeriodDuration"),
                                    fmt == "aggregatedValues")
    return TemporalParams(window, parse_last_n(source.get("lastN")), fmt, aggregation)


def normalize_temporal(body: Any, ctx: Ctx, *, require_type: bool) -> tuple[str, list[str], Rows]:
    """(entity id, type IRIs, [(attribute IRI, instance)]) of an entity in temporal representation.

    Each attribute is an array of instances (one object is taken as one instance); unlike the
    current state, many instances may share a datasetId, so this does not use normalize_attribute.
    """
    if not isinstance(body, dict):
        raise BadRequest("시간 엔티티는 JSON 객체여야 함 / a temporal entity must be a JSON object")
    entity_id = check_entity_id(body.get("id"))
    if "type" not in body and require_type:
        raise BadRequest("엔티티 유형(type)이 없음 / entity type is missing")
    types = expand_types(body["type"], ctx) if "type" in body else []
    rows: Rows = []
    for name, value in body.items():
        if name in ENTITY_RESERVED:
            continue
        iri = ctx.expand_term(check_name(name))
        items = value if isinstance(value, list) else [value]
        if not items:
            raise BadRequest(f"속성 {name!r}에 인스턴스가 없음 / attribute {name!r} has no instances")
        rows.extend((iri, normalize_instance(name, item, ctx)) for item in items)
    return entity_id, types, rows


def instance_fragment(body: Any, name: str, iri: str, expand: Callable[[str], str]) -> Any:
    """The instance of a temporal instance PATCH body (CIM 009 "Modify Attribute instance"): an attribute fragment
    of attribute `name` (IRI `iri`), {attrId: instance or [instance]}, or, as ucity also takes, the instance itself
    (an object with `type`, `value`, `object`, ...). An object of attributes that names any other attribute
    (`expand` gives a key's IRI) is a 400: taken as the instance, it would replace the recorded one with an object
    value made of the whole body."""
    if not isinstance(body, dict):
        raise BadRequest("본문은 JSON 객체여야 함 / the body must be a JSON object")
    fragment = {k: v for k, v in body.items() if k != "@context"}
    if looks_like_instance(fragment):
        return fragment
    others = sorted(key for key in fragment if key not in (name, iri) and expand(key) != iri)
    if others or len(fragment) != 1:
        named = ", ".join(others) if others else ", ".join(sorted(fragment))
        raise BadRequest(f"본문은 경로의 속성 {name}의 조각이나 그 인스턴스 하나여야 함"
                         f"(본문에 있는 것: {named or '속성 없음'}) / "
                         f"the body must be a fragment of attribute {name} (the one in the path) or one of its "
                         f"instances; it names {named or 'no attribute'}")
    inner = next(iter(fragment.values()))
    if isinstance(inner, list):
        if len(inner) != 1:
            raise BadRequest("인스턴스 수정에는 속성 인스턴스가 정확히 하나 필요함 / "
                             "modifying an instance takes exactly one attribute instance")
        inner = inner[0]
    return inner


# -- paging (pure) -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One response's rendered entities, its time range if partial, the entity count if asked, and whether more
    entities follow (decided before the personal filter shortens the page: offsets count unfiltered entities)."""

    body: list[dict[str, Any]]
    span: tuple[int, int] | None
    total: int | None
    more: bool = False


class PagedSeries(Protocol):
    """What temporal paging needs of a series: its times (ascending), whether it was cut, a cut."""

    times: list[int]
    truncated: bool

    def keep_between(self, low: int, high: int) -> None: ...


def page_range(series: Sequence[PagedSeries], window: TimeWindow, newest_first: bool) -> tuple[int, int] | None:
    """The time range of a partial answer, after cutting every series to it; None if complete.

    Oldest first, the range ends at the earliest last time among the cut series, so no series
    shows instances beyond a point where another one stopped; with lastN it mirrors that.
    """
    cut = [s for s in series if s.truncated and s.times]
    shown = [s for s in series if s.times]
    if not cut:
        return None
    if newest_first:
        end = max(s.times[0] for s in cut)
        start = window.time_to if window.time_to is not None else max(s.times[-1] for s in shown)
        for s in shown:
            s.keep_between(end, start)
    else:
        end = min(s.times[-1] for s in cut)
        start = window.time_from if window.time_from is not None else min(s.times[0] for s in shown)
        for s in shown:
            s.keep_between(start, end)
    return start, end


def content_range(span: tuple[int, int], last_n: int | None) -> str:
    return f"date-time {iso(span[0])}-{iso(span[1])}/{last_n if last_n is not None else '*'}"


def iso(micros: int) -> str:
    return to_iso(from_micros(micros))


def _more(query: TemporalQuery, fetched: int, total: int | None) -> bool:
    """More entities follow a page of `fetched` entities (as the store returned them, before any filter)."""
    limit = query.entity_limit
    return limit > 0 and fetched == limit and (total is None or query.entity_offset + limit < total)


# -- rendering (pure) --------------------------------------------------------------------------
def render_head(entity_id: str, types: list[str], ctx: Ctx, opts: RenderOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if opts.pick_id:
        out["id"] = entity_id
    if opts.pick_type and types:
        compact = [ctx.compact_iri(t) for t in types]
        out["type"] = compact[0] if len(compact) == 1 else compact
    return out


def render_history(entity: TemporalEntity, ctx: Ctx, opts: RenderOptions) -> dict[str, Any]:
    """Normalized (or concise) temporal representation: each attribute an array of instances."""
    out = render_head(entity.id, entity.types, ctx, opts)
    for iri, series in entity.attrs.items():
        if iri in opts.omit or not series.instances:
            continue
        out[ctx.compact_iri(iri)] = [_render_one(i, ctx, opts) for i in series.instances]
    return out


def _render_one(instance: dict[str, Any], ctx: Ctx, opts: RenderOptions) -> dict[str, Any]:
    rendered = render_instance(instance, ctx, opts)
    body = rendered if isinstance(rendered, dict) else {"value": rendered}  # concise bare value
    return {**body, "instanceId": instance.get("instanceId")}


def render_simplified(entity: TemporalEntity, ctx: Ctx, opts: RenderOptions) -> dict[str, Any]:
    """Simplified temporal representation (§4.5.20): [value, time] pairs per attribute and dataset."""
    out = render_head(entity.id, entity.types, ctx, opts)
    for iri, series in entity.attrs.items():
        if iri in opts.omit or not series.instances:
            continue
        out[ctx.compact_iri(iri)] = _one_or_many(_pairs(series))
    return out


def _pairs(series: HistorySeries) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[list[Any]]] = {}
    for time, instance in zip(series.times, series.instances, strict=True):
        attr_type = instance.get("type", "Property")
        pair = [instance.get(VALUE_KEY.get(attr_type, "value")), iso(time)]
        groups.setdefault((attr_type, instance.get("datasetId")), []).append(pair)
    return [{"type": t, PAIRS_KEY.get(t, "values"): pairs, **({"datasetId": d} if d else {})}
            for (t, d), pairs in groups.items()]


def render_aggregated(entity: AggregatedEntity, ctx: Ctx, opts: RenderOptions,
                      methods: tuple[str, ...]) -> dict[str, Any]:
    """Aggregated temporal representation (§4.5.19): per method, [value, startAt, endAt] triples."""
    out = render_head(entity.id, entity.types, ctx, opts)
    for iri, series_list in entity.attrs.items():
        if iri in opts.omit:
            continue
        bodies = [_aggregate_body(s, methods) for s in series_list if s.times]
        if bodies:  # a page cut may have emptied every series of the attribute
            out[ctx.compact_iri(iri)] = _one_or_many(bodies)
    return out


def _aggregate_body(series: AggregateSeries, methods: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": series.attr_type}
    for method in methods:
        body[method] = [[values[method], iso(start), iso(end)]
                        for start, end, values in zip(series.times, series.ends, series.values, strict=True)]
    if series.dataset_id:
        body["datasetId"] = series.dataset_id
    return body


def _one_or_many(items: list[dict[str, Any]]) -> Any:
    return items[0] if len(items) == 1 else items


# -- the handlers ------------------------------------------------------------------------------
class TemporalApi:
    """The temporal API over the entity API's store, @context resolver and helpers."""

    def __init__(self, api: NgsiLdApi) -> None:
        self.api = api
        self.store = api.store

    # -- writing -------------------------------------------------------------------------------
    async def create(self, req: Req) -> Resp:
        """POST /temporal/entities: create or add to a temporal representation (201 / 204)."""
        body = read_body(req)
        _, ctx = await self.api.compile(req, body)
        entity_id, types, rows = normalize_temporal(body, ctx, require_type=True)
        self._check_future(rows)
        tenant = self.api.write_tenant(req)
        await self._check_writes(tenant, entity_id, types, rows)
        personal = await self._personal(req, tenant, entity_id, types)
        existed = await self.store.temporal_entity_exists(tenant, entity_id)
        await self.store.append_history(tenant, entity_id, types, rows)
        await self._written(req, tenant, entity_id, personal, "history-append", len(rows))
        if existed:
            return self.api.no_content(req)
        return self.api.no_content(req, 201, {"Location": TEMPORAL_ENTITIES + quote(entity_id, safe=":")})

    async def append(self, req: Req) -> Resp:
        """POST /temporal/entities/{id}/attrs: add attribute instances (204; 404 if no such entity)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.api.compile(req, body)
        if not isinstance(body, dict):
            raise BadRequest("본문은 속성들의 JSON 객체여야 함 / the body must be a JSON object of attributes")
        check_same_id(body.get("id"), entity_id)
        _, types, rows = normalize_temporal({**body, "id": entity_id}, ctx, require_type=False)
        if not rows:
            raise BadRequest("본문에 추가할 속성 인스턴스가 없음 / the body has no attribute instances to add")
        self._check_future(rows)
        tenant = self.api.write_tenant(req)
        await self._require(tenant, entity_id)
        await self._check_writes(tenant, entity_id, types, rows)
        personal = await self._personal(req, tenant, entity_id, types)
        await self.store.append_history(tenant, entity_id, types, rows)
        await self._written(req, tenant, entity_id, personal, "history-append", len(rows))
        return self.api.no_content(req)

    async def delete(self, req: Req) -> Resp:
        """DELETE /temporal/entities/{id}: the whole history (the current entity is untouched)."""
        entity_id = check_entity_id(req.path_params["entityId"])
        tenant = self.api.write_tenant(req)
        personal = await self._personal(req, tenant, entity_id)
        deleted = await self.store.delete_history(tenant, entity_id)
        if not deleted:
            raise NotFound(f"시간 엔티티 {entity_id} 없음 / temporal entity {entity_id} does not exist")
        await self._written(req, tenant, entity_id, personal, "history-delete", deleted)
        return self.api.no_content(req)

    async def delete_attr(self, req: Req) -> Resp:
        """DELETE /temporal/entities/{id}/attrs/{attrId}[?deleteAll=true | ?datasetId=...]."""
        entity_id = check_entity_id(req.path_params["entityId"])
        _, ctx = await self.api.compile(req)
        iri = self._attr(req, ctx)
        dataset = req.param("datasetId")
        if dataset is not None and not is_uri(dataset):
            raise BadRequest(f"datasetId는 URI여야 함({dataset!r}) / datasetId must be a URI, got {dataset!r}")
        tenant = self.api.write_tenant(req)
        personal = await self._personal(req, tenant, entity_id)
        deleted = await self.store.delete_history(tenant, entity_id, iri, dataset,
                                                  all_datasets=bool_param(req, "deleteAll"))
        if not deleted:
            await self._require(tenant, entity_id)
            which = (f"(datasetId {dataset})", f" with datasetId {dataset}") if dataset else ("", "")
            attr = req.path_params["attrId"]
            raise NotFound(f"시간 엔티티 {entity_id}에 속성 {attr}{which[0]} 없음 / "
                           f"temporal entity {entity_id} has no attribute {attr}{which[1]}")
        await self._written(req, tenant, entity_id, personal, "history-delete-attribute", deleted)
        return self.api.no_content(req)

    async def modify_instance(self, req: Req) -> Resp:
        """PATCH /temporal/entities/{id}/attrs/{attrId}/{instanceId}: change one recorded instance."""
        entity_id = check_entity_id(req.path_params["entityId"])
        body = read_body(req)
        _, ctx = await self.api.compile(req, body)
        name = req.path_params["attrId"]
        iri = self._attr(req, ctx)
        fragment = instance_fragment(body, name, iri, lambda key: str(ctx.expand_term(key)))
        instance = normalize_instance(name, fragment, ctx)
        self._check_future([(iri, instance)])
        tenant = self.api.write_tenant(req)
        instance_id = req.path_params["instanceId"]
        await self._check_writes(tenant, entity_id, [], [(iri, instance)])
        personal = await self._personal(req, tenant, entity_id)
        if not await self.store.replace_history_instance(tenant, entity_id, iri, instance_id, instance):
            await self._require(tenant, entity_id)
            raise NotFound(f"{entity_id}의 속성 {name}에 인스턴스 {instance_id} 없음 / "
                           f"attribute {name} of {entity_id} has no instance {instance_id}")
        await self._written(req, tenant, entity_id, personal, "history-modify-instance", 1)
        return self.api.no_content(req)

    async def delete_instance(self, req: Req) -> Resp:
        """DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId}."""
        entity_id = check_entity_id(req.path_params["entityId"])
        _, ctx = await self.api.compile(req)
        iri = self._attr(req, ctx)
        tenant = self.api.write_tenant(req)
        instance_id = req.path_params["instanceId"]
        personal = await self._personal(req, tenant, entity_id)
        if not await self.store.delete_history(tenant, entity_id, iri, instance_id=instance_id, all_datasets=True):
            await self._require(tenant, entity_id)
            attr = req.path_params["attrId"]
            raise NotFound(f"{entity_id}의 속성 {attr}에 인스턴스 {instance_id} 없음 / "
                           f"attribute {attr} of {entity_id} has no instance {instance_id}")
        await self._written(req, tenant, entity_id, personal, "history-delete-instance", 1)
        return self.api.no_content(req)

    async def _personal(self, req: Req, tenant: str, entity_id: str, types: list[str] | None = None
                        ) -> list[str] | None:
        """With the token guard on: the entity's type IRIs (the body's, its current state's and its history's) when
        one is personal, else None; a 403 (audited) for a caller without `personal:write` (personal.py). Nothing
        read with the guard off or no personal types: two reads per temporal write otherwise (not the hot path:
        devices and batches write through the entity API)."""
        personal = self.api.personal
        if req.principal is None or not personal.iris:
            return None
        known = [*(types or ()), *await self._types(tenant, entity_id)]
        return known if await personal.check_history_write(req, tenant, known) else None

    async def _written(self, req: Req, tenant: str, entity_id: str, personal: list[str] | None, operation: str,
                       count: int) -> None:
        if personal is not None:
            await self.api.personal.history_written(req, tenant, entity_id, personal, operation, count)

    def _check_future(self, rows: Rows) -> None:
        """400 for an instance whose observedAt is after the platform clock plus `ngsild.max_future_s`: history is
        kept and deleted by that time, so one dated 2099 would outlive every retention limit (QA10 F1)."""
        attrs: dict[str, list[dict[str, Any]]] = {}
        for iri, instance in rows:
            attrs.setdefault(iri, []).append(instance)
        self.api.check_future(attrs)

    async def _check_writes(self, tenant: str, entity_id: str, types: list[str], rows: Rows) -> None:
        """History is held to the store's write checks (`Store.add_write_check`) like the current state: the
        instances a temporal write adds are checked as if written to the entity, with every type it has (the
        body's, its history's and its current state's: a POST naming another type adds to the same history),
        and a refusal is raised before anything is stored; e.g. a Camera's `streamURL` (ucity/ops/cameras.py)."""
        checks = self.store.write_checks
        if not checks or not rows:
            return
        attrs: dict[str, list[dict[str, Any]]] = {}
        for iri, instance in rows:
            attrs.setdefault(iri, []).append(instance)
        doc = {"id": entity_id, "type": [*dict.fromkeys([*types, *await self._types(tenant, entity_id)])],
               "attrs": attrs}
        for check in checks:
            refused = check(tenant, entity_id, doc, frozenset(attrs))
            if refused is not None:
                raise refused

    async def _types(self, tenant: str, entity_id: str) -> list[str]:
        """The type IRIs an entity has now and in its history."""
        current = await self.store.get_entity(tenant, entity_id)
        # an attribute no entity has: the entity's head (id, types) without reading any of its history
        head = TemporalQuery(ids=(entity_id,), attrs=("urn:ucity:no-attribute",), limit_instances=1, entity_limit=1)
        found, _ = await self.store.temporal_query(tenant, head)
        return [*(current or {}).get("type", ()), *(t for entity in found for t in entity.types)]

    async def _require(self, tenant: str, entity_id: str) -> None:
        if not await self.store.temporal_entity_exists(tenant, entity_id):
            raise NotFound(f"시간 엔티티 {entity_id} 없음 / temporal entity {entity_id} does not exist")

    @staticmethod
    def _attr(req: Req, ctx: Any) -> str:
        return str(ctx.expand_term(check_name(req.path_params["attrId"])))

    # -- reading -------------------------------------------------------------------------------
    async def retrieve(self, req: Req) -> Resp:
        """GET /temporal/entities/{id}: one entity's temporal representation."""
        accept = negotiate(req)
        entity_id = check_entity_id(req.path_params["entityId"])
        tenant = await self.api.read_tenant(req)
        ctx_input, ctx = await self.api.compile(req)
        temporal = parse_temporal(self._url_temporal(req), temporal_options(req))
        query = self._query(TemporalQuery(ids=(entity_id,), entity_limit=1), temporal)
        query.attrs = tuple(ctx.expand_term(check_name(a)) for a in csv_param(req, "attrs"))
        query.dataset_ids = self._datasets(req)
        page = await self._fetch(req, tenant, query, temporal, ctx, accept, "GET /ngsi-ld/v1/temporal/entities/{entityId}",
                                 retrieval=True)
        if not page.body:
            raise NotFound(f"시간 엔티티 {entity_id} 없음 / temporal entity {entity_id} does not exist")
        return self._answer(req, page.body[0], ctx_input, accept, page, temporal, {})

    async def query(self, req: Req) -> Resp:
        """GET /temporal/entities: the temporal evolution of the entities a query selects."""
        accept = negotiate(req)
        ctx_input, ctx = await self.api.compile(req)
        params: dict[str, Any] = {k: req.param(k) for k in ("idPattern", "type", "q", "georel", "geometry",
                                                             "coordinates", "geoproperty", "scopeQ")}
        params["id"] = csv_param(req, "id")
        params["attrs"] = csv_param(req, "attrs")
        check_selection(req, params)
        temporal = parse_temporal(self._url_temporal(req), temporal_options(req))
        return await self._query_reply(req, ctx_input, ctx, accept, params, temporal,
                                       "GET /ngsi-ld/v1/temporal/entities")

    async def query_post(self, req: Req) -> Resp:
        """POST /temporal/entityOperations/query: a Query body with `temporalQ`."""
        accept = negotiate(req)
        body = read_body(req)
        ctx_input, ctx = await self.api.compile(req, body)
        if not isinstance(body, dict) or body.get("type") != "Query":
            raise BadRequest('본문은 "type": "Query"인 Query 객체여야 함 / '
                             'the body must be a Query object with "type": "Query"')
        temporal_q = body.get("temporalQ") or {}
        if not isinstance(temporal_q, dict):
            raise BadRequest("temporalQ는 JSON 객체여야 함 / temporalQ must be a JSON object")
        temporal = parse_temporal({**self._url_temporal(req), **temporal_q}, temporal_options(req))
        params = {"q": body.get("q"), "geoQ": body.get("geoQ"), "scopeQ": body.get("scopeQ"),
                  "attrs": _as_list(body.get("attrs")), **query_selectors(body.get("entities"))}
        check_selection(req, params)
        return await self._query_reply(req, ctx_input, ctx, accept, params, temporal,
                                       "POST /ngsi-ld/v1/temporal/entityOperations/query")

    async def _query_reply(self, req: Req, ctx_input: Any, ctx: Any, accept: str, params: dict[str, Any],
                           temporal: TemporalParams, route: str) -> Resp:
        tenant = await self.api.read_tenant(req)
        query = await self._select(req, tenant, ctx, params)
        query.entity_limit, query.entity_offset, query.count = self.api.paging(req)
        query.instances_only = True
        query.dataset_ids = self._datasets(req)
        self._query(query, temporal)
        page = await self._fetch(req, tenant, query, temporal, ctx, accept, route)
        if page.total is not None and self.api.personal.withheld(req):
            # The personal entities `_fetch` withheld are not counted either (personal.py): counted, subtracted.
            personal = dataclasses.replace(query, types=self.api.personal.personal_expr(query.types), entity_limit=1,
                                           entity_offset=0, limit_instances=1, last_n=None)
            hidden = (await self.store.temporal_query(tenant, personal))[1] or 0
            page = dataclasses.replace(page, total=page.total - hidden)
        count = {"NGSILD-Results-Count": str(page.total)} if page.total is not None else {}
        return self._answer(req, page.body, ctx_input, accept, page, temporal, count,
                            self._entity_links(req, query, page, accept))

    async def _select(self, req: Req, tenant: str, ctx: Any, params: dict[str, Any]) -> TemporalQuery:
        """Entity selection: ids/types/attrs on the history, q/geo/scope on the current state."""
        selection = await self.api.build_query(req, ctx, params)
        selection.types = await self.api.personal.narrow(req, tenant, selection.types)
        query = TemporalQuery(ids=selection.ids, id_pattern=selection.id_pattern, types=selection.types,
                              attrs=selection.attrs_any)
        if selection.q is not None or selection.geo is not None or selection.scope is not None:
            current = EntityQuery(ids=selection.ids, id_pattern=selection.id_pattern, types=selection.types,
                                  q=selection.q, geo=selection.geo, geo_attr=selection.geo_attr,
                                  scope=selection.scope)
            query.entity_ids_only = tuple(await self.store.entity_ids(tenant, current))
        return query

    def _query(self, query: TemporalQuery, temporal: TemporalParams) -> TemporalQuery:
        window = temporal.window
        query.time_from, query.time_to, query.timeproperty = window.time_from, window.time_to, window.timeproperty
        query.last_n = temporal.last_n
        query.limit_instances = self.api.settings.temporal_page_size
        return query

    async def _fetch(self, req: Req, tenant: str, query: TemporalQuery, temporal: TemporalParams, ctx: Any,
                     accept: str, route: str, retrieval: bool = False) -> Page:
        """The rendered entities of one page, cut to a common time range when partial; with the token guard on
        without the personal entities a caller without `personal:read` may not see (403 for a `retrieval` of
        one), and audited when such entities are shown (personal.py)."""
        # `format` was read into `temporal.fmt`; the entity API only knows the non-temporal ones.
        without_format = dataclasses.replace(req, params={k: v for k, v in req.params.items() if k != "format"})
        opts = self.api.render_options(without_format, ctx, accept)
        opts = dataclasses.replace(opts, fmt="concise" if temporal.fmt == "concise" else "normalized")
        newest_first = temporal.last_n is not None
        if temporal.aggregation is not None:
            aggregated, total = await self.store.temporal_aggregate(tenant, query, temporal.aggregation)
            more = _more(query, len(aggregated), total)
            if req.principal is not None:
                aggregated = await self._reveal(req, tenant, route, aggregated, retrieval)
            periods: list[PagedSeries] = [s for e in aggregated for many in e.attrs.values() for s in many]
            span = page_range(periods, temporal.window, newest_first)
            methods = temporal.aggregation.methods
            return Page([render_aggregated(e, ctx, opts, methods) for e in aggregated], span, total, more)
        entities, total = await self.store.temporal_query(tenant, query)
        more = _more(query, len(entities), total)
        if req.principal is not None:
            entities = await self._reveal(req, tenant, route, entities, retrieval)
        span = page_range([s for e in entities for s in e.attrs.values()], temporal.window, newest_first)
        render = render_simplified if temporal.fmt == "temporalValues" else render_history
        return Page([render(e, ctx, opts) for e in entities], span, total, more)

    async def _reveal(self, req: Req, tenant: str, route: str, entities: list[E], retrieval: bool) -> list[E]:
        personal = self.api.personal
        found = [e for e in entities if personal.is_personal(e.types)] if retrieval and personal.withheld(req) else []
        if found:  # the retrieval of one personal entity is refused, as the entity API's
            await personal.refuse(req, tenant, personal.short_types([e.types for e in found]))
        return await personal.reveal(req, tenant, route, entities, entity_types)

    def _answer(self, req: Req, body: Any, ctx_input: Any, accept: str, page: Page, temporal: TemporalParams,
                headers: dict[str, str], links: list[str] | None = None) -> Resp:
        headers = dict(headers)
        status = 200
        if page.span is not None:
            status, headers["Content-Range"] = 206, content_range(page.span, temporal.last_n)
        return add_links(self.api.reply(req, body, ctx_input, accept, status, headers), links or [])

    @staticmethod
    def _entity_links(req: Req, query: TemporalQuery, page: Page, accept: str) -> list[str]:
        """next/prev links over entities (the instances of each entity page by time instead). Whether a next page
        exists is `page.more`, taken before the personal filter: a page whose entities were all withheld is empty
        yet has a next one, as in the entity API (QA17 F2)."""
        return page_links(req, query.entity_offset, query.entity_limit, page.more, accept)

    @staticmethod
    def _url_temporal(req: Req) -> dict[str, Any]:
        names = ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods", "aggrPeriodDuration")
        return {name: req.param(name) for name in names if req.param(name) is not None}

    @staticmethod
    def _datasets(req: Req) -> tuple[str, ...] | None:
        datasets = csv_param(req, "datasetId")
        return tuple(datasets) if datasets else None
