"""Static NGSI-LD entities of the simulated city, in normalized form, for a batch upsert.

Facilities are Smart Data Models `Building`s, cameras `Camera`s (with the fields of Korea's
national CCTV standard dataset), parking sites `OffStreetParking`/`OnStreetParking`, links
`RoadSegment`s; homes of elderly people living alone are ucity's own `ElderlyHome` (no personal
names: pseudonymous ids only). No @context is sent: attribute names resolve through the core
context's default vocabulary, as for the entities the IoT Agent creates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ucity.sim.devices import entity_id, line_geo, point_geo, site_entity_id
from ucity.sim.model import Camera, City, ElderlyHome, Facility, ParkingSite, RoadLink

Entity = dict[str, Any]

ROAD_CLASS = {"도시고속도로": "motorway", "주간선도로": "primary", "보조간선도로": "secondary", "지선도로": "tertiary"}
SPEED_LIMIT = {"도시고속도로": 80, "주간선도로": 60, "보조간선도로": 50, "지선도로": 30}


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def geoprop(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": value}


def address(dong: str, street: str | None = None) -> dict[str, Any]:
    out = {"addressCountry": "KR", "addressRegion": "서울특별시", "addressLocality": "구로구", "district": dong}
    return {**out, "streetAddress": street} if street else out


def facility_entity(f: Facility) -> Entity:
    """A monitored facility with its legal safety grade and inspection dates (§2.2)."""
    due = f.last_inspection + timedelta(days=f.inspection_interval_days)
    return {
        "id": entity_id("Building", f.id), "type": "Building",
        "name": prop(f.name), "category": prop([f.category]), "facilityClass": prop(f.facility_class),
        "ownership": prop(f.owner), "address": prop(address(f.dong)), "location": geoprop(point_geo(f.point)),
        "floorsAboveGround": prop(f.floors), "yearBuilt": prop(f.year_built),
        "legalSafetyGrade": prop(f.grade), "lastInspectionDate": prop(f.last_inspection.isoformat()),
        "inspectionType": prop("periodic"), "inspectionIntervalDays": prop(f.inspection_interval_days, unitCode="DAY"),
        "nextInspectionDate": prop(due.isoformat()),
    }


def camera_entity(c: Camera) -> Entity:
    """A CCTV camera: Smart Data Models Camera + the national CCTV dataset's fields. No `streamURL`: a camera's
    URLs may carry credentials and are never NGSI-LD data (ucity/ops/cameras.py keeps them apart, written
    through the operations camera API): the runner registers the simulated ones there (`RunConfig.camera_urls`)."""
    return {
        "id": entity_id("Camera", c.id), "type": "Camera",
        "cameraName": prop(f"{c.dong} {c.purpose_ko} {c.id}"), "cameraType": prop(c.camera_type),
        "cameraUsage": prop(c.usage), "installationPurpose": prop(c.purpose_ko),
        "cameraOrientation": prop({"comments": c.direction_ko}), "heading": prop(c.heading_deg, unitCode="DD"),
        "fieldOfView": prop(c.fov_deg, unitCode="DD"),
        "resolution": prop(round(c.pixels_10k / 100.0, 2), unitCode="MP"), "retentionDays": prop(c.retention_days),
        "installationDate": prop(c.installed), "managingAgency": prop(c.agency), "agencyPhone": prop(c.agency_phone),
        "address": prop(address(c.dong, c.road_address)), "lotAddress": prop(c.lot_address),
        "siteId": prop(c.site_id), "on": prop(True), "location": geoprop(point_geo(c.point)),
    }


def home_entity(h: ElderlyHome) -> Entity:
    """A home of an elderly person living alone; the devices point to it (refElderlyHome)."""
    return {
        "id": entity_id("ElderlyHome", h.id), "type": "ElderlyHome",
        "residentAge": prop(h.age), "livingAlone": prop(True), "priorityRecipient": prop(h.priority),
        "careService": prop("응급안전안심서비스"), "address": prop(address(h.dong)),
        "location": geoprop(point_geo(h.point)),
    }


def site_entity(s: ParkingSite) -> Entity:
    eid = site_entity_id(s.kind, s.id)
    category = ["public", "feeCharged"] if s.kind == "publicLot" else ["forResidents", "feeCharged"]
    return {
        "id": eid, "type": eid.split(":")[2], "name": prop(s.name), "category": prop(category),
        "totalSpotNumber": prop(s.capacity), "sharedParking": prop(True), "location": geoprop(point_geo(s.point)),
    }


def link_entity(link: RoadLink) -> Entity:
    """A TOPIS-style link (§8.1, §8.2) as a Smart Data Models RoadSegment."""
    return {
        "id": entity_id("RoadSegment", link.id), "type": "RoadSegment",
        "name": prop(link.road), "linkId": prop(link.link_id), "functionalClass": prop(link.functional_class),
        "roadClass": prop(ROAD_CLASS.get(link.functional_class, "unclassified")), "direction": prop(link.direction),
        "startName": prop(link.start_name), "endName": prop(link.end_name),
        "length": prop(link.length_m, unitCode="MTR"), "totalLaneNumber": prop(link.lanes),
        "maximumAllowedSpeed": prop(SPEED_LIMIT.get(link.functional_class, 50), unitCode="KMH"),
        "location": geoprop(line_geo(link.points)),
    }


def city_entities(city: City) -> list[Entity]:
    """Every static entity, facilities first (devices refer to them)."""
    return [
        *(facility_entity(f) for f in city.facilities),
        *(camera_entity(c) for c in city.cameras),
        *(home_entity(h) for h in city.homes),
        *(site_entity(s) for s in city.parking_sites),
        *(link_entity(link) for link in city.links),
    ]
