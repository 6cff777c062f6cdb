"""FIX-B: the simulator registers its cameras' stream URLs with `PATCH /api/v1/cameras`, 1,000 a request (5 for the
city's 4,100, not 4,100), counts the items the server did not take, and falls back to one PATCH per camera on a
server without the bulk route. Against a fake server (httpx MockTransport); tests/sim/test_token.py runs it against
a real ucity."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from ucity.sim.client import CAMERA_URL_BATCH, CityApi
from ucity.sim.iota import IotaConfig


def _urls(count: int) -> list[tuple[str, str]]:
    return [(f"guro-cam-{i}", f"rtsp://vms.guro.example/live/cam-{i}") for i in range(count)]


async def test_the_urls_go_in_batches_and_refused_items_are_not_counted() -> None:
    calls: list[tuple[str, str, Any]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        calls.append((request.method, request.url.path, body))
        results = [{"index": i, "id": item["id"], "status": "updated"} for i, item in enumerate(body["cameras"])]
        results[0] = {**results[0], "status": "failed", "reasons": [{"code": "not-found", "ko": "카메라 없음",
                                                                       "en": "the camera does not exist"}]}
        return httpx.Response(207, json={"updated": len(results) - 1, "unchanged": 0, "failed": 1, "results": results})

    seen: list[int] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve), base_url="http://ucity.test") as client:
        done = await CityApi(client, IotaConfig(), tenant="guro").set_camera_urls(_urls(2_500), seen.append)
    assert [(method, path) for method, path, _ in calls] == [("PATCH", "/api/v1/cameras")] * 3
    assert sorted(len(body["cameras"]) for _, _, body in calls) == [500, CAMERA_URL_BATCH, CAMERA_URL_BATCH]
    assert calls[0][2]["cameras"][0] in [{"id": i, "streamURL": u} for i, u in _urls(2_500)]
    assert done == 2_500 - 3 and sum(seen) == 2_500


async def test_a_server_without_the_bulk_route_gets_one_patch_per_camera() -> None:
    paths: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/api/v1/cameras":
            return httpx.Response(405, json={"title": "Method Not Allowed", "status": 405})
        return httpx.Response(200, json={"streamURL": orjson.loads(request.content)["streamURL"]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve), base_url="http://ucity.test") as client:
        done = await CityApi(client, IotaConfig()).set_camera_urls(_urls(3))
    assert done == 3
    assert paths == ["/api/v1/cameras", "/api/v1/cameras/guro-cam-0", "/api/v1/cameras/guro-cam-1",
                     "/api/v1/cameras/guro-cam-2"]
