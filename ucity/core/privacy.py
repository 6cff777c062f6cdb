"""The personal entity types in force: `privacy.personal_entity_types` and those the domains declare (QA13 F1).

One kernel list for every part that treats entities as personal data (docs/operations.md §4): the NGSI-LD API
(`personal:read` / `personal:write` and the read audit, ucity/ngsild/personal.py), alarms (the coarse Alert of an
alarm about a person, ucity/alarms/alert.py, and the Alert migration's fingerprint, alert_privacy.py) and the
data-subject erasure (ucity/ops/subjects.py). The platform holds it as the component `privacy`
(`platform.get("privacy")`); a domain whose entities describe a person declares its types in `setup`:

    platform.get("privacy").declare("ElderlyHome", "CareDevice", source="ELD-R1 [D]")

The types in force are the settings' list (as written, in its order) followed by the declared ones not in it: a
settings list that is set cannot remove a type a domain declares (privacy by design). Declarations are closed
when the platform starts (`declare` after that is a RuntimeError: every reader has read the list by then);
readers that hold a derived form (expanded IRIs) register with `watch` and are called again at each declaration.
`/health` shows the list in force and where each declared type comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ucity.core.config import PrivacySettings


class PersonalTypes:
    """The platform component `privacy`: the personal entity types in force (settings ∪ declared)."""

    def __init__(self, settings: PrivacySettings | None = None) -> None:
        self.configured: tuple[str, ...] = tuple(dict.fromkeys((settings or PrivacySettings()).personal_entity_types))
        self.declared: dict[str, str] = {}  # type as declared -> the source (rule) of its first declaration
        self._watchers: list[Callable[[], None]] = []
        self._closed = False
        self._refresh()

    def declare(self, *types: str, source: str) -> None:
        """A domain's entity types that describe a person (short names of the core @context or full IRIs), from
        its `setup`; `source` cites the rule (e.g. "ELD-R1 [D]"). Declaring a type again keeps its first source."""
        if self._closed:
            raise RuntimeError("privacy.declare after the platform started: declare personal types in setup()")
        if not source:
            raise ValueError(f"personal types {', '.join(types)}: name the rule's source")
        if not types or not all(isinstance(t, str) and t for t in types):
            raise ValueError(f"personal types: name at least one non-empty type, not {types!r}")
        for entity_type in types:
            self.declared.setdefault(entity_type, source)
        self._refresh()
        for watcher in list(self._watchers):
            watcher()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` at each later declaration (a reader that derives something from `types`)."""
        self._watchers.append(callback)

    def _refresh(self) -> None:
        self.types: tuple[str, ...] = tuple(dict.fromkeys((*self.configured, *self.declared)))
        self.names: frozenset[str] = frozenset(self.types)

    async def start(self) -> None:
        self._closed = True

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"ok": True, "personalEntityTypes": list(self.types), "declared": dict(self.declared)}


__all__ = ["PersonalTypes"]
