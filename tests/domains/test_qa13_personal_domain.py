"""QA13 F1: a domain makes its own entity types personal in `setup` (`platform.get("privacy").declare(...)`,
ucity/core/privacy.py), end to end: the NGSI-LD API (reads, writes and subscriptions need `personal:read` /
`personal:write`, reads are audited), the data-subject erasure, alarms (the Alert of an alarm about such an entity
has no `alertSource` and a coarse place), the Alert migration's fingerprint and `/health`. The domain is a test
package registered as `ucity.domains.qa13_household` through the domains mechanism (`domains.enabled`); `Household`
is in no settings list."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.alarms.support import T0, City, matched
from ucity.alarms.alert import AlertPrivacy
from ucity.alarms.alert_privacy import fingerprint
from ucity.core.config import PERSONAL_DEFAULT, Settings, load_settings
from ucity.core.platform import Platform
from ucity.ngsild.context import core_context
from ucity.server import create_app

DOMAIN = "qa13_household"
SOURCE = "QA13 test [D]"
ADMIN, OPERATOR, READER, INGEST = ("a" * 32, "o" * 32, "r" * 32, "i" * 32)
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR}, {"id": "wall", "role": "reader", "token": READER},
          {"id": "gw", "role": "ingest", "token": INGEST}]
HOME = "urn:ngsi-ld:Household:h1"
EXACT = {"type": "Point", "coordinates": [126.887654, 37.498765]}
ENTITY: dict[str, Any] = {"id": HOME, "type": "Household", "location": {"type": "GeoProperty", "value": EXACT},
                          "residentAge": {"type": "Property", "value": 84}}


def setup(platform: Platform, config: dict[str, Any]) -> None:
    platform.get("privacy").declare("Household", source=SOURCE)


@pytest.fixture(autouse=True)
def household_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(f"ucity.domains.{DOMAIN}")
    module.setup = setup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         domains={"enabled": [DOMAIN]}, **extra)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(settings(tmp_path, server={"require_auth": True}, ops={"admin_token": ADMIN, "tokens": TOKENS}))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_a_declared_type_is_personal_in_the_ngsild_api(http: TestClient) -> None:
    # Writes need personal:write: the ingest role's token cannot create one, the operator's can.
    refused = http.post("/ngsi-ld/v1/entities", json=ENTITY, headers=bearer(INGEST))
    assert refused.status_code == 403 and "personal:write" in refused.text
    assert http.post("/ngsi-ld/v1/entities", json=ENTITY, headers=bearer(OPERATOR)).status_code == 201
    # Reads need personal:read: a reader is refused the type and the entity, and does not see it in a query.
    assert http.get("/ngsi-ld/v1/entities", params={"type": "Household"}, headers=bearer(READER)).status_code == 403
    assert http.get(f"/ngsi-ld/v1/entities/{HOME}", headers=bearer(READER)).status_code == 403
    anything = http.get("/ngsi-ld/v1/entities", params={"q": "residentAge>1"}, headers=bearer(READER))
    assert anything.status_code == 200 and anything.json() == []
    subscription = {"type": "Subscription", "entities": [{"type": "Household"}],
                    "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}
    assert http.post("/ngsi-ld/v1/subscriptions", json=subscription, headers=bearer(READER)).status_code == 403
    # The operator reads it, audited.
    read = http.get("/ngsi-ld/v1/entities", params={"type": "Household"}, headers=bearer(OPERATOR))
    assert read.status_code == 200 and [e["id"] for e in read.json()] == [HOME]
    lines = http.get("/api/v1/audit", params={"kind": "data", "limit": "100"}, headers=bearer(ADMIN)).json()["entries"]
    assert any(line["action"] == "personal-read" and line.get("types") == ["Household"] for line in lines)
    # /health shows the list in force and where the declared type comes from.
    privacy = http.get("/health", headers=bearer(ADMIN)).json()["components"]["privacy"]
    assert privacy["personalEntityTypes"] == [*PERSONAL_DEFAULT, "Household"]
    assert privacy["declared"] == {"Household": SOURCE}
    # A data subject's entity of the declared type may be erased (another type is a 400).
    erased = http.post("/api/v1/privacy/subject-erase", json={"entityId": HOME, "reason": "PIPA §36 request"},
                       headers=bearer(ADMIN))
    assert erased.status_code == 200, erased.text


async def test_a_declared_type_is_personal_for_alarms_and_the_alert_migration(tmp_path: Path) -> None:
    async with City.running(settings(tmp_path), T0) as city:
        await city.publish(matched(HOME, "warning", "door", entity_types=("Household",), location=EXACT))
        await city.alarms.drain()
        alert = await city.alert(city.active(HOME, "door").id)
        assert alert is not None
        attrs = {k.rsplit("/", 1)[-1]: v[0].get("value", v[0].get("object")) for k, v in alert["attrs"].items()}
        assert "alertSource" not in attrs and attrs["locationCellDeg"] == 0.005
        assert attrs["location"] != EXACT and "126.887654" not in str(alert)
        # The migration runs with (and marks its tenants with) the list in force, the declared type included.
        migration = city.ucity.platform.get("alertPrivacy")
        assert migration.fingerprint == fingerprint(AlertPrivacy(frozenset({*PERSONAL_DEFAULT, "Household"})))
        assert core_context().expand_type("Household") in migration.personal_iris
        assert core_context().expand_type("Household") in city.ucity.ngsild.personal.iris
