"""One validated settings object, read from `UCITY_*` environment variables and a TOML file.

Nested sections use `__` in environment names: `UCITY_STORE__URL=sqlite:///x.db`.
Precedence: init arguments > environment > TOML file > defaults.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ucity.core.netguard import parse_networks

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Section(BaseModel):
    """A section of the settings: a key it does not know is an error (`config validate` names it), so a
    misspelled setting (`block_private_network`, `grant_secrett`) is refused instead of silently left at
    its default. Domain tables are checked by their domain (`DomainsSettings`). An error never shows the value it
    refused (`hide_input_in_errors`): a misspelled `admin_tokn` or `store.urll` holds a secret (QA12 F1)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    public_url: str | None = Field(None, description="base URL used in Location headers and hosted @context URLs")
    require_auth: bool | None = Field(
        None, description="every API asks for `Authorization: Bearer <token>` (the ops tokens; docs/operations.md "
                          "§4) but /health, device measures, footage links, the dashboard page and the API "
                          "documentation; unset means on in production, off otherwise")


class LogSettings(_Section):
    """The process's log lines (ucity/core/logsetup.py; the level is the top-level `log_level`)."""

    format: Literal["text", "json"] = Field("text", description="text: `<UTC time> LEVEL logger: message` lines; "
                                            "json: one object per line (time, level, logger, message, exception, "
                                            "http) for a log collector. Times are UTC ISO 8601 in both")
    access: bool = Field(False, description="`ucity serve` logs one line per HTTP request (client address, method, "
                         "path with secret query values masked, status) at INFO on logger uvicorn.access; off by "
                         "default: a device fleet's measures would make most of the log")


class StoreSettings(_Section):
    url: str = Field("", description="sqlite:///path.db or postgresql://user:password@host:port/db; empty means "
                     "<data_dir>/ucity.db")
    group_commit_ms: float = Field(2.0, ge=0, le=1000, description="longest wait to fill a commit batch "
                                   "(the writer waits only while writes keep arriving)")
    group_commit_max: int = Field(1000, ge=1, description="most operations in one transaction")
    pool_size: int = Field(10, ge=2, le=1000, description="PostgreSQL: connections per process (one writes, the "
                           "others read)")
    max_queued: int = Field(20_000, ge=0, description="writes waiting for a commit; more are answered 503 with "
                            "Retry-After (back-pressure of a burst); 0: no limit")
    entity_cache: int = Field(10_000, ge=0, description="SQLite: entities whose latest document the writer keeps "
                              "parsed (about 5 KB each), so that a device reporting again is not read back; set it "
                              "at or above the number of devices reporting")
    pg_read_settings: dict[str, str] = Field(
        {"jit": "off", "plan_cache_mode": "force_custom_plan"},
        description="PostgreSQL: session settings of the read connections. Off JIT and custom plans: a query by "
                    "type + q (10,000 entities) costs the server 14 instead of 29 CPU-ms; the generic plan a pooled "
                    "connection settles on reads every candidate entity, and JIT compiles each custom plan "
                    "(20-30 ms). {} keeps the server's own settings")
    series_cache: int = Field(1_000_000, ge=0, description="temporal series (one per attribute instance of an "
                              "entity) whose ids the writer keeps, about 100 bytes each; the ones cached first are "
                              "dropped beyond it. Set it at or above the city's series (devices x attributes)")
    exclusive: bool = Field(True, description="SQLite: the process owns the file (a lock on <file>.lock): a second "
                            "ucity process on the same file is refused at start, as the writer's caches hold only if "
                            "it is the file's only writer. false only for tests that play several processes on one "
                            "file; several processes need PostgreSQL")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("store.url must start with sqlite:// or postgresql://")
        return value


def _networks(value: list[str]) -> list[str]:
    parse_networks(value)  # CIDR networks: a clear error when the settings load, not a refusal later
    return value


Networks = Annotated[list[str], AfterValidator(_networks)]  # e.g. ["10.20.0.0/16"]


class NgsiLdSettings(_Section):
    default_tenant: str = "urn:ngsi-ld:tenant:default"
    default_limit: int = Field(20, ge=1)
    max_limit: int = Field(1000, ge=1)
    temporal_page_size: int = Field(1000, ge=1, description="instances per attribute per page before 206")
    context_fetch_timeout_s: float = Field(5.0, gt=0)
    context_cache_ttl_s: float = Field(3600.0, ge=0)
    context_cache_size: int = Field(256, ge=1)
    context_block_private_networks: bool | None = Field(
        None, description="refuse remote @context URLs that resolve to loopback/private/link-local addresses "
                          "(server-side request forgery); unset means on in production, off otherwise")
    context_allowed_networks: Networks = Field(
        [], description="networks (CIDR) remote @context URLs may be in even when private ones are refused, "
                        "e.g. the city's own @context server")
    max_future_s: float = Field(86400.0, gt=0, le=3.2e9, description="an observedAt more than this ahead of the "
                                "platform clock is refused (400) on every NGSI-LD write that records history: "
                                "retention deletes by that time, so a far-future one would be kept for ever; "
                                "ucity's choice [D], as ingest.max_future_s")


class SubscriptionSettings(_Section):
    notify_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(10, ge=0, description="retries of a failed notification before it is abandoned "
                             "(counted in timesAbandoned and /health subscriptions.abandoned); with the defaults "
                             "the waits are 2, 4 ... 64 s, then 120 s: about 10 minutes in all, so that a receiver "
                             "restarting or a network outage of a few minutes loses nothing [D]")
    retry_base_s: float = Field(2.0, gt=0, description="wait before the first retry; doubles each time")
    retry_max_s: float = Field(120.0, gt=0, description="longest wait between two attempts")
    queue_size: int = Field(10000, ge=1, description="pending notifications per subscription")
    refresh_s: float = Field(10.0, gt=0, description="each process re-reads the subscriptions other processes "
                                                     "created, changed or deleted this often (a ucity choice)")
    block_private_networks: bool | None = Field(
        None, description="refuse notification endpoints that are or resolve to loopback/private/link-local "
                          "addresses (server-side request forgery); unset means on in production, off otherwise")
    allowed_networks: Networks = Field(
        [], description="networks (CIDR) notification endpoints may be in even when private ones are refused, "
                        "e.g. the operations centre's receivers: ['10.20.0.0/16']")


class IngestSettings(_Section):
    """Device ingest (docs/devices.md): health rules and the logging of rejected measures."""

    default_interval_s: float = Field(600.0, gt=0, description="expected reporting interval of a device when neither "
                                      "it, its service group nor intervals_by_type sets one")
    intervals_by_type: dict[str, float] = Field({}, description="expected interval (s) per entity type, e.g. "
                                                "{ParkingSpot = 600}")
    offline_after_intervals: int = Field(3, ge=1, description="silent for this many intervals -> offline")
    reject_log_interval_s: float = Field(300.0, gt=0, description="log rejected measures once per device per interval")
    max_batch: int = Field(500, ge=1, description="most MQTT messages committed in one store call")
    max_future_s: float = Field(86400.0, gt=0, le=3.2e9, description="a measure time (TimeInstant / observedAt) "
                                "more than this ahead of the platform clock is rejected as invalid-time (the "
                                "fields kept with the receive time); ucity's choice, not a FIWARE value")
    clock_ahead_warn_s: float = Field(300.0, gt=0, le=3.2e9, description="a measure time more than this ahead of "
                                      "the platform clock (but within max_future_s) is taken and counted as a "
                                      "clock-ahead warning (a device clock or time zone off, e.g. local time sent "
                                      "without its offset); ucity's choice, not a FIWARE value")
    registry_refresh_s: float = Field(60.0, ge=0, le=86400, description="scale-out (bus.url set): how often each "
                                      "process re-reads every service group and device from the store, in case a "
                                      "provisioning message from another process was lost (those come at once); "
                                      "0: never; a ucity choice")


class MqttSettings(_Section):
    """The MQTT client of ingest; off while `url` is empty."""

    url: str = Field("", description="mqtt://[user:password@]host[:port] of the broker; empty disables MQTT")
    client_id: str = Field("ucity", min_length=1, description="MQTT client id (a persistent session)")
    shared_group: str = Field("", description="MQTT shared-subscription group: processes subscribed with the same "
                              "group ($share/<group>/...) each get a share of the measures; empty: every "
                              "process gets all of them (one ingest process)")
    keepalive_s: int = Field(60, ge=5)
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay; doubles up to reconnect_max_s, jittered")
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _mqtt_scheme(cls, value: str) -> str:
        if value and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("mqtt.url must start with mqtt:// or mqtts://")
        return value


class BusSettings(_Section):
    """The bus between processes (DESIGN §2, docs/operations.md): in-process while `url` is empty; with a
    NATS JetStream URL, device observations travel on a durable stream partitioned by entity id and
    `ucity worker` processes write them, each owning some partitions."""

    url: str = Field("", description="nats://host:4222 (comma-separated for a cluster) of JetStream-enabled NATS "
                     "servers; empty: everything in one process")
    partitions: int = Field(16, ge=1, le=1024, description="entity partitions, the unit of work a worker owns; "
                            "fixed once streams exist")
    replicas: int = Field(1, ge=1, le=5, description="stream and lease replicas (3 on a 3-node NATS cluster)")
    ack_wait_s: float = Field(10.0, gt=0, description="a message a worker has not acknowledged by then is "
                              "delivered again (to the partition's next owner if the worker died)")
    lease_s: float = Field(15.0, gt=0, description="a worker that has not renewed its partition leases for this "
                           "long loses them; longer than ack_wait_s so redeliveries come before new messages")
    max_batch: int = Field(500, ge=1, description="messages a worker takes from a partition at once")
    max_pending: int = Field(1_000_000, ge=1000, description="messages a stream holds; beyond it publishing "
                             "fails and measures are answered 503 (back-pressure)")
    publish_timeout_s: float = Field(5.0, gt=0)
    worker_id: str = Field("", description="this worker's name in the group (default host-pid)")

    @field_validator("url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            if not part.startswith(("nats://", "tls://")):
                raise ValueError("bus.url must be nats:// or tls:// URLs")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_ack_wait(self) -> BusSettings:
        if self.url and self.lease_s <= self.ack_wait_s:
            raise ValueError("bus.lease_s must be longer than bus.ack_wait_s")
        return self


class RetrySettings(_Section):
    """Retries of a failed notification: exponential backoff on the platform clock, then a dead letter."""

    max_attempts: int = Field(6, ge=1, description="attempts in all, the first one included")
    base_s: float = Field(1.0, gt=0, description="wait before the first retry; doubles each time")
    max_s: float = Field(300.0, gt=0, description="longest wait between two attempts")


class AgencyRetrySettings(RetrySettings):
    """Retries of a package or notice to an agency's webhook before it is a dead letter [D]: 12 attempts, 2 s apart
    doubling to at most 2 min, about 12 minutes in all, so that a 112/119 system restarting or a network outage of a
    few minutes needs no administrator (alarm notifications keep `alarms.retry`)."""

    max_attempts: int = Field(12, ge=1, description="attempts in all, the first one included")
    base_s: float = Field(2.0, gt=0, description="wait before the first retry; doubles each time")
    max_s: float = Field(120.0, gt=0, description="longest wait between two attempts")


class SmtpSettings(_Section):
    """The SMTP server alarm e-mails go through."""

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field("ucity@localhost", description="From: address")
    username: str = ""
    password: SecretStr | None = Field(None, description="with username, SMTP AUTH; given empty, it is unset "
                                       "(as every secret: `UCITY_ALARMS__SMTP__PASSWORD=`)")
    starttls: bool = False
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("password", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return _unset_if_empty(value)

    @property
    def login(self) -> tuple[str, str] | None:
        """The user and password of SMTP AUTH, or None: no AUTH without both (an empty password is unset, never
        sent as one)."""
        if not self.username or self.password is None:
            return None
        return self.username, self.password.get_secret_value()


# The value sample configurations carry for the webhook secret; refused outside development.
WEBHOOK_SECRET_PLACEHOLDER = "change-me"


def _unset_if_empty(value: Any) -> Any:
    """An optional secret given empty (`UCITY_OPS__GRANT_SECRET=` in deploy/systemd/ucity.env.example, or `""` in
    the file) is unset: production starts and warns about it (`missing_secret_warnings`) instead of refusing it as
    a placeholder (QA12 F2)."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, SecretStr) and not value.get_secret_value().strip():
        return None
    return value



class AlarmSettings(_Section):
    """Alarms, escalation and notifications (ucity/alarms/README.md). Defaults are ucity's [D], not official values."""

    dedupe_window_s: float = Field(600.0, ge=0, description="a rule matching again within this time after its "
                                   "alarm cleared re-opens that alarm instead of raising a new one (domain-rules §9)")
    downgrade_while_active: bool = Field(False, description="a lower level while active lowers the alarm's level")
    parent_relationships: list[str] = Field(["refParent", "isPartOf"], description="Relationships (short names, "
                                            "core context) naming an entity's parent asset, tried in order")
    propagation_depth: int = Field(3, ge=0, description="parent levels an alarm propagates up (0: none)")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of X-Ucity-Signature; unset in "
                                             "development means the placeholder, outside development webhooks fail")
    webhook_timeout_s: float = Field(5.0, gt=0)
    retry: RetrySettings = RetrySettings()
    queue_size: int = Field(1000, ge=1, description="pending notifications per notifier endpoint")
    smtp: SmtpSettings = SmtpSettings()
    sse_buffer: int = Field(256, ge=1, description="recent stream events kept for Last-Event-ID resume")
    sse_client_queue: int = Field(256, ge=1, description="events waiting per stream client before it is dropped")
    sse_heartbeat_s: float = Field(15.0, gt=0, description="comment line sent on an idle stream")
    sse_max_stream_s: float = Field(300.0, gt=0, description="a stream ends after this long and the client "
                                    "resumes with Last-Event-ID (so no stream holds up a server shutdown for long)")
    recorded_max: int = Field(200, ge=1, description="messages a recording (development) notifier keeps")
    dead_letters_recent_s: float = Field(86400.0, gt=0, description="/health shows the alarms component `degraded` "
                                         "(still ready) while a notification became a dead letter within this time")
    # Contact data as configuration (read-only through the API); the API adds more per tenant.
    notifiers: list[dict[str, Any]] = []
    recipients: list[dict[str, Any]] = []
    escalations: list[dict[str, Any]] = []

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return _unset_if_empty(value)


PERSONAL_DEFAULT = ("Person", "ElderlyHome", "CareDevice", "ChildTracker", "SafeReturnWalk")
"""The entity types personal by default [D] (docs/operations.md §4): a person; the home of an elderly person living
alone (its place, the resident's age, priority) and the devices in it (motion, doors, fridge, emergency button: the
resident's daily life, at the home's place); a child's tracker (where the child is); a safe-return walk (a person's
track home). Not `Vehicle` (daycare buses are one use of a generic type) nor `Building` / `Camera`."""


class PrivacySettings(_Section):
    """What the platform treats as personal data (docs/operations.md §4). Defaults are ucity's [D], not official values.

    One kernel list for every part: the NGSI-LD API (entities of these types need `personal:read` with the token
    guard on, and their reads are audited) and alarms (an Alert about such an entity has no alertSource and a coarse
    place, QA10 F2). Privacy by design (QA12 F8): the default covers the care types ucity itself ships (the
    simulator's, docs/simulator.md), `PERSONAL_DEFAULT`; a domain whose entities describe a person declares its types
    in `setup` (`platform.get("privacy").declare`, ucity/core/privacy.py, QA13 F1): the list in force is this one ∪
    the declared types (a list that is set replaces the default, not what domains declare)."""

    personal_entity_types: list[str] = Field(list(PERSONAL_DEFAULT), description="entity types of personal data: "
                                             "short names of the core @context (`Person`) or full IRIs")
    location_cell_deg: float = Field(0.005, gt=0, le=1, description="a person's place where it is shown coarsely "
                                     "(an Alert about a personal entity): the centre of its cell of this many "
                                     "degrees (the operations centre's sensitive events)")


class RulesSettings(_Section):
    """The rules engine (ucity/rules/README.md). Defaults are ucity's [D], not official values."""

    snapshot_interval_s: float = Field(5.0, gt=0, description="longest delay before a changed rule state is "
                                       "snapshotted to the store (level changes and running durations at once)")
    timezone: str = Field("Asia/Seoul", description="local time zone of schedule windows that name none")
    parent_relationships: list[str] = Field(["controlledAsset", "refParent", "isPartOf"], description="Relationships "
                                            "(short names, core context) whose object is reported as a match's parent")
    late_window_s: float = Field(3600.0, ge=0, description="[D] a reading older than the newest evaluated one that is "
                                 "worse than an active level raises it if observed at most this long ago (0: never)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


# The value sample configurations carry for the operations secrets; refused outside development too.
OPS_SECRET_PLACEHOLDER = "change-me"
CrisisLevel = Literal["interest", "caution", "warning", "serious"]
# PLAT-R4 [V]: Daejeon's 112 video support covers 7 violent crimes (domain-rules §1.3). Type codes are ucity's.
DEFAULT_VIDEO_CRIME_TYPES = ["murder", "robbery", "pickpocketing", "theft", "kidnapping", "sexual_violence",
                             "domestic_violence"]


class NearestSettings(_Section):
    """PLAT-R3: which cameras an event gets. N = 5 is Daegu's practice [V]; the radii are ucity's defaults [D]."""

    count: int = Field(5, ge=1, le=50, description="cameras per event (N)")
    radius_m: float = Field(500.0, gt=0, description="search radius around the event")
    widened_radius_m: float = Field(1000.0, gt=0, description="radius used when fewer than N are within radius_m")
    max_count: int = Field(50, ge=1, description="most cameras one request may ask for")
    prefer_covering: bool = Field(True, description="choose cameras whose known field of view covers the point "
                                  "before those known to look away")


class OpsSettings(_Section):
    """The operations centre (ucity/ops/README.md): events, CCTV, agency linkage, footage grants, auth.

    Every number is a ucity default [D], not an official Korean value, unless its rule says otherwise.
    """

    grant_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of footage grant tokens; unset in "
                                           "development means the placeholder, outside development grants fail")
    pseudonym_secret: SecretStr | None = Field(None, description="HMAC key that turns an event subject's identity "
                                               "into a pseudonym; same rules as grant_secret")
    grant_minutes: float = Field(30.0, gt=0, le=1440, description="lifetime of a grant and of each renewal (PLAT-R5)")
    grant_max_minutes: float = Field(240.0, gt=0, le=10080, description="longest lifetime one request may ask for")
    grant_max_renewals: int = Field(3, ge=0, le=1000, description="renewals an agency may make of its own grant "
                                    "[D]; then only an operator (grants:issue) renews it (0: agencies never renew)")
    grant_max_total_minutes: float = Field(480.0, gt=0, le=525_600, description="an agency's own renewal never "
                                           "takes a grant past this long after its issue [D] (it is shortened to "
                                           "that end, refused once there); operators' renewals are not bound")
    retry: AgencyRetrySettings = AgencyRetrySettings()
    video_crime_types: list[str] = Field(DEFAULT_VIDEO_CRIME_TYPES, description="event type codes for which "
                                         "police video is shared without operator approval (PLAT-R4)")
    gated_services: list[str] = Field(["112_VIDEO", "112_DISPATCH"], description="linkage services that the "
                                      "crime-type list gates (PLAT-R4)")
    alarm_event_min_level: CrisisLevel = Field("warning", description="alarms at this level or above become "
                                               "events (PLAT-R9)")
    default_level: CrisisLevel = Field("warning", description="level of an event created without one")
    event_max_age_days: float = Field(30.0, gt=0, le=36_500, description="an event's occurredAt may lie at most "
                                      "this long before its report [D] (a mistyped year, a terminal's reset clock); "
                                      "older is refused (400)")
    event_max_ahead_minutes: float = Field(5.0, ge=0, le=1440, description="an event's occurredAt may lie at most "
                                           "this long after its report [D] (reporters' clocks drift a little); later "
                                           "is refused (400)")
    nearest: NearestSettings = NearestSettings()
    context_radius_m: float = Field(500.0, gt=0, description="radius of the 119 package's surroundings (PLAT-R6)")
    context_types: dict[str, list[str]] = Field(
        {"traffic": ["TrafficFlowObserved"], "parking": ["OffStreetParking", "OnStreetParking", "ParkingSpot"],
         "hydrants": ["FireHydrant"]},
        description="package section -> entity types listed near the event (119 dispatch packages)")
    import_bbox: tuple[float, float, float, float] = Field(
        (124.0, 33.0, 132.0, 39.0), description="CSV camera import: lon/lat box a camera must lie in (Korea)")
    admin_token: SecretStr | None = Field(None, description="a configured admin bearer token (to issue the others)")
    tokens: list[dict[str, Any]] = Field([], description="configured bearer tokens: {id, token, role, agency, "
                                         "tenant, name}")
    agencies: list[dict[str, Any]] = Field([], description="configured agencies (read-only through the API)")
    token_refresh_s: float = Field(10.0, gt=0, le=3600, description="how often each process re-reads from the "
                                   "store what other processes change through the API [D]: issued tokens, agencies, "
                                   "camera URLs and alarm contact data; a change made through another process is "
                                   "seen here within this bound")

    @field_validator("grant_secret", "pseudonym_secret", "admin_token", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return _unset_if_empty(value)


class HistoryRetentionRule(_Section):
    """How long the history of one entity type (optionally of some of its attributes only) is kept."""

    type: str = Field(min_length=1, description="entity type: a short name of the core context (ParkingSpot) or "
                      "a full IRI")
    attrs: list[str] = Field([], description="attribute names (short or IRI) the rule is limited to; empty: every "
                             "attribute. A rule with attrs wins over the type's rule without for those attributes")
    keep_days: float = Field(gt=0, le=100_000, description="attribute instances older than this are deleted")

    @field_validator("attrs")
    @classmethod
    def _attr_names(cls, value: list[str]) -> list[str]:
        if any(not name for name in value) or len(set(value)) != len(value):
            raise ValueError("attrs must be distinct, non-empty names")
        return value


class RetentionSettings(_Section):
    """Retention limits (docs/operations.md "Retention"): what is deleted after how long. Every limit is off
    (None: keep) by default: the kernel's data today is facility sensors, whose safety grades need long-term
    trends, and operations records; no number here is an official value. Domains declare defaults for their
    own entity types (`platform.get("retention").declare(...)`), which a `history` rule of the same type and
    attributes here overrides."""

    history: list[HistoryRetentionRule] = Field([], description="per entity type: {type, attrs, keep_days}")
    default_history_days: float | None = Field(None, gt=0, le=100_000, description="history of types no rule names; "
                                               "None: kept")
    audit_days: float | None = Field(None, gt=0, le=100_000, description="operations audit lines; None: kept")
    ops_closed_days: float | None = Field(None, gt=0, le=100_000, description="closed or cancelled operations events, "
                                          "with their footage grants, after their last change; None: kept")
    alarms_closed_days: float | None = Field(None, gt=0, le=100_000, description="closed alarms with their history, "
                                             "after their closing; None: kept")
    alerts_closed_days: float | None = Field(None, gt=0, le=100_000, description="NGSI-LD `Alert` entities of "
                                             "cleared or closed alarms, with their history, after their last change "
                                             "(the Alerts of active alarms stay); None: kept")
    dead_letters_days: float | None = Field(None, gt=0, le=100_000, description="dead letters (notifications and "
                                            "agency packages given up on, with their recipients' names and "
                                            "addresses) after their failure; None: kept")
    sweep_interval_s: float = Field(3600.0, ge=1, le=31_536_000, description="time between two sweeps (the first one a minute "
                                    "after the start, or sooner when the interval is shorter)")
    batch: int = Field(2000, ge=1, le=1_000_000, description="most rows one deletion removes: a sweep holds the "
                       "store's writer one bounded transaction at a time (SQLite: about 3 CPU-us per history "
                       "instance, 6 ms for 2,000)")

    @field_validator("history")
    @classmethod
    def _one_rule_per_target(cls, value: list[HistoryRetentionRule]) -> list[HistoryRetentionRule]:
        seen: set[tuple[str, frozenset[str]]] = set()
        for rule in value:
            key = (rule.type, frozenset(rule.attrs))
            if key in seen:
                raise ValueError(f"retention.history: two rules for type {rule.type!r} and attrs {sorted(rule.attrs)}")
            seen.add(key)
        return value


class DomainsSettings(BaseModel):
    """Domain services (ucity/domains/README.md): which packages are loaded, and each one's own table.

    `enabled` names packages under `ucity/domains/`; a domain's settings are the table of the same
    name (`[domains.facility_safety]` in TOML), kept as given here and validated by the domain itself
    in its `setup(platform, config)`, so a new domain needs no change to this file.
    """

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    # None by default: the kernel runs (and is tested) alone; a deployment names its services, e.g.
    # `enabled = ["facility_safety"]`.
    enabled: list[str] = Field([], description="domain packages to load, in order (e.g. [\"facility_safety\"])")

    @field_validator("enabled")
    @classmethod
    def _package_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"domains.enabled: {name!r} is not a package name")
        if len(set(value)) != len(value):
            raise ValueError("domains.enabled names a domain twice")
        return value

    def config_for(self, name: str) -> dict[str, Any]:
        """The settings table of one domain (empty when the configuration has none)."""
        value = (self.model_extra or {}).get(name)
        return dict(value) if isinstance(value, dict) else {}


class Settings(BaseSettings):
    """Everything configurable in ucity, with documented defaults."""

    # hide_input_in_errors: a model validator's input is the whole configuration, secrets included (QA12 F1)
    model_config = SettingsConfigDict(env_prefix="UCITY_", env_nested_delimiter="__", extra="forbid",
                                      hide_input_in_errors=True)

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("ucity-data")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)")
    log: LogSettings = LogSettings()
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    ngsild: NgsiLdSettings = NgsiLdSettings()
    subscriptions: SubscriptionSettings = SubscriptionSettings()
    ingest: IngestSettings = IngestSettings()
    mqtt: MqttSettings = MqttSettings()
    bus: BusSettings = BusSettings()
    rules: RulesSettings = RulesSettings()
    alarms: AlarmSettings = AlarmSettings()
    privacy: PrivacySettings = PrivacySettings()
    domains: DomainsSettings = DomainsSettings()
    ops: OpsSettings = OpsSettings()
    retention: RetentionSettings = RetentionSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level: {value!r} is not one of {', '.join(LOG_LEVELS)} "
                             f"(로그 수준은 {', '.join(LOG_LEVELS)} 중 하나)")
        return level

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        """Outside development a secret is real or unset (an empty one is unset: `_unset_if_empty`). The message
        names the settings, never a value (the placeholder is public)."""
        if self.environment == "development":
            return self
        secrets = {"alarms.webhook_secret": self.alarms.webhook_secret, "ops.grant_secret": self.ops.grant_secret,
                   "ops.pseudonym_secret": self.ops.pseudonym_secret, "ops.admin_token": self.ops.admin_token}
        placeholders = {WEBHOOK_SECRET_PLACEHOLDER, OPS_SECRET_PLACEHOLDER}
        named = [name for name, secret in secrets.items()
                 if secret is not None and secret.get_secret_value() in placeholders]
        if named:
            names, shown = ", ".join(named), " / ".join(f'"{p}"' for p in sorted(placeholders))
            raise ValueError(f"{names}: 예시 값({shown})입니다. 개발 환경이 아니면 실제 비밀 값을 넣거나 설정하지 마세요 / "
                             f"{names}: the placeholder {shown}; outside development set a real secret, or leave it "
                             "unset (a warning at start then says what fails without it)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def auth_required(self) -> bool:
        """`server.require_auth`, or its default: on in production, off otherwise."""
        if self.server.require_auth is not None:
            return self.server.require_auth
        return self.environment == "production"

    @property
    def endpoints_guarded(self) -> bool:
        """`subscriptions.block_private_networks` (the SSRF guard of notification and webhook endpoints), or its
        default: on in production, off otherwise."""
        block = self.subscriptions.block_private_networks
        return self.environment == "production" if block is None else block

    @property
    def contexts_guarded(self) -> bool:
        """`ngsild.context_block_private_networks` (the SSRF guard of remote @context URLs), or its default: on in
        production, off otherwise."""
        block = self.ngsild.context_block_private_networks
        return self.environment == "production" if block is None else block

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_dir / 'ucity.db'}"


# What fails in production while a secret is not set (outside development there is no placeholder).
MISSING_SECRETS = {
    "ops.grant_secret": ("영상 공유 권한과 링크를 만들 수 없음(503)",
                         "footage cannot be shared: every grant and footage link answers 503"),
    "ops.pseudonym_secret": ("사람의 인적 정보가 있는 상황은 가명 처리할 수 없어 거부됨(503)",
                             "an event naming a person cannot be pseudonymised: it answers 503"),
    "alarms.webhook_secret": ("웹훅 알림과 기관 연계가 전송되지 않음",
                              "webhook notifiers and agency links deliver nothing (unsigned webhooks are refused)"),
}


def missing_secret_warnings(settings: Settings) -> list[str]:
    """One warning per secret a production process runs without, saying what will fail (QA8 F6: found at the
    first incident otherwise). Said at the start of `serve` and `worker`, and listed in /health's
    `configWarnings` (docs/operations.md §4)."""
    if settings.environment != "production":
        return []
    values = {"ops.grant_secret": settings.ops.grant_secret, "ops.pseudonym_secret": settings.ops.pseudonym_secret,
              "alarms.webhook_secret": settings.alarms.webhook_secret}
    warnings = []
    for name, value in values.items():
        if value is None:
            ko, en = MISSING_SECRETS[name]
            env = "UCITY_" + name.upper().replace(".", "__")
            warnings.append(f"{name} 미설정: {ko} / {name} ({env}) is not set: {en}")
    return warnings


# `UCITY_*` environment variables that are not settings of this model: read by other parts or tools, documented
# where they are used. Any other `UCITY_*` name must be a setting (`unknown_environment`).
NON_SETTING_VARIABLES = frozenset({
    "UCITY_TOKEN",  # the simulator's and demo's bearer token (README, ucity/sim/commands.py)
    "UCITY_TEST_BACKENDS", "UCITY_CLIENT_VENVS", "UCITY_FAULT_LOGS",  # the test suite (README, docs/clients.md)
    "UCITY_BIN",  # the conformance runner (docs/conformance.md)
    "UCITY_NATS_PASSWORD", "UCITY_NATS_ROUTE_PASSWORD",  # nats-server's configuration (docs/operations.md §2)
})
NON_SETTING_PREFIXES = (
    "UCITY_BENCH_",  # `ucity bench` and bench/
    "UCITY_CONFORMANCE_",  # the conformance runner (docs/conformance.md)
)
# Sections read by other parts from `UCITY_<SECTION>__<KEY>`, with their keys: `UCITY_WEB__*` is the dashboard's
# (ucity/web/settings.py `WebSettings`, which core/ may not import; tests/core/test_environment.py keeps the two
# lists equal). A key not listed is refused as a misspelled setting is (`UCITY_WEB__TILE_URLL` was ignored).
OTHER_SECTIONS: dict[str, frozenset[str]] = {
    "WEB": frozenset({"TILE_URL", "TILE_ATTRIBUTION", "TILE_MAX_ZOOM", "DEFAULT_LANGUAGE", "CARE_CELL_M",
                      "CARE_MIN_COUNT", "REFRESH_S"}),
}


def setting_variables() -> list[str]:
    """Every environment name of a setting: `UCITY_<KEY>` and `UCITY_<SECTION>__<KEY>`."""
    names = []
    for name, info in Settings.model_fields.items():
        names.append(f"UCITY_{name.upper()}")
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"UCITY_{name.upper()}__{key.upper()}" for key in section.model_fields]
    return names + [f"UCITY_{section}__{key}" for section, keys in OTHER_SECTIONS.items() for key in sorted(keys)]


def _refusal(key: str, why_ko: str, why_en: str, known: list[str]) -> str:
    """One line (Korean / English) refusing the environment variable `key`, naming the closest known name."""
    import difflib

    close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    hint_ko = f" {close[0]}을(를) 뜻했나요?" if close else ""
    hint_en = f"; did you mean {close[0]}?" if close else ""
    return f"알 수 없는 환경 변수 {key}: {why_ko}.{hint_ko} / unknown environment variable {key}: {why_en}{hint_en}"


def settings_error_lines(exc: ValidationError, environ: Iterable[str] = ()) -> list[str]:
    """A refused configuration as one line per problem: where, and what is wrong; never the value refused
    (QA12 F1: pydantic's own text quotes it, so a misspelled `admin_tokn` printed the admin token, `store.urll` a
    database password, and a model validator's input is the whole configuration). An unknown key (`extra_forbidden`)
    is said in Korean and English with the closest key of its section, as the environment variable that gave it
    when the environment did (`environ`: the names of the environment variables)."""
    env = {name.upper() for name in environ}
    lines = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and loc:
            lines.append(_unknown_key(loc, env))
            continue
        where = _location(loc)
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where and not message.startswith(where) else message)
    return lines


def _location(loc: tuple[int | str, ...]) -> str:
    """`retention.history[0].keep_days`"""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (`AlarmSettings`, `list[HistoryRetentionRule]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key(loc: tuple[int | str, ...], env: set[str]) -> str:
    """One line (Korean / English) refusing an unknown key, naming the closest key of its section."""
    import difflib

    model: type[BaseModel] | None = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    key = str(loc[-1])
    close = difflib.get_close_matches(key, list(model.model_fields) if model else [], n=1, cutoff=0.6)
    section = _location(loc[:-1])
    why_ko, why_en = (f"{section} 설정에 없는 키입니다", f"no such key in the {section} settings") if section else \
        ("설정이 아닙니다", "no such setting")
    variable = "UCITY_" + "__".join(str(part).upper() for part in loc)
    if not any(isinstance(part, int) for part in loc) and variable in env:
        known = ["UCITY_" + "__".join(str(part).upper() for part in (*loc[:-1], name)) for name in close]
        return _refusal(variable, why_ko, why_en, known)
    suggestion = [_location((*loc[:-1], name)) for name in close]
    hint_ko = f" {suggestion[0]}을(를) 뜻했나요?" if suggestion else ""
    hint_en = f"; did you mean {suggestion[0]}?" if suggestion else ""
    name = _location(loc)
    return f"알 수 없는 설정 키 {name}: {why_ko}.{hint_ko} / unknown setting {name}: {why_en}{hint_en}"


def unknown_environment(environ: Iterable[str]) -> list[str]:
    """Why each `UCITY_*` variable of `environ` that is no setting (nor a documented non-setting variable) is
    refused, naming the closest setting (QA8 F4: `UCITY_ENVIROMENT=production` was silently ignored, so a
    production server ran as development). A misspelled key below a section of the settings
    (`UCITY_SERVER__REQUIRE_AUHT`) is the section's own error (`_Section`); one below another part's section
    (`UCITY_WEB__TILE_URLL`, `OTHER_SECTIONS`) is refused here."""
    sections = {name.upper() for name, info in Settings.model_fields.items()
                if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)}
    tops = {name.upper() for name in Settings.model_fields}
    known = setting_variables()
    problems = []
    for key in sorted(environ):
        name = key.upper()  # pydantic-settings reads environment names in any case
        if not name.startswith("UCITY_") or name in NON_SETTING_VARIABLES or name.startswith(NON_SETTING_PREFIXES):
            continue
        head, nested, rest = name[len("UCITY_"):].partition("__")
        if nested and head in OTHER_SECTIONS:
            if rest not in OTHER_SECTIONS[head]:
                problems.append(_refusal(key, f"{head.lower()} 설정에 없는 키입니다",
                                         f"no such key in the {head.lower()} settings", known))
            continue
        if (head in sections) if nested else (head in tops):
            continue
        problems.append(_refusal(key, "설정이 아닙니다", "no such setting", known))
    return problems


def unknown_domain_environment(environ: Iterable[str], settings: Settings) -> list[str]:
    """`UCITY_DOMAINS__<NAME>...` variables naming no domain package and no enabled domain: a misspelled domain
    (`FACILITY_SAFTY`) or key (`ENABLEDD`) would only be warned about at the start, and the domain run on its
    defaults. A variable of a domain package that exists but is not enabled is left alone (a deployment may keep
    a disabled domain's settings); the start warns that it has no effect."""
    enabled = {name.upper() for name in settings.domains.enabled}
    packages = Path(__file__).resolve().parent.parent / "domains"
    enabled |= {p.name.upper() for p in packages.iterdir() if (p / "__init__.py").is_file()} \
        if packages.is_dir() else set()
    known = ["UCITY_DOMAINS__ENABLED"] + [f"UCITY_DOMAINS__{name}" for name in sorted(enabled)]
    problems = []
    for key in sorted(environ):
        head, nested, rest = key.upper()[len("UCITY_"):].partition("__")
        domain = rest.partition("__")[0]
        if key.upper().startswith("UCITY_") and nested and head == "DOMAINS" and domain != "ENABLED" \
                and domain not in enabled:
            listed = settings.domains.enabled
            problems.append(_refusal(key, f"그런 도메인이 없습니다(domains.enabled = {listed})",
                                     f"no domain {domain.lower()!r} (domains.enabled = {listed})", known))
    return problems


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (optional), the environment and explicit overrides. A `UCITY_*` environment
    variable that names no setting is an error (ValueError, `unknown_environment`), as a misspelled key is."""
    import os

    problems = unknown_environment(os.environ)
    if problems:
        raise ValueError("\n".join(problems))
    file_values: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, "rb") as fh:
            file_values = tomllib.load(fh)

    env_keys = {k for k in os.environ if k.startswith("UCITY_")}
    # The environment beats the file: drop file values that an env var sets.
    for key in env_keys:
        parts = key[len("UCITY_"):].lower().split("__")
        node: Any = file_values
        for part in parts[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    merged = _deep_merge(file_values, overrides)
    settings = Settings(**merged)
    problems = unknown_domain_environment(os.environ, settings)
    if problems:
        raise ValueError("\n".join(problems))
    return settings


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
