"""Alarms: one alarm per (tenant, entity, rule) from rule and device-health events, its lifecycle,
the NGSI-LD `Alert` entity that mirrors it, escalation chains and notifiers (README.md here).

Public surface for domains: `AlarmService` (the running service: `raise_signal`, `clear_by_rule`,
`act`), `Signal`, the lifecycle vocabulary in `model`, and `notifiers.register_provider` for a
city's SMS or push provider.
"""

from __future__ import annotations

from ucity.alarms.model import ACTIVE_UNACK, CLOSED, FAULT, OUTCOMES, SAFETY, STATUSES, Alarm, InvalidTransition
from ucity.alarms.service import DEVICE_OFFLINE_RULE, AlarmChanged, AlarmService, Signal

__all__ = ["ACTIVE_UNACK", "CLOSED", "DEVICE_OFFLINE_RULE", "FAULT", "OUTCOMES", "SAFETY", "STATUSES", "Alarm",
           "AlarmChanged", "AlarmService", "InvalidTransition", "Signal"]
