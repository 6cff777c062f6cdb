"""Log lines: UTC ISO 8601 times whatever the host's zone, text or one JSON object per line, no secret in either
(QA8 F12)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ucity.core import logsetup
from ucity.core.logsafe import RedactingFilter

SECRET_URL = "https://hookuser:Hook-Secret-77@hooks.example/x?token=Tok-Secret-55"
APIKEY = "ApiKey-Secret-9q8w"


@pytest.fixture
def seoul() -> Iterator[None]:
    """The host in Asia/Seoul (UTC+9): a local time in the log would be 9 hours off."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Seoul"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger(logsetup.ACCESS_LOGGER)
    access_filters = list(access.filters)
    # As `ucity serve` leaves them (uvicorn with log_config=None): an earlier test's uvicorn (started with its default
    # log config) gave `uvicorn` and `uvicorn.access` handlers of their own and stopped them propagating, so their
    # lines would not reach the handler under test.
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", logsetup.ACCESS_LOGGER)]
    states = [(lg.level, lg.propagate, lg.disabled, list(lg.handlers)) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.setLevel(logging.NOTSET)
        lg.propagate, lg.disabled, lg.handlers = True, False, []
    yield
    for lg, (level, propagate, disabled, lg_handlers) in zip(uvicorn_loggers, states, strict=True):
        lg.level, lg.propagate, lg.disabled, lg.handlers = level, propagate, disabled, lg_handlers
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    access.filters = access_filters


def emit(fmt: logsetup.LogFormat) -> list[str]:
    """Log what ucity's and libraries' records may carry through a configured handler; the lines written."""
    stream = io.StringIO()
    logsetup.configure("INFO", fmt, stream)
    logging.getLogger("ucity.alarms.webhook").warning("notification to %s failed: HTTP %d", SECRET_URL, 500)
    try:
        raise RuntimeError(f"could not reach {SECRET_URL}")
    except RuntimeError:
        logging.getLogger("ucity.ops").exception("posting failed")
    logging.getLogger(logsetup.ACCESS_LOGGER).info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:51234", "POST",
                                                   f"/iot/json?k={APIKEY}&i=spot-001", "1.1", 200)
    logging.getLogger("ucity.x").info("안전 등급 / grade")
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("seoul", "restore_logging")
def test_text_lines_carry_utc_iso_times_and_no_secret() -> None:
    before = datetime.now(UTC)
    lines = emit("text")
    text = "\n".join(lines)
    for secret in ("Hook-Secret-77", "Tok-Secret-55", "hookuser", APIKEY):
        assert secret not in text
    first = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z WARNING ucity\.alarms\.webhook: ", lines[0])
    assert first is not None, lines[0]
    logged = datetime.fromisoformat(first.group(1)).replace(tzinfo=UTC)
    assert abs((logged - before).total_seconds()) < 60  # UTC, not Seoul's local time 9 hours ahead
    assert "/iot/json?k=***&i=spot-001" in text and "https://***@hooks.example/x?token=***" in text


@pytest.mark.usefixtures("seoul", "restore_logging")
def test_json_lines_are_one_object_each_with_time_level_logger_message_and_no_secret() -> None:
    before = datetime.now(UTC)
    lines = emit("json")
    assert len(lines) == 4  # the traceback inside its line
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["time"].endswith("Z")
        assert abs((datetime.fromisoformat(record["time"]) - before).total_seconds()) < 60
    warning, failure, access, korean = records
    assert warning["level"] == "WARNING" and warning["logger"] == "ucity.alarms.webhook"
    assert warning["message"] == "notification to https://***@hooks.example/x?token=*** failed: HTTP 500"
    assert "Traceback" in failure["exception"] and "RuntimeError" in failure["exception"]
    assert access["logger"] == "uvicorn.access"
    assert access["http"] == {"client": "10.0.0.7:51234", "method": "POST", "path": "/iot/json?k=***&i=spot-001",
                              "status": 200}
    assert korean["message"] == "안전 등급 / grade"
    for secret in ("Hook-Secret-77", "Tok-Secret-55", "hookuser", APIKEY):
        assert secret not in "\n".join(lines)


@pytest.mark.usefixtures("restore_logging")
def test_configure_replaces_the_handlers_and_masks_through_them() -> None:
    logging.getLogger().addHandler(logging.StreamHandler(io.StringIO()))
    handler = logsetup.configure("WARNING", "text", io.StringIO())
    assert handler is not None and logging.getLogger().handlers == [handler]
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.usefixtures("restore_logging")
def test_logging_configured_by_the_host_process_is_kept_and_masked() -> None:
    """As logging.basicConfig: a command run in-process by an application (or pytest) keeps its handlers."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    theirs = logging.StreamHandler(io.StringIO())
    root.addHandler(theirs)
    assert logsetup.configure("INFO", "json") is None
    assert root.handlers == [theirs] and any(isinstance(f, RedactingFilter) for f in theirs.filters)
    root.removeHandler(theirs)
    ours = logsetup.configure("INFO", "json")  # a process with no handler: ucity's own, on stderr
    assert ours is not None and root.handlers == [ours]
    assert logsetup.configure("INFO", "text") is not None and ours not in root.handlers  # replaced, not added


def test_utc_iso_has_milliseconds_and_z() -> None:
    assert logsetup.utc_iso(0.5) == "1970-01-01T00:00:00.500Z"
    assert logsetup.utc_iso(1_780_000_000.042) == "2026-05-28T20:26:40.042Z"
