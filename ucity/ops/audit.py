"""The operations audit log: one append-only record of what was done to events and footage, by whom.

Kinds of lines: `event` (created, with outcome `duplicate` for a `sourceRef` reported again, status changes, level
changes, attachments, `alarm-closed`: its alarm closed while an operator or agency held the event, `personal-read`:
an event's personal data shown unmasked, with the parts shown, never their values), `linkage` (requested,
held, approved, rejected, delivered, failed), `grant` (issued, renewed, revoked, `narrowed`: a camera deleted,
moved or re-pointed left it, with `camera`, `cause` and the `cameras` left, and every access to a
stream or still, allowed, denied or failed: PLAT-R5; `token-read`: a live footage token shown again by
`GET /grants/{id}` or a linkage's package, never the token), `camera` (registered, imported, changed, deleted),
`auth` (tokens issued or revoked, `refused`: a 403 for a known token, with `reason` agency-disabled /
agency-unknown (every one), `permission` (with the `permission` missing) or `tenant` (with `requestedTenant`),
those two paced by `RefusalPacer`: one line per token, reason and permission per minute, with `alsoRefused`),
`retention` (a retention sweep's deletions: what, by which rule, how many; `privacy-migration`: the start-up
migration of `CityEvent` entities and history to the private form, ucity/ops/event_privacy.py, and of alarm events
about a person, `data: OpsEvent`, ucity/ops/alarm_event_privacy.py; counts only),
`facility-safety` (a facility's
thresholds set or removed, a sensor detached: ucity/domains/facility_safety), `config` (alarm configuration: a rule
created, changed, deleted, enabled or disabled, `rule-*` with `rule`, `changed` and `old`/`new`: ucity/rules/api.py;
escalation chains, recipient groups and notifiers created, changed or deleted, and dead letters replayed, the id
only: ucity/alarms/api.py), `privacy` (requests of a data subject, ucity/ops/subjects.py: `subject-search` with the
field names searched, counts and a keyed hash of the query; `redacted` with the parts removed and the reason's
length, never the values), `alarm` (an operator's resend of an alarm's failed notification: `notification-resent`
with `alarm`, `deadLetter`, `notifier`, `notificationEvent`, `attempts`; never an address: ucity/alarms/api.py).

Conventions of a line: `actor` (who: `role:token-id`, `system`, `anonymous`), the platform clock's time (when), and
what in the indexed columns (`agency`, `event`, `grant`, `camera`, `outcome`) and the detail; never a token, a
secret or personal data (a read line names which parts were read, not what they hold), and no free text (QA10
F3: the log outlives the event): a status note is kept on the event, its line has `noteChars` and `noteMasked`;
ucity's own notes (ids only) stay as `note`; a purpose, reason or attachment name is written masked
(`freetext.mask_free_text`).
Nothing updates a line, and only retention deletes one, once older than `retention.audit_days` (docs/operations.md
§8): the store contract has no other such method, and both databases refuse any other change with triggers. The API
only reads it (`GET /api/v1/audit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ucity.core.clock import Clock, to_micros
from ucity.store.base import AuditQuery, AuditRow, Doc, Store


class AuditLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def row(self, tenant: str, kind: str, action: str, actor: str, *, agency: str | None = None,
            event: str | None = None, grant: str | None = None, camera: str | None = None, outcome: str | None = None,
            **detail: Any) -> AuditRow:
        """One line at the platform clock's now; `detail` is kept as given (JSON)."""
        return AuditRow(tenant, to_micros(self.clock.now()), kind, action, actor, detail, agency, event, grant, camera,
                        outcome)

    async def append(self, *rows: AuditRow) -> None:
        await self.store.append_audit(list(rows))

    async def query(self, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
        return await self.store.query_audit(tenant, query)

    async def counts(self, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
        return await self.store.audit_counts(tenant, query)


REFUSAL_AUDIT_S = 60.0  # one `auth` / `refused` line per token, reason and permission per minute (as ucity/access.py)


class RefusalPacer:
    """Paces the audit lines of permission and tenant refusals (403) as the guard of the other APIs does
    (ucity/access.py, QA3): one line per (token, reason, permission) per `REFUSAL_AUDIT_S`; the refusals in between
    are counted and the next line carries their number (`alsoRefused`), so a client cannot fill the log with 403s.
    `now` gives seconds (the platform clock's, so tests move it)."""

    def __init__(self, now: Callable[[], float], period_s: float = REFUSAL_AUDIT_S) -> None:
        self.now = now
        self.period_s = period_s
        self._last: dict[tuple[str, str, str | None], tuple[float, int]] = {}

    def admit(self, key: tuple[str, str, str | None]) -> int | None:
        """None when this refusal is only counted, else the refusals counted since the previous line (to write)."""
        now, last = self.now(), self._last.get(key)
        if last is not None and now - last[0] < self.period_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if len(self._last) >= 4096:
            self._last.clear()
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0
