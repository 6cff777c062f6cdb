"""Escalation chains on the platform clock: who is told next while nobody acknowledges.

A chain (contacts.py) is chosen per rule and level when an alarm is raised or reaches a new
level; step `i` fires at `started_at + steps[i].delay_s` while the alarm is active and
unacknowledged. Acknowledging or clearing stops it; a reactivated alarm resumes where it stopped
(the next step keeps its spacing from the previous one, counted from the reactivation); the groups
already told hear of the reactivation from the alarms service (`_reopen`), not from a step.

The state (`alarm.escalation`: chain id, level, started_at, next_step) is part of the stored
alarm, so a restart re-arms the timers; steps that fell due while the process was down fire at
once on start, in order (the alarm has been unanswered that long).

The state is never changed in place: each change gives the alarm a new dict. The alarm service
announces each change with the alarm as that change left it, a shallow copy (`Alarm.to_doc`)
that shares the dict with the alarm; a dict changed in place would change what earlier changes
announce.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from ucity.alarms.contacts import Contacts, EscalationChain, EscalationStep
from ucity.alarms.model import ACTIVE_UNACK, Alarm
from ucity.core.clock import Clock, TimerHandle, parse_iso, to_iso

StepFn = Callable[[Alarm, EscalationChain, int, EscalationStep], None]  # (alarm, chain, index, step)


class Escalator:
    def __init__(self, clock: Clock, contacts: Contacts, on_step: StepFn) -> None:
        self.clock = clock
        self.contacts = contacts
        self.on_step = on_step
        self._timers: dict[str, TimerHandle] = {}

    def begin(self, alarm: Alarm, reason: str) -> None:
        """Start the chain of the alarm's rule and current level from its first step.

        `reason` (raised | escalated) names the event the first step's notifications announce.
        """
        chain = self.contacts.chain_for(alarm.tenant, alarm.rule_id, alarm.level)
        if chain is None:
            return  # no chain for this level: a running one (of a lower level) goes on
        alarm.escalation = {"chain": chain.id, "level": alarm.level, "started_at": to_iso(self.clock.now()),
                            "next_step": 0, "reason": reason}
        self.arm(alarm)

    def resume(self, alarm: Alarm) -> None:
        """After a reactivation: the next step keeps its distance from the previous one."""
        state, chain = alarm.escalation, self._chain(alarm)
        if state is None or chain is None:
            return
        done = state["next_step"]
        if 0 < done < len(chain.steps):
            start = self.clock.now() - timedelta(seconds=chain.steps[done - 1].delay_s)
            alarm.escalation = {**state, "started_at": to_iso(start)}
        self.arm(alarm)

    def arm(self, alarm: Alarm) -> None:
        """Schedule the alarm's next step (a step already due fires now)."""
        self.stop(alarm)
        state, chain = alarm.escalation, self._chain(alarm)
        if state is None or chain is None or alarm.status != ACTIVE_UNACK or state["next_step"] >= len(chain.steps):
            return
        due = parse_iso(state["started_at"]) + timedelta(seconds=chain.steps[state["next_step"]].delay_s)
        if due <= self.clock.now():
            self._fire(alarm)
            return
        self._timers[alarm.id] = self.clock.call_at(due, lambda: self._due(alarm))

    def stop(self, alarm: Alarm) -> None:
        timer = self._timers.pop(alarm.id, None)
        if timer is not None:
            timer.cancel()

    def stop_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    @property
    def pending(self) -> int:
        return len(self._timers)

    def _due(self, alarm: Alarm) -> None:
        self._timers.pop(alarm.id, None)
        if alarm.status == ACTIVE_UNACK:
            self._fire(alarm)

    def _fire(self, alarm: Alarm) -> None:
        """Run the next step, then arm the one after it.

        `on_step` runs before the state moves on: the change it decides (the service's `notified`) is the
        one that moves it, and the alarm's earlier changes keep the state from before the step."""
        state, chain = alarm.escalation, self._chain(alarm)
        if state is None or chain is None:
            return
        index = state["next_step"]
        self.on_step(alarm, chain, index, chain.steps[index])
        alarm.escalation = {**state, "next_step": index + 1}
        self.arm(alarm)

    def _chain(self, alarm: Alarm) -> EscalationChain | None:
        if alarm.escalation is None:
            return None
        return self.contacts.escalations.get(alarm.tenant, alarm.escalation["chain"])
