"""Alarm e-mails through a real local SMTP server (aiosmtpd on a free loopback port)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.alarms.support import T0, City, alarm_settings, matched
from tests.conftest import free_port


class Mailbox:
    """An aiosmtpd handler that keeps the messages and refuses one mailbox (550)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[tuple[City, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = alarm_settings(tmp_path, smtp={"host": "127.0.0.1", "port": controller.port, "sender": "ucity@guro.go.kr"})
    try:
        async with City.running(settings, T0) as city:
            yield city, mailbox
    finally:
        controller.stop()


async def test_alarm_mail_in_korean_and_english(mail: tuple[City, Mailbox]) -> None:
    city, mailbox = mail
    assert (await city.collection("notifiers", "create", {"id": "mail", "type": "email"})).status == 201
    group = {"id": "facility-team", "members": [
        {"name": "박시설", "contacts": [{"notifier": "mail", "address": "park@guro.go.kr"}]},
        {"name": "Nobody", "language": "en", "contacts": [{"notifier": "mail", "address": "nobody@guro.go.kr"}]}]}
    assert (await city.collection("recipients", "create", group)).status == 201
    chain = {"id": "c", "steps": [{"delay_s": 0, "group": "facility-team"}]}
    assert (await city.collection("escalations", "create", chain)).status == 201

    await city.publish(matched(level="serious", description={"ko": "교량 기울기 심각", "en": "Bridge tilt serious"}))
    alarm = city.active()
    (message,) = mailbox.messages
    assert (message["From"], message["To"]) == ("ucity@guro.go.kr", "park@guro.go.kr")
    assert message["Subject"] == (f"[심각] 경보 발생: tilt @ {alarm.entity_id} / "
                                  f"[Serious] Alarm raised: tilt @ {alarm.entity_id}")
    body = message.get_content()
    assert "설명: 교량 기울기 심각" in body and "Description: Bridge tilt serious" in body
    assert "발생 시각: 2026-03-02 09:00:00 KST" in body and "Raised at: 2026-03-02 09:00:00 KST" in body
    assert body.index("경보 발생") < body.index("Alarm raised")  # Korean first
    # RFC 5322 with a zone (QA9 F12): not "-0000" ("no zone information"); the send time, on the wall clock.
    assert not message["Date"].endswith("-0000") and parsedate_to_datetime(message["Date"]).tzinfo is not None

    # 550 for a mailbox: retrying cannot help, so it is a dead letter at once.
    (letter,) = (await city.call("dead_letters")).body["deadLetters"]
    assert (letter["notifier"], letter["attempts"], letter["notification"]["recipient"]["address"]) == (
        "mail", 1, "nobody@guro.go.kr")
    assert "550" in letter["error"]


async def test_smtp_server_down_is_retried(tmp_path: Path) -> None:
    settings = alarm_settings(tmp_path, smtp={"host": "127.0.0.1", "port": free_port()})
    async with City.running(settings, T0) as city:
        assert (await city.collection("notifiers", "create", {"id": "mail", "type": "email"})).status == 201
        group = {"id": "g", "members": [{"name": "Kim", "contacts": [{"notifier": "mail", "address": "k@x.kr"}]}]}
        assert (await city.collection("recipients", "create", group)).status == 201
        chain = {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]}
        assert (await city.collection("escalations", "create", chain)).status == 201
        await city.publish(matched(level="caution"))
        box = city.alarms.dispatcher.outbox("urn:ngsi-ld:tenant:default", "mail")
        assert (box.stats.failed_attempts, box.stats.state, box.stats.dead) == (1, "backoff", 0)
        await city.advance(2)
        await city.advance(4)
        assert (box.stats.failed_attempts, box.stats.dead) == (3, 1)


async def test_a_user_name_without_a_password_sends_without_smtp_auth(tmp_path: Path) -> None:
    """`smtp.username` set and `smtp.password` empty (unset): no AUTH with an empty password. This server offers no
    AUTH, so an attempt would fail the delivery (SMTPNotSupportedError) and leave a dead letter instead of a mail."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = alarm_settings(tmp_path, smtp={"host": "127.0.0.1", "port": controller.port, "username": "ucity",
                                              "password": ""})
    try:
        async with City.running(settings, T0) as city:
            assert (await city.collection("notifiers", "create", {"id": "mail", "type": "email"})).status == 201
            group = {"id": "g", "members": [{"name": "Kim", "contacts": [{"notifier": "mail", "address": "k@x.kr"}]}]}
            assert (await city.collection("recipients", "create", group)).status == 201
            assert (await city.collection("escalations", "create",
                                          {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]})).status == 201
            await city.publish(matched(level="caution"))
            assert [m["To"] for m in mailbox.messages] == ["k@x.kr"]
            assert (await city.call("dead_letters")).body["deadLetters"] == []
    finally:
        controller.stop()
