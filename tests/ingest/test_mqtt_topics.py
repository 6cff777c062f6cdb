"""Pure parts of the MQTT source: topics, backoff, broker URLs (the broker itself: tests/integration)."""

from __future__ import annotations

import pytest

from ucity.core.config import load_settings
from ucity.ingest.mqtt import Broker, Topic, backoff_delay, parse_topic, topic_filters


@pytest.mark.parametrize(("topic", "expected"), [
    ("/k1/d1/attrs", Topic("k1", "d1", "attrs")),
    ("/k1/d1/attrs/t", Topic("k1", "d1", "attrs", "t")),
    ("/json/k1/d1/attrs", Topic("k1", "d1", "attrs")),
    ("/json/k1/d1/attrs/t", Topic("k1", "d1", "attrs", "t")),
    ("/k1/d1/cmdexe", Topic("k1", "d1", "cmdexe")),
    ("/json/d1/attrs", Topic("json", "d1", "attrs")),  # apikey "json" still works without the prefix
    ("/k1/d1/cmd", None),
    ("k1/d1/attrs", None),
    ("/k1//attrs", None),
    ("/k1/d1/attrs/", None),
    ("/a/b/c/d/e/f", None),
])
def test_parse_topic(topic: str, expected: Topic | None) -> None:
    assert parse_topic(topic) == expected


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    for attempt, step in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (100, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, 30.0) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered, so reconnecting clients do not stampede together


def test_broker_url_and_credentials_are_never_shown() -> None:
    broker = Broker.from_url("mqtt://user:s%40cret@broker.local:1884")
    assert (broker.host, broker.port, broker.username, broker.password, broker.tls) == (
        "broker.local", 1884, "user", "s@cret", False)
    assert str(broker) == "mqtt://broker.local:1884"
    assert Broker.from_url("mqtts://h").port == 8883


def test_mqtt_settings() -> None:
    assert load_settings().mqtt.url == ""  # off by default
    with pytest.raises(ValueError, match="mqtt://"):
        load_settings(mqtt={"url": "http://x"})


def test_shared_subscriptions_share_every_filter_and_still_parse() -> None:
    assert topic_filters() == ["/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+", "/+/+/cmdexe",
                               "/json/+/+/cmdexe"]
    assert topic_filters("ucity") == ["$share/ucity//+/+/attrs", "$share/ucity//+/+/attrs/+",
                                      "$share/ucity//json/+/+/attrs", "$share/ucity//json/+/+/attrs/+",
                                      "$share/ucity//+/+/cmdexe", "$share/ucity//json/+/+/cmdexe"]
    # The broker delivers with the publish topic, not the filter: parsing is unchanged.
    assert parse_topic("/k1/d1/attrs") == Topic("k1", "d1", "attrs")

