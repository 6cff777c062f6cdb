"""The `ucity` command line: serve, migrate, retention sweep, config validate."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError
from rich.console import Console

from ucity import __version__
from ucity.core import logsafe, logsetup
from ucity.core.config import Settings, load_settings, missing_secret_warnings, settings_error_lines
from ucity.store import display_url

if TYPE_CHECKING:
    from ucity.store.base import Store

console = Console(stderr=True)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    server: dict[str, object] = {}
    if getattr(args, "host", None):
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    if server:
        overrides["server"] = server
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    from ucity.alarms.contacts import settings_problems
    from ucity.store.retention import settings_rules

    # An invalid configuration stops every command alike: what is wrong, exit 1, no traceback. Settings the model
    # refuses (one line per problem: where and why, never the value refused, which may be a secret: QA12 F1), a
    # file that cannot be read, and what the model cannot judge alone (core/ cannot expand names: retention rules
    # the same once expanded).
    try:
        settings = load_settings(args.config, **overrides)
        settings_rules(settings.retention)
        alarm_problems = settings_problems(settings)  # notifiers, recipients, escalations as the API checks them
        if alarm_problems:
            raise ValueError("\n".join(["the alarm contact data (alarms.*):", *alarm_problems]))
    except ValidationError as exc:
        _refuse(settings_error_lines(exc, os.environ))
    except (OSError, ValueError) as exc:
        _refuse([str(exc)])  # ucity's own (unknown variables, alarm contact data), TOML syntax, a file: no values
    return settings


def _refuse(problems: list[str]) -> NoReturn:
    """An invalid configuration: said (one problem per line), exit 1."""
    from rich.markup import escape

    body = f" {problems[0]}" if len(problems) == 1 else "".join(f"\n  - {p}" for p in problems)
    console.print(f"[red]invalid configuration:[/]{escape(body)}", soft_wrap=True)
    raise SystemExit(1)


def cmd_serve(args: argparse.Namespace) -> int:
    from ucity.server import create_app

    settings = _settings(args)
    logsetup.configure(settings.log_level, settings.log.format)  # UTC times, text or JSON, secrets masked
    say = _banner(settings)
    host, port = settings.server.host, settings.server.port
    where = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    # What it is about to do; the addresses only once the port is really listened on (a start that fails must not
    # leave the operator reading "dashboard http://..." above its error).
    say(f"[bold]ucity {__version__}[/] starting on {where}, store {display_url(settings.store_url)}")
    say("API access   " + ("bearer tokens (server.require_auth)" if settings.auth_required else
                           "open: only the operations API checks tokens (server.require_auth off)"))
    reminder = exposed_reminder(settings)
    if reminder:
        logging.getLogger(__name__).warning("%s", reminder)
    app = create_app(settings, tune_gc=True)
    # A start that fails (the database down, the SQLite file in use, the port taken) is said in one line, the last
    # one: by the app (server.start_failure) or here (the port); uvicorn's traceback and its own English lines about
    # it are left out (QA8 F11). Exit 3, as uvicorn does.
    start = _StartTraceback(app)
    logging.getLogger("uvicorn.error").addFilter(start)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def listening() -> None:
        say(f"dashboard    {base}/")
        say(f"NGSI-LD API  {base}/ngsi-ld/v1/")
        say(f"API docs     {base}/docs")

    try:
        # log_config=None: uvicorn's records, its access log included (`log.access`), go through the root handler
        # logsetup configured (its own configuration would write local times, unmasked, in its own format).
        started = _run_uvicorn(app, listening, host=host, port=port, log_config=None,
                               log_level=settings.log_level.lower(), access_log=settings.log.access,
                               timeout_graceful_shutdown=5)  # open SSE streams must not hold a shutdown
    except SystemExit as exc:  # uvicorn's start failure (3), after the app stopped again
        if start.bind_error is not None:  # a log line, as the app's own start failure (JSON with log.format json)
            logging.getLogger(__name__).error(
                "시작 실패: %s에서 수신할 수 없습니다(%s) / ucity could not start: cannot listen on %s: %s",
                where, _BIND_ERRORS_KO.get(start.bind_error.errno or 0, "운영체제 오류"), where,
                _one_line(start.bind_error))
        return exc.code if isinstance(exc.code, int) else 3
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl+C during the start
        return 0
    return 0 if started else 3  # as uvicorn.run


# Why a port cannot be listened on, for the Korean half of the line (the English half has the system's text).
_BIND_ERRORS_KO = {errno.EADDRINUSE: "다른 프로세스가 이미 쓰는 포트", errno.EACCES: "권한 없음: 1024 미만 포트 등",
                   errno.EADDRNOTAVAIL: "이 컴퓨터에 없는 주소"}


def exposed_reminder(settings: Settings) -> str | None:
    """In production, a reminder when `ucity serve` listens on more than loopback (QA12 F5): ucity serves plain HTTP,
    and bearer tokens and footage links must not cross a network in clear; only a TLS reverse proxy in front
    (docs/operations.md §9) makes that right, and ucity cannot see one. A reminder, not a refusal."""
    host = settings.server.host
    if settings.environment != "production" or _loopback(host):
        return None
    where = f"{host or '*'}:{settings.server.port}"
    return (f"ucity는 {where}에서 평문 HTTP로 수신합니다(루프백만이 아님). 앞에 TLS 역방향 프록시가 없으면 토큰과 영상 "
            "링크가 암호화되지 않은 채 네트워크를 지납니다: 127.0.0.1에서 수신하고 프록시 뒤에 두세요(docs/operations.md §9) / "
            f"reminder: ucity serves plain HTTP on {where}, not only on loopback; unless a TLS reverse proxy is in front, "
            "bearer tokens and footage links cross the network in clear: listen on 127.0.0.1 behind the proxy "
            "(docs/operations.md §9)")


def _loopback(host: str) -> bool:
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name, or empty (every address)


def _banner(settings: Settings) -> Callable[[str], None]:
    """How a command says what it runs: on the console, or with `log.format = "json"` as log records (stderr
    then holds JSON lines only, for the log collector)."""
    if settings.log.format != "json":
        return console.print
    from rich.text import Text

    def say(markup: str) -> None:
        logging.getLogger("ucity.cli").info("%s", Text.from_markup(markup).plain)

    return say


class _StartTraceback(logging.Filter):
    """Drops what uvicorn logs about a failed start that ucity says itself, in one bilingual line: after the app's
    start failed and said why (`app.state.start_failure`), uvicorn's traceback (kept at DEBUG, where the app logged
    it too) and its "Application startup failed. Exiting."; when the port cannot be listened on, uvicorn's
    English OSError line, kept in `bind_error` for `cmd_serve` to say once uvicorn has stopped the app."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self.bind_error: OSError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, OSError) and record.levelno >= logging.ERROR:  # Server.startup: create_server
            self.bind_error = record.msg
            return False
        said = getattr(self.app.state, "start_failure", None) is not None
        if said and record.getMessage() == "Application startup failed. Exiting.":
            return False
        traceback = isinstance(record.msg, str) and record.msg.startswith("Traceback (most recent call last)")
        return not (said and traceback and not logging.getLogger().isEnabledFor(logging.DEBUG))


def _run_uvicorn(app: Any, listening: Callable[[], None], **options: Any) -> bool:
    """`uvicorn.run(app, **options)`, calling `listening` once the server listens (never when its start fails);
    whether it started. SystemExit as uvicorn.run's when the start fails."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                listening()

    server = Server(uvicorn.Config(app, **options))
    server.run()
    return bool(server.started)


def cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    from ucity.app import Ucity
    from ucity.cluster.worker import StartFailed, run_worker

    settings = _settings(args)
    if not settings.bus.url:
        console.print("[red]ucity worker needs bus.url: a NATS JetStream server (docs/operations.md)[/]")
        return 2
    if settings.store_url.startswith("sqlite://"):
        console.print("[red]ucity worker needs the store all processes share: store.url = postgresql://...[/]")
        return 2
    logsetup.configure(settings.log_level, settings.log.format)  # UTC times, text or JSON, secrets masked
    _banner(settings)(f"[bold]ucity {__version__}[/] worker, store {display_url(settings.store_url)}, "
                      f"bus {logsafe.redact(settings.bus.url)}")  # nats://user:password@ stays out of the console
    for warning in missing_secret_warnings(settings):  # production without a secret: what will fail (QA8 F6)
        logging.getLogger(__name__).warning("%s", warning)
    try:
        asyncio.run(run_worker(Ucity(settings, role="worker")))
    except StartFailed as exc:  # the database or NATS down: one line, as `ucity serve` (QA8 F11), exit 3 as it
        from rich.markup import escape

        console.print(f"[red]시작 실패 / ucity worker could not start (store {escape(display_url(settings.store_url))}, "
                      f"bus {escape(logsafe.redact(settings.bus.url))}): {escape(logsafe.redact(str(exc)))}[/]",
                      soft_wrap=True)
        return 3
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        return _migrate(settings)
    except Exception as exc:  # the database down, refused, unwritable: one line, no traceback (QA8 F11)
        from rich.markup import escape

        console.print(f"[red]cannot migrate the store {escape(display_url(settings.store_url))}: "
                      f"{escape(logsafe.redact(_one_line(exc)))}[/]", soft_wrap=True)
        return 1


def _migrate(settings: Settings) -> int:
    url = settings.store_url
    if url.startswith(("postgresql://", "postgres://")):
        import asyncio

        from ucity.store.postgres import migrate_dsn, safe_location

        version = asyncio.run(migrate_dsn(url))
        console.print(f"schema at version {version}: postgresql://{safe_location(url)}")
        return 0
    from ucity.store.sqlite import migrate, open_connection, sqlite_path

    path = sqlite_path(url)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = open_connection(path)
    try:
        version = migrate(conn)
    finally:
        conn.close()
    console.print(f"schema at version {version}: {path}")
    return 0


def cmd_retention_sweep(args: argparse.Namespace) -> int:
    """One retention sweep now (ucity/store/retention.py), with the rules a server of this configuration has
    (its domains' declared defaults included); `--dry-run` counts what would go."""
    import asyncio

    from rich.markup import escape

    from ucity.app import Ucity
    from ucity.store.retention import PurgeResult, audit_caveats

    settings = _settings(args)
    # Beside a running server (cron), as documented: a sweep deletes only what no writer caches (history rows by
    # time, closed records, audit lines), so it does not take the SQLite file for itself (store.exclusive).
    settings = settings.model_copy(update={"store": settings.store.model_copy(update={"exclusive": False})})
    logsetup.configure(settings.log_level, settings.log.format)  # UTC times, text or JSON, secrets masked
    store = escape(display_url(settings.store_url))

    async def sweep() -> list[PurgeResult] | None:
        app = Ucity(settings)  # built, not started: only its store runs
        try:
            await app.store.start()
        except Exception as exc:  # down, refused, unwritable: one line for cron mail, the traceback only at DEBUG
            logging.getLogger(__name__).debug("the store did not start", exc_info=True)
            console.print(f"[red]cannot open the store {store}: {escape(_one_line(exc))}[/]", soft_wrap=True)
            await _stop_quietly(app.store)
            return None
        try:
            return await app.retention.sweep(dry_run=args.dry_run)
        finally:
            await _stop_quietly(app.store)

    results = asyncio.run(sweep())
    if results is None:
        return 1
    if args.dry_run:  # someone trying limits out: what the server logs at its start
        for caveat in audit_caveats(settings.retention):
            console.print(f"[yellow]note:[/] {escape(caveat)}", soft_wrap=True)
    if not results:
        console.print("nothing to do: every retention limit is off (retention.* settings, docs/operations.md)")
    verb = "would delete" if args.dry_run else "deleted"
    for r in results:
        related = f" (+{r.related} {'grants' if r.data == 'ops-events' else 'history entries'})" if r.related else ""
        line = f"{r.data:<10} {r.rule}: {verb} {r.deleted}{related}, older than {r.cutoff} ({r.keep_days:g} days, {r.source})"
        console.print(f"[red]{escape(line)}: {escape(r.error)}[/]" if r.error else escape(line),  # "[D]" is no markup
                      soft_wrap=True)
    return 1 if any(r.error for r in results) else 0


def _one_line(exc: BaseException) -> str:
    """An error as one console line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _stop_quietly(store: Store) -> None:
    """Stop a store that may have lost its database: a failure to close is logged, never a traceback."""
    try:
        await store.stop()
    except Exception as exc:
        logging.getLogger(__name__).warning("the store did not stop cleanly: %s", _one_line(exc))


def cmd_config_validate(args: argparse.Namespace) -> int:
    settings = _settings(args)  # an invalid one: said, and exit 1
    console.print("[green]configuration is valid[/]")
    from rich.markup import escape

    from ucity.ops.auth import configured_unbound_agency_tokens

    for warning in configured_unbound_agency_tokens(settings.ops, settings.ngsild.default_tenant):  # QA15 F3
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    print(json.dumps(masked_settings(settings), indent=2, ensure_ascii=False))
    return 0


SECRET_MASK = "**********"  # what pydantic shows for a SecretStr


def _masked(value: Any, secret: bool = False) -> Any:
    if isinstance(value, dict):
        # secret-named keys wherever they occur, SecretStr or not: `ops.tokens[].token`, a domain's or an agency's
        # `password`, `api_key`, `*_token`, `*_secret`... (QA3 F8: the configured tokens were printed)
        return {k: _masked(v, secret or logsafe.secret_name(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secret) for v in value]
    if secret and value not in (None, "", SECRET_MASK) and not isinstance(value, bool):
        return SECRET_MASK
    if isinstance(value, str):
        return logsafe.redact(value)  # URLs: user information and secret query values (store, bus, mqtt, hooks)
    return value


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as `config validate` prints them: no secret, whether the model keeps it as a
    SecretStr or not. Values under a secret-named key become `**********` (unset ones stay null/empty, so
    one sees what is configured), and every other text is masked as logs are (ucity/core/logsafe.py). Values
    with an effective default (`server.require_auth`, the SSRF guards) show it."""
    result: dict[str, Any] = _masked(settings.model_dump(mode="json"))
    # Unset, `server.require_auth` follows the environment (on in production): show what is in force, not null
    # (QA8 F13).
    result["server"]["require_auth"] = settings.auth_required
    # So do the two SSRF guards (QA12 S3; ucity/ngsild/subscriptions.py `endpoint_guard`, contexts_api.py).
    result["subscriptions"]["block_private_networks"] = settings.endpoints_guarded
    result["ngsild"]["context_block_private_networks"] = settings.contexts_guarded
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ucity", description="ucity smart city integrated operations platform")
    parser.add_argument("--version", action="version", version=f"ucity {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="TOML configuration file (env UCITY_* overrides it)")
        p.add_argument("--data-dir", help="where the embedded store keeps its files (default ./ucity-data)")

    serve = sub.add_parser("serve", help="run the API server with its workers in one process")
    common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="commit a share of the device observations (scale-out on NATS JetStream)")
    common(worker)
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="create or upgrade the store schema")
    common(mig)
    mig.set_defaults(func=cmd_migrate)

    retention = sub.add_parser("retention", help="retention limits (docs/operations.md)")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    sweep = retention_sub.add_parser("sweep", help="delete now what the retention limits no longer keep (a running "
                                     "server also does it every retention.sweep_interval_s)")
    common(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    sweep.set_defaults(func=cmd_retention_sweep)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="check a configuration and print the effective settings")
    common(validate)
    validate.set_defaults(func=cmd_config_validate)

    from ucity.sim.commands import add_commands as add_sim_commands

    add_sim_commands(sub)  # `simulate` and `demo`: ucity/sim/commands.py
    from ucity.benchcli import add_command as add_bench_command

    add_bench_command(sub)  # `bench`: ucity/benchcli.py runs bench/
    return parser


# Files and directories a command creates are its service account's alone (0600 / 0700): the SQLite store with its
# -wal, -shm and .lock files, uploaded photos, anything a command writes. They hold personal data (locations,
# contacts, events); the usual umask 022 made them readable by every account of the host (QA8 F12).
PRIVATE_UMASK = 0o077


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = os.umask(PRIVATE_UMASK)
    try:
        result: int = args.func(args)
    finally:
        os.umask(previous)  # main() called in-process (tests, an embedding tool) leaves the caller's umask
    return result


if __name__ == "__main__":
    sys.exit(main())
