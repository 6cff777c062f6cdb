"""QA9 F3, F4 (alarm contact data), F5, F7, F8, F10, F11 and QA10 F3 (alarm comments): the alarm configuration
as the API, the audit log, `/health`, `ucity config validate` and the SSE-free alarm detail show it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.alarms.support import SECRET, T0, matched
from ucity.alarms.contacts import configuration_problems, valid_email
from ucity.alarms.notifiers.base import Notification
from ucity.alarms.notifiers.webhook import WebhookNotifier, mask_url
from ucity.cli import main
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.core.netguard import AddressGuard
from ucity.server import create_app

ADMIN, OPERATOR, READER = "ADMIN-qa9-token-0123456789abcdef", "OPER-qa9-token-0123456789abcdef", \
    "READ-qa9-token-0123456789abcdef"
TOKENS = [{"id": "op1", "token": OPERATOR, "role": "operator"}, {"id": "rd1", "token": READER, "role": "reader"}]
HOOK = "https://room.example/hooks/XOXB-SECRETPATH?token=SECRETQUERY&city=guro"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Client:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __getattr__(self, method: str) -> Any:
        """client.post(path, token, json=...) with the token as bearer."""
        def call(path: str, token: str = ADMIN, **kwargs: Any) -> Any:
            return self.client.request(method.upper(), path, headers=bearer(token), **kwargs)
        return call

    @property
    def ucity(self) -> Any:
        return self.client.app.state.ucity  # type: ignore[attr-defined]

    def portal(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)


def production(tmp_path: Path, **alarms: Any) -> Any:
    return load_settings(environment="production", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         alarms={"webhook_secret": SECRET, **alarms},
                         ops={"admin_token": ADMIN, "tokens": TOKENS, "grant_secret": "g" * 40,
                              "pseudonym_secret": "p" * 40})


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Client]:
    with TestClient(create_app(production(tmp_path), FakeClock(T0)), base_url="http://127.0.0.1:8000") as client:
        yield Client(client)


def audit(api: Client) -> list[dict[str, Any]]:
    response = api.get("/api/v1/audit", params={"kind": "config", "limit": "100"})
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


# -- F3: sms/push that send nothing -------------------------------------------------------------------------------
def test_silent_sms_is_refused_in_production_unless_recording_is_named(prod: Client) -> None:
    refused = prod.post("/api/v1/notifiers", json={"id": "sms", "type": "sms"})
    assert refused.status_code == 400, refused.text
    detail = refused.json()["detail"]
    assert "recording" in detail and " / " in detail and "보내지" in detail  # bilingual, says what to do
    assert prod.put("/api/v1/notifiers/push", json={"type": "push"}).status_code == 400
    assert prod.get("/api/v1/notifiers").json() == []
    health = prod.get("/health").json()
    assert "configWarnings" not in health["components"]["alarms"]["contacts"]
    assert prod.post("/api/v1/notifiers", json={"id": "sms", "type": "sms", "provider": "recording"}).status_code == 201
    warnings = prod.get("/health").json()["components"]["alarms"]["contacts"]["configWarnings"]
    assert len(warnings) == 1 and "sms" in warnings[0] and "sends nothing" in warnings[0]


def test_configured_recording_notifier_warns_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = production(tmp_path, notifiers=[{"id": "ops-sms", "type": "sms", "provider": "recording"}])
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings, FakeClock(T0))) as client:
        health = client.get("/health", headers=bearer(ADMIN)).json()
    assert any("ops-sms" in w for w in health["components"]["alarms"]["contacts"]["configWarnings"])
    assert any("ops-sms" in r.getMessage() and "sends nothing" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


# -- F5, F4: referential integrity and the audit of every change ---------------------------------------------------
def test_references_are_kept_and_every_change_is_audited(prod: Client) -> None:
    hook = {"id": "room", "type": "webhook", "url": HOOK}
    assert prod.post("/api/v1/notifiers", json=hook).status_code == 201
    group = {"id": "duty", "notifiers": ["room"],
             "members": [{"name": "김당직", "contacts": [{"notifier": "room", "address": "010-1234-5678"}]}]}
    assert prod.post("/api/v1/recipients", json=group).status_code == 201
    chain = {"id": "duty-serious", "rule": "*", "level": "serious", "steps": [{"delay_s": 0, "group": "duty"}]}
    assert prod.post("/api/v1/escalations", json=chain).status_code == 201

    in_use = prod.delete("/api/v1/notifiers/room")
    assert in_use.status_code == 409, in_use.text
    assert in_use.json()["usedBy"] == [{"collection": "recipients", "id": "duty"}]
    assert "duty" in in_use.json()["detail"] and " / " in in_use.json()["detail"]
    in_use = prod.delete("/api/v1/recipients/duty")
    assert in_use.status_code == 409 and in_use.json()["usedBy"] == [{"collection": "escalations", "id": "duty-serious"}]
    assert prod.get("/api/v1/notifiers/room").status_code == 200  # still there

    assert prod.put("/api/v1/escalations/duty-serious", OPERATOR, json=chain).status_code == 403
    assert prod.put("/api/v1/escalations/duty-serious", json={**chain, "level": "warning"}).status_code == 200
    assert prod.delete("/api/v1/escalations/duty-serious").status_code == 204
    assert prod.delete("/api/v1/recipients/duty").status_code == 204
    assert prod.delete("/api/v1/notifiers/room").status_code == 204

    lines = audit(prod)
    assert [(line["action"], line["actor"]) for line in lines] == [
        ("notifier-created", "admin:admin"), ("recipient-group-created", "admin:admin"),
        ("escalation-created", "admin:admin"), ("escalation-changed", "admin:admin"),
        ("escalation-deleted", "admin:admin"), ("recipient-group-deleted", "admin:admin"),
        ("notifier-deleted", "admin:admin")]
    text = str(lines)
    assert "room" in text and "duty-serious" in text
    for secret in ("010-1234-5678", "SECRETQUERY", "XOXB", "room.example", "김당직"):
        assert secret not in text


def test_dead_letter_replay_is_audited(prod: Client) -> None:
    assert prod.post("/api/v1/notifiers", json={"id": "room", "type": "webhook", "url": HOOK}).status_code == 201
    notification = Notification("n-1", prod.ucity.alarms_api.default_tenant, "raised", "2026-01-01T00:00:00Z",
                                {"id": "a1", "entity_id": "urn:ngsi-ld:Device:d1"}, {"ko": "s", "en": "s"},
                                {"ko": "t", "en": "t"})
    prod.portal(prod.ucity.alarms.dispatcher.dead_letter, notification, "room", 3, "HTTP 500")
    (letter,) = prod.get("/api/v1/notifications/dead-letters").json()["deadLetters"]
    assert prod.post(f"/api/v1/notifications/dead-letters/{letter['id']}/replay").status_code == 202
    line = audit(prod)[-1]
    assert (line["action"], line["id"], line["actor"], line["outcome"]) == (
        "dead-letter-replayed", letter["id"], "admin:admin", "ok")


# -- F8: chains of unknown rules, two chains for one rule and level ------------------------------------------------
def test_chain_of_an_unknown_rule_warns_and_a_second_chain_of_a_level_is_409(prod: Client) -> None:
    prod.post("/api/v1/notifiers", json={"id": "mail", "type": "email"})
    prod.post("/api/v1/recipients", json={"id": "g", "members": [{"name": "a", "contacts": [
        {"notifier": "mail", "address": "duty@guro.go.kr"}]}]})
    chain = {"id": "c1", "rule": "no-such-rule", "level": "serious", "steps": [{"delay_s": 0, "group": "g"}]}
    created = prod.post("/api/v1/escalations", json=chain)
    assert created.status_code == 201 and "no-such-rule" in created.json()["warnings"][0]
    known = prod.post("/api/v1/escalations", json={**chain, "id": "c0", "rule": "device-offline", "level": "fault"})
    assert known.status_code == 201 and "warnings" not in known.json()
    twice = prod.post("/api/v1/escalations", json={**chain, "id": "c2"})
    assert twice.status_code == 409 and twice.json()["existing"] == "c1" and " / " in twice.json()["detail"]
    assert prod.put("/api/v1/escalations/c2", json={**chain, "id": "c2"}).status_code == 409
    assert prod.put("/api/v1/escalations/c1", json={**chain, "steps": [{"delay_s": 5, "group": "g"}]}).status_code == 200
    warnings = prod.get("/health").json()["components"]["alarms"]["contacts"]["configWarnings"]
    assert any("no-such-rule" in w for w in warnings)


def test_configured_chain_of_an_unknown_rule_warns_once_the_rules_are_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = production(tmp_path, notifiers=[{"id": "mail", "type": "email"}],
                          recipients=[{"id": "g", "members": [{"name": "a", "contacts": [
                              {"notifier": "mail", "address": "duty@guro.go.kr"}]}]}],
                          escalations=[{"id": "elderly", "rule": "inactivity", "steps": [{"delay_s": 0, "group": "g"}]},
                                       {"id": "offline", "rule": "device-offline", "steps": [{"delay_s": 0, "group": "g"}]}])
    clock = FakeClock(T0)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings, clock)) as client:
        api = Client(client)
        api.portal(clock.advance, timedelta(seconds=settings.ops.token_refresh_s + 1))
        api.portal(api.ucity.alarms.contacts.settle)
        warnings = api.get("/health").json()["components"]["alarms"]["contacts"]["configWarnings"]
    assert len(warnings) == 1 and "elderly" in warnings[0] and "'inactivity'" in warnings[0]
    said = [r.getMessage() for r in caplog.records if "escalation chain" in r.getMessage()]
    assert len(said) == 1 and "elderly" in said[0]


# -- F10: webhook urls and the SSRF guard ------------------------------------------------------------------------
def test_webhook_url_is_masked_for_non_admins() -> None:
    assert mask_url(HOOK) == "https://room.example/***?token=***&city=***"
    assert mask_url("http://user:pw@10.0.0.1:8080/") == "http://10.0.0.1:8080/"


def test_webhook_url_shown_to_admins_only_and_private_hosts_refused(prod: Client) -> None:
    assert prod.post("/api/v1/notifiers", json={"id": "room", "type": "webhook", "url": HOOK}).status_code == 201
    assert prod.get("/api/v1/notifiers/room").json()["url"] == HOOK
    seen = prod.get("/api/v1/notifiers/room", OPERATOR).json()
    assert "SECRET" not in str(seen) and seen["url"].startswith("https://room.example/")
    assert "SECRET" not in str(prod.get("/api/v1/notifiers", OPERATOR).json())
    for url in ("http://169.254.169.254/latest/meta-data", "http://localhost:9/hook", "http://10.1.2.3/hook"):
        refused = prod.post("/api/v1/notifiers", json={"id": "inner", "type": "webhook", "url": url})
        assert refused.status_code == 400 and "non-public" in refused.json()["detail"], url


def test_webhook_guard_allows_the_configured_networks(tmp_path: Path) -> None:
    settings = production(tmp_path).model_copy(update={"subscriptions": load_settings(
        subscriptions={"allowed_networks": ["10.20.0.0/16"]}).subscriptions})
    with TestClient(create_app(settings, FakeClock(T0))) as client:
        hook = {"id": "inner", "type": "webhook", "url": "http://10.20.1.5/hook"}
        assert client.post("/api/v1/notifiers", json=hook, headers=bearer(ADMIN)).status_code == 201


async def test_webhook_guard_checks_names_when_sending() -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        hook = WebhookNotifier("w", "http://localhost:9/hook", SECRET.encode(), http, FakeClock(T0), guard=AddressGuard())
        notification = Notification("n", "t", "raised", "2026-01-01T00:00:00Z", {}, {"ko": "", "en": ""},
                                    {"ko": "", "en": ""})
        result = await hook.send(notification)
    assert not result.ok and not result.retry and "non-public" in result.detail


def test_the_platforms_webhook_notifiers_check_their_receiver_when_sending(prod: Client) -> None:
    """In production the dispatcher builds webhook notifiers with the API's guard, so a name that resolves to a
    private address after it was accepted is still refused at each POST."""
    assert prod.post("/api/v1/notifiers", json={"id": "room", "type": "webhook", "url": HOOK}).status_code == 201
    dispatcher = prod.ucity.alarms.dispatcher
    notifier = dispatcher.notifier("urn:ngsi-ld:tenant:default", "room")
    assert isinstance(notifier, WebhookNotifier) and notifier._guard is not None
    assert dispatcher.notifier_deps().guard is None  # agency endpoints: the operations centre's own configuration


# -- F11: e-mail addresses --------------------------------------------------------------------------------------
def test_invalid_email_address_is_400(prod: Client) -> None:
    assert prod.post("/api/v1/notifiers", json={"id": "mail", "type": "email"}).status_code == 201
    group = {"id": "g", "members": [{"name": "a", "contacts": [{"notifier": "mail", "address": "not-an-email"}]}]}
    refused = prod.post("/api/v1/recipients", json=group)
    assert refused.status_code == 400 and "e-mail" in refused.json()["detail"] and " / " in refused.json()["detail"]
    group["members"][0]["contacts"][0]["address"] = "duty@guro.go.kr"
    assert prod.post("/api/v1/recipients", json=group).status_code == 201
    assert valid_email("김@구로.한국") and not valid_email("a@b") and not valid_email("a@b.kr\nBcc: x@y.kr")


# -- F7: the configuration file is checked as the API checks -------------------------------------------------------
BAD = {
    "notifiers": [{"id": "w", "type": "webhook", "url": "ftp://nope"}, {"id": "sms", "type": "sms"},
                  {"id": "mail", "type": "email"}],
    "recipients": [{"id": "g1", "members": [{"name": "a", "contacts": [{"notifier": "ghost", "address": "x"},
                                                                     {"notifier": "mail", "address": "nope"}]}]}],
    "escalations": [{"id": "e1", "rule": "x", "level": "purple", "steps": [{"delay_s": 0, "group": "g1"}]},
                    {"id": "e2", "steps": [{"delay_s": 300, "group": "g1"}, {"delay_s": 0, "group": "g1"}]},
                    {"id": "e3", "steps": [{"delay_s": 0, "group": "nobody"}]},
                    {"id": "e4", "level": "serious", "steps": [{"delay_s": 0, "group": "g1"}]},
                    {"id": "e5", "level": "serious", "steps": [{"delay_s": 0, "group": "g1"}]}],
}


def test_configuration_problems_one_line_each() -> None:
    problems = configuration_problems(BAD["notifiers"], BAD["recipients"], BAD["escalations"], production=True,
                                      endpoint_check=lambda url: None)
    joined = "\n".join(problems)
    for expected in ("notifiers[0] (w): value: a webhook needs an http:// or https:// url",
                     "notifiers[1] (sms): an sms/push notifier without a provider sends nothing",
                     "recipients[0] (g1): unknown notifiers ghost", "recipients[0] (g1): the mail address",
                     "escalations[0] (e1): level: level must be one of", "escalations[1] (e2): steps: step delays must "
                     "not decrease", "escalations[2] (e3): unknown recipient groups nobody",
                     "escalations[4] (e5): chain e4 already covers rule '*' at level 'serious'"):
        assert expected in joined, expected
    assert len(problems) == 8
    assert configuration_problems(BAD["notifiers"][1:2], [], [], production=False) == []


def test_config_validate_and_serve_say_each_problem_and_exit_1(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ucity.toml"
    config.write_text(f'environment = "production"\ndata_dir = "{tmp_path / "d"}"\n'
                      '[[alarms.escalations]]\nid = "x"\nlevel = "purple"\nsteps = [{delay_s = 0, group = "g"}]\n'
                      '[[alarms.escalations]]\nid = "y"\nsteps = [{delay_s = 0, group = "g"}]\n'
                      '[[alarms.notifiers]]\nid = "w"\ntype = "webhook"\nurl = "http://169.254.169.254/x"\n')
    for command in (["config", "validate"], ["serve"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--config", str(config)])
        assert exit_.value.code == 1
        out = capsys.readouterr()
        text = out.out + out.err
        assert "alarms.escalations[0] (x): level" in text and "escalations[1] (y): unknown recipient groups g" in text
        assert "alarms.notifiers[0] (w): url:" in text and "non-public" in text
        assert "Traceback" not in text and "pydantic" not in text


# -- QA10 F3: comments and close notes are for personal:read ----------------------------------------------------
def test_comments_and_notes_shown_to_personal_read_only(prod: Client) -> None:
    ucity = prod.ucity
    prod.portal(ucity.platform.bus.publish, matched("urn:ngsi-ld:Device:d1", "serious"))
    prod.portal(ucity.alarms.drain)
    (alarm,) = prod.get("/api/v1/alarms", READER).json()["alarms"]
    path = f"/api/v1/alarms/{alarm['id']}"
    assert prod.post(f"{path}/comments", OPERATOR, json={"text": "보호자 최보호 010-7777-8888"}).status_code == 200
    assert prod.post(f"{path}/acknowledge", OPERATOR).status_code == 200
    assert prod.post(f"{path}/close", OPERATOR, json={"outcome": "real", "note": "010-7777-8888 연락"}).status_code == 200
    shown = prod.get(path, OPERATOR).json()
    assert shown["comments"][0]["text"].endswith("010-7777-8888")
    assert any(h.get("note") == "010-7777-8888 연락" for h in shown["history"])
    hidden = prod.get(path, READER).json()
    assert "010-7777" not in str(hidden) and "최보호" not in str(hidden)  # (not a bare "7777": ids hold any digits)
    assert hidden["comments"][0]["withheld"] == ["text"] and hidden["comments"][0]["actor"].startswith("operator:")
    assert any(h["action"] == "closed" and h["withheld"] == ["note"] and h["outcome"] == "real"
               for h in hidden["history"])
