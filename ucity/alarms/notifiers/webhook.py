"""Webhook notifier: a JSON POST signed with HMAC-SHA256.

Headers a receiver checks:

* `X-Ucity-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes, keyed with the secret
  from configuration (`alarms.webhook_secret`); compare with `hmac.compare_digest`;
* `X-Ucity-Timestamp: <unix seconds>`: when it was sent (platform clock). The body carries the same
  instant as `sentAt`, so the signature covers it: a receiver can refuse old replays.
* `X-Ucity-Delivery: <notification id>`: the same on every retry, so a receiver can drop repeats.

The secret is never logged and never returned by the API. Status 2xx is success; 4xx other than
408/429 will not get better by retrying (the notification goes straight to the dead letters).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import orjson

from ucity.alarms.notifiers.base import DeliveryResult, Notification
from ucity.core.clock import Clock, to_iso

SIGNATURE_HEADER = "X-Ucity-Signature"
TIMESTAMP_HEADER = "X-Ucity-Timestamp"
DELIVERY_HEADER = "X-Ucity-Delivery"


def sign(secret: bytes, body: bytes) -> str:
    """The X-Ucity-Signature value of a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (also used by the tests)."""
    return hmac.compare_digest(sign(secret, body), signature)


class WebhookNotifier:
    """POSTs each notification to one URL."""

    kind = "webhook"
    sends = True

    def __init__(self, notifier_id: str, url: str, secret: bytes | None, client: httpx.AsyncClient, clock: Clock,
                 headers: dict[str, str] | None = None) -> None:
        self.id = notifier_id
        self.url = url
        self._secret = secret
        self._client = client
        self._clock = clock
        self._headers = dict(headers or {})

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "sends": True, "signed": self._secret is not None}

    def request(self, notification: Notification) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one POST."""
        now = self._clock.now()
        body = orjson.dumps({**notification.payload(), "sentAt": to_iso(now)})
        headers = {**self._headers, "Content-Type": "application/json",
                   TIMESTAMP_HEADER: str(int(now.timestamp())), DELIVERY_HEADER: notification.id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return body, headers

    async def send(self, notification: Notification) -> DeliveryResult:
        if self._secret is None:
            return DeliveryResult(False, "no webhook secret configured (alarms.webhook_secret) / 웹훅 비밀키 미설정",
                                  retry=False)
        body, headers = self.request(notification)
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return DeliveryResult(True, f"HTTP {response.status_code}")
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        return DeliveryResult(False, f"HTTP {response.status_code}", retry=not permanent)

    async def close(self) -> None:
        """The HTTP client is shared and closed by the dispatcher."""
