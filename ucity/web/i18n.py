"""The dashboard's message catalogue: one JSON file per language, Korean first.

Every string the dashboard shows comes from `messages/<lang>.json`; the page is rendered on the
server in the chosen language (no flash of the other one) and both catalogues travel with the
page so that switching language needs no reload.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

MESSAGES = Path(__file__).parent / "messages"
LANGUAGES: tuple[str, ...] = ("ko", "en")
COOKIE = "ucity_lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The flat key -> text catalogue of a language (cached; the files ship with the package)."""
    with open(MESSAGES / f"{lang}.json", encoding="utf-8") as fh:
        data: dict[str, str] = json.load(fh)
    return data


def choose(query: str | None, cookie: str | None, default: str) -> str:
    """The page's language: `?lang=` first, then the cookie the language switch sets, then the default."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    return default


def translate(lang: str, key: str) -> str:
    """The text of `key`, falling back to Korean and then to the key itself (a missing key shows)."""
    return catalogue(lang).get(key) or catalogue("ko").get(key) or key
