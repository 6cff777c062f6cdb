"""Stores: the backend-neutral contract (base.py) and its backends, chosen by URL."""

from __future__ import annotations

from ucity.core.clock import Clock
from ucity.core.config import Settings
from ucity.store.base import Store


def open_store(settings: Settings, clock: Clock | None = None) -> Store:
    """The store named by `store.url` (sqlite:// is the embedded default)."""
    url = settings.store_url
    if url.startswith("sqlite://"):
        from ucity.store.sqlite import SqliteStore, sqlite_path

        return SqliteStore(sqlite_path(url), clock, settings.store.group_commit_ms, settings.store.group_commit_max,
                           settings.store.max_queued, settings.store.entity_cache, settings.store.series_cache,
                           exclusive=settings.store.exclusive)
    if url.startswith(("postgresql://", "postgres://")):
        from ucity.store.postgres import PostgresStore

        return PostgresStore(url, clock, settings.store.group_commit_ms, settings.store.group_commit_max,
                             settings.store.pool_size, settings.store.max_queued, settings.store.series_cache,
                             settings.store.pg_read_settings)
    raise ValueError(f"no store backend for {url.split(':', 1)[0]}://")


def display_url(url: str) -> str:
    """A store URL fit for logs and consoles: the password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
