"""E-mail notifier: SMTP with the standard library, run in a worker thread (never blocks the loop).

Messages are plain text in Korean and English (Korean first), UTF-8, with both languages in the
subject; the text is `dispatch.compose` (the entity's name and place, the measured value and threshold, who
did what when, in Korea time). The Date header is RFC 5322 in GMT. The SMTP server, sender and credentials
come from `alarms.smtp`; the password is never logged. Connection errors and 4xx replies are retried by the
outbox; 5xx replies for the recipient (e.g. unknown mailbox) are not.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from ucity.alarms.notifiers.base import DeliveryResult, Notification
from ucity.core.config import SmtpSettings


def compose(notification: Notification, sender: str) -> EmailMessage:
    """The message for one notification (its recipient's address is the To:)."""
    assert notification.recipient is not None and notification.recipient.address
    message = EmailMessage()
    message["From"] = sender
    message["To"] = notification.recipient.address
    message["Subject"] = f"{notification.subject['ko']} / {notification.subject['en']}"
    # RFC 5322 with a real zone ("GMT"): `localtime=False` alone writes "-0000", "no zone information" (QA9 F12).
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="ucity")
    message["X-Ucity-Notification"] = notification.id
    message.set_content(f"{notification.text['ko']}\n\n----\n\n{notification.text['en']}\n", charset="utf-8")
    return message


class EmailNotifier:
    kind = "email"
    sends = True

    def __init__(self, notifier_id: str, settings: SmtpSettings) -> None:
        self.id = notifier_id
        self.settings = settings

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "sends": True, "smtp": f"{self.settings.host}:{self.settings.port}",
                "from": self.settings.sender}

    async def send(self, notification: Notification) -> DeliveryResult:
        if notification.recipient is None or not notification.recipient.address:
            return DeliveryResult(False, "no e-mail address / 이메일 주소 없음", retry=False)
        message = compose(notification, self.settings.sender)
        try:
            await asyncio.to_thread(self._send_blocking, message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return DeliveryResult(False, f"recipient refused: {codes}", retry=any(c < 500 for c in codes))
        except smtplib.SMTPResponseException as exc:
            return DeliveryResult(False, f"SMTP {exc.smtp_code}", retry=exc.smtp_code < 500)
        except (OSError, smtplib.SMTPException) as exc:
            return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
        return DeliveryResult(True, "sent")

    def _send_blocking(self, message: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.login is not None:  # AUTH only with a user name and a password (an empty password is unset)
                smtp.login(*s.login)
            smtp.send_message(message)

    async def close(self) -> None:
        """One connection per message: nothing to close."""
