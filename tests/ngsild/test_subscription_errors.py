"""The NGSI-LD subscription errors say their detail in Korean and English ("한국어 / English"), keeping the NGSI-LD
error type and title (ucity/ngsild/subscriptions.py; FIX-E of stop 27). Pure: the validation functions, no store."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from ucity.core.errors import UcityError
from ucity.ngsild.context import core_context
from ucity.ngsild.subscriptions import merged_document, new_document

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
ENDPOINT = {"uri": "http://example.org/notify"}
SUB = "urn:ngsi-ld:Subscription:s1"


def body(**members: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": SUB, "type": "Subscription", "entities": [{"type": "Device"}],
                           "notification": {"endpoint": ENDPOINT}}
    out.update(members)
    return {k: v for k, v in out.items() if v is not None}


NOTIFY = "notification"
CASES: list[tuple[Any, str, str]] = [  # (body, the NGSI-LD error type's last part, a fragment of the English half)
    ([], "BadRequestData", "a subscription must be a JSON object"),
    (body(type="Entity"), "BadRequestData", 'needs "type": "Subscription"'),
    (body(id="not a uri"), "BadRequestData", "subscription id must be a URI"),
    (body(notification=None), "BadRequestData", "notification is required"),
    (body(entities=[]), "BadRequestData", "entities must be a non-empty array"),
    (body(entities=["Device"]), "BadRequestData", "each member of entities must be an object"),
    (body(entities=[{"type": " "}]), "BadRequestData", "each entity selector needs a type"),
    (body(entities=[{"type": "Device", "id": "x"}]), "BadRequestData", "entity selector id must be a URI"),
    (body(entities=[{"type": "Device", "idPattern": 1}]), "BadRequestData", "idPattern must be a string"),
    (body(entities=[{"type": "Device", "idPattern": "("}]), "BadRequestData", "not a valid regular expression"),
    (body(watchedAttributes=[]), "BadRequestData", "watchedAttributes must be a non-empty array"),
    (body(notificationTrigger="entityCreated"), "BadRequestData", "notificationTrigger must be a non-empty array"),
    (body(notificationTrigger=["entityMoved"]), "BadRequestData", "unknown notificationTrigger 'entityMoved'"),
    (body(q=1), "BadRequestData", "q must be a string"),
    (body(q="a=="), "BadRequestData", "invalid q"),
    (body(geoQ={"georel": "near"}), "BadRequestData", "invalid geoQ"),
    (body(scopeQ=""), "BadRequestData", "scopeQ must be a non-empty string"),
    (body(datasetId=[]), "BadRequestData", "datasetId must be a non-empty array"),
    (body(isActive="yes"), "BadRequestData", "isActive must be true or false"),
    (body(jsonldContext="ctx"), "BadRequestData", "jsonldContext must be the URI"),
    (body(throttling=0), "BadRequestData", "throttling must be a positive number of seconds"),
    (body(description=3), "BadRequestData", "description must be a string"),
    (body(expiresAt="2020-01-01T00:00:00Z"), "BadRequestData", "is not in the future"),
    (body(timeInterval=60, watchedAttributes=["a"]), "BadRequestData", "timeInterval and watchedAttributes"),
    (body(timeInterval=60, throttling=5), "BadRequestData", "timeInterval and throttling"),
    (body(entities=None, watchedAttributes=["a"], timeInterval=60), "BadRequestData", "timeInterval and watched"),
    (body(entities=None), "BadRequestData", "needs entities or watchedAttributes"),
    (body(notification=[]), "BadRequestData", "notification must be an object"),
    (body(notification={}), "BadRequestData", "notification.endpoint is required"),
    (body(notification={"endpoint": "x"}), "BadRequestData", "notification.endpoint must be an object"),
    (body(notification={"endpoint": {"uri": "ftp://x"}}), "BadRequestData", "absolute http or https URI"),
    (body(notification={"endpoint": {"uri": "mqtt://broker/t"}}), "OperationNotSupported", "MQTT notification"),
    (body(notification={"endpoint": {**ENDPOINT, "accept": "text/plain"}}), "BadRequestData", "endpoint.accept"),
    (body(notification={"endpoint": {**ENDPOINT, "receiverInfo": {}}}), "BadRequestData", "receiverInfo must be"),
    (body(notification={"endpoint": {**ENDPOINT, "receiverInfo": [1]}}), "BadRequestData", "each receiverInfo item"),
    (body(notification={"endpoint": {**ENDPOINT, "receiverInfo": [{"key": "Host", "value": "x"}]}}),
     "BadRequestData", "not a usable HTTP header name"),
    (body(notification={"endpoint": {**ENDPOINT, "receiverInfo": [{"key": "X-A", "value": "a\nb"}]}}),
     "BadRequestData", "must not contain line breaks"),
    (body(notification={"endpoint": ENDPOINT, "format": "compact"}), "BadRequestData", "notification.format must"),
    (body(notification={"endpoint": ENDPOINT, "sysAttrs": 1}), "BadRequestData", "notification.sysAttrs must"),
    (body(notification={"endpoint": ENDPOINT, "showChanges": True}), "OperationNotSupported", "showChanges"),
]


def bilingual(exc: UcityError, kind: str, english: str) -> None:
    problem = exc.to_problem()
    assert problem["type"].endswith("/" + kind), problem
    assert problem["title"] == type(exc).title  # the title stays English, as every NGSI-LD error's
    korean, sep, rest = problem["detail"].partition(" / ")
    assert sep and HANGUL.search(korean) and not HANGUL.search(rest.split(" / ")[-1]), problem["detail"]
    assert english in problem["detail"], problem["detail"]


@pytest.mark.parametrize(("wire", "kind", "english"), CASES, ids=[c[2][:40] for c in CASES])
def test_each_creation_error_is_bilingual(wire: Any, kind: str, english: str) -> None:
    with pytest.raises(UcityError) as caught:
        new_document(wire, core_context(), None, NOW)
    bilingual(caught.value, kind, english)


@pytest.mark.parametrize(("fragment", "english"), [
    ([], "the body must be a JSON object"),
    ({"id": "urn:ngsi-ld:Subscription:other"}, "differs from the id in the path"),
    ({"type": "Entity"}, 'has "type": "Subscription"'),
    ({"status": "paused"}, "changes nothing a client may set"),
])
def test_each_update_error_is_bilingual(fragment: Any, english: str) -> None:
    doc = new_document(body(), core_context(), None, NOW)
    with pytest.raises(UcityError) as caught:
        merged_document(doc, fragment, core_context(), NOW)
    bilingual(caught.value, "BadRequestData", english)
