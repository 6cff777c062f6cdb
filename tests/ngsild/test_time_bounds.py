"""NGSI-LD date-time validation against the range ucity stores (clock.MIN_INSTANT..MAX_INSTANT in UTC):
observedAt / expiresAt beyond it are 400, stored subscriptions written before the range still load,
and temporal query bounds beyond it select from the range's ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ucity.core.clock import MAX_INSTANT, MIN_INSTANT, to_micros
from ucity.core.errors import BadRequest
from ucity.ngsild.model import normalize_time
from ucity.ngsild.subscriptions import status_of
from ucity.ngsild.temporal import parse_time

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00", "9999-12-31T23:59:59Z"])
def test_observed_at_and_expires_at_out_of_range_are_bad_requests(text: str) -> None:
    for member in ("observedAt", "expiresAt"):
        with pytest.raises(BadRequest, match="out of range") as raised:
            normalize_time(text, member)
        assert raised.value.detail.startswith(member)
        with pytest.raises(BadRequest):  # not remembered as valid by the first attempt
            normalize_time(text, member)


def test_valid_times_are_normalized_and_garbage_keeps_its_message() -> None:
    assert normalize_time("2026-12-06T09:00:00+09:00", "observedAt") == "2026-12-06T00:00:00.000000Z"
    assert normalize_time("9998-12-31T23:59:59.999999Z", "observedAt") == "9998-12-31T23:59:59.999999Z"
    with pytest.raises(BadRequest, match="is not a valid ISO 8601 date-time"):
        normalize_time("yesterday", "observedAt")


def test_a_subscription_stored_before_the_range_still_loads() -> None:
    assert status_of({"expiresAt": "9999-12-31T23:59:59.000000Z"}, NOW) == "active"
    assert status_of({"expiresAt": "2026-01-01T00:00:00.000000Z"}, NOW) == "expired"


def test_temporal_bounds_beyond_the_range_are_its_ends() -> None:
    assert parse_time("0001-01-01T00:00:00+09:00", "timeAt") == to_micros(MIN_INSTANT)
    assert parse_time("9999-12-31T23:59:59Z", "timeAt") == to_micros(MAX_INSTANT)
    with pytest.raises(BadRequest):
        parse_time("soon", "timeAt")
