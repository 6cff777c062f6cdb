"""A start-up migration run once per tenant across the processes on one store (ucity/ops/event_privacy.py,
ucity/alarms/alert_privacy.py).

A document of the migration's `kind` per tenant, key `done`, records the `version` done, the `fingerprint` of the
settings it ran with and its counts; a tenant marked with both is skipped (a start with nothing to do reads one
small list), a new version or other settings migrate it again. One process migrates a tenant: it claims it
(`insert_doc` of `claim:<version>:<fingerprint>:<generation>`, renewed between batches by `renew()`, deleted once
the mark is written); the others wait for the mark on the platform clock (tests move it); a claim not renewed for
`CLAIM_LEASE_S` (its process stopped) is taken over by claiming the next generation.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from typing import Any

from ucity.core.clock import Clock, parse_iso, to_iso
from ucity.core.clock import sleep as clock_sleep
from ucity.store.base import Doc, Store

log = logging.getLogger(__name__)
CLAIM_LEASE_S = 60.0  # a claim not renewed for this long (platform clock) is taken over: its process stopped
CLAIM_POLL_S = 5.0  # how often a process waiting for another's migration looks again (platform clock)


class TenantMigration(ABC):
    """The claim, wait, take-over and mark of a once-per-tenant migration; a subclass gives `kind`, `version`,
    `label` (for the log), `fingerprint`, `migrate(tenant)` (the counts) and `finished(tenant, report)` (its audit
    line and the extra members of the mark). `migrate` calls `renew()` between batches."""

    kind: str
    version: int
    label: str

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.owner = uuid.uuid4().hex  # this process's claims
        self._lease: tuple[str, str, Doc] | None = None  # (tenant, key, claim) while this process migrates a tenant

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Of the settings the migration's result depends on: another one migrates every tenant again."""

    @abstractmethod
    async def migrate(self, tenant: str) -> dict[str, int]:
        """Migrate one tenant (calling `renew()` between batches); the counts."""

    @abstractmethod
    async def finished(self, tenant: str, report: dict[str, int]) -> dict[str, Any]:
        """After `migrate` in a tenant: audit what it did; the members the tenant's mark adds (settings it ran with)."""

    def done(self, mark: Doc | None) -> bool:
        return mark is not None and int(mark.get("version", 0)) >= self.version and \
            mark.get("fingerprint") == self.fingerprint

    async def run(self) -> dict[str, dict[str, int]]:
        """Migrate every tenant not marked done with this version and these settings; the counts per tenant migrated
        by this call (a tenant another process migrated, or is migrating, is waited for, not migrated again)."""
        marks = {t: d for t, k, d in await self.store.list_docs(self.kind) if k == "done"}
        out: dict[str, dict[str, int]] = {}
        for tenant in await self.store.tenants():
            if self.done(marks.get(tenant)):
                continue
            report = await self._claimed_run(tenant)
            if report is not None:
                out[tenant] = report
        return out

    async def _claimed_run(self, tenant: str) -> dict[str, int] | None:
        """Migrate one tenant if this process wins its claim; None when another process did it (waited for)."""
        generation = 0
        while True:
            key = f"claim:{self.version}:{self.fingerprint}:{generation}"
            claim = {"owner": self.owner, "version": self.version, "fingerprint": self.fingerprint,
                     "at": to_iso(self.clock.now())}
            if await self.store.insert_doc(self.kind, tenant, key, claim):
                if self.done(await self.store.get_doc(self.kind, tenant, "done")):
                    await self.store.delete_doc(self.kind, tenant, key)
                    return None  # finished by the claim before this one, between the read and the claim
                return await self._run_claimed(tenant, key, claim)
            if await self._wait_for(tenant, key):
                return None
            generation += 1  # the claim's process stopped: taken over

    async def _wait_for(self, tenant: str, key: str) -> bool:
        """Wait (platform clock) while another process holds the claim `key`: True once the tenant is marked done,
        False once the claim is gone or stale (not renewed for `CLAIM_LEASE_S`: its process stopped)."""
        while True:
            if self.done(await self.store.get_doc(self.kind, tenant, "done")):
                return True
            claim = await self.store.get_doc(self.kind, tenant, key)
            if claim is None:
                return False
            if (self.clock.now() - parse_iso(str(claim.get("at")))).total_seconds() > CLAIM_LEASE_S:
                log.warning("the %s of tenant %s claimed by another process at %s was not renewed since: taken over",
                            self.label, tenant, claim.get("at"))
                return False
            log.info("the %s of tenant %s runs in another process; waiting for it", self.label, tenant)
            await clock_sleep(self.clock, CLAIM_POLL_S)

    async def _run_claimed(self, tenant: str, key: str, claim: Doc) -> dict[str, int]:
        self._lease = (tenant, key, claim)
        try:
            report = await self.migrate(tenant)
        finally:
            self._lease = None
        extra = await self.finished(tenant, report)
        await self.store.put_doc(self.kind, tenant, "done", {
            "version": self.version, "fingerprint": self.fingerprint, **extra, "at": to_iso(self.clock.now()),
            **report})
        await self.store.delete_doc(self.kind, tenant, key)  # done: the mark answers from now on
        return report

    async def renew(self) -> None:
        """Renew this process's claim (between batches): a claim not renewed for `CLAIM_LEASE_S` is taken over."""
        if self._lease is None:
            return
        tenant, key, claim = self._lease
        now = self.clock.now()
        if (now - parse_iso(str(claim["at"]))).total_seconds() < CLAIM_LEASE_S / 4:
            return
        claim["at"] = to_iso(now)
        await self.store.put_doc(self.kind, tenant, key, claim)
