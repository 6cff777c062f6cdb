"""Secrets shown masked, and the round trip of a masked document (an admin's GET, edit, PUT).

A configuration document that holds credentials (a webhook's header values: an agency's, a notifier's) is shown
with each such value as `MASK`. An admin who reads it, changes one field and writes it back sends the mask back:
`unmasked` resolves each masked value to the value stored under the same name, so the mask never becomes the
credential; a masked value with nothing stored to keep (a new document, a new name) is refused (400).
"""

from __future__ import annotations

from collections.abc import Mapping

from ucity.core.errors import BadRequest

MASK = "***"


def unmasked(values: Mapping[str, str], stored: Mapping[str, str] | None, what: str = "헤더 / header") -> dict[str, str]:
    """`values` with each `MASK` replaced by `stored`'s value of that name; 400 naming the names without one."""
    masked = [name for name, value in values.items() if value == MASK]
    missing = [name for name in masked if stored is None or name not in stored]
    if missing:
        names = ", ".join(missing)
        ko, en = what.split(" / ", 1) if " / " in what else (what, what)
        raise BadRequest(f"{ko} {names}의 값이 가려진 값({MASK})이고 보관된 값이 없습니다: 실제 값을 보내세요 / {en} "
                         f"{names} holds the masked value {MASK} and there is no stored value to keep: send the real value")
    if not masked:
        return dict(values)
    assert stored is not None
    return {name: stored[name] if value == MASK else value for name, value in values.items()}
