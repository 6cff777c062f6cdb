"""`/api/v1/rules` over HTTP (the real app on a fresh SQLite data dir), and rules from end to end."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from ucity.core.config import Settings
from ucity.rules.model import rule_to_json
from ucity.server import create_app

from .support import tilt_rule

RULES = "/api/v1/rules"
JSON = {"Content-Type": "application/json"}


def tilt_body(**changes: Any) -> dict[str, Any]:
    """The user tilt rule as JSON with some members changed (None drops a member)."""
    body = rule_to_json(tilt_rule(samples=1, rule_id="user-tilt"))
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_create_read_list_replace_disable_delete(client: TestClient) -> None:
    assert client.get(RULES, params={"origin": "user"}).json() == []

    created = client.post(RULES, json=tilt_body(), headers=JSON)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "http://127.0.0.1:8000/api/v1/rules/user-tilt"
    body = created.json()
    assert (body["id"], body["origin"], body["activeEntities"], body["enabled"]) == ("user-tilt", "user", 0, True)
    assert body["tenant"] == "urn:ngsi-ld:tenant:default"
    assert body["condition"]["edges"][3] == {"level": "serious", "at": 1 / 150}

    again = client.post(RULES, json=tilt_body(), headers=JSON)
    assert again.status_code == 409 and again.json()["type"].endswith("AlreadyExists")

    got = client.get(f"{RULES}/user-tilt").json()
    assert [w["code"] for w in body.pop("warnings")] == ["unknown-type"]  # no StructuralSensor yet (QA9 F11)
    assert got == body
    listed = client.get(RULES, params={"origin": "user"})
    assert [r["id"] for r in listed.json()] == ["user-tilt"] and listed.headers["X-Total-Count"] == "1"

    changed = tilt_body(name={"ko": "기울기 X", "en": "Tilt X"}, category="shm")
    replaced = client.put(f"{RULES}/user-tilt", json=changed, headers=JSON)
    assert replaced.status_code == 200 and replaced.json()["name"] == {"ko": "기울기 X", "en": "Tilt X"}

    disabled = client.post(f"{RULES}/user-tilt/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert [r["id"] for r in client.get(RULES, params={"enabled": "false", "origin": "user"}).json()] == ["user-tilt"]
    assert client.post(f"{RULES}/user-tilt/enable").json()["enabled"] is True

    assert client.delete(f"{RULES}/user-tilt").status_code == 204
    missing = client.get(f"{RULES}/user-tilt")
    assert missing.status_code == 404 and missing.json()["type"].endswith("ResourceNotFound")
    assert client.delete(f"{RULES}/user-tilt").status_code == 404


@pytest.mark.parametrize(("body", "detail"), [
    (tilt_body(condition={"type": "threshold", "attribute": "tiltX",
                          "edges": [{"level": "serious", "at": 0.1}, {"level": "interest", "at": 0.2}]}),
     "ladder edges must be in level order"),
    (tilt_body(condition={"type": "threshold", "attribute": "tiltX",
                          "edges": [{"level": "interest", "at": 0.2}, {"level": "serious", "at": 0.1}]}),
     "ladder edges must rise with the level"),
    (tilt_body(condition={"type": "sometimes"}), "does not match any of the expected tags"),
    (tilt_body(id="has space"), "rule id 'has space' must match"),
    (tilt_body(persistence={"samples": 0}), "samples must be at least 1"),
    (tilt_body(colour="red"), "colour: Unexpected keyword argument"),
    (tilt_body(condition={"type": "inactivity", "attributes": ["motionCount"],
                          "steps": [{"level": "interest", "afterSeconds": 60}],
                          "suppression": {"predicate": "nobody-registered-this"}}, persistence=None),
     "unknown suppression predicate 'nobody-registered-this'"),
])
def test_invalid_rules_are_400_problem_details(client: TestClient, body: dict[str, Any], detail: str) -> None:
    resp = client.post(RULES, json=body, headers=JSON)
    assert resp.status_code == 400, resp.text
    problem = resp.json()
    assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData" and problem["status"] == 400
    assert detail in problem["detail"]


def test_body_and_path_must_agree(client: TestClient) -> None:
    client.post(RULES, json=tilt_body(), headers=JSON)
    resp = client.put(f"{RULES}/user-tilt", json=tilt_body(id="other"), headers=JSON)
    assert resp.status_code == 400 and "differs from the path" in resp.json()["detail"]
    assert client.put(f"{RULES}/nope", json=tilt_body(id="nope"), headers=JSON).status_code == 404
    assert client.post(RULES, content=b"{", headers=JSON).status_code == 400
    assert client.post(RULES, json=tilt_body(), headers={"Content-Type": "text/plain"}).status_code == 415


def test_filters(client: TestClient) -> None:
    client.post(RULES, json=tilt_body(), headers=JSON)
    fire = {"id": "user-fire", "name": {"ko": "화재", "en": "Fire"}, "entityTypes": ["CareDevice"], "kind": "safety",
            "condition": {"type": "event", "attribute": "smokeDetected", "level": "serious"}}
    assert client.post(RULES, json=fire, headers=JSON).status_code == 201

    def ids(**params: str) -> list[str]:
        return [r["id"] for r in client.get(RULES, params={"origin": "user", **params}).json()]

    assert ids() == ["user-fire", "user-tilt"]
    assert ids(type="StructuralSensor") == ["user-tilt"]
    assert ids(attribute="smokeDetected") == ["user-fire"]
    assert ids(conditionType="event") == ["user-fire"]
    assert ids(category="facility-safety") == ["user-tilt"]
    assert ids(limit="1", offset="1") == ["user-tilt"]
    assert client.get(RULES, params={"enabled": "maybe"}).status_code == 400


def test_rules_belong_to_a_tenant(client: TestClient) -> None:
    mapo = {"NGSILD-Tenant": "mapo", **JSON}
    assert client.post(RULES, json=tilt_body(), headers=mapo).status_code == 201
    assert client.get(f"{RULES}/user-tilt").status_code == 404
    assert client.get(f"{RULES}/user-tilt", headers=mapo).json()["tenant"] == "mapo"
    assert client.post(RULES, json=tilt_body(tenant="guro"), headers=mapo).status_code == 400


def test_defaults_are_listed_overridable_and_not_deletable(client: TestClient) -> None:
    engine = client.app.state.ucity.rules  # type: ignore[attr-defined]
    engine.register_defaults([tilt_rule(samples=3, rule_id="default-tilt")])
    listed = {r["id"]: r for r in client.get(RULES, params={"origin": "default"}).json()}
    assert listed["default-tilt"]["persistence"] == {"samples": 3}
    resp = client.delete(f"{RULES}/default-tilt")
    assert resp.status_code == 422 and "disable it" in resp.json()["detail"]
    disabled = client.post(f"{RULES}/default-tilt/disable").json()
    assert (disabled["origin"], disabled["enabled"]) == ("user", False)  # a tenant override of the default
    assert client.get(f"{RULES}/default-tilt").json()["origin"] == "user"
    assert client.delete(f"{RULES}/default-tilt").status_code == 204
    assert client.get(f"{RULES}/default-tilt").json() == {**listed["default-tilt"]}


def test_a_rule_created_over_http_runs_on_ngsi_ld_writes_and_survives_a_restart(settings: Settings) -> None:
    entity = {"id": "urn:ngsi-ld:StructuralSensor:s9", "type": "StructuralSensor",
              "tiltX": {"type": "Property", "value": 0.0}}
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert client.post(RULES, json=tilt_body(), headers=JSON).status_code == 201
        assert client.post("/ngsi-ld/v1/entities", json=entity, headers=JSON).status_code == 201
        patch = client.patch(f"/ngsi-ld/v1/entities/{entity['id']}/attrs",
                             json={"tiltX": {"type": "Property", "value": 0.0035}}, headers=JSON)
        assert patch.status_code == 204
        states = _states_when(client, "warning")
        assert states == [{"entityId": entity["id"], "level": "warning"}]
        assert client.get(f"{RULES}/user-tilt").json()["activeEntities"] == 1
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert client.get(f"{RULES}/user-tilt").status_code == 200
        assert [{"entityId": s["entityId"], "level": s["level"]} for s in
                client.get(f"{RULES}/user-tilt/states").json()] == [{"entityId": entity["id"], "level": "warning"}]


def _states_when(client: TestClient, level: str) -> list[dict[str, Any]]:
    """The rule's states once the committed write has gone through the bus (no sleeping)."""
    assert client.portal is not None
    drain = client.app.state.ucity.publisher.drain  # type: ignore[attr-defined]
    client.portal.call(drain)
    states = client.get(f"{RULES}/user-tilt/states").json()
    return [{"entityId": s["entityId"], "level": s["level"]} for s in states if s["level"] == level]
