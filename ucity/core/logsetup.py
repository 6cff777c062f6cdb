"""The process's log lines: UTC ISO 8601 times, plain text or one JSON object per line, never a secret.

`configure(level, fmt)` gives the root logger one handler on stderr (unless the process configured
logging already, as `logging.basicConfig` does), used by ucity's own loggers, the
libraries' (httpx, asyncpg, nats) and uvicorn's, its access log included (`ucity serve` runs uvicorn
without a logging configuration of its own, so its records reach this handler). Times are UTC with
milliseconds and a `Z` (`2026-05-01T03:04:05.678Z`), whatever the host's time zone: log lines then
compare with the `Z` times of the API and the database. `fmt = "json"` writes one object per line
(`time`, `level`, `logger`, `message`, and `exception`, `http` when there is one) for a log collector.
Every record goes through `logsafe.RedactingFilter` first, in both formats (docs/operations.md §4).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO, Any, Literal

from ucity.core import logsafe

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "uvicorn.access"


def utc_iso(created: float) -> str:
    """A record's creation time as UTC ISO 8601 with milliseconds: `2026-05-01T03:04:05.678Z`."""
    seconds, millis = divmod(round(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class UtcFormatter(logging.Formatter):
    """The text format, its `asctime` in UTC ISO 8601 (`logging.Formatter` writes host-local time, no offset)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: a traceback is the `exception` member, not more lines."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": utc_iso(record.created), "level": record.levelname, "logger": record.name,
                                "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            line["http"] = http
        return json.dumps(line, ensure_ascii=False, default=str)


class AccessFields(logging.Filter):
    """Keeps an access record's parts as fields (`http`: client, method, path, status) for the JSON format, the
    path's secret query values masked (`/iot/json?k=***&i=...`); uvicorn logs them as the arguments of
    `'%s - "%s %s HTTP/%s" %d'`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            record.__dict__["http"] = {"client": client, "method": method, "path": logsafe.redact(str(path)), "status": status}
        return True


HTTPX_LOGGER = "httpx"
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*://)(?:[^/?#@]*@)?([^/?#]*)(.*)$", re.DOTALL)


def mask_url_path(url: str) -> str:
    """A URL as the logs may show it: scheme, host and port; anything after them `/***`, user information dropped."""
    found = _URL.match(url)
    if found is None:
        return url
    scheme, host, rest = found.groups()
    return f"{scheme}{host}" + ("/***" if rest.strip("/") else rest)


class RequestUrlMask(logging.Filter):
    """httpx logs every request's URL at INFO (`HTTP Request: POST https://host/path "HTTP/1.1 200 OK"`). The path
    of a webhook's or an agency endpoint's URL is often its credential (`/services/T0/B0/XXXX`), which `logsafe`
    cannot tell from a path: the URL arguments of the `httpx` logger's records are logged as `mask_url_path` shows
    them (host and status stay, for diagnosis). Only that logger: ucity's own records are untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(mask_url_path(str(a)) if not isinstance(a, (int, float)) and "://" in str(a) else a
                                for a in args)
        elif isinstance(record.msg, str) and "://" in record.msg and not args:
            record.msg = re.sub(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"']+", lambda m: mask_url_path(m.group(0)),
                                record.msg)
        return True


def mask_request_urls() -> None:
    """Put `RequestUrlMask` on the `httpx` logger, once (`configure`, and every component that makes an httpx
    client of ucity's: the alarm dispatcher, whose client the webhooks and the agencies' endpoints use)."""
    target = logging.getLogger(HTTPX_LOGGER)
    if not any(isinstance(f, RequestUrlMask) for f in target.filters):
        target.addFilter(RequestUrlMask())


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else UtcFormatter(TEXT_FORMAT)


def configure(level: str | int = "INFO", fmt: LogFormat = "text", stream: IO[str] | None = None) -> logging.Handler | None:
    """Log every record of the process at `level` and above to `stream` (default stderr) in `fmt`, secrets
    masked; the handler, or None when logging was configured already (a command started in-process by an
    application or a test runner with handlers of its own keeps them, as with `logging.basicConfig`; the secret
    filter is put on them). With `stream` given, the root logger's handlers are replaced."""
    root = logging.getLogger()
    mask_request_urls()
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, AccessFields) for f in access.filters):
        access.addFilter(AccessFields())
    if stream is None and any(not getattr(h, "ucity_log", False) for h in root.handlers):
        logsafe.install()
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.ucity_log = True  # type: ignore[attr-defined]  # one of ours: a second configure replaces it
    handler.setFormatter(formatter(fmt))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logsafe.install()
    return handler
