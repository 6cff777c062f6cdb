"""Webhook notifier: a JSON POST signed with HMAC-SHA256.

Headers a receiver checks:

* `X-Ucity-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes, keyed with the secret
  from configuration (`alarms.webhook_secret`); compare with `hmac.compare_digest`;
* `X-Ucity-Timestamp: <unix seconds>`: when it was sent (platform clock). The body carries the same
  instant as `sentAt`, so the signature covers it: a receiver can refuse old replays.
* `X-Ucity-Delivery: <notification id>`: the same on every retry, so a receiver can drop repeats.

The secret is never logged and never returned by the API. Status 2xx is success; 4xx other than
408/429 will not get better by retrying (the notification goes straight to the dead letters).

A webhook's url may carry a receiver's credentials (a token in the query or the path): the API shows it whole to
`config:admin` only, others get `mask_url` (F10). With a `guard` (ucity.core.netguard: on in production, as for
NGSI-LD subscriptions, `subscriptions.block_private_networks` / `allowed_networks`) the url's host is resolved and
checked before each POST: a loopback, private or link-local receiver (169.254.169.254) is refused, a dead letter at
once. The POST then connects by name again (httpx): a DNS answer that changes in between is a documented limit that
NGSI-LD notifications, which connect to the checked address, do not have.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

from ucity.alarms.notifiers.base import DeliveryResult, Notification
from ucity.core.clock import Clock, to_iso
from ucity.core.netguard import AddressGuard, RefusedAddress

SIGNATURE_HEADER = "X-Ucity-Signature"
TIMESTAMP_HEADER = "X-Ucity-Timestamp"
DELIVERY_HEADER = "X-Ucity-Delivery"


def mask_url(url: str) -> str:
    """A webhook url as someone who may not see its secrets sees it: scheme, host and port; the path beyond the
    host and every query value `***` (`https://hooks.example/***?token=***`), user information dropped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    path = "/***" if parts.path.strip("/") else parts.path
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{host}{port}{path}" + (f"?{query}" if query else "") + ("#***" if parts.fragment else "")


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
                 headers: dict[str, str] | None = None, guard: AddressGuard | None = None) -> None:
        self.id = notifier_id
        self.url = url
        self._secret = secret
        self._client = client
        self._clock = clock
        self._headers = dict(headers or {})
        self._guard = guard

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
        if self._guard is not None:
            parts = urlsplit(self.url)
            try:
                await self._guard.resolve(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                                          "the webhook's host")
            except RefusedAddress as exc:  # will not get better by retrying: the city's network settings decide
                return DeliveryResult(False, f"{exc} (webhook {self.id})", retry=False)
            except OSError as exc:
                return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
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
