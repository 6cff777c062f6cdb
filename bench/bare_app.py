"""The baselines of the HTTP benchmarks: the same HTTP server (uvicorn with uvloop and httptools)
answering with no work behind the endpoint.

`BARE=fastapi` (default): a FastAPI app whose routes read the body and answer, as ucity's routes
would without their handlers; `BARE=asgi`: a raw ASGI callable, the server's own ceiling.
Run as `uvicorn bare_app:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request, Response


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 200 if scope["path"] == "/iot/json" else 204
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


bare = FastAPI()


@bare.patch("/ngsi-ld/v1/entities/{entity_id:path}/attrs/{attr}")
async def patch_attr(entity_id: str, attr: str, request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


@bare.post("/ngsi-ld/v1/entityOperations/upsert")
async def upsert(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


@bare.post("/iot/json")
async def measure(request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


app: Any = raw if os.environ.get("BARE") == "asgi" else bare
