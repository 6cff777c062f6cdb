"""Ingest counters per device: measures and values accepted, values and payloads rejected, and why.

Served at `/api/v1/ingest/stats`. Rejections are logged once per device per interval (with the
count since the last log line), so a device that sends garbage every second cannot flood the
log (DESIGN §5.14: log transitions, not repeats). What a device's interval has not logged yet is
written out by `flush`: every interval (the ingest service's timer, so a device that stops sending
garbage still gets its count logged) and when the process stops (QA4 F5). Keys come partly from the network (apikeys and
device ids of unknown devices), so the number of tracked keys is capped; beyond the cap unknown
senders are counted together under one key.

Warnings are counted apart from rejections: `clock-ahead`, a measure taken (its time within
`ingest.max_future_s`) but more than `ingest.clock_ahead_warn_s` ahead of the platform clock, logged
the same way (once per device per interval, with the count since the last line).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ucity.core.clock import Clock, to_iso
from ucity.ingest.decode import Rejection

log = logging.getLogger(__name__)
CLOCK_AHEAD = "clock-ahead"  # a warning: a measure time taken, but more than ingest.clock_ahead_warn_s ahead
MAX_KEYS = 100_000
OVERFLOW = ("", "*", "*")


@dataclass(slots=True)
class DeviceCounters:
    measures: int = 0  # measures (observations) committed
    accepted: int = 0  # attribute values committed
    rejected: int = 0  # attribute values or whole payloads dropped
    reasons: Counter[str] = field(default_factory=Counter)
    by_transport: Counter[str] = field(default_factory=Counter)
    last_accepted: datetime | None = None
    last_rejected: datetime | None = None
    last_rejection: dict[str, Any] | None = None
    last_logged: datetime | None = None
    unlogged: int = 0
    # Warnings: measures taken (counted in `measures`/`accepted` too), but suspect: `clock-ahead`
    warnings: Counter[str] = field(default_factory=Counter)
    last_warned: datetime | None = None
    last_clock_ahead: dict[str, Any] | None = None  # the latest: aheadSeconds, observedAt, receivedAt
    warn_logged: datetime | None = None
    warn_unlogged: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "measures": self.measures, "accepted": self.accepted, "rejected": self.rejected,
            "reasons": dict(self.reasons), "transports": dict(self.by_transport),
            "lastAccepted": to_iso(self.last_accepted) if self.last_accepted else None,
            "lastRejected": to_iso(self.last_rejected) if self.last_rejected else None,
            "lastRejection": self.last_rejection,
            "warnings": dict(self.warnings), "lastClockAhead": self.last_clock_ahead,
        }


Key = tuple[str, str, str]  # (tenant or "" when unknown, apikey, device_id)


def masked_apikey(apikey: str) -> str:
    """An apikey as logs show it (QA8 F9: it is the device's credential): a short prefix an operator recognises it
    by, then `***` as logsafe masks the `k=` of URLs. At most 4 characters and never more than a quarter of the
    key are shown (`a1b2***` for a 32-character key, `k***` for `keymq`)."""
    if not apikey:
        return apikey
    return apikey[:min(4, len(apikey) // 4)] + "***"


def _masked_detail(detail: object, apikey: str) -> object:
    """A rejection's detail without the apikey (`no service group or device has apikey 'x'`)."""
    if isinstance(detail, str) and apikey and apikey in detail:
        return detail.replace(apikey, masked_apikey(apikey))
    return detail


def _masked_wire(wire: dict[str, Any], apikey: str) -> dict[str, Any]:
    """A rejection's wire form with the apikey masked where its detail names it as a word (`apikey 'x'`: a short
    apikey such as `hk` inside another word stays); a copy, only when it names it."""
    detail = wire.get("detail")
    if not isinstance(detail, str) or not apikey or apikey not in detail:
        return wire
    shown = masked_apikey(apikey)
    masked = re.sub(rf"(?<![\w-]){re.escape(apikey)}(?![\w-])", lambda _: shown, detail)
    return wire if masked == detail else {**wire, "detail": masked}


# Said in a snapshot / device health answer from which personal devices are withheld (QA17 F3).
WITHHELD_DETAIL = ("개인 유형 기기 {n}대({types})는 개인정보 열람 권한(personal:read)이 없어 목록에서 빼고 개수만 보임 / "
                   "{n} device(s) of personal types ({types}) are left out of the list and only counted: listing "
                   "them needs personal:read")


# Said when the totals' latest rejection or clock-ahead warning came from a withheld device (FIX-K).
WITHHELD_TOTALS_DETAIL = ("최근 거부·시계 앞섬 기록({names})은 개인 유형 기기에서 온 것이라 "
                          "개인정보 열람 권한(personal:read) 없이는 빼고 보임 / the latest rejection or clock-ahead "
                          "record ({names}) came from a device of a personal type and is left out: it needs "
                          "personal:read")


def withheld_summary(types: Counter[str]) -> dict[str, Any]:
    """The `withheld` member of an answer that leaves out personal devices: how many, by type, and why (bilingual)."""
    n = sum(types.values())
    return {"devices": n, "types": dict(sorted(types.items())),
            "detail": WITHHELD_DETAIL.format(n=n, types=", ".join(sorted(types)) or "-")}


class IngestStats:
    def __init__(self, clock: Clock, log_interval_s: float = 300.0, clock_ahead_warn_s: float = 300.0) -> None:
        self.clock = clock
        self.log_interval = timedelta(seconds=log_interval_s)
        self.clock_ahead_warn_s = clock_ahead_warn_s
        self._devices: dict[Key, DeviceCounters] = {}
        self.totals = DeviceCounters()
        # the device of the totals' `last_rejection` and `last_clock_ahead` (a snapshot withholds them with it)
        self._last_rejection_key: Key | None = None
        self._last_clock_ahead_key: Key | None = None

    def _counters(self, key: Key) -> DeviceCounters:
        counters = self._devices.get(key)
        if counters is None:
            if len(self._devices) >= MAX_KEYS:
                key = OVERFLOW
            counters = self._devices.setdefault(key, DeviceCounters())
        return counters

    def accepted_device(self, key: Key, measures: int, values: int, transport: str, now: datetime) -> None:
        """Count a device's committed measures and values; a batch adds its totals once (`accepted_totals`)."""
        counters = self._devices.get(key) or self._counters(key)
        counters.measures += measures
        counters.accepted += values
        counters.by_transport[transport] += values
        counters.last_accepted = now

    def accepted_totals(self, sums: dict[str, list[int]], now: datetime) -> None:
        """Add a batch's committed measures and values (transport -> [measures, values]) to the totals."""
        totals = self.totals
        for transport, (measures, values) in sums.items():
            totals.measures += measures
            totals.accepted += values
            totals.by_transport[transport] += values
        totals.last_accepted = now

    def rejected(self, key: Key, rejections: tuple[Rejection, ...] | list[Rejection], transport: str) -> None:
        """Count rejections; log them when this device has not been logged within the interval."""
        if not rejections:
            return
        now = self.clock.now()
        counters = self._counters(key)
        for target in (counters, self.totals):
            target.rejected += len(rejections)
            target.reasons.update(r.reason for r in rejections)
            target.last_rejected = now
        # the latest, also in totals; its detail without the apikey (an unknown device's names it): only callers who
        # may read the device configuration see an apikey, in the row's `apikey` (`snapshot`, QA17 F1)
        counters.last_rejection = self.totals.last_rejection = _masked_wire(rejections[-1].to_wire(), key[1])
        self._last_rejection_key = key
        counters.unlogged += len(rejections)
        if counters.last_logged is None or now - counters.last_logged >= self.log_interval:
            first = rejections[0]
            log.warning("ingest (%s) rejected %d value(s) of device %s (apikey %s) since the last report; latest: %s: %s",
                        transport, counters.unlogged, key[2], masked_apikey(key[1]), first.reason,
                        _masked_detail(first.detail, key[1]))
            counters.last_logged = now
            counters.unlogged = 0

    def clock_ahead(self, key: Key, measures: int, ahead_s: float, observed_at: str, transport: str,
                    now: datetime) -> None:
        """Count committed measures whose time lies more than `ingest.clock_ahead_warn_s` ahead of the platform
        clock (`ahead_s`: the largest offset among them, `observed_at` its time): taken, not rejected, but the
        device's clock or time zone is likely wrong (QA5 F8: Korean local time sent without its offset is 9 h
        ahead; windows that end at now ignore such readings). Logged as the rejections are: once per device per
        interval, with the count since the last line."""
        counters = self._counters(key)
        latest = {"aheadSeconds": round(ahead_s, 3), "observedAt": observed_at, "receivedAt": to_iso(now)}
        for target in (counters, self.totals):
            target.warnings[CLOCK_AHEAD] += measures
            target.last_warned = now
            target.last_clock_ahead = latest
        self._last_clock_ahead_key = key
        counters.warn_unlogged += measures
        if counters.warn_logged is None or now - counters.warn_logged >= self.log_interval:
            self._log_clock_ahead(key, counters, transport)
            counters.warn_logged = now

    def _log_clock_ahead(self, key: Key, counters: DeviceCounters, transport: str = "") -> None:
        latest = counters.last_clock_ahead or {}
        log.warning("ingest%s took %d measure(s) of device %s (apikey %s) more than %g s ahead of the platform clock "
                    "since the last report; latest %s s ahead (observedAt %s): is its clock or time zone wrong "
                    "(local time sent without its offset)?", f" ({transport})" if transport else "",
                    counters.warn_unlogged, key[2], masked_apikey(key[1]), self.clock_ahead_warn_s, latest.get("aheadSeconds"),
                    latest.get("observedAt"))
        counters.warn_unlogged = 0

    def flush(self) -> int:
        """Log the rejections not logged yet of every device whose interval has passed (all of them when
        `everything`: at stop); returns how many lines."""
        return self._flush(everything=False)

    def flush_all(self) -> int:
        """At stop: every device's rejections not logged yet, whatever its interval."""
        return self._flush(everything=True)

    def _flush(self, everything: bool) -> int:
        now = self.clock.now()
        lines = 0
        for key, counters in self._devices.items():
            if counters.warn_unlogged and (everything or counters.warn_logged is None
                                           or now - counters.warn_logged >= self.log_interval):
                self._log_clock_ahead(key, counters)
                counters.warn_logged = now
                lines += 1
            if not counters.unlogged:
                continue
            if not everything and counters.last_logged is not None and now - counters.last_logged < self.log_interval:
                continue
            latest = counters.last_rejection or {}
            log.warning("ingest rejected %d value(s) of device %s (apikey %s) since the last report; latest: %s: %s",
                        counters.unlogged, key[2], masked_apikey(key[1]), latest.get("reason"),
                        _masked_detail(latest.get("detail"), key[1]))
            counters.last_logged = now
            counters.unlogged = 0
            lines += 1
        return lines

    def device(self, key: Key) -> DeviceCounters | None:
        return self._devices.get(key)

    def forget(self, key: Key) -> None:
        self._devices.pop(key, None)

    def snapshot(self, tenant: str | None = None, platform: bool = True, apikeys: bool = True,
                 withhold: Callable[[Key], str | None] | None = None) -> dict[str, Any]:
        """Totals and the per-device counters (of one tenant, if a tenant is given; with the rows of senders whose
        apikey no tenant has if `platform`: the platform's own, not any tenant's to see).

        `apikeys` False (a caller who may not read the device configuration, `config:read`): each row's apikey
        masked (`masked_apikey`) and `apikeysMasked` true, since the apikey is the device's credential (QA17 F1).
        `withhold`: the personal entity type of a row's device (None: not personal); such rows are left out and
        counted in `withheld` (QA17 F3). The totals still count every row, but their `lastRejection` and
        `lastClockAhead` (a device's reason, attribute and times) only when they come from a row not withheld; else
        they are left out and `withheld.totals` names them (FIX-K)."""
        rows = []
        totals = self.totals if tenant is None else DeviceCounters()
        rejection_key, clock_ahead_key = ((self._last_rejection_key, self._last_clock_ahead_key) if tenant is None
                                          else (None, None))
        hidden: Counter[str] = Counter()
        for key, counters in sorted(self._devices.items()):
            row_tenant, apikey, device_id = key
            if tenant is not None and row_tenant != tenant and not (platform and row_tenant == ""):
                continue
            if tenant is not None:
                # the row `_add` takes the latest rejection / warning from (the same comparison)
                if counters.last_rejected is not None and (totals.last_rejected is None
                                                           or counters.last_rejected > totals.last_rejected):
                    rejection_key = key
                if counters.last_warned is not None and (totals.last_warned is None
                                                         or counters.last_warned > totals.last_warned):
                    clock_ahead_key = key
                _add(totals, counters)
            personal = withhold(key) if withhold is not None else None
            if personal is not None:
                hidden[personal] += 1
                continue
            rows.append({"service": row_tenant or None, "apikey": apikey if apikeys else masked_apikey(apikey),
                         "device_id": device_id, **counters.to_wire()})
        wire = totals.to_wire()
        left_out = []
        if withhold is not None:
            for name, source in (("lastRejection", rejection_key), ("lastClockAhead", clock_ahead_key)):
                if wire[name] is not None and (source is None or withhold(source) is not None):
                    del wire[name]
                    left_out.append(name)
        out: dict[str, Any] = {"totals": wire, "devices": rows}
        if not apikeys:
            out["apikeysMasked"] = True
        if withhold is not None:
            out["withheld"] = withheld_summary(hidden)
            if left_out:
                out["withheld"]["totals"] = left_out
                out["withheld"]["totalsDetail"] = WITHHELD_TOTALS_DETAIL.format(names=", ".join(left_out))
        return out


def _add(total: DeviceCounters, part: DeviceCounters) -> None:
    total.measures += part.measures
    total.accepted += part.accepted
    total.rejected += part.rejected
    total.reasons.update(part.reasons)
    total.by_transport.update(part.by_transport)
    if part.last_accepted is not None and (total.last_accepted is None or part.last_accepted > total.last_accepted):
        total.last_accepted = part.last_accepted
    if part.last_rejected is not None and (total.last_rejected is None or part.last_rejected > total.last_rejected):
        total.last_rejected = part.last_rejected
        total.last_rejection = part.last_rejection  # the latest rejection goes with the latest time
    total.warnings.update(part.warnings)
    if part.last_warned is not None and (total.last_warned is None or part.last_warned > total.last_warned):
        total.last_warned = part.last_warned
        total.last_clock_ahead = part.last_clock_ahead
