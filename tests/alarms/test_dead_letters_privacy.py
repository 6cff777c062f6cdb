"""The global dead-letters list (`GET /api/v1/notifications/dead-letters`, FIX-B of stop 26): what the alarm's own
list withholds from a caller without `personal:read` (the recipient's name and address, an error naming it, an alarm
about a person's message and identifying values) is withheld here too, by the same function (`letter_contact`); a
URL's secrets (a webhook token in its path or query) are shown to nobody, administrators included.

Over HTTP with the token guard on, on the test's store backend. No built-in role has `config:read` without
`personal:read`: the reader role is given `config:read` for these tests (a custom grant).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.alarms.support import SECRET, T0
from tests.alarms.test_config_qa9 import ADMIN, OPERATOR, READER, TOKENS, Client
from ucity.alarms.api import letter_view
from ucity.alarms.notifiers.base import Notification, Recipient
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.ops import auth
from ucity.ops.auth import Permission, Role
from ucity.server import create_app

PHONE = "010-5555-0199"
TOKEN_PATH, TOKEN_QUERY = "XOXB-SECRETPATH", "SECRETQUERY"
HOOK = f"https://room.example/hooks/{TOKEN_PATH}?token={TOKEN_QUERY}"
PERSON_ID = "urn:ngsi-ld:Person:elder-7"
PLACE = [126.889123, 37.501234]


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setitem(auth.ROLE_PERMISSIONS, Role.READER, frozenset({Permission.DATA_READ, Permission.CONFIG_READ}))
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, alarms={"webhook_secret": SECRET},
                             ops={"admin_token": ADMIN, "tokens": TOKENS, "grant_secret": "g" * 40,
                                  "pseudonym_secret": "p" * 40})
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as client:
        api = Client(client)
        tenant = api.ucity.alarms_api.default_tenant
        dead = api.ucity.alarms.dispatcher.dead_letter
        device = {"id": "a1", "entity_id": "urn:ngsi-ld:Device:d1", "entity_type": "Device"}
        person = {"id": "a2", "entity_id": PERSON_ID, "entity_type": "Person", "entity_name": "김노인",
                  "alert_id": "urn:ngsi-ld:Alert:a2", "location": {"type": "Point", "coordinates": PLACE},
                  "evidence": {"value": {"type": "Point", "coordinates": PLACE}, "entityName": "김노인"}}
        letters = [
            # A group member reached by SMS: the phone number in the recipient and in the error.
            (Notification("n-sms", tenant, "raised", "2026-01-01T00:00:00Z", device, {"ko": "s", "en": "s"},
                          {"ko": "t", "en": "t"}, "duty", 0, Recipient("이당직", PHONE, "ko")),
             "sms", f"provider refused {PHONE}"),
            # A webhook whose error names its URL (token in path and query).
            (Notification("n-hook", tenant, "raised", "2026-01-01T00:00:01Z", device, {"ko": "s", "en": "s"},
                          {"ko": "t", "en": "t"}, "duty", 0, Recipient("room", HOOK, "ko")),
             "room", f"ConnectError: cannot reach '{HOOK}'"),
            # An alarm about a person: its message names the place.
            (Notification("n-person", tenant, "raised", "2026-01-01T00:00:02Z", person,
                          {"ko": "김노인 이탈", "en": "김노인 left"}, {"ko": f"위치 {PLACE}", "en": f"at {PLACE}"}),
             "room", "HTTP 500"),
        ]
        for notification, notifier, error in letters:
            api.portal(dead, notification, notifier, 3, error)
        yield api


def listed(api: Client, token: str) -> dict[str, dict[str, Any]]:
    response = api.get("/api/v1/notifications/dead-letters", token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 3
    return {letter["id"]: letter for letter in body["deadLetters"]}


def test_a_config_reader_without_personal_read_sees_no_address_nor_person(api: Client) -> None:
    letters = listed(api, READER)
    text = str(letters)
    assert PHONE not in text and "이당직" not in text and TOKEN_PATH not in text and TOKEN_QUERY not in text
    assert PERSON_ID not in text and "김노인" not in text and "126.889123" not in text
    sms = letters["n-sms"]
    assert sms["notification"]["recipient"] == {"language": "ko"} and sms["error"] == "provider refused ***"
    assert sms["withheld"] == ["notification.recipient.name", "notification.recipient.address", "error"]
    assert sms["withheldReason"]["en"] and sms["withheldReason"]["ko"]
    assert sms["notification"]["subject"] == {"ko": "s", "en": "s"}  # not about a person: the message stays
    person = letters["n-person"]
    assert "subject" not in person["notification"] and "text" not in person["notification"]
    alarm = person["notification"]["alarm"]
    assert alarm["entity_id"] == "urn:ngsi-ld:Alert:a2" and "entity_id" in alarm["withheld"]
    assert {"notification.subject", "notification.text", "notification.alarm"} <= set(person["withheld"])
    # What is not personal is kept: the letter's shape, ids, notifier, attempts, times.
    assert (sms["notifier"], sms["attempts"], sms["notification"]["event"]) == ("sms", 3, "raised")


def test_holders_of_personal_read_see_addresses_but_never_url_secrets(api: Client) -> None:
    for token in (OPERATOR, ADMIN):
        letters = listed(api, token)
        sms = letters["n-sms"]
        assert sms["notification"]["recipient"] == {"name": "이당직", "address": PHONE, "language": "ko"}
        assert sms["error"] == f"provider refused {PHONE}" and "withheld" not in sms
        hook = letters["n-hook"]
        assert TOKEN_PATH not in str(hook) and TOKEN_QUERY not in str(hook)
        assert hook["notification"]["recipient"]["address"] == "https://room.example/***?token=***"
        assert hook["error"] == "ConnectError: cannot reach 'https://room.example/***?token=***'"
        person = letters["n-person"]
        assert person["notification"]["alarm"]["entity_id"] == PERSON_ID and "withheld" not in person


def test_the_alarms_own_list_never_shows_url_secrets_either() -> None:
    raw = {"id": "n-hook", "notifier": "room", "error": f"ConnectError: cannot reach '{HOOK}'", "attempts": 3,
           "notification": {"recipient": {"name": "room", "address": HOOK, "language": "ko"}}}
    for personal in (True, False):
        shown = letter_view(raw, "a1", personal, about_person=False)
        assert TOKEN_PATH not in str(shown) and TOKEN_QUERY not in str(shown)
        assert "room.example" in str(shown) or not personal
