"""No secrets in logs (operations.md §4): URL credentials and secret query values are masked."""

from __future__ import annotations

import logging

import pytest

from ucity.core.logsafe import RedactingFilter, install, redact


@pytest.mark.parametrize("text, expected", [
    ("POST http://hookuser:HookSecret77@127.0.0.1:9911/fail?apikey=HookKey55 \"HTTP/1.1 500\"",
     "POST http://***@127.0.0.1:9911/fail?apikey=*** \"HTTP/1.1 500\""),
    ("notification to http://subuser:SubSecret33@127.0.0.1:9912/fail-sub?token=SubTok44 failed: HTTP 500",
     "notification to http://***@127.0.0.1:9912/fail-sub?token=*** failed: HTTP 500"),
    ("https://TOKENONLY@hooks.example/x", "https://***@hooks.example/x"),
    ("rtsp://admin:pw1@vms.example/live/gate-1", "rtsp://***@vms.example/live/gate-1"),
    ("mqtt://u:p@broker:1883 and postgresql://pg:secret@db/ucity", "mqtt://***@broker:1883 and postgresql://***@db/ucity"),
    ("/iot/json?k=4jggokgpepnvsb2uv4s40d59ov&i=spot-001", "/iot/json?k=***&i=spot-001"),
    ("https://x.example/a?page=2&Signature=abc&PASSWORD=p#frag", "https://x.example/a?page=2&Signature=***&PASSWORD=***#frag"),
])
def test_redact_masks_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "https://hooks.example/x?page=2&id=urn:ngsi-ld:Device:1",  # nothing secret
    "subscription urn:ngsi-ld:Subscription:1: endpoint works again",
    "contact kim@example.com about https://example.com/a",  # an e-mail address outside a URL stays
    "a=1 b=2",
])
def test_redact_leaves_the_rest(text: str) -> None:
    assert redact(text) == text


def test_installed_filter_masks_records_of_any_logger(caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        install()
        install()  # once per handler
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: POST %s "%s"',
                                   ("http://u:secret@h/x?token=t1", "HTTP/1.1 200 OK"), None)
        assert handler.filter(record)
        assert record.getMessage() == 'HTTP Request: POST http://***@h/x?token=*** "HTTP/1.1 200 OK"'
        try:
            raise RuntimeError("failed to reach https://user:pw@hooks.example/x")
        except RuntimeError:
            import sys

            failed = logging.LogRecord("ucity", logging.ERROR, __file__, 1, "posting failed", None, sys.exc_info())
        assert handler.filter(failed)
        assert failed.exc_text is not None and "pw@" not in failed.exc_text and "https://***@hooks.example/x" in failed.exc_text
    finally:
        root.removeHandler(handler)
