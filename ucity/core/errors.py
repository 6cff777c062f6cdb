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


def http_problem(status: int, detail: str) -> dict[str, Any]:
    """ProblemDetails for an HTTP-level failure that is not a UcityError (404 route, 405)."""
    kinds: dict[int, type[UcityError]] = {
        400: InvalidRequest, 404: NotFound, 406: NotAcceptable, 409: AlreadyExists,
        413: PayloadTooLarge, 415: UnsupportedMediaType, 422: OperationNotSupported, 503: Unavailable,
    }
    cls = kinds.get(status)
    if cls is not None:
        return cls(detail).to_problem()
    return {"type": "about:blank", "title": detail, "status": status, "detail": detail}
