"""From raw readings to the values the ladders assess, pure; and the write that records them.

For every reading of a structural sensor the domain writes one *assessed* attribute per channel
on the sensor entity, with the reading's `observedAt`; the rules engine runs the ladders on them:

* `tiltAssessed` (rad): the resultant of the two axes, hypot(x, y), each axis the SHM-R7 residual
  x − (a + b·T) once the sensor has a thermal model, else the raw change from the installation
  baseline (the ladder is on the change, SHM-R1); a single-axis sensor counts its other axis as 0;
* `crackOpeningAssessed` (mm): the same for the crack opening (SHM-R2);
* `vibrationPPVAssessed` (mm/s): the PPV as measured, with its dominant frequency (SHM-R3).

Each carries `compensation` (`thermal` | `none`) as a sub-property, and the datasetId of the
ladder that applies to the sensor (none for the default ladder; rules.py explains variants).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ucity.core.bus import EntityChange
from ucity.core.clock import parse_iso, to_iso
from ucity.core.errors import NotFound
from ucity.domains.facility_safety.config import AttributeNames
from ucity.domains.facility_safety.models import Sensor, iri, short
from ucity.domains.facility_safety.rules import ASSESSED, CRACK, TILT, VIBRATION
from ucity.domains.facility_safety.thermal import residual
from ucity.ngsild.model import find_instance, stamp_copy
from ucity.ngsild.ops import json_copy
from ucity.store.base import ApplyFn, Doc, Outcome

UNIT_CODES = {TILT: "C81", CRACK: "MMT", VIBRATION: "C16"}  # UN/CEFACT: radian, millimetre, millimetre per second


@dataclass(frozen=True, slots=True)
class Reading:
    """The numeric measures of one sensor at one instant (short attribute name -> value)."""

    at: datetime
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class Assessed:
    channel: str
    value: float
    at: datetime
    method: str  # thermal | none
    detail: dict[str, float] = field(default_factory=dict)


def readings_of(change: EntityChange, measured: frozenset[str], now: datetime) -> list[Reading]:
    """The readings a committed change carries, oldest first (instances grouped by observedAt)."""
    groups: dict[datetime, dict[str, float]] = {}
    for attr, instance in change.instances:
        name = short(attr)
        number = instance.get("value")
        if name not in measured or "datasetId" in instance or not _is_number(number):
            continue
        at = _time(instance, now)
        groups.setdefault(at, {})[name] = float(number)  # type: ignore[arg-type]  # checked above
    return [Reading(at, values) for at, values in sorted(groups.items())]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time(instance: dict[str, Any], now: datetime) -> datetime:
    text = instance.get("observedAt")
    try:
        return parse_iso(text) if isinstance(text, str) else now
    except ValueError:
        return now


def assess(sensor: Sensor, reading: Reading, temperature: float | None, names: AttributeNames
           ) -> tuple[list[Assessed], list[str]]:
    """The assessed values of one reading, and why a channel was left out (if one was)."""
    out: list[Assessed] = []
    skipped: list[str] = []
    v = reading.values
    if names.tilt_x in v or names.tilt_y in v:
        x = _axis(v.get(names.tilt_x), temperature, sensor, names.tilt_x)
        y = _axis(v.get(names.tilt_y), temperature, sensor, names.tilt_y)
        if x is None or y is None:
            skipped.append(f"{TILT}: thermal model needs the temperature")
        else:
            method = "thermal" if "thermal" in (x[1], y[1]) else "none"
            out.append(Assessed(TILT, math.hypot(x[0], y[0]), reading.at, method,
                                {"residualX": x[0], "residualY": y[0]}))
    if names.crack in v:
        r = residual(v[names.crack], temperature, sensor.models.get(names.crack))
        if r is None:
            skipped.append(f"{CRACK}: thermal model needs the temperature")
        else:
            out.append(Assessed(CRACK, r[0], reading.at, r[1]))
    if names.vibration in v:
        detail = {"dominantFrequency": v[names.frequency]} if names.frequency in v else {}
        out.append(Assessed(VIBRATION, v[names.vibration], reading.at, "none", detail))
    return out, skipped


def _axis(raw: float | None, temperature: float | None, sensor: Sensor, name: str) -> tuple[float, str] | None:
    if raw is None:
        return 0.0, "none"  # a single-axis sensor: the other axis does not lean
    return residual(raw, temperature, sensor.models.get(name))


def instance(a: Assessed, dataset_id: str | None) -> dict[str, Any]:
    """The stored form of an assessed value (expanded sub-property names)."""
    out: dict[str, Any] = {"type": "Property", "value": round(a.value, 9), "observedAt": to_iso(a.at),
                           "unitCode": UNIT_CODES[a.channel],
                           iri("compensation"): {"type": "Property", "value": a.method}}
    for name, number in a.detail.items():
        out[iri(name)] = {"type": "Property", "value": round(number, 9)}
    if dataset_id is not None:
        out["datasetId"] = dataset_id
    return out


def neutral(channel: str, at: datetime, dataset_id: str | None) -> dict[str, Any]:
    """A zero on a ladder a sensor leaves: clears that ladder's rule before its instance is removed.

    `at` must not be older than what that ladder's rule last evaluated: the rules engine ignores an older
    observation, and the old rule's alarm would stay active with nothing left to clear it (the domain writes
    the zero at the handover's time, README "Per building class and per facility").
    """
    return instance(Assessed(channel, 0.0, at, "none"), dataset_id)


def assessed_attr(channel: str) -> str:
    return iri(ASSESSED[channel])


def write_op(instances: Iterable[tuple[str, dict[str, Any]]], removals: Iterable[tuple[str, str | None]] = ()
             ) -> ApplyFn:
    """Record instances (in time order; the newest per datasetId becomes current) and drop stale ones.

    Every instance goes to history; one older than the current instance of its datasetId (a late
    reading) leaves the current state alone, as ingest does for late measures.
    """
    items, drops = list(instances), list(removals)

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            raise NotFound("the sensor entity no longer exists")
        doc: Doc = json_copy(before)
        history: list[tuple[str, dict[str, Any]]] = []
        for attr, inst in items:
            current = doc["attrs"].setdefault(attr, [])
            index = find_instance(current, inst.get("datasetId"))
            stamped = stamp_copy(inst, now, current[index] if index is not None else None)
            if index is None:
                current.append(stamped)
            elif str(current[index].get("observedAt") or "") <= str(inst.get("observedAt") or ""):
                current[index] = stamped
            history.append((attr, stamped))
        for attr, dataset_id in drops:
            _drop(doc, attr, dataset_id)
        doc["modifiedAt"] = now
        touched = frozenset(a for a, _ in items) | frozenset(a for a, _ in drops)
        return Outcome(doc, "update", touched, tuple(history), result="assessed")

    return apply


def _drop(doc: Doc, attr: str, dataset_id: str | None) -> None:
    current = doc["attrs"].get(attr)
    index = find_instance(current or [], dataset_id)
    if current is not None and index is not None:
        del current[index]
        if not current:
            del doc["attrs"][attr]
