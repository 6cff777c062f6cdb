"""SMS and push for development: a recording adapter that SENDS NOTHING.

It keeps the last messages in memory (shown at `GET /api/v1/notifiers/{id}`) and logs each one
saying plainly that nothing was sent. A city plugs its real SMS or push provider in with
`register_provider` (notifiers/__init__.py): any class with the `Notifier` contract.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from ucity.alarms.notifiers.base import DeliveryResult, Notification

log = logging.getLogger(__name__)
NOTICE = {"ko": "개발용 기록 어댑터: 메시지를 기록만 하고 실제로 보내지 않습니다.",
          "en": "Development recording adapter: messages are recorded, nothing is sent."}


class RecordingNotifier:
    sends = False

    def __init__(self, notifier_id: str, kind: str, keep: int) -> None:
        self.id = notifier_id
        self.kind = kind
        self.recorded: deque[dict[str, Any]] = deque(maxlen=keep)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "provider": "recording", "sends": False, "notice": NOTICE,
                "recorded": list(self.recorded)}

    async def send(self, notification: Notification) -> DeliveryResult:
        address = notification.recipient.address if notification.recipient else None
        self.recorded.append({"notification": notification.id, "to": address, "subject": notification.subject,
                              "text": notification.text, "at": notification.created_at})
        log.info("%s notifier %s: NOT SENT (recording adapter, sends nothing): %s to %s", self.kind, self.id,
                 notification.id, _masked(address))
        return DeliveryResult(True, "recorded, not sent")

    async def close(self) -> None:
        """Nothing held open."""


def _masked(address: str | None) -> str:
    """Contact data is personal: logs show only its last 4 characters."""
    if not address:
        return "-"
    return "*" * max(0, len(address) - 4) + address[-4:]
