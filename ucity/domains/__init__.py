"""Domain services: one package per service under `ucity/domains/`, all with the same skeleton.

A domain plugs in without a kernel change (README.md here):

* its package `ucity/domains/<name>/` defines `setup(platform, config) -> None`, which registers its
  component(s) on the platform (`platform.add`), its default rules with the rules engine, and so on;
  `config` is the `[domains.<name>]` table of the settings, validated by the domain;
* optionally `routes(config) -> list[ApiRoute]`: its HTTP endpoints, declared as data and mounted
  by server.py when the app is built (the handler is looked up on the platform per request); with
  `server.require_auth` on they need `data:read` (GET, HEAD) or `data:write`, unless a route names
  its own `permission` (e.g. `ApiRoute("PUT", path, handler, permission="config:admin")`; ucity/access.py);
* its name in `domains.enabled`.

`app.py` calls `setup_domains`, `server.py` calls `domain_routes`. Domains import only the public
surface of core, store, rules, alarms and ops, never each other (DESIGN §4).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

from ucity.core.config import Settings
from ucity.core.http import ApiRoute
from ucity.core.platform import Platform

log = logging.getLogger(__name__)
PACKAGE = "ucity.domains"


class DomainError(RuntimeError):
    """An enabled domain that cannot be loaded (unknown package, no `setup`)."""


def domain_module(name: str) -> ModuleType:
    """The package of an enabled domain; DomainError if it does not exist or has no `setup`."""
    try:
        module = importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{PACKAGE}.{name}":
            raise DomainError(f"domains.enabled names {name!r}, but there is no package {PACKAGE}.{name}") from exc
        raise
    if not callable(getattr(module, "setup", None)):
        raise DomainError(f"domain {name!r} has no setup(platform, config)")
    return module


def setup_domains(platform: Platform) -> list[str]:
    """Call `setup(platform, config)` of every enabled domain, in order; the names set up."""
    settings = platform.settings.domains
    unused = sorted(set(settings.model_extra or {}) - set(settings.enabled))
    if unused:
        log.warning("settings for domains that are not enabled are ignored: %s", ", ".join(unused))
    for name in settings.enabled:
        setup = cast(Callable[[Platform, dict[str, Any]], None], domain_module(name).setup)
        setup(platform, settings.config_for(name))
        log.info("domain %s set up", name)
    return list(settings.enabled)


def domain_routes(settings: Settings) -> list[ApiRoute]:
    """The HTTP endpoints of every enabled domain (those that declare `routes(config)`)."""
    out: list[ApiRoute] = []
    for name in settings.domains.enabled:
        routes = getattr(domain_module(name), "routes", None)
        if callable(routes):
            out.extend(cast(list[ApiRoute], routes(settings.domains.config_for(name))))
    return out
