"""The load generator: a separate process, so that ucity's figures are not its own.

Modes (the last stdout line is a JSON result that includes this process's own CPU share):

* `http`: HTTP/1.1 keep-alive connections on raw asyncio sockets (uvloop), each sending the next
  request of a plan as soon as its previous response is complete (closed loop), or at a fixed
  total `--rate` (open loop; latency then counts from the scheduled send time, so a stalled
  server is not hidden). Requests are encoded once before the clock starts.
* `mqtt`: an MQTT 3.1.1 publisher writing pre-encoded QoS 1 PUBLISH packets with a window of
  unacknowledged ones.
* `latency`: sends device measures at a steady rate over HTTP while receiving NGSI-LD
  notifications (its own small HTTP server) and the alarm SSE stream; a sequence number in each
  measure gives write -> notification and write -> alarm latencies on one clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from collections.abc import Callable
from datetime import datetime
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: Any, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))])


def encode_request(method: str, target: str, headers: dict[str, str], body: bytes, host: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- HTTP client -------------------------------------------------------------------------------------
class HttpConn(asyncio.Protocol):
    """One keep-alive connection; `request` resolves with the status of the complete response."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        status = int(head[9:12])
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        total = end + 4 + length
        if len(self.buf) < total:
            return
        del self.buf[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def request(self, raw: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_event_loop().create_future()
        if self.transport.is_closing():  # the server closed it (e.g. after an error response)
            self.waiter.set_exception(ConnectionError("connection closed"))
            return self.waiter
        self.transport.write(raw)
        return self.waiter


async def connect(host: str, port: int) -> HttpConn:
    _, proto = await asyncio.get_event_loop().create_connection(HttpConn, host, port)
    return proto


async def run_http(args: argparse.Namespace) -> dict[str, Any]:
    plan: list[bytes] = []
    with open(args.plan) as fh:
        for line in fh:
            method, target, headers, body = json.loads(line)
            plan.append(encode_request(method, target, headers, body.encode(), f"{args.host}:{args.port}"))
    conns = [await connect(args.host, args.port) for _ in range(args.connections)]
    count = args.count or 10**12
    deadline_s = args.duration or 10**9
    latencies = array("d")
    statuses: dict[int, int] = {}
    next_index = 0
    errors = 0
    interval = args.connections / args.rate if args.rate else 0.0

    async def worker(n: int, conn: HttpConn) -> None:
        nonlocal next_index, errors
        scheduled = t0 + n * (interval / args.connections) if interval else 0.0
        while next_index < count and time.perf_counter() - t0 < deadline_s:
            raw = plan[next_index % len(plan)]
            next_index += 1
            if interval:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                start = scheduled
                scheduled += interval
            else:
                start = time.perf_counter()
            try:
                status = await conn.request(raw)
            except ConnectionError:
                errors += 1
                return
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1

    cpu0 = cpu_now()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n, c) for n, c in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_now() - cpu0
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    done = len(latencies)
    return {"requests": done, "elapsed_s": elapsed, "rps": done / elapsed, "statuses": statuses, "errors": errors,
            "p50_ms": pct(latencies, 50) * 1e3, "p99_ms": pct(latencies, 99) * 1e3,
            "max_ms": max(latencies, default=0) * 1e3, "cpu_share": cpu / elapsed}


# -- MQTT publisher -----------------------------------------------------------------------------------
def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect(client_id: str) -> bytes:
    body = _mqtt_str("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + _mqtt_str(client_id)
    return b"\x10" + _varlen(len(body)) + body


def mqtt_publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _mqtt_str(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varlen(len(body)) + body


class MqttPub(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.acked = 0
        self.connected = asyncio.get_event_loop().create_future()
        self.progress: asyncio.Event = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            kind = self.buf[0] >> 4
            size = self.buf[1]  # CONNACK and PUBACK are 2 + 2 bytes
            if len(self.buf) < 2 + size:
                return
            del self.buf[:2 + size]
            if kind == 2 and not self.connected.done():
                self.connected.set_result(None)
            elif kind == 4:
                self.acked += 1
                self.progress.set()


async def run_mqtt(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.messages) as fh:
        messages = [json.loads(line) for line in fh]
    packets = [mqtt_publish(topic, payload.encode(), n % 65535 + 1) for n, (topic, payload) in enumerate(messages)]
    transport, proto = await asyncio.get_event_loop().create_connection(MqttPub, args.host, args.port)
    transport.write(mqtt_connect(args.client_id))
    await proto.connected
    cpu0 = cpu_now()
    start_wall = time.time()
    t0 = time.perf_counter()
    sent = 0
    while sent < len(packets):
        while sent - proto.acked >= args.window:
            proto.progress.clear()
            await proto.progress.wait()
        chunk = packets[sent:sent + min(args.window - (sent - proto.acked), 500)]
        transport.write(b"".join(chunk))
        sent += len(chunk)
        await asyncio.sleep(0)
    while proto.acked < len(packets):
        proto.progress.clear()
        await proto.progress.wait()
    elapsed = time.perf_counter() - t0
    cpu = cpu_now() - cpu0
    transport.write(b"\xe0\x00")  # DISCONNECT
    transport.close()
    return {"messages": len(packets), "elapsed_s": elapsed, "rate": len(packets) / elapsed, "start": start_wall,
            "cpu_share": cpu / elapsed}


# -- latency: steady measures, notifications and the alarm stream ------------------------------------
class Receiver(asyncio.Protocol):
    """A minimal HTTP server for notifications: answers 204 and hands each body to `on_body`."""

    def __init__(self, on_body: Callable[[bytes], None]) -> None:
        self.buf = bytearray()
        self.on_body = on_body
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15:stop if stop > 0 else None]) if at >= 0 else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4:total])
            del self.buf[:total]
            self.on_body(body)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


async def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    sent_at: dict[int, float] = {}
    notif = array("d")
    alarm = array("d")
    # Where the time goes, split at a server timestamp (wall clock, on this machine's clock):
    # notifications at `notifiedAt` (queued for delivery), alarms at `raised_at` (decided).
    notif_queued, notif_sent = array("d"), array("d")
    alarm_decided, alarm_shown = array("d"), array("d")
    alarm_seq = array("q")  # diagnostics: which storm each alarm sample belongs to
    wall_offset = time.time() - time.perf_counter()
    loop = asyncio.get_event_loop()

    def server_time(text: Any) -> float | None:
        """A server ISO timestamp on this process's perf_counter scale."""
        if not isinstance(text, str):
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - wall_offset
        except ValueError:
            return None

    posts = [0]

    def on_notification(body: bytes) -> None:
        now = time.perf_counter()
        posts[0] += 1
        doc = json.loads(body)
        queued = server_time(doc.get("notifiedAt"))
        for entity in doc.get("data", ()):
            seq = entity.get("seq")
            seq = seq.get("value") if isinstance(seq, dict) else seq
            if isinstance(seq, (int, float)) and int(seq) in sent_at:
                sent = sent_at[int(seq)]
                notif.append(now - sent)
                if queued is not None:
                    notif_queued.append(queued - sent)
                    notif_sent.append(now - queued)

    server = await loop.create_server(lambda: Receiver(on_notification), "127.0.0.1", args.receiver_port)

    async def sse() -> None:
        reader, writer = await asyncio.open_connection(args.host, args.port)
        writer.write(f"GET /api/v1/stream HTTP/1.1\r\nhost: {args.host}\r\naccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            now = time.perf_counter()
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    start = line.find(b"data: ")
                    if start >= 0 and (b"alarm.raised" in event or b"alarm.reactivated" in event):
                        try:
                            data = json.loads(line[start + 6:])
                        except ValueError:
                            continue
                        value = _evidence_value(data)
                        if value is not None and int(value) - 1_000_000 in sent_at:
                            sent = sent_at[int(value) - 1_000_000]
                            alarm.append(now - sent)
                            alarm_seq.append(int(value) - 1_000_000)
                            decided = server_time(data.get("updated_at") if isinstance(data, dict) else None)
                            if decided is not None:
                                alarm_decided.append(decided - sent)
                                alarm_shown.append(now - decided)

    sse_task = asyncio.create_task(sse())
    await asyncio.sleep(0.5)
    conn = await connect(args.host, args.port)
    conns = [conn] + [await connect(args.host, args.port) for _ in range(args.connections - 1)]
    host = f"{args.host}:{args.port}"
    devices, attrs, rate = args.devices, args.attrs, args.rate  # rate: observations/s
    per_request = attrs
    interval = per_request / rate
    total = int(args.duration * rate / per_request)
    cpu0 = cpu_now()
    t0 = time.perf_counter()
    pending: set[asyncio.Future[int]] = set()
    free = list(conns)
    waiting: asyncio.Event = asyncio.Event()
    statuses: dict[int, int] = {}
    late = 0
    reconnects = 0

    def done_cb(c: HttpConn) -> Callable[[asyncio.Future[int]], None]:
        def cb(f: asyncio.Future[int]) -> None:
            pending.discard(f)
            free.append(c)
            waiting.set()
            if f.exception() is None:
                statuses[f.result()] = statuses.get(f.result(), 0) + 1
            else:
                statuses[0] = statuses.get(0, 0) + 1  # no response: the connection was lost
        return cb

    for seq in range(total):
        due = t0 + seq * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        while not free:
            waiting.clear()
            await waiting.wait()
        device = seq % devices
        # every `alarm_every`-th measure of a device raises (value 1e6 + seq), the next one clears
        raising = args.alarm_every and (seq // devices) % args.alarm_every == 0
        level = 1_000_000 + seq if raising else 0
        body = {"seq": seq, "level": level}
        for k in range(attrs - 2):
            body[f"a{k}"] = (seq * 7 + k) % 100
        raw = encode_request("POST", f"/iot/json?k={args.apikey}&i=dev{device}",
                             {"content-type": "application/json"}, json.dumps(body).encode(), host)
        c = free.pop()
        if c.transport is None or c.transport.is_closing():
            c = await connect(args.host, args.port)
            reconnects += 1
        sent_at[seq] = time.perf_counter()
        fut = c.request(raw)
        pending.add(fut)
        fut.add_done_callback(done_cb(c))
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    cpu = cpu_now() - cpu0
    await asyncio.sleep(args.settle)
    sse_task.cancel()
    server.close()
    return {"sent": total, "elapsed_s": elapsed, "obs_rate": total * per_request / elapsed, "late_sends": late,
            "reconnects": reconnects,
            "statuses": statuses, "cpu_share": cpu / elapsed,
            "notifications": len(notif), "notification_posts": posts[0],
            "notif_p50_ms": pct(notif, 50) * 1e3, "notif_p99_ms": pct(notif, 99) * 1e3,
            "notif_max_ms": max(notif, default=float("nan")) * 1e3,
            "alarms": len(alarm), "alarm_p50_ms": pct(alarm, 50) * 1e3, "alarm_p99_ms": pct(alarm, 99) * 1e3,
            "alarm_max_ms": max(alarm, default=float("nan")) * 1e3,
            "breakdown": {name: {"p50_ms": pct(values, 50) * 1e3, "p99_ms": pct(values, 99) * 1e3}
                          for name, values in (("notif_write_to_queued", notif_queued),
                                               ("notif_queued_to_received", notif_sent),
                                               ("alarm_write_to_decided", alarm_decided),
                                               ("alarm_decided_to_sse", alarm_shown))},
            "storms": _storms(alarm, alarm_seq, args.devices)}


def _storms(alarm: Any, seqs: Any, devices: int) -> list[dict[str, Any]]:
    """Diagnostics: the alarm latencies of each storm (round of `devices` measures) apart."""
    by: dict[int, list[float]] = {}
    for latency, seq in zip(alarm, seqs, strict=True):
        by.setdefault(seq // devices, []).append(latency)
    return [{"round": r, "samples": len(v), "p50_ms": pct(v, 50) * 1e3, "p99_ms": pct(v, 99) * 1e3,
             "max_ms": max(v) * 1e3} for r, v in sorted(by.items())]


def _evidence_value(data: Any) -> float | None:
    """The triggering value of an alarm event, wherever the alarm document keeps its evidence."""
    if isinstance(data, dict):
        ev = data.get("evidence")
        if isinstance(ev, dict) and isinstance(ev.get("value"), (int, float)):
            return float(ev["value"])
        for value in data.values():
            found = _evidence_value(value)
            if found is not None:
                return found
    elif isinstance(data, list):
        for value in data:
            found = _evidence_value(value)
            if found is not None:
                return found
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("http")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--plan", required=True)
    h.add_argument("--connections", type=int, default=32)
    h.add_argument("--count", type=int, default=0)
    h.add_argument("--duration", type=float, default=0)
    h.add_argument("--rate", type=float, default=0)
    m = sub.add_parser("mqtt")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--messages", required=True)
    m.add_argument("--window", type=int, default=5000)
    m.add_argument("--client-id", default="ucity-bench-pub")
    lat = sub.add_parser("latency")
    lat.add_argument("--host", default="127.0.0.1")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--receiver-port", type=int, required=True)
    lat.add_argument("--apikey", required=True)
    lat.add_argument("--devices", type=int, default=1000)
    lat.add_argument("--attrs", type=int, default=4)
    lat.add_argument("--rate", type=float, default=5000)
    lat.add_argument("--duration", type=float, default=20)
    lat.add_argument("--connections", type=int, default=64)
    lat.add_argument("--alarm-every", type=int, default=10)
    lat.add_argument("--settle", type=float, default=2.0)
    args = p.parse_args()
    if uvloop is not None:
        uvloop.install()
    runner = {"http": run_http, "mqtt": run_mqtt, "latency": run_latency}[args.mode]
    result = asyncio.run(runner(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
