"""Every alarm is one NGSI-LD Alert entity, updated in place, readable with the core context alone."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.alarms.support import OPERATOR, SENSOR, matched
from ucity.app import Ucity
from ucity.rules.events import RuleCleared, RuleMatched

POINT = {"type": "Point", "coordinates": [126.887, 37.495]}


def publish(client: TestClient, event: RuleMatched | RuleCleared) -> None:
    ucity: Ucity = client.app.state.ucity  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(ucity.platform.bus.publish, event)
    client.portal.call(ucity.alarms.drain)


def alerts(client: TestClient, **params: str) -> list[dict[str, Any]]:
    response = client.get("/ngsi-ld/v1/entities", params={"type": "Alert", **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_one_alert_per_alarm_with_short_names(client: TestClient) -> None:
    publish(client, matched(level="warning", location=POINT, category="security",
                            description={"ko": "기울기 경계", "en": "Tilt at warning"}, evidence={"subCategory": "tilt"}))
    (alert,) = alerts(client)
    alarm = client.get("/api/v1/alarms").json()["alarms"][0]
    assert alert["id"] == f"urn:ngsi-ld:Alert:{alarm['id']}" == alarm["alert_id"]
    assert alert["type"] == "Alert"
    values = {k: v.get("value", v.get("object", v.get("languageMap"))) for k, v in alert.items() if isinstance(v, dict)}
    assert values == {
        "category": "security", "subCategory": "tilt", "severity": "high", "alertSource": SENSOR,
        "dateIssued": {"@type": "DateTime", "@value": alarm["raised_at"]},
        "validFrom": {"@type": "DateTime", "@value": alarm["raised_at"]},
        "description": {"ko": "기울기 경계", "en": "Tilt at warning"}, "location": POINT,
        "level": "warning", "kind": "safety", "status": "active-unacknowledged", "rule": "tilt",
    }
    assert alert["alertSource"]["type"] == "Relationship" and alert["location"]["type"] == "GeoProperty"
    # NGSI-LD queries work on it like on any entity.
    assert [a["id"] for a in alerts(client, q='severity=="high"')] == [alert["id"]]
    assert [a["id"] for a in alerts(client, georel="near;maxDistance==100", geometry="Point",
                                    coordinates="[126.887,37.495]")] == [alert["id"]]


def test_the_alert_follows_the_alarm_in_place(client: TestClient) -> None:
    publish(client, matched(level="interest"))
    alarm_id = client.get("/api/v1/alarms").json()["alarms"][0]["id"]
    alert_id = f"urn:ngsi-ld:Alert:{alarm_id}"
    created = client.get(f"/ngsi-ld/v1/entities/{alert_id}", params={"options": "sysAttrs"}).json()
    publish(client, matched(level="serious"))
    assert client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=OPERATOR).status_code == 200
    publish(client, RuleCleared(matched().context, matched().tenant, "tilt", SENSOR))
    assert client.post(f"/api/v1/alarms/{alarm_id}/close", json={"outcome": "real"}, headers=OPERATOR).status_code == 200
    ucity: Ucity = client.app.state.ucity  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(ucity.alarms.drain)
    (alert,) = alerts(client, options="sysAttrs")
    alarm = client.get(f"/api/v1/alarms/{alarm_id}").json()
    assert alert["id"] == alert_id and alert["createdAt"] == created["createdAt"]
    assert (alert["severity"]["value"], alert["level"]["value"], alert["status"]["value"], alert["outcome"]["value"]) == (
        "critical", "serious", "closed", "real")
    assert alert["validTo"]["value"] == {"@type": "DateTime", "@value": alarm["cleared_at"]}
    history = client.get(f"/ngsi-ld/v1/temporal/entities/{alert_id}", params={"attrs": "status,level,rule"}).json()
    # Only what changed is written: the escalation wrote level (and severity), not status; the rule never changed.
    assert [i["value"] for i in history["status"]] == ["active-unacknowledged", "active-acknowledged",
                                                       "cleared-acknowledged", "closed"]
    assert [i["value"] for i in history["level"]] == ["interest", "serious"]
    assert [i["value"] for i in history["rule"]] == ["tilt"]
