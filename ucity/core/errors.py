"""One error hierarchy for ucity, each error knowing its HTTP and NGSI-LD meaning.

The tree::

    UcityError                      500 InternalError
    ├── BadRequest                  400 BadRequestData
    │   ├── InvalidRequest          400 InvalidRequest (syntax: malformed JSON, bad query string)
    │   └── LdContextInvalid        400 BadRequestData (an @context that is not usable)
    ├── NotFound                    404 ResourceNotFound
    │   └── NonexistentTenant       404 NonexistentTenant (an NGSILD-Tenant that was never created)
    ├── AlreadyExists               409 AlreadyExists
    ├── NotAcceptable               406 NotAcceptable
    ├── PayloadTooLarge             413 RequestEntityTooLarge
    ├── UnsupportedMediaType        415 UnsupportedMediaType
    ├── OperationNotSupported       422 OperationNotSupported
    ├── LdContextNotAvailable       503 LdContextNotAvailable
    ├── WriteRefused                500 InternalError (the store refused one write, and would again)
    └── Unavailable                 503 ServiceUnavailable

Errors are turned into RFC 7807 ProblemDetails in exactly one place (`to_problem`), called by
the server's exception handler.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

NGSI_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class UcityError(Exception):
    """Base of every error ucity raises on purpose."""

    status: int = 500
    type_uri: str = NGSI_ERRORS + "InternalError"
    title: str = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        """The RFC 7807 / NGSI-LD ProblemDetails body of this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body


NgsiLdError = UcityError


class BadRequest(UcityError):
    status = 400
    type_uri = NGSI_ERRORS + "BadRequestData"
    title = "Bad request data"


class InvalidRequest(BadRequest):
    type_uri = NGSI_ERRORS + "InvalidRequest"
    title = "Invalid request"


class LdContextInvalid(BadRequest):
    title = "Invalid @context"


class NotFound(UcityError):
    status = 404
    type_uri = NGSI_ERRORS + "ResourceNotFound"
    title = "Resource not found"


class NonexistentTenant(NotFound):
    """CIM 009 §5.5.10: an operation other than a create addressed a tenant that does not exist."""

    type_uri = NGSI_ERRORS + "NonexistentTenant"
    title = "Nonexistent tenant"


class AlreadyExists(UcityError):
    status = 409
    type_uri = NGSI_ERRORS + "AlreadyExists"
    title = "Already exists"


class NotAcceptable(UcityError):
    status = 406
    type_uri = NGSI_ERRORS + "NotAcceptable"
    title = "Not acceptable"


class PayloadTooLarge(UcityError):
    status = 413
    type_uri = NGSI_ERRORS + "RequestEntityTooLarge"
    title = "Request entity too large"


class UnsupportedMediaType(UcityError):
    status = 415
    type_uri = NGSI_ERRORS + "UnsupportedMediaType"
    title = "Unsupported media type"


class OperationNotSupported(UcityError):
    status = 422
    type_uri = NGSI_ERRORS + "OperationNotSupported"
    title = "Operation not supported"


class LdContextNotAvailable(UcityError):
    status = 503
    type_uri = NGSI_ERRORS + "LdContextNotAvailable"
    title = "@context not available"


class WriteRefused(UcityError):
    """A write the store refused and would refuse again (its database rejected the data, or ucity failed on it):
    unlike `Unavailable`, sending it again cannot help, so a source must not hold it for redelivery."""

    title = "The store refused the write"


class Unavailable(UcityError):
    status = 503
    type_uri = NGSI_ERRORS + "ServiceUnavailable"
    title = "Service unavailable"
    # A store or bus that cannot take more right now (a burst, a restart): the client should retry soon.
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


# The Korean of HTTP's status phrases (RFC 9110 §15), for the Korean half of a detail that HTTP alone explains.
_PHRASES_KO: dict[int, str] = {
    400: "잘못된 요청", 401: "인증 필요", 402: "결제 필요", 403: "권한 없음", 404: "찾을 수 없음",
    405: "허용되지 않는 메서드", 406: "제공할 수 없는 표현", 407: "프록시 인증 필요", 408: "요청 시간 초과",
    409: "충돌", 410: "더 이상 없음", 411: "길이 필요", 412: "전제 조건 실패", 413: "요청 본문이 너무 큼",
    414: "URI가 너무 김", 415: "지원하지 않는 미디어 유형", 416: "처리할 수 없는 범위", 417: "기대 실패",
    421: "잘못 전달된 요청", 422: "처리할 수 없는 내용", 423: "잠김", 424: "의존 실패", 425: "너무 이른 요청",
    426: "업그레이드 필요", 428: "전제 조건 필요", 429: "요청이 너무 많음", 431: "요청 헤더가 너무 큼",
    451: "법적 사유로 제공 불가", 500: "서버 내부 오류", 501: "구현되지 않음", 502: "게이트웨이 오류",
    503: "서비스 이용 불가", 504: "게이트웨이 시간 초과", 505: "지원하지 않는 HTTP 버전",
}


def status_phrase(status: int) -> str:
    """HTTP's reason phrase of `status` (RFC 9110 §15), e.g. "Too Many Requests"; "HTTP 599" for one it lacks."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _bilingual_detail(status: int, detail: str) -> str:
    """`detail` as "한국어 / English": a caller's bilingual detail as it is; an English one (a framework's, often just
    the status phrase) after the Korean of its status."""
    if any("\uac00" <= ch <= "\ud7a3" for ch in detail):
        return detail
    ko = f"HTTP {status} {_PHRASES_KO.get(status, '오류')}"
    return f"{ko} / {detail or status_phrase(status)}"


def http_problem(status: int, detail: str) -> dict[str, Any]:
    """ProblemDetails for an HTTP-level failure that is not a UcityError (404 route, 405, a framework's refusal).

    A status with an NGSI-LD error type gets that type and its fixed title; any other is `about:blank` (RFC 9457
    §4.2.1: the problem has no semantics beyond its status), whose title is the status phrase, never the detail
    (§4.2.1: it SHOULD be the HTTP reason phrase). The detail is always in Korean and English.
    """
    kinds: dict[int, type[UcityError]] = {
        400: InvalidRequest, 404: NotFound, 406: NotAcceptable, 409: AlreadyExists,
        413: PayloadTooLarge, 415: UnsupportedMediaType, 422: OperationNotSupported, 500: UcityError, 503: Unavailable,
    }
    detail = _bilingual_detail(status, detail)
    cls = kinds.get(status)
    if cls is not None:
        return cls(detail).to_problem()
    if status == 405:  # as every 405 of ucity's own routes says it (server.METHOD_NOT_ALLOWED)
        return {"type": NGSI_ERRORS + "OperationNotSupported", "title": "Method not allowed", "status": 405,
                "detail": detail}
    return {"type": "about:blank", "title": status_phrase(status), "status": status, "detail": detail}
