"""`ucity bench [name ...]`: run the benchmarks of bench/ (each `bench/bench_<name>.py` in its own
process, one after the other) and print every figure again in one table at the end.

The scripts live in the source tree, not in the installed package: they are looked for in
`$UCITY_BENCH_DIR`, then `./bench`, then next to the package of an editable install.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def bench_dir() -> Path | None:
    candidates = [os.environ.get("UCITY_BENCH_DIR"), "bench", str(Path(__file__).resolve().parent.parent / "bench")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "_common.py").exists():
            return Path(candidate).resolve()
    return None


def available(folder: Path) -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))


def add_command(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run the benchmarks (bench/) and print figures with their baselines")
    bench.add_argument("names", nargs="*", help="which (default: all); see --list")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    bench.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    bench.add_argument("--pg-url", default="", help="postgresql://... of a database the benchmarks may fill")
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the benchmarks")
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    folder = bench_dir()
    if folder is None:
        print("no bench/ folder found: run from the source tree or set UCITY_BENCH_DIR", file=sys.stderr)
        return 2
    names = available(folder)
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    extra = ["--backend", args.backend] + (["--pg-url", args.pg_url] if args.pg_url else []) + (["--quick"] if args.quick else [])
    failed = []
    with tempfile.TemporaryDirectory(prefix="ucity-bench-") as tmp:
        collected = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "UCITY_BENCH_JSON": str(collected)}
        for name in args.names or names:
            print(f"\n=== bench {name} ===", flush=True)
            done = subprocess.run([sys.executable, str(folder / f"bench_{name}.py"), *extra], env=env, cwd=str(folder.parent))
            if done.returncode != 0:
                failed.append(name)
        summary(collected)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def summary(collected: Path) -> None:
    """Every row of every script in one Markdown table."""
    if not collected.exists():
        return
    reports = [json.loads(line) for line in collected.read_text().splitlines() if line.strip()]
    print("\n## ucity bench: all figures\n")
    print("| benchmark | result | baseline (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for report in reports:
        for r in report["rows"]:
            base = f"{_fmt(r['baseline'])} ({r['baseline_name']})" if r.get("baseline") else ""
            ratio = f"{r['value'] / r['baseline']:.0%}" if r.get("baseline") else ""
            met = "" if r.get("ok") is None else ("yes" if r["ok"] else "**no**")
            note = f" ({r['note']})" if r.get("note") else ""
            print(f"| {r['name']} | {_fmt(r['value'])} {r['unit']}{note} | {base} | {ratio} | {r.get('target', '')} | {met} |")
    loads = "; ".join(f"{r['title']}: {r['load']}" for r in reports)
    print(f"\nload average at the end of each script: {loads}")
    probes = "; ".join(f"{r['title']}: {r['probe']:.1f} ms" for r in reports if "probe" in r)
    if probes:  # a fixed piece of Python work on one core (bench/_common.py cpu_probe): the machine's phase
        print(f"CPU probe at the end of each script (lower is faster): {probes}")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
