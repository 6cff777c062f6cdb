"""The dashboard's server side: the page in both languages, its static files, Leaflet from
xstatic-leaflet, the message catalogues, and the privacy-masked care areas through HTTP."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ucity.core.http import Req, Resp
from ucity.web import i18n
from ucity.web.care import CareAreas, cell_degrees, mask
from ucity.web.routes import STATIC, content_security_policy, page_config
from ucity.web.settings import OSM_TILES, WebSettings

WEB = Path(i18n.__file__).parent


def config_of(html: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="ucity-config">(.*?)</script>', html, re.S)
    assert match, "the page carries its configuration"
    body: dict[str, object] = json.loads(match.group(1))
    return body


def test_the_page_is_korean_by_default_and_english_on_request(client: TestClient) -> None:
    korean = client.get("/")
    assert korean.status_code == 200 and korean.headers["content-type"].startswith("text/html")
    assert '<html lang="ko">' in korean.text and "통합관제" in korean.text and "알람" in korean.text
    assert config_of(korean.text)["lang"] == "ko"
    english = client.get("/", params={"lang": "en"})
    markup = re.sub(r"<script .*?</script>", "", english.text, flags=re.S)  # both catalogues travel in the config
    assert '<html lang="en">' in markup and ">Alarms<" in markup and not re.search("[가-힣]", markup.replace("한국어", ""))
    client.cookies.set(i18n.COOKIE, "en")
    assert '<html lang="en">' in client.get("/").text  # the language switch's cookie
    assert '<html lang="ko">' in client.get("/", params={"lang": "ko"}).text  # the query wins


def test_the_page_is_locked_down_and_ships_both_catalogues(client: TestClient) -> None:
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "https://tile.openstreetmap.org" in csp
    config = config_of(response.text)
    assert config["tileUrl"] == OSM_TILES and config["careAreas"] == "/api/v1/dashboard/care-areas"
    messages = config["messages"]
    assert isinstance(messages, dict) and messages["en"]["tab.alarms"] == "Alarms" and messages["ko"]["tab.alarms"] == "알람"


def test_static_files_and_leaflet_from_xstatic(client: TestClient) -> None:
    main = client.get("/static/js/main.js")
    assert main.status_code == 200 and "javascript" in main.headers["content-type"]
    leaflet = client.get("/static/vendor/leaflet/leaflet-src.esm.js")
    assert leaflet.status_code == 200 and "export" in leaflet.text and "1.9" in leaflet.text
    assert client.get("/static/vendor/leaflet/leaflet.css").status_code == 200
    assert client.get("/static/css/dashboard.css").status_code == 200
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg")
    assert client.get("/static/js/nothing.js").status_code == 404


def test_no_tiles_means_a_plain_background(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_WEB__TILE_URL", "none")
    web = WebSettings()
    assert web.tile_url == "" and page_config(web, "ko")["tileUrl"] == ""
    assert "img-src 'self' data:;" in content_security_policy("")
    assert "https://*.tile.example" in content_security_policy("https://{s}.tile.example/{z}/{x}/{y}.png")


def test_catalogues_have_the_same_keys_and_cover_every_key_used() -> None:
    ko, en = i18n.catalogue("ko"), i18n.catalogue("en")
    assert set(ko) == set(en)
    assert all(value.strip() for value in [*ko.values(), *en.values()])
    template = (WEB / "templates" / "index.html").read_text()
    used = set(re.findall(r"data-i18n=\"([\w.-]+)\"", template)) | set(re.findall(r"t\('([\w.-]+)'\)", template))
    used |= {key for pair in re.findall(r'data-i18n-attr="([^"]+)"', template) for key in re.findall(r":([\w.-]+)", pair)}
    for script in (STATIC / "js").glob("*.js"):
        used |= set(re.findall(r"\bt\('([\w.-]+)'", script.read_text()))
        used |= set(re.findall(r"\bkey: '([\w.-]+)'", script.read_text()))  # the sign-in's {key, vars} messages
    dynamic = {k for k in used if "{" in k}
    missing = sorted(k for k in used - dynamic if k not in ko and "+" not in k)
    assert not missing, f"keys used but not in the catalogue: {missing}"
    for prefix, names in (("live.", ("connecting", "open", "reconnecting", "closed", "denied")),
                          ("level.", ("interest", "caution", "warning", "serious", "fault")),
                          ("status.", ("active-unacknowledged", "active-acknowledged", "cleared-unacknowledged",
                                       "cleared-acknowledged", "closed")),
                          ("outcome.", ("real", "false-user", "false-device", "test", "duplicate"))):
        assert all(prefix + n in ko for n in names)


def test_translate_falls_back_to_korean_then_the_key() -> None:
    assert i18n.translate("en", "tab.health") == "System health"
    assert i18n.translate("en", "no.such.key") == "no.such.key"
    assert i18n.choose("fr", None, "ko") == "ko" and i18n.choose(None, "en", "ko") == "en"


# -- care households: counts per grid cell, never a point ------------------------------------------
def test_mask_counts_homes_per_cell_and_hides_small_counts() -> None:
    dlon, dlat = cell_degrees(300.0, 37.5)
    assert math.isclose(dlat * 111_320, 300.0) and math.isclose(dlon * 111_320 * math.cos(math.radians(37.5)), 300.0)
    base = (math.floor(126.85 / dlon) + 0.5) * dlon, (math.floor(37.49 / dlat) + 0.5) * dlat  # a cell's centre
    crowded = [(base[0] + i * 1e-5, base[1]) for i in range(4)]
    lonely = [(base[0] + 3 * dlon, base[1])]
    body = mask([*crowded, *lonely], 300.0, 3)
    assert body["total"] == 5 and body["cellDegrees"] == [dlon, dlat]
    cells = {f["properties"]["label"]: f for f in body["features"]}
    assert set(cells) == {"4", "<3"}
    assert cells["4"]["properties"]["count"] == 4 and cells["<3"]["properties"]["count"] is None
    ring = cells["4"]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert min(xs) <= base[0] <= max(xs) and min(ys) <= base[1] <= max(ys)
    corners = {tuple(p) for f in body["features"] for p in f["geometry"]["coordinates"][0]}
    assert not corners & {(round(x, 7), round(y, 7)) for x, y in [*crowded, *lonely]}  # no home's point leaves


async def test_care_areas_read_every_page_of_homes() -> None:
    pages: list[dict[str, list[str]]] = []

    async def query(req: Req) -> Resp:
        pages.append(req.params)
        offset = int(req.params["offset"][0])
        count = 1000 if offset == 0 else 3
        homes = [{"id": f"h{offset + i}", "type": "ElderlyHome",
                  "location": {"type": "Point", "coordinates": [126.85, 37.49]}} for i in range(count)]
        return Resp(200, homes)

    resp = await CareAreas(query, 300.0, 3).handle(Req("GET", "/api/v1/dashboard/care-areas"))
    assert [p["offset"] for p in pages] == [["0"], ["1000"]] and pages[0]["type"] == ["ElderlyHome"]
    assert resp.media_type == "application/geo+json"
    assert resp.body["total"] == 1003 and [f["properties"]["count"] for f in resp.body["features"]] == [1003]


def test_care_areas_over_http_from_ngsi_ld_entities(client: TestClient) -> None:
    homes: list[dict[str, Any]] = [{"id": f"urn:ngsi-ld:ElderlyHome:h{i}", "type": "ElderlyHome",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.85 + i * 1e-5, 37.49]}}}
             for i in range(3)]
    homes.append({"id": "urn:ngsi-ld:ElderlyHome:far", "type": "ElderlyHome",
                  "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.9, 37.5]}}})
    assert client.post("/ngsi-ld/v1/entityOperations/create", json=homes).status_code == 201
    body = client.get("/api/v1/dashboard/care-areas").json()
    assert body["total"] == 4 and body["minCount"] == 3
    assert sorted(f["properties"]["label"] for f in body["features"]) == ["3", "<3"]
    corners = {tuple(p) for f in body["features"] for p in f["geometry"]["coordinates"][0]}
    assert not corners & {tuple(h["location"]["value"]["coordinates"]) for h in homes}
