"""Rules: declarative rule definitions (model.py), pure evaluators (evaluate.py), the engine that
runs them on the bus and the platform clock (engine.py) and the `/api/v1/rules` handlers (api.py).

The public surface for domains and the alarms service is re-exported here; README.md describes
every rule kind with its parameters and defaults.
"""

from __future__ import annotations

from ucity.rules.engine import RulesEngine
from ucity.rules.evaluate import RuleState
from ucity.rules.events import (
    LEVEL_NAMES,
    LEVELS,
    SEVERITY,
    RuleCleared,
    RuleMatched,
    RuleSpike,
    RuleStatesRestored,
    level_rank,
)
from ucity.rules.model import (
    Circle,
    Compare,
    Composite,
    Edge,
    EventMatch,
    Geofence,
    Inactivity,
    Level,
    Persistence,
    Polygon,
    RateOfChange,
    Rule,
    RuleError,
    Schedule,
    Step,
    Suppression,
    Term,
    Text,
    Threshold,
    Window,
    rule_from_json,
    rule_to_json,
)

__all__ = [
    "LEVELS", "LEVEL_NAMES", "SEVERITY", "Circle", "Compare", "Composite", "Edge", "EventMatch", "Geofence",
    "Inactivity", "Level", "Persistence", "Polygon", "RateOfChange", "Rule", "RuleCleared", "RuleError",
    "RuleMatched", "RuleSpike", "RuleState", "RuleStatesRestored", "RulesEngine", "Schedule", "Step", "Suppression",
    "Term", "Text", "Threshold", "Window", "level_rank", "rule_from_json", "rule_to_json",
]
