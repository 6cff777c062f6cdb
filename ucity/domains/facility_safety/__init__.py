"""Facility safety: structural monitoring of aging facilities and a data-based safety grade (issue 6).

The reference domain: every later domain copies this skeleton (DESIGN §5.3, ucity/domains/README.md).

* `setup(platform, config)` validates `[domains.facility_safety]` (config.py), registers the
  component `facility_safety` (service.py) and, through it, the domain's default rules (rules.py);
* `routes(config)` declares the HTTP endpoints (api.py) that server.py mounts;
* README.md states every rule with its source and confidence tag.
"""

from __future__ import annotations

from typing import Any

from ucity.core.http import ApiRoute
from ucity.core.platform import Platform
from ucity.domains.facility_safety.config import FacilitySafetyConfig, load_config

NAME = "facility_safety"
# The upload route reads the whole multipart body: a photo plus headroom for the form's other parts.
MULTIPART_HEADROOM = 64 * 1024


def setup(platform: Platform, config: dict[str, Any]) -> None:
    """Register the facility-safety component (after the rules engine and alarms, before the publisher)."""
    from ucity.domains.facility_safety.service import FacilitySafety

    platform.add(NAME, FacilitySafety(platform, load_config(config)))


def routes(config: dict[str, Any]) -> list[ApiRoute]:
    from ucity.domains.facility_safety.api import routes as table

    cfg: FacilitySafetyConfig = load_config(config)
    return table(cfg.photos.max_bytes + MULTIPART_HEADROOM)


__all__ = ["NAME", "FacilitySafetyConfig", "routes", "setup"]
