"""Care data is personal by default (QA12 F8): with the default `privacy.personal_entity_types` and the token guard
on, a `reader` token (a video wall, a data portal) no longer reads the simulated city's care entities (`ElderlyHome`,
`CareDevice`, `ChildTracker`, `SafeReturnWalk`), while what the platform does with them still works: the simulator
provisions them with an admin token (static entities also with an operator's), devices report by their API key
(ingest writes go through the store, not the NGSI-LD API's personal guard), the dashboard's masked care areas still
count the homes for a reader, and an `ingest` token (a data pipeline) cannot rewrite a home.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer
from ucity.core.clock import FakeClock
from ucity.core.config import PERSONAL_DEFAULT, PrivacySettings, Settings, load_settings
from ucity.sim.city import CityConfig, build_city
from ucity.sim.runner import RunConfig, Runner

ADMIN = "care-admin-token-0123456789abcdef"
OPERATOR = "care-operator-token-0123456789abcdef"
READER = "care-reader-token-0123456789abcdef"
INGEST = "care-ingest-token-0123456789abcdef"
CARE = ("ElderlyHome", "CareDevice", "ChildTracker", "SafeReturnWalk")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guarded(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), server={"require_auth": True},
                         ops={"admin_token": ADMIN, "tokens": [
                             {"id": "op1", "role": "operator", "token": OPERATOR},
                             {"id": "wall", "role": "reader", "token": READER},
                             {"id": "pipe", "role": "ingest", "token": INGEST}]})


def test_the_default_covers_the_care_types_ucity_ships() -> None:
    assert PrivacySettings().personal_entity_types == ["Person", *CARE] == list(PERSONAL_DEFAULT)
    # A deployment's list replaces the default (its README row says to keep these types in it).
    assert PrivacySettings(personal_entity_types=["Person"]).personal_entity_types == ["Person"]


async def entities(http: httpx.AsyncClient, token: str, **params: str) -> httpx.Response:
    return await http.get("/ngsi-ld/v1/entities", params={"options": "keyValues", "limit": "1000", **params},
                          headers=bearer(token))


async def test_care_entities_need_personal_read_and_the_care_services_still_work(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=30)
    city = build_city(CityConfig(seed=7, scale=0.02, reference_date=date(2026, 11, 1)))
    with LiveServer(guarded(tmp_path)) as server:
        # Static entities only, with an operator's token (`--static-only`): the homes are written (personal:write).
        async with Runner(city, RunConfig(url=server.url, stream=False, devices=False, token=OPERATOR),
                          clock=FakeClock(start)) as static:
            await static.run()
        # The whole provisioning with the admin token, then 20 simulated minutes of measures by API key.
        async with Runner(city, RunConfig(url=server.url, stream=False, token=ADMIN), clock=FakeClock(start)) as run:
            await run.run()
            assert run.report.entities > 0 and run.report.devices > 0
            assert run.generate(start.timestamp(), (start + timedelta(minutes=20)).timestamp()) > 0
            await run.flush()
            stats = run.report.stats
        assert stats.failed_measures == 0, stats.statuses
        assert stats.by_type["CareDevice"] > 0 and stats.by_type["ChildTracker"] > 0

        async with httpx.AsyncClient(base_url=server.url) as http:
            homes = (await entities(http, OPERATOR, type="ElderlyHome")).json()
            assert len(homes) == len(city.homes) > 0
            devices = (await entities(http, OPERATOR, type="CareDevice")).json()
            assert any("batteryLevel" in d for d in devices)  # the measures reached the care devices
            trackers = (await entities(http, ADMIN, type="ChildTracker")).json()
            assert any("location" in t for t in trackers)

            # A reader: 403 for a care type, the other types without them, the masked care areas as before.
            for care_type in CARE:
                refused = await entities(http, READER, type=care_type)
                assert refused.status_code == 403, (care_type, refused.text)
                assert refused.json()["permission"] == "personal:read"
            mixed = (await entities(http, READER, type="Building,ElderlyHome,CareDevice", attrs="name")).json()
            assert mixed and {e["type"] for e in mixed} == {"Building"}
            untyped = (await entities(http, READER, q="batteryLevel>=0")).json()
            assert untyped and not {e["type"] for e in untyped} & set(CARE)
            one = await http.get(f"/ngsi-ld/v1/entities/{homes[0]['id']}", headers=bearer(READER))
            assert one.status_code == 403
            areas = await http.get("/api/v1/dashboard/care-areas", headers=bearer(READER))
            assert areas.status_code == 200 and areas.json()["total"] == len(homes)
            assert str(homes[0]["location"]["coordinates"][0]) not in areas.text

            # A data pipeline's token cannot rewrite a home (personal:write), other types it can.
            home: dict[str, Any] = {"id": homes[0]["id"], "type": "ElderlyHome",
                                    "residentAge": {"type": "Property", "value": 99}}
            building = {"id": "urn:ngsi-ld:Building:care-test", "type": "Building",
                        "name": {"type": "Property", "value": "test"}}
            upsert = await http.post("/ngsi-ld/v1/entityOperations/upsert", json=[home, building],
                                     headers={**bearer(INGEST), "Content-Type": "application/json"})
            assert upsert.status_code == 207, upsert.text
            assert [e["entityId"] for e in upsert.json()["errors"]] == [homes[0]["id"]]
            again = (await http.get(f"/ngsi-ld/v1/entities/{homes[0]['id']}", params={"options": "keyValues"},
                                    headers=bearer(OPERATOR))).json()
            assert again["residentAge"] == homes[0]["residentAge"]
