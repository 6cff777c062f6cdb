"""`http_problem`: the ProblemDetails of an HTTP-level refusal that is not a UcityError (FIX-D). A status without an
NGSI-LD type is `about:blank` titled with the status phrase (RFC 9457 §4.2.1), never with the detail; the detail is
always "한국어 / English"."""

from __future__ import annotations

from ucity.core.errors import NGSI_ERRORS, http_problem


def test_a_status_without_a_type_is_about_blank_titled_with_its_phrase() -> None:
    assert http_problem(429, "Too Many Requests") == {
        "type": "about:blank", "title": "Too Many Requests", "status": 429,
        "detail": "HTTP 429 요청이 너무 많음 / Too Many Requests"}
    body = http_problem(401, "a bearer token is needed")
    assert (body["type"], body["title"]) == ("about:blank", "Unauthorized")
    assert body["detail"] == "HTTP 401 인증 필요 / a bearer token is needed"


def test_an_empty_detail_is_the_status_phrase_and_an_unknown_status_still_has_a_title() -> None:
    assert http_problem(418, "")["detail"] == "HTTP 418 오류 / I'm a Teapot"
    body = http_problem(599, "")
    assert (body["title"], body["detail"]) == ("HTTP 599", "HTTP 599 오류 / HTTP 599")


def test_a_bilingual_detail_is_kept_and_known_statuses_keep_their_ngsild_type() -> None:
    body = http_problem(404, "/x 경로에는 자원이 없습니다 / no resource at /x")
    assert body == {"type": NGSI_ERRORS + "ResourceNotFound", "title": "Resource not found", "status": 404,
                    "detail": "/x 경로에는 자원이 없습니다 / no resource at /x"}
    assert http_problem(415, "Unsupported Media Type")["detail"] == (
        "HTTP 415 지원하지 않는 미디어 유형 / Unsupported Media Type")


def test_405_and_500_have_the_types_ucity_uses_for_them() -> None:
    body = http_problem(405, "Method Not Allowed")
    assert (body["type"], body["title"]) == (NGSI_ERRORS + "OperationNotSupported", "Method not allowed")
    body = http_problem(500, "Internal Server Error")
    assert (body["type"], body["title"], body["status"]) == (NGSI_ERRORS + "InternalError", "Internal error", 500)
    assert body["detail"] == "HTTP 500 서버 내부 오류 / Internal Server Error"
