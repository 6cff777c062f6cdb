"""The simulated district: deterministic by seed, the counts of the description, inside Guro-gu."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date

import pytest

from ucity.sim.city import CityConfig, build_city, dong_base, stable_key
from ucity.sim.entities import camera_entity, city_entities, facility_entity
from ucity.sim.geo import GURO_BBOX
from ucity.sim.model import City

CFG = CityConfig(seed=7, reference_date=date(2026, 11, 1))


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CFG)


def test_same_seed_same_city(city: City) -> None:
    again = build_city(CFG)
    assert again == city
    assert city_entities(again) == city_entities(city)


def test_another_seed_another_city(city: City) -> None:
    other = build_city(replace(CFG, seed=8))
    assert other.facilities[0].point != city.facilities[0].point
    assert [c.point for c in other.cameras[:50]] != [c.point for c in city.cameras[:50]]
    assert len(other.cameras) == len(city.cameras) == 4100


def test_parts_draw_from_their_own_streams(city: City) -> None:
    """Changing the number of cameras does not move the elderly homes."""
    fewer = build_city(replace(CFG, cameras=replace(CFG.cameras, count=100)))
    assert fewer.homes == city.homes
    assert len(fewer.cameras) == 100


def test_counts_match_the_description(city: City) -> None:
    assert len(city.facilities) == 139  # Guro 2021: 139 facilities (§2.1)
    assert len(city.sensors) == 600  # ... with 600 sensors
    assert len(city.cameras) == 4100
    assert len(city.homes) == 350
    assert len(city.boards) == 3000
    assert len(city.parking_spaces) == 400
    assert len(city.parking_sites) == 25
    assert len(city.buses) == 18 and len(city.children) == 216
    assert len(city.walks) == 40
    assert len(city.links) == 130


def test_public_and_private_facilities_and_sensors(city: City) -> None:
    owners = Counter(f.owner for f in city.facilities)
    assert owners == {"public": 77, "private": 62}
    owner_of = {f.id: f.owner for f in city.facilities}
    per_owner = Counter(owner_of[s.facility_id] for s in city.sensors)
    assert per_owner == {"public": 265, "private": 335}
    classes = Counter(f.facility_class for f in city.facilities)
    assert set(classes) == {"footbridge", "retainingWall", "school", "daycareCenter", "pumpStation",
                            "communityCenter", "agingApartment", "agingBuilding"}
    # every facility has a tilt sensor; kinds are only the three of §2.1
    assert {s.facility_id for s in city.sensors if s.kind == "tilt"} == {f.id for f in city.facilities}
    assert set(Counter(s.kind for s in city.sensors)) == {"tilt", "crack", "vibration"}


def test_grades_and_inspection_dates(city: City) -> None:
    for f in city.facilities:
        assert f.grade in "ABCDE"
        assert f.inspection_interval_days == (122 if f.grade in "DE" else 182)  # §2.2
        assert (CFG.reference_date - f.last_inspection).days <= f.inspection_interval_days * 1.3
    assert {f.grade for f in city.facilities} >= {"B", "C", "D"}


def test_everything_lies_inside_the_district(city: City) -> None:
    points = [f.point for f in city.facilities] + [s.point for s in city.sensors] + [c.point for c in city.cameras]
    points += [h.point for h in city.homes] + [b.point for b in city.boards] + [p.point for p in city.parking_spaces]
    points += [c.home for c in city.children] + [p for b in city.buses for p in b.route]
    points += [p for w in city.walks for p in w.route] + [p for link in city.links for p in link.points]
    outside = [p for p in points if not (126.81 <= p[0] <= 126.90 and 37.47 <= p[1] <= 37.51)]
    assert not outside
    assert all(GURO_BBOX.contains(p) for p in points)


def test_cameras_have_the_national_cctv_dataset_fields(city: City) -> None:
    purposes = Counter(c.purpose_ko for c in city.cameras)
    assert purposes.most_common(1)[0][0] == "생활방범"
    assert set(purposes) <= {"생활방범", "어린이보호", "차량방범", "교통단속", "교통정보수집", "쓰레기단속", "재난재해",
                             "시설물관리"}
    entity = camera_entity(city.cameras[0])
    assert entity["type"] == "Camera"
    assert entity["cameraType"]["value"] in ("FIXED", "PTZ", "DOME", "DAY/NIGHT", "C-MOUNT", "BULLET")
    assert entity["cameraUsage"]["value"] in ("SURVEILLANCE", "RLVD", "ANPR/LPR", "TRAFFIC")
    assert entity["retentionDays"]["value"] in (14, 30, 60, 90)
    assert entity["managingAgency"]["value"] in ("서울특별시 구로구청", "서울특별시경찰청")
    assert "streamURL" not in entity and "stillImageURL" not in entity  # never NGSI-LD data (ucity/ops/cameras.py)
    assert entity["address"]["value"]["streetAddress"].startswith("서울특별시 구로구 ")
    assert 0 <= entity["heading"]["value"] < 360
    # several cameras share a pole (카메라대수), each looking another way
    per_site = Counter(c.site_id for c in city.cameras)
    assert max(per_site.values()) == 4 and min(per_site.values()) >= 1


def test_facility_entity_is_a_smart_data_models_building(city: City) -> None:
    f = city.facilities[0]
    entity = facility_entity(f)
    assert entity["id"] == f"urn:ngsi-ld:Building:guro-{f.id}"
    assert entity["type"] == "Building"
    assert entity["legalSafetyGrade"]["value"] == f.grade
    assert entity["lastInspectionDate"]["value"] == f.last_inspection.isoformat()
    assert entity["location"]["value"]["type"] == "Point"


def test_static_entity_types(city: City) -> None:
    types = Counter(e["type"] for e in city_entities(city))
    assert types == {"Building": 139, "Camera": 4100, "ElderlyHome": 350, "OffStreetParking": 5,
                     "OnStreetParking": 20, "RoadSegment": 130}


def test_scale_multiplies_the_counts() -> None:
    small = build_city(replace(CFG, scale=0.1))
    assert len(small.cameras) == 410
    assert len(small.boards) == 300
    assert len(small.homes) == 35
    assert len(small.sensors) == 60


def test_stable_key_and_dong_base() -> None:
    assert stable_key("shm-0001") == stable_key("shm-0001") != stable_key("shm-0002")
    assert stable_key("x") == 2697552496229297191  # the same on every machine and run
    assert dong_base("구로1동") == "구로동"
    assert dong_base("신도림동") == "신도림동"
