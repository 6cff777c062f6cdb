"""grades.csv (and the grade history it is made of) shows a facility score as the grade itself does: rounded by
`grade.shown_score` (QA leftover: a score recorded unrounded, e.g. by another NGSI-LD client or an older version,
was written as 73.33333333333333)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.test_api import API, FACILITY, NOW, domain_settings, register
from ucity.core.clock import FakeClock
from ucity.domains.facility_safety.grade import SCORE_DECIMALS, shown_score
from ucity.server import create_app

RAW = 73.33333333333333


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(domain_settings(tmp_path), clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_a_recorded_score_is_exported_and_listed_as_the_grade_shows_it(client: TestClient) -> None:
    register(client)
    for at, score, grade in (("2026-03-01T00:00:00Z", RAW, "C"), ("2026-03-02T00:00:00Z", 2.5, "B")):
        written = client.post(f"/ngsi-ld/v1/entities/{FACILITY}/attrs", json={
            "dataSafetyScore": {"type": "Property", "value": score, "observedAt": at},
            "dataSafetyGrade": {"type": "Property", "value": grade, "observedAt": at}})
        assert written.status_code == 204, written.text
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/export/grades.csv").content.decode("utf-8-sig"))))
    assert [(r["dataSafetyGrade"], r["dataSafetyScore"]) for r in rows] == [("C", "73.3333"), ("B", "2.5")]
    history = client.get(f"{API}/facilities/{FACILITY}/grades").json()["grades"]
    assert [g["dataSafetyScore"] for g in history] == [73.3333, 2.5]


def test_the_grade_rounds_its_score_in_the_one_place_the_exports_use() -> None:
    assert SCORE_DECIMALS == 4 and shown_score(RAW) == 73.3333 and shown_score(2.0) == 2.0
