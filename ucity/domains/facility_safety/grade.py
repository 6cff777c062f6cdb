"""The data safety grade of domain-rules §2.5, pure and explainable.

Per sensor, over a rolling window (default 30 days):

1. `level`: the median of the newest assessed values (compensated change; PPV as measured) on
   the channel's ladder, bands a=1 (below interest) … e=5 (at or above serious);
2. `trend`: the Theil–Sen slope of the compensated value's bucket means, extrapolated
   `trend_horizon_days` (365) ahead from the current value and banded again; only with a thermal
   model (a raw trend is mostly the season) and ≥ 80 % of the expected samples;
3. `events`: confirmed excursions at caution or above in the window, each counted once at its peak
   level however many steps it took (QA5 F11): 0 -> 1, 1–2 -> 3, ≥ 3 -> 5;

sensor score = the worst of these. Facility score = the mean of the sensor scores weighted by
member (main 1.0, auxiliary 0.5), but never below the worst main-member sensor minus 1, so one
failing main member is not averaged away. Grade: ≤ 1.5 A, ≤ 2.5 B, ≤ 3.5 C, ≤ 4.5 D, else E.

Deviation, for safety ([D]): completeness gates only the trend. A sensor with little history
still gives its level and its events, so a new sensor on a failing wall is never ignored; the
explanation says which parts were scored. A stuck sensor (SHM-R6) is not scored.

Coverage (QA5 F4): scored main-member sensors / attached main-member sensors (all sensors when the
facility has no main member). Below `min_main_coverage` (default 0.8, §2.5's 80 % applied to members,
[D]) the result's status is `insufficient-data` and the grade is **withheld** (`grade` None, the letter
kept as `provisionalGrade`), unless it already recommends an emergency inspection: silent sensors cannot
show a facility is safe, but the ones that report can show it is not, so such a grade stands, flagged.

Completeness (QA14 F3): the deviation above keeps bad news from a new sensor, but must not hand out good
grades. When the scored sensors received less than `min_completeness` of their expected samples (each sensor's
completeness, member-weighted; default 0.8, §2.5.1, [D]), the status is `insufficient-data` and a grade as good as
the legal grade or better (A or B without a legal grade) is **withheld** as the coverage rule does (provisional);
a worse grade, or one that recommends an emergency inspection, stands, flagged.

Every number that produced the grade is in the explanation, with a sentence in Korean and English.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GRADE_NAMES = {"A": {"ko": "우수", "en": "excellent"}, "B": {"ko": "양호", "en": "good"},
               "C": {"ko": "보통", "en": "fair"}, "D": {"ko": "미흡", "en": "poor"}, "E": {"ko": "불량", "en": "unsafe"}}
BANDS = "abcde"
SCORE_DECIMALS = 4  # a facility score as every output shows it: the grade, its history, the CSV exports
UNITS = {"tilt": "rad", "crack": "mm", "vibration": "mm/s"}
# The units a person reads (QA14 F9; the dashboard's too): tilt in mrad, crack in mm, PPV in mm/s, 2 decimals.
# The numbers of the explanation (`channels[].level.value`, `unit`) stay in the channel's unit (UNITS): only the
# sentences and the API's `display` fields use these.
DISPLAY_UNITS = {"tilt": ("mrad", 1000.0), "crack": ("mm", 1.0), "vibration": ("mm/s", 1.0)}
DISPLAY_DECIMALS = 2
CHANNEL_NAMES = {"tilt": {"ko": "기울기", "en": "tilt"}, "crack": {"ko": "균열", "en": "crack"},
                 "vibration": {"ko": "진동", "en": "vibration"}}
MEMBER_NAMES = {"main": {"ko": "주부재", "en": "main member"}, "auxiliary": {"ko": "보조부재", "en": "auxiliary member"}}


@dataclass(frozen=True, slots=True)
class GradePolicy:
    event_scores: tuple[tuple[int, int], ...]
    member_weights: dict[str, float]
    main_cap_offset: float
    bounds: tuple[float, float, float, float]
    horizon_days: float
    min_buckets: int
    min_main_coverage: float = 0.0  # share of main members that must be scored; 0: no minimum
    min_completeness: float = 0.0  # share of expected samples below which a good grade is withheld; 0: no minimum


@dataclass(frozen=True, slots=True)
class ChannelEvidence:
    """What one channel of a sensor showed in the window."""

    channel: str  # tilt | crack | vibration
    edges: tuple[tuple[str, float], ...]  # (level, raise edge), interest first
    recent: tuple[float, ...]  # newest assessed values, oldest first
    recent_at: str | None  # time of the newest
    fresh: bool  # the newest is recent enough to score
    compensation: str  # thermal | none
    trend_points: tuple[tuple[float, float], ...] = ()  # (days, compensated bucket mean)
    trend_status: str = "not-applicable"  # ok | no-thermal-model | incomplete | too-few | unknown-unit | not-applicable
    ahead_s: float | None = None  # the newest value is this far ahead of the computation (a device clock ahead)


@dataclass(frozen=True, slots=True)
class SensorEvidence:
    sensor_id: str
    member: str
    kind: str | None
    channels: tuple[ChannelEvidence, ...]
    events: int  # confirmed matches at or above the event level
    event_levels: dict[str, int] = field(default_factory=dict)
    spikes: int = 0
    completeness: float | None = None
    received: int = 0
    expected: int = 0
    stuck: bool = False
    name: str = ""
    matches: int = 0  # confirmed steps (`matched`) at or above the event level in the window, for the explanation
    interval_s: float | None = None  # the reporting interval completeness used
    interval_source: str = ""  # where it comes from (device, ingest.intervals_by_type, health.expected_interval_s)
    suspect: bool = False  # its newest checked reading was implausible (QA5 F3): such values are never assessed
    counted_since: str | None = None  # level and events from this time (its baseline reset: a replaced device)


def band(value: float, edges: Sequence[tuple[str, float]]) -> int:
    """1 (a) below the first edge … 5 (e) at or above the fourth; inclusive edges."""
    return 1 + sum(1 for _, at in edges if value >= at)


def theil_sen(points: Sequence[tuple[float, float]]) -> float:
    """The median of all pairwise slopes; robust to a few wild points."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1]
    return statistics.median(slopes) if slopes else 0.0


def event_score(count: int, bands: Sequence[tuple[int, int]]) -> int:
    score = 1
    for at_least, points in bands:
        if count >= at_least:
            score = points
    return score


def shown_score(score: float) -> float:
    """A facility score (or weighted mean) rounded as ucity shows and records it (`SCORE_DECIMALS`)."""
    return round(score, SCORE_DECIMALS)


def grade_for(score: float, bounds: Sequence[float]) -> str:
    for letter, upper in zip("ABCD", bounds, strict=True):
        if score <= upper:
            return letter
    return "E"


# -- one channel ---------------------------------------------------------------------------------------------
def score_channel(ev: ChannelEvidence, policy: GradePolicy) -> dict[str, Any]:
    """The level and trend parts of one channel, with their numbers."""
    out: dict[str, Any] = {"channel": ev.channel, "unit": UNITS.get(ev.channel, ""), "compensation": ev.compensation,
                           "edges": {level: at for level, at in ev.edges}}
    current = statistics.median(ev.recent) if ev.recent else None
    if current is not None and ev.fresh:
        score = band(current, ev.edges)
        out["level"] = {"score": score, "band": BANDS[score - 1], "value": current, "samples": len(ev.recent),
                        "at": ev.recent_at}
        if ev.ahead_s is not None:  # QA5 F8: taken, and said
            out["level"]["aheadS"] = round(ev.ahead_s, 1)
    else:
        out["level"] = {"score": None, "reason": "no recent data" if ev.recent else "no data"}
    out["trend"] = _trend(ev, current, policy)
    return out


def _trend(ev: ChannelEvidence, current: float | None, policy: GradePolicy) -> dict[str, Any]:
    if ev.trend_status != "ok":
        return {"score": None, "reason": ev.trend_status}
    if len(ev.trend_points) < policy.min_buckets:
        return {"score": None, "reason": "too-few", "buckets": len(ev.trend_points)}
    slope = theil_sen(ev.trend_points)  # per day
    start = current if current is not None else ev.trend_points[-1][1]
    projected = start + slope * policy.horizon_days
    score = band(projected, ev.edges)
    return {"score": score, "band": BANDS[score - 1], "slopePerDay": slope,
            "slopePerYear": slope * 365.0, "projected": projected, "horizonDays": policy.horizon_days,
            "buckets": len(ev.trend_points)}


# -- one sensor -----------------------------------------------------------------------------------------------
def score_sensor(ev: SensorEvidence, policy: GradePolicy) -> dict[str, Any]:
    weight = policy.member_weights.get(ev.member, 1.0)
    channels = [score_channel(ch, policy) for ch in ev.channels]
    events = {"score": event_score(ev.events, policy.event_scores), "count": ev.events,
              "byLevel": dict(sorted(ev.event_levels.items())), "spikes": ev.spikes, "matchedSteps": ev.matches,
              "counting": "one per excursion at its peak level"}
    parts = [p for ch in channels for p in (ch["level"]["score"], ch["trend"]["score"]) if p is not None]
    scored = not ev.stuck and (bool(parts) or ev.events > 0)
    score = max([*parts, events["score"]]) if scored else None
    return {"sensor": ev.sensor_id, "name": ev.name, "kind": ev.kind, "member": ev.member, "weight": weight,
            "score": score, "scored": scored, "stuck": ev.stuck, "channels": channels, "events": events,
            "completeness": ev.completeness, "samplesReceived": ev.received, "samplesExpected": ev.expected,
            "expectedIntervalS": ev.interval_s, "intervalSource": ev.interval_source, "suspect": ev.suspect,
            "countedSince": ev.counted_since}


# -- the facility --------------------------------------------------------------------------------------------
def grade_facility(sensors: Sequence[SensorEvidence], policy: GradePolicy, legal_grade: str | None,
                   emergency_grades: Sequence[str], steps_worse: int,
                   detached: dict[str, Any] | None = None) -> dict[str, Any]:
    """The facility's score, grade, emergency recommendation and full explanation.

    `detached` (QA14 F12): the sensors taken off the facility since `since` (the grade's window start, or the
    previous grade when older), `{"since", "sinceLocal", "sensors": [{"sensor", "at", "atLocal"}]}`: they no longer
    count, so the grade can move without any reading changing; the explanation names them."""
    rows = [score_sensor(s, policy) for s in sensors]
    scored = [r for r in rows if r["score"] is not None]
    cov = coverage(rows, policy.min_main_coverage)
    out: dict[str, Any] = {"sensors": rows, "legalGrade": legal_grade, "coverage": cov, "gradeWithheld": False}
    if detached and detached.get("sensors"):
        out["detached"] = detached
    if not scored:
        out.update(grade=None, score=None, weightedMean=None, mainCap=None, capApplied=False, status="no-data",
                   emergency={"recommended": False, "reasons": []})
        out["summary"] = {"ko": "데이터 안전등급 산정 불가: 점수를 낸 센서가 없음",
                          "en": "No data safety grade: no sensor could be scored"}
        en, ko = _detached_words(out)
        if en:
            out["summary"] = {"ko": " ".join([out["summary"]["ko"] + ".", *ko]),
                              "en": " ".join([out["summary"]["en"] + ".", *en])}
        return out
    total = sum(r["weight"] for r in scored)
    mean = sum(r["weight"] * r["score"] for r in scored) / total
    mains = [r["score"] for r in scored if r["member"] == "main"]
    cap = max(mains) - policy.main_cap_offset if mains else None
    score = max(mean, cap) if cap is not None else mean
    grade = grade_for(score, policy.bounds)
    out.update(grade=grade, score=shown_score(score), weightedMean=shown_score(mean), mainCap=cap,
               capApplied=cap is not None and cap > mean, status="ok")
    out["emergency"] = _emergency(grade, legal_grade, emergency_grades, steps_worse)
    comp = completeness(scored, policy.min_completeness)
    out["completeness"] = comp
    withhold = False
    reasons: list[str] = []
    if not cov["sufficient"]:
        reasons.append("coverage")
        # silent members cannot show the facility is safe: withheld unless it recommends an emergency inspection
        withhold = not out["emergency"]["recommended"]
    if not comp["sufficient"]:
        reasons.append("completeness")
        # QA14 F3: a few readings can show the facility is worse than its record, never that it is as good
        withhold = withhold or not _bad_news(grade, legal_grade, out["emergency"]["recommended"])
    if reasons:
        out.update(status="insufficient-data", insufficient=reasons)
        if withhold:
            out.update(grade=None, score=None, provisionalGrade=grade, provisionalScore=shown_score(score),
                       gradeWithheld=True)
    out["summary"] = summary(out)
    return out


def coverage(rows: Sequence[dict[str, Any]], minimum: float) -> dict[str, Any]:
    """Scored / attached main-member sensors (every sensor when none is main), and whether that is enough."""
    mains = [r for r in rows if r["member"] == "main"]
    members = mains or list(rows)
    scored = sum(1 for r in members if r["scored"])
    share = scored / len(members) if members else None
    return {"basis": "main" if mains else "all", "scored": scored, "attached": len(members), "share": share,
            "minimum": minimum, "sufficient": share is None or share >= minimum - 1e-9,
            "unscored": [r["sensor"] for r in members if not r["scored"]]}


GOOD_GRADES = ("A", "B")  # "excellent", "good": what thin data cannot claim of a facility without a legal grade


def completeness(scored: Sequence[dict[str, Any]], minimum: float) -> dict[str, Any]:
    """The share of expected samples the scored sensors received in the window (each sensor's completeness, capped
    at 1, weighted as its score is), and whether it reaches `minimum` (QA14 F3, §2.5.1's 80 %)."""
    known = [(r["weight"], r["completeness"]) for r in scored if r.get("completeness") is not None]
    total = sum(w for w, _ in known)
    share = sum(w * min(1.0, c) for w, c in known) / total if total else None
    return {"share": shown_score(share) if share is not None else None, "minimum": minimum,
            "basis": "scored sensors, member-weighted",
            "sufficient": share is None or minimum <= 0 or share >= minimum - 1e-9,
            "incomplete": [r["sensor"] for r in scored
                           if r.get("completeness") is not None and r["completeness"] < minimum - 1e-9]}


def _bad_news(grade: str, legal: str | None, emergency: bool) -> bool:
    """Whether a grade from too little data still stands (QA14 F3): it recommends an emergency inspection, or it is
    worse than the legal grade, or (no legal grade) it is no "good" grade. Incomplete data can show a facility is
    worse than known; a grade as good as the record or better needs the data."""
    if emergency:
        return True
    if legal in GRADE_NAMES:
        return "ABCDE".index(grade) > "ABCDE".index(legal)
    return grade not in GOOD_GRADES


def _emergency(grade: str, legal: str | None, emergency_grades: Sequence[str], steps_worse: int) -> dict[str, Any]:
    reasons: list[dict[str, str]] = []
    if grade in emergency_grades:
        reasons.append({"ko": f"데이터 안전등급 {grade}", "en": f"data safety grade {grade}"})
    if legal is not None and "ABCDE".index(grade) - "ABCDE".index(legal) >= steps_worse:
        reasons.append({"ko": f"법정 안전등급 {legal}보다 {steps_worse}단계 이상 나쁨",
                        "en": f"{steps_worse} or more steps worse than the legal grade {legal}"})
    return {"recommended": bool(reasons), "reasons": reasons}


# -- words ---------------------------------------------------------------------------------------------------
def display_value(channel: str, value: float) -> float:
    """A value of the channel's unit (UNITS) in its display unit, rounded to DISPLAY_DECIMALS."""
    unit = DISPLAY_UNITS.get(channel)
    return round(value * unit[1], DISPLAY_DECIMALS) if unit else value


def shown(channel: str, value: float, sign: bool = False) -> str:
    """A value of the channel's unit as a person reads it, e.g. `4.76 mrad` for 0.00475835 rad (QA14 F9)."""
    unit, factor = DISPLAY_UNITS.get(channel, (UNITS.get(channel, ""), 1.0))
    return f"{value * factor:{'+' if sign else ''}.{DISPLAY_DECIMALS}f} {unit}"


def summary(result: dict[str, Any]) -> dict[str, str]:
    """A short account in Korean and English naming every scored sensor and its numbers."""
    withheld = result.get("gradeWithheld", False)
    grade = result["provisionalGrade"] if withheld else result["grade"]
    score = result["provisionalScore"] if withheld else result["score"]
    if withheld:
        head_en = (f"Data safety grade withheld (insufficient data); provisional grade {grade} "
                   f"({GRADE_NAMES[grade]['en']}), score {score:.2f}: weighted mean {result['weightedMean']:.2f}")
        head_ko = (f"데이터 안전등급 보류(데이터 부족); 잠정 등급 {grade}({GRADE_NAMES[grade]['ko']}), 점수 {score:.2f}: "
                   f"가중평균 {result['weightedMean']:.2f}")
    else:
        head_en = (f"Data safety grade {grade} ({GRADE_NAMES[grade]['en']}), score {score:.2f}: weighted mean "
                   f"{result['weightedMean']:.2f}")
        head_ko = (f"데이터 안전등급 {grade}({GRADE_NAMES[grade]['ko']}), 점수 {score:.2f}: 가중평균 "
                   f"{result['weightedMean']:.2f}")
    if result["capApplied"]:
        head_en += f", raised to {result['mainCap']:.2f} by the worst main member"
        head_ko += f", 최악 주부재 기준 하한 {result['mainCap']:.2f} 적용"
    cov_en, cov_ko = _coverage_words(result)
    parts_en, parts_ko = [head_en + ".", cov_en], [head_ko + ".", cov_ko]
    det_en, det_ko = _detached_words(result)
    parts_en += det_en
    parts_ko += det_ko
    for row in result["sensors"]:
        en, ko = _sensor_words(row)
        parts_en.append(en)
        parts_ko.append(ko)
    if result["legalGrade"]:
        parts_en.append(f"Legal grade {result['legalGrade']} (not changed by the data grade).")
        parts_ko.append(f"법정 안전등급 {result['legalGrade']}(데이터 등급으로 변경하지 않음).")
    for reason in result["emergency"]["reasons"]:
        parts_en.append(f"Emergency inspection recommended: {reason['en']}.")
        parts_ko.append(f"긴급점검 권고: {reason['ko']}.")
    return {"ko": " ".join(parts_ko), "en": " ".join(parts_en)}


def _detached_words(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The sentence naming the sensors detached since the window's start or the previous grade (QA14 F12)."""
    detached = result.get("detached") or {}
    if not detached.get("sensors"):
        return [], []
    listed = ", ".join(f"{d['sensor']} ({d['atLocal']})" for d in detached["sensors"])
    return ([f"Sensors detached since {detached['sinceLocal']}: {listed}; they no longer count, so the grade can "
             f"change without any reading changing."],
            [f"{detached['sinceLocal']} 이후 분리된 센서: {listed}; 더 이상 산정에 포함되지 않으므로 측정값 변화 없이도 "
             f"등급이 바뀔 수 있음."])


def _coverage_words(result: dict[str, Any]) -> tuple[str, str]:
    cov = result["coverage"]
    what_en, what_ko = ("main members", "주부재") if cov["basis"] == "main" else ("sensors", "센서")
    share = f"{cov['share']:.0%}" if cov["share"] is not None else "-"
    en = f"Coverage: {cov['scored']} of {cov['attached']} {what_en} scored ({share})"
    ko = f"채점 범위: {what_ko} {cov['attached']}개 중 {cov['scored']}개({share})"
    reasons = result.get("insufficient", ["coverage"] if result.get("status") == "insufficient-data" else [])
    if "coverage" in reasons:
        en += f", below the minimum {cov['minimum']:.0%}: insufficient data"
        ko += f", 최소 {cov['minimum']:.0%} 미만: 데이터 부족"
    comp = result.get("completeness") or {}
    if "completeness" in reasons and comp.get("share") is not None:
        en += (f". Completeness: {comp['share']:.1%} of the expected samples, below the minimum {comp['minimum']:.0%}: "
               f"too little data for a grade this good")
        ko += (f". 수집률: 예상 표본의 {comp['share']:.1%}, 최소 {comp['minimum']:.0%} 미만: 이만큼 좋은 등급을 "
               f"뒷받침할 데이터 부족")
    legal = result.get("legalGrade")
    if reasons and not result.get("gradeWithheld"):
        if result["emergency"]["recommended"]:
            en += "; the grade stands because it already recommends an emergency inspection"
            ko += "; 긴급점검 권고 등급이므로 등급 유지"
        elif legal:
            en += f"; the grade stands because it is worse than the legal grade {legal}"
            ko += f"; 법정 안전등급 {legal}보다 나쁜 등급이므로 등급 유지"
        else:
            en += "; the grade stands because it is no good grade (A, B)"
            ko += "; 우수·양호(A, B) 등급이 아니므로 등급 유지"
    return en + ".", ko + "."


def _sensor_words(row: dict[str, Any]) -> tuple[str, str]:
    ident = row["name"] or row["sensor"]
    member = MEMBER_NAMES.get(row["member"], {"ko": row["member"], "en": row["member"]})
    if not row["scored"]:
        why_en = "stuck value, not scored" if row["stuck"] else "no data to score"
        why_ko = "값 고정, 제외" if row["stuck"] else "점수 낼 데이터 없음"
        if row["kind"] is None:
            why_en, why_ko = "kind unknown (no sensorKind, no measure yet), not scored", "종류 미상(측정값 없음), 제외"
        return f"{ident} ({member['en']}): {why_en}.", f"{ident}({member['ko']}): {why_ko}."
    en, ko = [], []
    for ch in row["channels"]:
        name = CHANNEL_NAMES.get(ch["channel"], {"ko": ch["channel"], "en": ch["channel"]})
        level, trend = ch["level"], ch["trend"]
        if level["score"] is not None:
            value = shown(ch["channel"], level["value"])
            en.append(f"{name['en']} {value} -> level {level['band']} ({level['score']})")
            ko.append(f"{name['ko']} {value} → 수준 {level['band']}({level['score']}점)")
            if level.get("aheadS") is not None:
                hours_ahead = level["aheadS"] / 3600
                en[-1] += f" (newest reading {hours_ahead:.1f} h ahead of the platform clock: device clock?)"
                ko[-1] += f"(최신 측정 시각이 플랫폼 시계보다 {hours_ahead:.1f}시간 앞섬: 장치 시계 확인)"
        if trend["score"] is not None:
            slope = shown(ch["channel"], trend["slopePerYear"], sign=True)
            projected = shown(ch["channel"], trend["projected"])
            en.append(f"trend {slope}/year -> {projected} in {trend['horizonDays']:g} days ({trend['score']})")
            ko.append(f"추세 연 {slope} → {trend['horizonDays']:g}일 후 {projected}({trend['score']}점)")
    if row.get("suspect"):
        en.append("newest reading implausible (suspect sensor), left out")
        ko.append("최신 측정값 이상(센서 의심), 제외")
    ev = row["events"]
    steps_en = f", {ev['matchedSteps']} level step(s)" if ev.get("matchedSteps", 0) > ev["count"] else ""
    steps_ko = f", 단계 변화 {ev['matchedSteps']}회" if ev.get("matchedSteps", 0) > ev["count"] else ""
    en.append(f"{ev['count']} caution+ event(s) ({ev['score']}){steps_en}")
    ko.append(f"주의 이상 사건 {ev['count']}건({ev['score']}점){steps_ko}")
    return (f"{ident} ({member['en']}, weight {row['weight']:g}): {'; '.join(en)}; score {row['score']}.",
            f"{ident}({member['ko']}, 가중치 {row['weight']:g}): {'; '.join(ko)}; 점수 {row['score']}.")
