"""Field-inspection tasks: created by alarms (SHM-R5) and by the data grade (§2.5), closed by an officer.

A task is `open` -> `in-progress` (started, assignee) -> `completed` (with a result and photos) or
`cancelled`; an engineer may also complete (or cancel) an `open` task at once, without starting it (a
trivial check: the history's `completed` entry then says `withoutStart`, QA5 F13h); any other move
(from `completed` or `cancelled`, or starting a started task) is a 409. At most one task of a kind is open per facility: a second
reason (a warning after the caution that opened a field check) is added to the open task's
history instead of opening another. Every move is a history entry with its time and actor.

Tasks are small documents (`put_doc("facility-safety-task", tenant, id)`), all kept in memory;
a city's few thousand a year are cheap, and listing never touches the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ucity.core.errors import NotFound, UcityError
from ucity.store.base import Store

KIND = "facility-safety-task"
OPEN, IN_PROGRESS, COMPLETED, CANCELLED = "open", "in-progress", "completed", "cancelled"
ACTIVE = (OPEN, IN_PROGRESS)
TITLES = {
    "field-check": {"ko": "현장 확인", "en": "Field check"},
    "emergency-inspection": {"ko": "긴급점검 권고", "en": "Emergency inspection recommended"},
    "evacuation-decision": {"ko": "대피 여부 결정", "en": "Evacuation decision"},
    "manual": {"ko": "현장 점검", "en": "Field inspection"},
}


# The history's action (past tense) -> the verb in Korean and English, for the 409 of a refused move.
VERBS = {"started": ("시작", "start"), "completed": ("완료", "complete"), "cancelled": ("취소", "cancel")}
STATUS_KO = {OPEN: "열린", IN_PROGRESS: "진행 중인", COMPLETED: "완료된", CANCELLED: "취소된"}


def refusal(action: str, status: str) -> str:
    """The detail of a refused move, e.g. "완료된 작업은 완료할 수 없음 / cannot complete a task that is completed"."""
    ko, en = VERBS.get(action, (action, action))
    return f"{STATUS_KO.get(status, status)} 작업은 {ko}할 수 없음 / cannot {en} a task that is {status}"


class InvalidMove(UcityError):
    status = 409
    type_uri = "urn:ucity:errors:InvalidTransition"
    title = "Invalid task transition"


@dataclass(slots=True)
class Task:
    id: str
    tenant: str
    facility: str
    kind: str
    title: dict[str, str]
    status: str
    created_at: str
    due: str | None
    reason: dict[str, Any] = field(default_factory=dict)
    assignee: str | None = None
    result: dict[str, Any] | None = None
    photos: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    closed_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "facility": self.facility, "kind": self.kind,
                "title": self.title, "status": self.status, "createdAt": self.created_at, "due": self.due,
                "reason": self.reason, "assignee": self.assignee, "result": self.result, "photos": self.photos,
                "history": self.history, "closedAt": self.closed_at}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Task:
        return cls(doc["id"], doc["tenant"], doc["facility"], doc["kind"], dict(doc.get("title") or {}),
                   doc["status"], doc["createdAt"], doc.get("due"), dict(doc.get("reason") or {}),
                   doc.get("assignee"), doc.get("result"), list(doc.get("photos") or []),
                   list(doc.get("history") or []), doc.get("closedAt"))

    def note(self, at: str, action: str, actor: str, **detail: Any) -> None:
        self.history.append({"at": at, "action": action, "actor": actor, **detail})

    def move(self, allowed: tuple[str, ...], to: str, at: str, action: str, actor: str, **detail: Any) -> None:
        if self.status not in allowed:
            raise InvalidMove(refusal(action, self.status))
        self.status = to
        if to in (COMPLETED, CANCELLED):
            self.closed_at = at
        self.note(at, action, actor, **detail)


class TaskBook:
    """Every task of every tenant, in memory and in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tasks: dict[tuple[str, str], Task] = {}

    async def load(self) -> None:
        for tenant, key, doc in await self.store.list_docs(KIND):
            self._tasks[(tenant, key)] = Task.from_doc(doc)

    async def save(self, task: Task) -> None:
        await self.store.put_doc(KIND, task.tenant, task.id, task.to_doc())

    def get(self, tenant: str, task_id: str) -> Task:
        task = self._tasks.get((tenant, task_id))
        if task is None:
            raise NotFound(f"작업 {task_id} 없음 / task {task_id} does not exist")
        return task

    def open_for(self, tenant: str, facility: str, kind: str) -> Task | None:
        return next((t for (tn, _), t in self._tasks.items()
                     if tn == tenant and t.facility == facility and t.kind == kind and t.status in ACTIVE), None)

    def new(self, tenant: str, facility: str, kind: str, at: str, due: str | None, actor: str,
            reason: dict[str, Any], title: dict[str, str] | None = None, assignee: str | None = None) -> Task:
        task = Task(uuid.uuid4().hex, tenant, facility, kind, title or dict(TITLES[kind]), OPEN, at, due, reason,
                    assignee)
        task.note(at, "created", actor, reason=reason)
        self._tasks[(tenant, task.id)] = task
        return task

    def list(self, tenant: str, status: tuple[str, ...] = (), facility: str | None = None,
             kind: str | None = None) -> list[Task]:
        found = [t for (tn, _), t in self._tasks.items() if tn == tenant and (not status or t.status in status)
                 and (facility is None or t.facility == facility) and (kind is None or t.kind == kind)]
        return sorted(found, key=lambda t: (t.created_at, t.id), reverse=True)
