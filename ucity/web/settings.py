"""Settings of the dashboard, from `UCITY_WEB__*` environment variables.

They live here rather than in `ucity.core.config.Settings` so that the web package stays an edge
that can be left out; the names already follow the nested `UCITY_<SECTION>__<NAME>` form, so a
`[web]` section can move into the main settings without renaming anything.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
NO_TILES = ("", "none", "off")


class WebSettings(BaseSettings):
    """What an installation may change about the dashboard."""

    model_config = SettingsConfigDict(env_prefix="UCITY_WEB__", extra="ignore")

    tile_url: str = Field(OSM_TILES, description="XYZ tile template; empty or 'none' draws a plain background "
                                                 "with the district outline (no network needed)")
    tile_attribution: str = OSM_ATTRIBUTION
    tile_max_zoom: int = Field(19, ge=1, le=22)
    default_language: str = Field("ko", pattern="^(ko|en)$")
    care_cell_m: float = Field(300.0, ge=50.0, le=5000.0, description="side of the grid cells that mask care homes")
    care_min_count: int = Field(3, ge=1, le=50, description="cells with fewer homes show '<N', never the count")
    refresh_s: float = Field(15.0, ge=2.0, le=600.0, description="how often the health panel and layers refresh")

    @field_validator("tile_url")
    @classmethod
    def _none_means_empty(cls, value: str) -> str:
        return "" if value.strip().lower() in NO_TILES else value.strip()
