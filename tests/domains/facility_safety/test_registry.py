"""The registry's view of a facility is its committed document: a grade computed on demand shows at once in
every registry-based view (list, `dataGrade` filter, detail, summary, CSV), and the order of the domain's own
writes against the changes still waiting to be published never loses or rolls back a result (QA finding 10)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.domains.facility_safety.support import OFFICER, TENANT, Site, domain_settings, iri
from ucity.core.bus import Context, EntityChange
from ucity.domains.facility_safety.config import FacilitySafetyConfig
from ucity.domains.facility_safety.registry import Registry
from ucity.ngsild.ops import merge_op
from ucity.store.base import Mutation, Outcome

FACILITY = "urn:ngsi-ld:Building:guro-wall-1"
SENSOR = "urn:ngsi-ld:StructuralSensor:guro-wall-1-tilt"
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 KST


async def test_a_grade_on_demand_shows_in_the_list_detail_filter_summary_and_export(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        body = {"id": FACILITY, "name": "구로 옹벽 1", "facilityType": "retainingWall", "legalSafetyGrade": "B",
                "legalSafetyGradeDate": "2025-11-10"}
        assert (await site.api("put_facility", "POST", body)).status == 201
        attached = await site.api("attach_sensor", "POST", {"sensor": SENSOR, "member": "main", "kind": "tilt",
                                                     "create": True},
                                  facilityId=FACILITY)
        assert attached.status == 200
        await site.write_tilt(SENSOR, NOW, (20, 10, 0), 0.004)  # 4 mrad: above the warning edge (1/300) on three samples

        graded = (await site.api("recompute_grade", "POST", headers=OFFICER, facilityId=FACILITY)).body
        assert graded["grade"] in ("D", "E") and graded["emergency"]["recommended"] is True
        grade = graded["grade"]
        await views_show(site, grade, True)

        assert (await site.api("recompute_all", "POST")).body == {"graded": 1}
        await views_show(site, grade, True)

        # an update of the facility through the API keeps what the entity says about its grade
        assert (await site.api("put_facility", "POST", {**body, "name": "구로 옹벽 1호"})).status == 200
        await views_show(site, grade, True)


async def views_show(site: Site, grade: str, emergency: bool) -> None:
    entity = await site.entity(FACILITY)
    assert entity["attrs"][iri("dataSafetyGrade")][0]["value"] == grade
    detail = (await site.api("get_facility", facilityId=FACILITY)).body
    assert (detail["dataSafetyGrade"], detail["emergencyInspectionRecommended"]) == (grade, emergency)
    listed = (await site.api("list_facilities", params={"dataGrade": grade})).body
    assert [f["id"] for f in listed["facilities"]] == [FACILITY]
    summary = (await site.api("summary")).body
    assert summary["byDataGrade"][grade] == 1 and summary["byDataGrade"]["none"] == 0
    assert summary["emergencyInspectionRecommended"] == ([FACILITY] if emergency else [])
    csv = (await site.api("export_facilities")).body
    text = csv.decode("utf-8-sig") if isinstance(csv, bytes) else str(csv)
    header, row = text.splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert cells["dataSafetyGrade"] == grade and cells["emergencyInspectionRecommended"] == str(emergency).lower()


# -- the order of the domain's own writes and the published changes ---------------------------------------------
def doc(version: int, grade: str | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {iri("facilityType"): [{"type": "Property", "value": "retainingWall"}],
                             iri("name"): [{"type": "Property", "value": f"v{version}"}]}
    if grade is not None:
        attrs[iri("dataSafetyGrade")] = [{"type": "Property", "value": grade, "observedAt": "2026-03-02T01:00:00Z"}]
    return {"id": FACILITY, "type": [iri("Building")], "attrs": attrs}


def change(after: dict[str, Any] | None, before: dict[str, Any] | None = None) -> EntityChange:
    return EntityChange(TENANT, FACILITY, "update", before or after, after, frozenset())


class Publishing:
    """A store whose commit of the write is `mine`; `during` are the changes the bus delivers while the write is in
    flight (before `mutate` returns), in commit order."""

    def __init__(self, registry: Registry, mine: dict[str, Any], during: list[dict[str, Any]]) -> None:
        self.registry, self.mine, self.during = registry, mine, during

    async def mutate(self, tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        for published in self.during:
            await asyncio.sleep(0)
            self.registry.apply(change(published))
        return [Outcome(self.mine, "update")]


def name_of(registry: Registry) -> str:
    facility = registry.facility(TENANT, FACILITY)
    assert facility is not None
    return facility.name


async def test_changes_committed_before_the_domain_s_write_do_not_roll_it_back() -> None:
    registry = Registry(FacilitySafetyConfig())
    registry.apply(change(doc(1)))
    older, mine, newer = doc(2), doc(3, "D"), doc(4, "D")
    store = Publishing(registry, mine, [])
    await registry.write(store, TENANT, [Mutation(FACILITY, merge_op({}))], Context())  # type: ignore[arg-type]
    facility = registry.facility(TENANT, FACILITY)
    assert facility is not None and (facility.name, facility.data_grade) == ("v3", "D")  # at once
    registry.apply(change(older))  # committed before the write, published after it returned
    assert name_of(registry) == "v3"
    registry.apply(change(mine))
    registry.apply(change(newer))
    assert name_of(registry) == "v4"  # after its own change, every change is newer again


async def test_a_write_published_before_it_returns_keeps_what_came_after_it() -> None:
    registry = Registry(FacilitySafetyConfig())
    registry.apply(change(doc(1)))
    mine, newer = doc(2, "C"), doc(3, "C")
    store = Publishing(registry, mine, [mine, newer])
    await registry.write(store, TENANT, [Mutation(FACILITY, merge_op({}))], Context())  # type: ignore[arg-type]
    assert name_of(registry) == "v3"
    registry.apply(change(doc(4, "C")))  # nothing is held back
    assert name_of(registry) == "v4"


async def test_a_delete_committed_before_an_upsert_does_not_remove_it() -> None:
    registry = Registry(FacilitySafetyConfig())
    registry.apply(change(doc(1)))
    mine = doc(2)
    store = Publishing(registry, mine, [])
    await registry.write(store, TENANT, [Mutation(FACILITY, merge_op({}))], Context())  # type: ignore[arg-type]
    registry.apply(change(None, before=doc(1)))
    assert name_of(registry) == "v2"
    registry.apply(change(mine))
    registry.apply(change(None, before=mine))
    assert registry.facility(TENANT, FACILITY) is None
