"""The city the benchmarks measure with: one IoT Agent service group of environment sensors, their
devices, measures, a threshold rule, and an in-process ucity on a temporary data dir.

Every measure carries four numeric attributes (four observations) and its own `TimeInstant`.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

APIKEY = "bench"
ENTITY_TYPE = "AirQualityObserved"
ATTRS = (("t", "temperature", "CEL"), ("h", "relativeHumidity", "P1"), ("p", "pm10", "GQ"), ("b", "batteryLevel", "P1"))
OBS_PER_MEASURE = len(ATTRS)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_tick = itertools.count()


def service_group(apikey: str = APIKEY, entity_type: str = ENTITY_TYPE) -> dict[str, Any]:
    return {"apikey": apikey, "entity_type": entity_type, "resource": "/iot/json", "autoprovision": False,
            "attributes": [{"object_id": o, "name": n, "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": u}}}
                           for o, n, u in ATTRS]}


def device(i: int, apikey: str = APIKEY) -> dict[str, Any]:
    lon, lat = 126.85 + (i % 100) * 0.001, 37.49 + (i // 100 % 100) * 0.001
    return {"device_id": f"dev{i}", "apikey": apikey, "expected_interval_s": 86400,
            "static_attributes": [{"name": "location", "type": "geo:json",
                                   "value": {"type": "Point", "coordinates": [lon, lat]}}]}


def time_instant(n: int | None = None) -> str:
    """Strictly increasing measure times (microsecond steps), so no measure is late."""
    step = next(_tick) if n is None else n
    return (T0 + timedelta(microseconds=step * 1000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def measure(n: int) -> dict[str, Any]:
    return {"t": 20 + n % 10, "h": 40 + n % 30, "p": n % 80, "b": 90 - n % 7, "TimeInstant": time_instant()}


RULE = {
    "id": "bench-heat", "name": {"en": "bench heat"}, "entityTypes": [ENTITY_TYPE], "kind": "safety",
    "condition": {"type": "threshold", "attribute": "temperature", "direction": "above",
                  "edges": [{"level": "warning", "at": 1000}]},
}


def in_process_settings(data_dir: Path, url: str) -> Any:
    from ucity.core.config import load_settings

    # Without the token guard (server.require_auth, on by default in production): the targets are those of the
    # embedded default, which has none; README's Performance section says what the guard adds.
    return load_settings(environment="production", data_dir=str(data_dir), log_level="WARNING", store={"url": url},
                         server={"require_auth": False})
