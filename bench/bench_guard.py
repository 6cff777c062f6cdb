"""The token guard's cost (`server.require_auth`, ucity/access.py): NGSI-LD PATCH of one attribute through
the whole ASGI app, in process (no sockets, so the guard's share is not hidden in HTTP parsing), with the guard
off (the embedded default: one test of None per request) and on (a bearer token checked per request).

Baseline, in the same run: the same requests with the guard off. Rounds alternate off and on, and the
figure is CPU-µs per request over the whole process (the store's writer thread included), best round of each.
The other benchmarks run without the guard, as the embedded default has none.

    python bench/bench_guard.py [--quick] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as c
import orjson

TOKEN = "b" * 43
ENTITIES = 100


async def patch_rounds(app: Any, count: int, token: str | None) -> float:
    """CPU seconds per PATCH of `count` requests spread over the entities, sent 16 at a time."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))

    async def one(n: int) -> None:
        body = orjson.dumps({"type": "Property", "value": n % 97})
        path = f"/ngsi-ld/v1/entities/urn:ngsi-ld:Device:g{n % ENTITIES}/attrs/temperature"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PATCH",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [*headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        sent: list[dict[str, Any]] = []
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return chunks.pop() if chunks else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        status = sent[0]["status"]
        if status != 204:
            raise SystemExit(f"PATCH answered {status}: {sent[1:2]}")

    start = time.process_time()
    for base in range(0, count, 16):
        await asyncio.gather(*(one(n) for n in range(base, min(count, base + 16))))
    return (time.process_time() - start) / count


async def measure(args: Any, data_dir: Path, guarded: bool) -> tuple[float, ...]:
    from ucity.core.config import load_settings
    from ucity.server import create_app

    settings = load_settings(environment="production", data_dir=str(data_dir / ("on" if guarded else "off")),
                             log_level="WARNING", store={"url": c.store_url(args, data_dir / ("on" if guarded else "off"))},
                             server={"require_auth": guarded},
                             ops={"tokens": [{"id": "bench", "role": "operator", "token": TOKEN}]})
    app = create_app(settings)
    count = 1000 if args.quick else 10_000
    events: list[dict[str, Any]] = [{"type": "lifespan.startup"}]
    started, stopping = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        if events:
            return events.pop()
        await stopping.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await started.wait()
    try:
        ucity = app.state.ucity
        from ucity.core.bus import Context
        from ucity.ngsild import ops
        from ucity.store.base import Mutation

        entities = [Mutation(f"urn:ngsi-ld:Device:g{i}", ops.create_op({
            "id": f"urn:ngsi-ld:Device:g{i}", "type": ["https://uri.etsi.org/ngsi-ld/default-context/Device"],
            "attrs": {"https://uri.etsi.org/ngsi-ld/default-context/temperature": [{"type": "Property", "value": 0}]}}))
            for i in range(ENTITIES)]
        await ucity.store.mutate(settings.ngsild.default_tenant, entities, Context(actor="bench"))
        token = TOKEN if guarded else None
        await patch_rounds(app, count // 5, token)  # warm-up
        return tuple([await patch_rounds(app, count, token) for _ in range(3)])
    finally:
        stopping.set()
        await life


def main() -> None:
    p = c.parser(__doc__ or "")
    args = p.parse_args()
    report = c.Report(f"Token guard ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    with c.temp_dir("ucity-bench-guard-") as data_dir:
        off: list[float] = []
        on: list[float] = []
        for round_ in range(2):  # alternated, so a slow phase of the machine falls on both
            off += asyncio.run(measure(args, data_dir / f"r{round_}", False))
            on += asyncio.run(measure(args, data_dir / f"r{round_}", True))
    best_off, best_on = min(off) * 1e6, min(on) * 1e6
    report.add(c.Row("NGSI-LD PATCH in process, guard on", best_on, "CPU-us per request", best_off,
                     "the same with the guard off", note=f"+{best_on - best_off:.1f} CPU-us"))
    report.note("rounds (CPU-us per request): off " + ", ".join(f"{x * 1e6:.1f}" for x in off)
                + "; on " + ", ".join(f"{x * 1e6:.1f}" for x in on))
    report.print()


if __name__ == "__main__":
    main()
