"""The errors of the IoT Agent provisioning API (`/iot/services`, `/iot/devices`), as FIWARE IoT Agent clients read them.

Every ucity error is an RFC 7807 ProblemDetails (`type`, `title`, `status`, `detail`). The FIWARE IoT Agent answers
`{"name": "DUPLICATE_DEVICE_ID", "message": "..."}` (iotagent-node-lib `lib/errors.js`), and its clients (scripts,
the IoT Agent Manager, dashboards) switch on `name`. The provisioning answers therefore carry both: the
ProblemDetails, with the two extension members `name` (the IoT Agent's error name for the case) and `message` (the
same text as `detail`), which RFC 7807 §3.2 allows. Only there: the measures (`/iot/json`) and the other APIs keep
plain ProblemDetails. The status stays ucity's (e.g. 415 for a Content-Type the IoT Agent answers with 400).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ucity.core.errors import AlreadyExists, BadRequest, NotFound, UcityError, Unavailable, UnsupportedMediaType
from ucity.core.http import Req, Resp

DEVICES, GROUPS = "devices", "services"
_Self = TypeVar("_Self")
Handler = Callable[[_Self, Req], Awaitable[Resp]]


class DuplicateDeviceId(AlreadyExists):
    """A device id the tenant has already (IoT Agent DUPLICATE_DEVICE_ID, 409)."""

    iota_name = "DUPLICATE_DEVICE_ID"

    def __init__(self, device_id: str, detail: str = "") -> None:
        super().__init__(detail or f"장치 {device_id}이(가) 이미 있음 / device {device_id} already exists")


class DuplicateGroup(AlreadyExists):
    """A service group of that resource and apikey exists already (IoT Agent DUPLICATE_GROUP, 409)."""

    iota_name = "DUPLICATE_GROUP"

    def __init__(self, resource: str, apikey: str) -> None:
        super().__init__(f"resource {resource}, apikey {apikey}인 서비스 그룹이 이미 있음 / a service group with "
                         f"resource {resource} and apikey {apikey} exists")


def iota_name(error: UcityError, resource: str) -> str:
    """The FIWARE IoT Agent's error name for `error` on the provisioning `resource` (DEVICES or GROUPS)."""
    named: str | None = getattr(error, "iota_name", None)
    if named:
        return named
    if isinstance(error, NotFound):
        return "DEVICE_NOT_FOUND" if resource == DEVICES else "DEVICE_GROUP_NOT_FOUND"
    if isinstance(error, AlreadyExists):
        return "DUPLICATE_DEVICE_ID" if resource == DEVICES else "DUPLICATE_GROUP"
    if isinstance(error, UnsupportedMediaType):
        return "UNSUPPORTED_CONTENT_TYPE"
    if isinstance(error, BadRequest):
        return "WRONG_SYNTAX"
    if isinstance(error, Unavailable):  # the store cannot be reached or take more now
        return "INTERNAL_DB_ERROR"
    return "INTERNAL_ERROR"  # ucity's own failure (the IoT Agent has no name for it)


def with_iota_name(error: UcityError, resource: str) -> UcityError:
    """`error` with the members `name` and `message` (the same text as `detail`) added to its ProblemDetails."""
    extra: dict[str, Any] = {"name": iota_name(error, resource), "message": error.detail}
    error.extra = {**extra, **error.extra}
    return error


def iota_errors(resource: str) -> Callable[[Handler[_Self]], Handler[_Self]]:
    """A provisioning handler whose errors carry the IoT Agent's `name` and `message` too."""

    def wrap(handler: Handler[_Self]) -> Handler[_Self]:
        @functools.wraps(handler)
        async def handle(self: _Self, req: Req) -> Resp:
            try:
                return await handler(self, req)
            except UcityError as exc:
                with_iota_name(exc, resource)
                raise

        return handle

    return wrap
