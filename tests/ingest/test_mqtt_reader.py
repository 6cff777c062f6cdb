"""The MQTT source's own packet reader (`_Client._read_available`): a real paho client on one end of a
socket pair, MQTT packets written to the other end as a broker would.

QoS 0/1 PUBLISH packets become `Incoming` items in arrival order, whatever the chunks the bytes arrive
in; every other packet (PINGRESP, QoS 2 PUBLISH, ...) is paho's to handle, in its place in the stream;
a packet paho began reading before the reader took over is finished by paho; a broken stream or a
closed socket is a lost connection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho_mqtt
import pytest

from ucity.ingest import mqtt
from ucity.ingest.mqtt import Incoming, MqttSource, Topic, _Client, puback_packets


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, mid: int = 0, qos: int = 1, flags: int = 0) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | qos << 1 | flags]) + remaining_length(len(body)) + body


PINGRESP = b"\xd0\x00"


class Reader:
    """A `_Client` (never connected to a broker) whose paho socket is one end of a socket pair."""

    def __init__(self) -> None:
        self.delivered: list[Incoming] = []
        self.sunk: list[Any] = []  # paho messages (paho's own path)
        self.client = _Client("127.0.0.1", 1, sink=self.sunk.append, deliver=self.delivered.extend, generation=3)
        assert self.client.fast
        self.paho: Any = self.client._client
        self.ours, self.broker = socket.socketpair()
        self.ours.setblocking(False)
        self.paho._sock = self.ours
        self.lost: list[Any] = []
        self.paho._loop_rc_handle = self.lost.append  # what paho does on a lost connection: recorded

    def feed(self, data: bytes) -> None:
        self.broker.sendall(data)
        self.client._read_available(self.paho)

    def close(self) -> None:
        self.ours.close()
        self.broker.close()

    def messages(self) -> list[tuple[str, bytes, int, int]]:
        return [(m.topic, m.payload, m.mid, m.qos) for m in self.delivered]


@pytest.fixture
async def reader() -> Iterator[Reader]:  # async: aiomqtt's client wants the test's event loop
    r = Reader()
    yield r
    r.close()


STREAM = [
    (b"/k/d1/attrs", b'{"t": 1}', 1, 1),
    (b"/k/d2/attrs", b"x" * 200, 2, 1),  # remaining length in two bytes
    (b"/k/d3/attrs/t", b"21.5", 0, 0),  # QoS 0
    (b"/json/k/d1/attrs", b"y" * 20_000, 65535, 1),  # remaining length in three bytes
    (b"/k/d1/attrs", b"", 7, 1),  # an empty payload
]


async def test_publish_packets_become_incoming_items_in_order_whatever_the_chunks(reader: Reader) -> None:
    data = b"".join(publish(t, p, mid, qos) for t, p, mid, qos in STREAM)
    expected = [(t.decode(), p, mid, qos) for t, p, mid, qos in STREAM]
    for step in (1, 2, 3, 7, 150, 4096, len(data)):
        reader.delivered.clear()
        for start in range(0, len(data), step):
            reader.feed(data[start:start + step])
        assert reader.messages() == expected, step
        assert all(m.generation == 3 for m in reader.delivered)
    assert not reader.lost and not reader.sunk


async def test_a_packet_larger_than_a_chunk_is_joined_once_complete(reader: Reader) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: four bytes of remaining length
    data = publish(b"/k/d1/attrs", big, 1) + publish(b"/k/d2/attrs", b"2", 2)
    for start in range(0, len(data), 65536):
        reader.feed(data[start:start + 65536])
    assert reader.messages() == [("/k/d1/attrs", big, 1, 1), ("/k/d2/attrs", b"2", 2, 1)]


async def test_retain_and_dup_flags_do_not_matter_and_the_broker_counts_as_heard_from(reader: Reader) -> None:
    reader.paho._last_msg_in = 0.0
    reader.feed(publish(b"/k/d1/attrs", b"{}", 9, 1, flags=0x09))
    assert reader.messages() == [("/k/d1/attrs", b"{}", 9, 1)]
    assert reader.paho._last_msg_in > 0.0  # keepalive: paho does not ping a broker it just heard from


async def test_other_packets_go_to_paho_in_their_place(reader: Reader, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, bytes, int]] = []
    handle = reader.paho._packet_handle

    def recorded() -> Any:
        packet = reader.paho._in_packet
        seen.append((packet["command"], packet["remaining_length"], bytes(packet["packet"]), len(reader.delivered)))
        return handle() if packet["command"] == PINGRESP[0] else paho_mqtt.MQTT_ERR_SUCCESS  # no PUBREC sent here

    monkeypatch.setattr(reader.paho, "_packet_handle", recorded)
    reader.paho._ping_t = 123.0  # a PINGREQ is waiting for its answer
    reader.feed(publish(b"/k/d1/attrs", b"1", 1) + PINGRESP + publish(b"/k/d2/attrs", b"2", 2))
    assert seen == [(0xD0, 0, b"", 1)]  # handed over after the message before it was delivered
    assert reader.paho._ping_t == 0  # paho handled it
    assert reader.paho._in_packet["command"] == 0  # and paho's read state is clean again
    assert reader.messages() == [("/k/d1/attrs", b"1", 1, 1), ("/k/d2/attrs", b"2", 2, 1)]

    qos2 = publish(b"/k/d1/attrs", b"3", 5, qos=2)
    reader.feed(qos2)
    assert seen[-1] == (qos2[0], len(qos2) - 2, qos2[2:], 2)  # QoS 2 needs paho's PUBREC/PUBREL exchange
    assert len(reader.delivered) == 2


async def test_a_topic_that_is_not_utf8_is_kept_with_replacement_characters(reader: Reader) -> None:
    reader.feed(publish(b"/k/\xffd/attrs", b"{}", 4))
    assert reader.messages() == [("/k/\ufffdd/attrs", b"{}", 4, 1)]  # rejected later as an unknown device


async def test_a_remaining_length_of_more_than_four_bytes_is_a_protocol_error(reader: Reader) -> None:
    reader.feed(b"\x32\xff\xff\xff\xff\x01")
    assert reader.lost == [paho_mqtt.MQTT_ERR_PROTOCOL]


async def test_a_closed_connection_is_lost(reader: Reader) -> None:
    reader.broker.close()
    reader.client._read_available(reader.paho)
    assert reader.lost == [paho_mqtt.MQTT_ERR_CONN_LOST]


async def test_a_packet_paho_began_is_finished_by_paho_then_the_reader_goes_on(reader: Reader) -> None:
    first = publish(b"/k/d1/attrs", b'{"t": 1}', 1)
    reader.broker.sendall(first[:5])
    assert reader.paho._packet_read() == paho_mqtt.MQTT_ERR_AGAIN  # paho's own read, one packet at a time
    assert reader.paho._in_packet["command"] == first[0]
    reader.feed(first[5:] + publish(b"/k/d2/attrs", b"2", 2))
    assert [(m.topic, m.payload, m.mid) for m in reader.sunk] == [("/k/d1/attrs", b'{"t": 1}', 1)]
    assert reader.messages() == [("/k/d2/attrs", b"2", 2, 1)]


async def test_nothing_kept_from_a_previous_connection(reader: Reader) -> None:
    reader.feed(publish(b"/k/d1/attrs", b"1", 1)[:6])  # half a packet, then the connection is replaced
    new_ours, new_broker = socket.socketpair()
    new_ours.setblocking(False)
    reader.ours.close()
    reader.broker.close()
    reader.ours, reader.broker = new_ours, new_broker
    reader.paho._sock = new_ours
    reader.feed(publish(b"/k/d2/attrs", b"2", 2))
    assert reader.messages() == [("/k/d2/attrs", b"2", 2, 1)]


def test_puback_packets_of_many_ids() -> None:
    mids = [1, 255, 256, 65535]
    assert puback_packets(mids) == b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
    assert puback_packets([]) == b""


def test_parsed_topics_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "TOPIC_CACHE", 2)
    source = MqttSource.__new__(MqttSource)  # only its topic memory is used here
    source._topics = {}
    names = ["/k/d1/attrs", "/json/k/d2/attrs/t", "/k/d3/cmd", "/k/d1/attrs"]
    assert [source._parse_topic(name) for name in names] == [mqtt.parse_topic(name) for name in names]
    assert source._parse_topic("/k/d1/attrs") == Topic("k", "d1", "attrs")
    assert source._parse_topic("/k/d3/cmd") is None  # not one of ours, remembered as such
    assert len(source._topics) <= 2
