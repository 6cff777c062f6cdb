"""The operations audit log: one append-only record of what was done to events and footage, by whom.

Kinds of lines: `event` (created, status changes, level changes, attachments), `linkage` (requested,
held, approved, rejected, delivered, failed), `grant` (issued, renewed, revoked, and every access to a
stream or still, allowed, denied or failed: PLAT-R5), `camera` (registered, imported, changed, deleted),
`auth` (tokens issued or revoked, `refused`: a
token of a disabled or deleted agency), `retention` (a retention sweep's deletions: what, by which rule, how many).
Nothing updates a line, and only retention deletes one, once older than `retention.audit_days` (docs/operations.md
§8): the store contract has no other such method, and both databases refuse any other change with triggers. The API
only reads it (`GET /api/v1/audit`).
"""

from __future__ import annotations

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
