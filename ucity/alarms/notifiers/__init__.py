"""Notifiers: one contract (`Notifier.send(notification) -> DeliveryResult`), several channels.

* `webhook`: signed JSON POST (webhook.py);
* `email`: SMTP (email.py);
* `sms`, `push`: a provider a city plugs in with `register_provider`; the built-in `recording`
  provider (recording.py) records and sends nothing, for development;
* the dashboard stream (sse.py) is not addressed to anyone: every alarm event goes on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ucity.alarms.contacts import NotifierConfig
from ucity.alarms.notifiers.base import DeliveryResult, Notification, Notifier, Recipient
from ucity.alarms.notifiers.email import EmailNotifier
from ucity.alarms.notifiers.recording import RecordingNotifier
from ucity.alarms.notifiers.webhook import WebhookNotifier
from ucity.core.clock import Clock
from ucity.core.config import AlarmSettings
from ucity.core.netguard import AddressGuard, RefusedAddress

__all__ = ["DeliveryResult", "Notification", "Notifier", "NotifierDeps", "Recipient", "build_notifier", "known_provider",
           "register_provider", "webhook_guard", "webhook_refusal"]


@dataclass(frozen=True, slots=True)
class NotifierDeps:
    """What a notifier factory may use."""

    settings: AlarmSettings
    clock: Clock
    http: httpx.AsyncClient
    webhook_secret: bytes | None
    # The SSRF guard of webhook receivers (`webhook_guard`): None lets a webhook POST to any address.
    guard: AddressGuard | None = None


Factory = Callable[[NotifierConfig, NotifierDeps], Notifier]


def _webhook(config: NotifierConfig, deps: NotifierDeps) -> Notifier:
    assert config.url is not None
    return WebhookNotifier(config.id, config.url, deps.webhook_secret, deps.http, deps.clock, config.headers,
                           deps.guard)


def _email(config: NotifierConfig, deps: NotifierDeps) -> Notifier:
    return EmailNotifier(config.id, deps.settings.smtp)


def _recording(config: NotifierConfig, deps: NotifierDeps) -> Notifier:
    return RecordingNotifier(config.id, config.type, deps.settings.recorded_max)


_PROVIDERS: dict[tuple[str, str], Factory] = {
    ("webhook", ""): _webhook,
    ("email", ""): _email,
    ("sms", ""): _recording,
    ("sms", "recording"): _recording,
    ("push", ""): _recording,
    ("push", "recording"): _recording,
}


def register_provider(kind: str, provider: str, factory: Factory) -> None:
    """Plug a provider in: e.g. `register_provider("sms", "mycarrier", MyCarrierSms)`; notifier
    documents then choose it with `{"type": "sms", "provider": "mycarrier"}`."""
    _PROVIDERS[(kind, provider)] = factory


def build_notifier(config: NotifierConfig, deps: NotifierDeps) -> Notifier:
    factory = _PROVIDERS.get((config.type, config.provider))
    if factory is None:
        raise ValueError(f"no {config.type} provider {config.provider!r} is registered")
    return factory(config, deps)


def known_provider(kind: str, provider: str) -> bool:
    return (kind, provider) in _PROVIDERS


def webhook_guard(settings: Any) -> AddressGuard | None:
    """The SSRF guard of webhook receivers: the one of NGSI-LD notification endpoints (on in production unless
    `subscriptions.block_private_networks` says otherwise; `subscriptions.allowed_networks` widens it)."""
    from ucity.ngsild.subscriptions import endpoint_guard

    return endpoint_guard(settings)


def webhook_refusal(guard: AddressGuard | None, url: str) -> str | None:
    """Why the guard refuses a webhook url without DNS (an address, `localhost`), or None; a name is checked when a
    notification is sent (WebhookNotifier)."""
    if guard is None:
        return None
    try:
        guard.check_host(urlsplit(url).hostname or "", "the webhook url's host")
    except RefusedAddress as exc:  # its English half: the API's 400 puts its own Korean in front
        return exc.en
    except ValueError as exc:
        return str(exc)
    return None
