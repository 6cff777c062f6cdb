"""A package for an agency is retried for about 12 minutes by default (ops.retry, QA7 F12), not the 31 s of the alarm
notifications' retries: a 112/119 system restarting, or a short network outage, must not turn a package into a dead
letter that only an administrator can send again. Real webhook receiver, fake time."""

from __future__ import annotations

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.test_linkage import event_body, fire_and_police
from ucity.core.config import AgencyRetrySettings

TENANT = "urn:ngsi-ld:tenant:default"


async def test_a_package_is_retried_for_minutes_before_it_is_a_dead_letter(make_ops: MakeOps,
                                                                           receiver: Receiver) -> None:
    assert (AgencyRetrySettings().max_attempts, AgencyRetrySettings().base_s, AgencyRetrySettings().max_s) == (
        12, 2.0, 120.0)
    receiver.status["/119"] = 503
    async with make_ops(retry={}, **fire_and_police(receiver)) as ops:  # the default agency retries
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        dispatcher = ops.ucity.alarms.dispatcher
        for wait in (2, 4, 8, 16, 32, 64, 120, 120):  # 366 s: more than 5 minutes of outage
            await ops.advance(wait)
        assert len(receiver.on("/119")) == 9 and await dispatcher.dead_letters(TENANT) == []
        receiver.status["/119"] = 200  # the 119 system is back
        await ops.advance(120)
        assert len(receiver.on("/119")) == 10  # the tenth attempt, answered 200
        event = (await ops.call("get_event", eventId=created.body["id"])).body
        assert event["linkages"][0]["status"] == "delivered"


async def test_the_alarm_retries_are_not_the_agencies(make_ops: MakeOps, receiver: Receiver) -> None:
    receiver.status["/119"] = 503
    async with make_ops(retry={"max_attempts": 2, "base_s": 1.0}, **fire_and_police(receiver)) as ops:
        await ops.call("create_event", "POST", "/api/v1/events", event_body("119_DISPATCH", "fire"))
        await ops.advance(1)
        [letter] = await ops.ucity.alarms.dispatcher.dead_letters(TENANT)
        assert letter["attempts"] == 2  # ops.retry, while alarms.retry of these settings allows 3
