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

import httpx

from ucity.alarms.contacts import NotifierConfig
from ucity.alarms.notifiers.base import DeliveryResult, Notification, Notifier, Recipient
from ucity.alarms.notifiers.email import EmailNotifier
from ucity.alarms.notifiers.recording import RecordingNotifier
from ucity.alarms.notifiers.webhook import WebhookNotifier
from ucity.core.clock import Clock
from ucity.core.config import AlarmSettings

__all__ = ["DeliveryResult", "Notification", "Notifier", "NotifierDeps", "Recipient", "build_notifier", "known_provider",
           "register_provider"]


@dataclass(frozen=True, slots=True)
class NotifierDeps:
    """What a notifier factory may use."""

    settings: AlarmSettings
    clock: Clock
    http: httpx.AsyncClient
    webhook_secret: bytes | None


Factory = Callable[[NotifierConfig, NotifierDeps], Notifier]


def _webhook(config: NotifierConfig, deps: NotifierDeps) -> Notifier:
    assert config.url is not None
    return WebhookNotifier(config.id, config.url, deps.webhook_secret, deps.http, deps.clock, config.headers)


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
