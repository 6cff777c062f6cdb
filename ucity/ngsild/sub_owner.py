"""Who answers for a subscription's personal data: the token that last created or changed it (FIX-E of stop 27).

A subscription is a standing copy of entities to an endpoint. With the token guard on, the caller who creates or
changes one is recorded on it (`OWNER`, stored, never shown): its token's id and, for a token issued through the API,
when it was issued (an id revoked and issued again is another token). Its notifications carry entities of a personal
type only while that token still holds `personal:read` (`OwnerRights.lacks`): once the token is revoked, expired, or
its role no longer grants it, they are withheld (ucity/ngsild/subscriptions.py `_withheld`, docs/operations.md §4).

The check runs for each personal entity a guarded subscription would notify, so it must cost little: the rights of
every token are derived once from the token registry (ucity/ops/auth.py, `TokenRegistry.listing`) and derived again
only when the registry's `changes` counter moves (an issue, a revocation, a re-read that found a change); then a
check is an integer comparison, a dict lookup and, for a token with `expiresAt`, one comparison with the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ucity.core.clock import parse_iso
from ucity.ops.auth import Permission, Principal, TokenSpec

OWNER: Final = "setBy"
"""Stored (never shown) on a subscription created or changed with the token guard on: {"token": the token's id,
"issuedAt": when it was issued (absent for a configured token)}."""

REVOKED: Final = "revoked"  # the token is gone from the registry (or its id now names another token)
EXPIRED: Final = "expired"  # an issued token past its `expiresAt`
NOT_GRANTED: Final = "not-granted"  # the token's role does not grant personal:read (any more)
UNKNOWN: Final = "owner-unknown"  # no owner recorded: created before stop 27, or with the guard off
MARKED: Final = "marked"  # set by a caller without personal:read (subscriptions.WITHHOLD)


@dataclass(frozen=True, slots=True)
class TokenRight:
    """What a notification asks of the token that set a subscription."""

    personal_read: bool
    expires_at: datetime | None


class OwnerRights:
    """Token (id, issuedAt) -> its right now, derived from the token registry and cached until the registry changes.

    Without a registry (no operations centre: no token can exist) owners are not followed."""

    def __init__(self, registry: Any | None) -> None:
        self.registry = registry
        self._seen: int | None = None  # the registry's `changes` when `_rights` was derived
        self._rights: dict[tuple[str, str | None], TokenRight] = {}
        self._issued_at: dict[str, str | None] = {}  # token id -> issuedAt of the token of that id (first listed)

    def _current(self) -> dict[tuple[str, str | None], TokenRight]:
        registry: Any = self.registry
        changes = registry.changes
        if changes != self._seen:
            self._derive(registry.listing())
            self._seen = changes
        return self._rights

    def _derive(self, tokens: list[dict[str, Any]]) -> None:
        rights: dict[tuple[str, str | None], TokenRight] = {}
        issued_at: dict[str, str | None] = {}
        for token in tokens:
            spec = TokenSpec.model_validate({name: token[name] for name in TokenSpec.model_fields if name in token})
            when = token.get("createdAt") if token.get("source") == "api" else None
            expires = token.get("expiresAt")
            rights[(spec.id, when)] = TokenRight(spec.principal().can(Permission.PERSONAL_READ),
                                                 parse_iso(str(expires)) if expires else None)
            issued_at.setdefault(spec.id, when)
        self._rights, self._issued_at = rights, issued_at

    def record(self, principal: Principal) -> dict[str, Any]:
        """The `OWNER` record of a subscription set by `principal` now."""
        out: dict[str, Any] = {"token": principal.id}
        if self.registry is not None:
            self._current()
            when = self._issued_at.get(principal.id)
            if when is not None:
                out["issuedAt"] = when
        return out

    def lacks(self, owner: str, issued_at: str | None, now: datetime) -> str | None:
        """Why the token that set a subscription may not have its personal entities notified now (REVOKED, EXPIRED,
        NOT_GRANTED), or None when it still holds personal:read."""
        if self.registry is None:
            return None
        right = self._current().get((owner, issued_at))
        if right is None:
            return REVOKED
        if right.expires_at is not None and now >= right.expires_at:
            return EXPIRED
        return None if right.personal_read else NOT_GRANTED


def owner_of(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The token id and issuedAt recorded on a stored subscription (None, None: none recorded)."""
    owner = doc.get(OWNER)
    if not isinstance(owner, Mapping) or not isinstance(owner.get("token"), str):
        return None, None
    issued = owner.get("issuedAt")
    return owner["token"], issued if isinstance(issued, str) else None


__all__ = ["EXPIRED", "MARKED", "NOT_GRANTED", "OWNER", "REVOKED", "UNKNOWN", "OwnerRights", "TokenRight", "owner_of"]
