"""ucity.core.params: the request readers every API shares, and their errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ucity.core.errors import BadRequest, InvalidRequest, UnsupportedMediaType
from ucity.core.http import Req
from ucity.core.params import (
    actor_header,
    bad,
    bbox_param,
    int_param,
    json_body,
    json_object,
    micros_param,
    time_param,
    values_param,
)


def req(body: bytes = b"", content_type: str | None = None, **params: str | list[str]) -> Req:
    headers = {"content-type": content_type} if content_type else {}
    return Req("GET", "/x", {k: v if isinstance(v, list) else [v] for k, v in params.items()}, headers, body)


def test_bad_is_a_400_in_both_languages() -> None:
    error = bad("잘못됨", "wrong")
    assert isinstance(error, BadRequest)
    assert error.status == 400
    assert "잘못됨" in str(error.detail) and "wrong" in str(error.detail)


def test_json_body() -> None:
    assert json_body(req()) == {}
    assert json_body(req(b"[1, 2]")) == [1, 2]
    with pytest.raises(InvalidRequest, match="malformed JSON"):
        json_body(req(b"{nope"))
    assert json_body(req(b'{"a": 1}', "application/json; charset=utf-8")) == {"a": 1}
    assert json_body(req(b'{"a": 1}', "application/merge-patch+json")) == {"a": 1}
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        with pytest.raises(UnsupportedMediaType, match="must be application/json"):  # 415, as /ngsi-ld and /iot
            json_body(req(b'{"a": 1}', media_type))
        with pytest.raises(UnsupportedMediaType):
            json_object(req(b'{"a": 1}', media_type))
    assert json_body(req(b'{"a": 1}', "text/plain"), json_only=False) == {"a": 1}  # a handler that checks itself


def test_json_body_refuses_a_nul_character_anywhere() -> None:
    for body in (rb'{"a": "x\u0000"}', rb'["ok", {"deep": ["\u0000"]}]', rb'{"k\u0000": 1}', rb'"\u0000"'):
        with pytest.raises(BadRequest, match="U\\+0000"):
            json_body(req(body))
    assert json_body(req(rb'{"path": "C:\\u0000"}')) == {"path": "C:\\u0000"}  # an escaped backslash: text


def test_json_object() -> None:
    assert json_object(req(b'{"a": 1}')) == {"a": 1}
    assert json_object(req()) == {}
    for body in (b"[1]", b"3", b'"x"', b"null"):
        with pytest.raises(BadRequest, match="JSON object"):
            json_object(req(body))


def test_values_param() -> None:
    assert values_param(req(), "s") == ()
    assert values_param(req(s=["a,b", " c ,a", ","]), "s") == ("a", "b", "c")  # repeated and split, once each
    assert values_param(req(s="a,b"), "s", ("a", "b", "z")) == ("a", "b")
    with pytest.raises(BadRequest, match="s must be among a, b; got x, y"):
        values_param(req(s="a,x,y"), "s", ("a", "b"))


@pytest.mark.parametrize("text, value", [("5", 5), ("0", 0), ("-3", -3), ("+7", 7), ("1000", 1000)])
def test_int_param_accepts(text: str, value: int) -> None:
    assert int_param(req(n=text), "n", 1, -10, 1000) == value


@pytest.mark.parametrize("text", ["", "1.5", "1e3", "1_000", " 5", "5 ", "x", "0x10", "9" * 30])
def test_int_param_refuses_what_is_not_an_integer(text: str) -> None:
    with pytest.raises(BadRequest, match="n must be an integer"):
        int_param(req(n=text), "n", 1, -10**20, 10**40)


def test_int_param_range_and_default() -> None:
    assert int_param(req(), "n", 20, 1, 100) == 20
    with pytest.raises(BadRequest, match="n must be between 1 and 100"):
        int_param(req(n="101"), "n", 20, 1, 100)
    with pytest.raises(BadRequest, match="between 1 and 100"):
        int_param(req(n="0"), "n", 20, 1, 100)


def test_time_params() -> None:
    assert time_param(req(), "from") is None and micros_param(req(), "from") is None
    at = time_param(req(**{"from": "2026-12-06T09:00:00+09:00"}), "from")
    assert at == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert micros_param(req(**{"from": "2026-12-06T00:00:00Z"}), "from") == int(at.timestamp()) * 1_000_000
    with pytest.raises(BadRequest, match="from must be an ISO 8601 date-time"):
        time_param(req(**{"from": "yesterday"}), "from")
    # QA17 F4: a Korea time without its offset is refused, not read as UTC (9 hours off); a date alone too
    with pytest.raises(BadRequest, match="from needs a UTC offset") as refused:
        time_param(req(**{"from": "2026-12-06T09:00:00"}), "from")
    assert "+09:00" in refused.value.detail and " / " in refused.value.detail
    with pytest.raises(BadRequest, match="from needs a date-time with a UTC offset"):
        micros_param(req(**{"from": "2026-12-06"}), "from")


def test_bbox_param() -> None:
    assert bbox_param(None) is None
    assert bbox_param("126.8,37.4,126.9,37.5") == (126.8, 37.4, 126.9, 37.5)
    for text in ("1,2,3", "a,b,c,d", "1,2,3,4,5", ""):
        with pytest.raises(BadRequest, match="bbox is minLon"):
            bbox_param(text)
    for text in ("10,0,5,1", "0,10,1,5", "-181,0,0,1", "0,-91,1,0", "nan,0,1,1", "0,0,inf,1"):
        with pytest.raises(BadRequest, match="bbox needs min <= max"):
            bbox_param(text)


def actor_req(value: str | None) -> Req:
    return Req("POST", "/x", {}, {} if value is None else {"x-ucity-actor": value})


@pytest.mark.parametrize("sent, actor", [
    ("kim-operator", "kim-operator"),
    ("%EC%83%81%ED%99%A9%EC%8B%A4%20%EA%B9%80", "상황실 김"),  # a browser's encodeURIComponent
    ("박운영".encode().decode("latin-1"), "박운영"),  # curl's raw UTF-8, as the server reads header bytes
    ("  lee  ", "lee"),
    ("100%", "100%"),  # not an escape: kept
    ("%ZZ", "%ZZ"),
    ("%C3%28", "%C3%28"),  # an escape of invalid UTF-8: kept as sent
    ("café".encode("latin-1").decode("latin-1"), "café"),  # Latin-1 that is not UTF-8: kept
])
def test_actor_header_decodes_what_clients_send(sent: str, actor: str) -> None:
    assert actor_header(actor_req(sent)) == actor


def test_actor_header_required_and_bounded() -> None:
    for value in (None, "", "   ", "%20"):
        with pytest.raises(BadRequest, match="X-Ucity-Actor header names who acts"):
            actor_header(actor_req(value))
    assert actor_header(actor_req(None), required=False, default="ngsi-ld") == "ngsi-ld"
    for value in ("x" * 201, "a%0Aforged-line", "a%00b", "a%7Fb"):
        with pytest.raises(BadRequest, match="at most 200 printable characters"):
            actor_header(actor_req(value))
    assert actor_header(actor_req("가" * 200)) == "가" * 200


def test_actor_header_remembers_read_values_within_its_bound_and_never_a_refused_one() -> None:
    from ucity.core import params

    params._ACTORS.clear()
    sent = "operator%3Atok-1%20%28%EA%B9%80%EB%AF%BC%EC%88%98%29"  # what the token guard writes: token and display name
    assert actor_header(actor_req(sent)) == "operator:tok-1 (김민수)"
    assert params._ACTORS[sent] == "operator:tok-1 (김민수)"
    assert actor_header(actor_req(sent)) == "operator:tok-1 (김민수)"  # read from the table, the same text
    for _ in range(2):  # a refused value is refused again, never remembered
        with pytest.raises(BadRequest, match="at most 200 printable characters"):
            actor_header(actor_req("a%0Aforged-line"))
    assert "a%0Aforged-line" not in params._ACTORS
    with pytest.raises(BadRequest, match="X-Ucity-Actor header names who acts"):  # blank: still required
        actor_header(actor_req("%20"))
    for n in range(params.ACTORS_REMEMBERED + 10):  # clients choose the values: the table stays bounded
        assert actor_header(actor_req(f"client-{n}")) == f"client-{n}"
        assert len(params._ACTORS) <= params.ACTORS_REMEMBERED
