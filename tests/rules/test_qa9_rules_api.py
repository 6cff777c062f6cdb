"""QA9 over HTTP with `server.require_auth` on: F1 (a PUT kept no alarm whose value still breached), F4 (rule
changes left no audit line), F11 (rules on unknown attributes or types accepted silently; English-only errors)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.rules.model import rule_to_json
from ucity.server import create_app

from .support import tilt_rule

RULES = "/api/v1/rules"
ADMIN = "a" * 32
ENTITY = "urn:ngsi-ld:StructuralSensor:qa9-1"
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json", **extra}


def rule_body(caution: float = 0.002, **changes: Any) -> dict[str, Any]:
    body = rule_to_json(tilt_rule(samples=1, rule_id="qa-tilt"))
    body["condition"]["edges"] = [{"level": "caution", "at": caution}, {"level": "serious", "at": 0.006667}]
    body.update(changes)
    return body


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, ops={"admin_token": ADMIN})
    with TestClient(create_app(settings, clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as client:
        yield client


def settle(http: TestClient) -> None:
    ucity = http.app.state.ucity  # type: ignore[attr-defined]
    assert http.portal is not None
    http.portal.call(ucity.publisher.drain)
    http.portal.call(ucity.rules.drain)
    http.portal.call(ucity.alarms.drain)


def alarm(http: TestClient) -> dict[str, Any]:
    [found] = http.get("/api/v1/alarms", params={"entity": ENTITY}, headers=headers()).json()["alarms"]
    detail: dict[str, Any] = http.get(f"/api/v1/alarms/{found['id']}", headers=headers()).json()
    return detail


def reading(http: TestClient, value: float) -> None:
    resp = http.patch(f"/ngsi-ld/v1/entities/{ENTITY}/attrs", json={"tiltX": {"type": "Property", "value": value}},
                      headers=headers())
    assert resp.status_code == 204, resp.text
    settle(http)


def test_an_edit_keeps_the_alarm_a_disable_clears_it_with_the_actor_an_enable_raises_it_again(
        http: TestClient) -> None:
    assert http.post(RULES, json=rule_body(), headers=headers()).status_code == 201
    entity = {"id": ENTITY, "type": "StructuralSensor", "tiltX": {"type": "Property", "value": 0.0}}
    assert http.post("/ngsi-ld/v1/entities", json=entity, headers=headers()).status_code == 201
    reading(http, 0.003)  # caution
    assert alarm(http)["status"] == "active-unacknowledged"
    named = headers(**{"X-Ucity-Actor": "%EA%B9%80"})  # 김
    assert http.put(f"{RULES}/qa-tilt", json=rule_body(caution=0.0025), headers=named).status_code == 200
    settle(http)
    kept = alarm(http)
    assert kept["status"] == "active-unacknowledged" and kept["level"] == "caution"
    assert [h["action"] for h in kept["history"] if h["action"] == "cleared"] == []
    assert http.post(f"{RULES}/qa-tilt/disable", headers=named).status_code == 200
    settle(http)
    cleared = alarm(http)
    assert cleared["status"] == "cleared-unacknowledged"
    [entry] = [h for h in cleared["history"] if h["action"] == "cleared"]
    assert (entry["evidence"]["reason"], entry["evidence"]["changedBy"]) == ("rule-disabled", "admin:admin (김)")
    assert entry["actor"] == "admin:admin (김)"  # who silenced it
    assert http.post(f"{RULES}/qa-tilt/enable", headers=named).status_code == 200
    settle(http)
    again = alarm(http)  # within the dedupe window: the same alarm, active again
    assert again["status"] == "active-unacknowledged" and again["level"] == "caution"


def test_rule_changes_are_audit_lines_with_the_actor(http: TestClient) -> None:
    named = headers(**{"X-Ucity-Actor": "%EA%B9%80"})
    assert http.post(RULES, json=rule_body(), headers=named).status_code == 201
    assert http.put(f"{RULES}/qa-tilt", json=rule_body(caution=0.0025), headers=headers()).status_code == 200
    assert http.post(f"{RULES}/qa-tilt/disable", headers=headers()).status_code == 200
    assert http.post(f"{RULES}/qa-tilt/enable", headers=headers()).status_code == 200
    assert http.delete(f"{RULES}/qa-tilt", headers=headers()).status_code == 204
    assert http.post(RULES, json=rule_body(id="bad id"), headers=headers()).status_code == 400  # no line
    lines = http.get("/api/v1/audit", params={"kind": "config"}, headers=headers()).json()["entries"]
    assert [(x["action"], x["actor"], x["rule"]) for x in lines] == [
        ("rule-created", "admin:admin (김)", "qa-tilt"), ("rule-changed", "admin:admin", "qa-tilt"),
        ("rule-disabled", "admin:admin", "qa-tilt"), ("rule-enabled", "admin:admin", "qa-tilt"),
        ("rule-deleted", "admin:admin", "qa-tilt")]
    created, changed, disabled = lines[0], lines[1], lines[2]
    assert created["old"] is None and created["new"]["id"] == "qa-tilt"
    assert changed["changed"] == ["condition"]
    assert changed["old"]["condition"]["edges"][0]["at"] == 0.002
    assert changed["new"]["condition"]["edges"][0]["at"] == 0.0025
    assert (disabled["changed"], disabled["old"], disabled["new"]) == (["enabled"], {"enabled": True},
                                                                      {"enabled": False})
    assert lines[4]["new"] is None and all(x["outcome"] == "ok" for x in lines)


def test_unknown_types_and_attributes_are_accepted_with_warnings(http: TestClient) -> None:
    entity = {"id": ENTITY, "type": "StructuralSensor", "tiltX": {"type": "Property", "value": 0.0}}
    assert http.post("/ngsi-ld/v1/entities", json=entity, headers=headers()).status_code == 201
    good = http.post(RULES, json=rule_body(), headers=headers())
    assert good.status_code == 201 and "warnings" not in good.json()
    typo = rule_body(id="qa-typo")
    typo["condition"]["attribute"] = "tiltx"
    resp = http.post(RULES, json=typo, headers=headers())
    assert resp.status_code == 201
    [warning] = resp.json()["warnings"]
    assert (warning["code"], warning["attribute"]) == ("unknown-attribute", "tiltx")
    assert " / no current entity of type StructuralSensor has the attribute tiltx" in warning["message"]
    assert "속성" in warning["message"]
    wrong_type = http.put(f"{RULES}/qa-typo", json={**rule_body(id="qa-typo"), "entityTypes": ["StructuralSenser"]},
                          headers=headers())
    assert wrong_type.status_code == 200
    assert [w["code"] for w in wrong_type.json()["warnings"]] == ["unknown-type"]
    assert http.get(f"{RULES}/qa-typo", headers=headers()).json().get("warnings") is None
    echoed = http.put(f"{RULES}/qa-typo", json=wrong_type.json(), headers=headers())  # a response sent back
    assert echoed.status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "status", "ko"), [
    ("post", RULES, {**rule_body(), "persistence": {"samples": 0}}, 400, "규칙이 올바르지 않습니다"),
    ("post", RULES, [1], 400, "JSON 객체"),
    ("put", f"{RULES}/qa-tilt", rule_body(id="other"), 400, "경로와 다릅니다"),
    ("get", f"{RULES}/nope", None, 404, "없습니다"),
    ("delete", f"{RULES}/nope", None, 404, "없습니다"),
    ("post", f"{RULES}/nope/enable", None, 404, "없습니다"),
    ("get", RULES + "?enabled=maybe", None, 400, "true 또는 false"),
])
def test_rule_errors_are_korean_and_english(http: TestClient, method: str, path: str, body: Any, status: int,
                                           ko: str) -> None:
    http.post(RULES, json=rule_body(), headers=headers())
    kwargs: dict[str, Any] = {"headers": headers()}
    if body is not None:
        kwargs["json"] = body
    resp = getattr(http, method)(path, **kwargs)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert ko in detail and " / " in detail
