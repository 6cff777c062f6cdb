"""No secrets in logs: credentials in URLs are masked in every record the process logs.

Webhook, subscription and broker URLs may carry credentials (`https://user:password@host/...`,
`?apikey=...`, `?token=...`), and they reach the log in ucity's own messages (a failed
notification names its endpoint) and in libraries' (httpx logs every request's URL at INFO).
operations.md promises that secrets are never logged, so `install()` puts a filter on the root
logger's handlers that rewrites each record's message before any handler writes it:

* the user information of a URL becomes `***` (`https://***@host/...`: a user name alone can be a
  token);
* the value of a query parameter whose name says it is a secret (`apikey`, `token`, `secret`,
  `password`, `signature`, the IoT Agent's `k`, ...) becomes `***`.

The command-line entry points (`ucity serve`, `worker`, `demo`, `simulate`) install it after
configuring logging; an application embedding ucity with its own logging calls `install()` too.
"""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ : everything between the scheme's // and the last @ before the authority's end (/ ? # or a
# space), as URL parsers (urllib, libpq, asyncpg) read it: a password with a raw @ (`u:p@ss@host`) is masked whole
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#]+@")
_SECRET_NAMES = ("k", "key", "apikey", "api_key", "api-key", "token", "access_token", "auth", "authorization",
                 "secret", "password", "passwd", "pass", "pwd", "sig", "signature", "credential", "credentials")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:" + "|".join(re.escape(n) for n in _SECRET_NAMES) + r")=)[^&#\s\"']*")
MASK = "***"
# Of those, the ones that also name a secret at the end of a longer name (`admin_token`, `webhook_secret`);
# `k`, `key`, `auth`, `pass` and `sig` are too short for that (`require_auth` is no secret).
_SECRET_SUFFIXES = ("apikey", "api_key", "token", "secret", "password", "passwd", "pwd", "credential", "credentials",
                    "private_key")


def secret_name(name: str) -> bool:
    """Whether a setting, parameter or field of that name holds a secret (`config validate` masks its value)."""
    lowered = name.lower().replace("-", "_")
    return lowered in _SECRET_NAMES or lowered == "private_key" or any(
        lowered.endswith("_" + suffix) for suffix in _SECRET_SUFFIXES)


def redact(text: str) -> str:
    """`text` with URL credentials and secret query values replaced by ***."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its exception text) with `redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let the handler report it as logging does
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (default: the root logger), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
