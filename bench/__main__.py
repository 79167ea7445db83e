"""``python -m bench [--quick] [--only PART ...] [--profile]`` (``make bench``).

Runs the parts in order (webhook, archiver, memory, throttle, reconcile, tabulate, latency, cost, usage,
hostile), each against its own Azurite,
Graph simulator and app host on free ports, then prints a Markdown table to stdout (progress
goes to stderr) and writes everything measured to bench/results/<timestamp>.json. Targets are
reported, not asserted: the exit status is non-zero only when a part could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import (
    archiver,
    cost,
    hostile,
    latency,
    memory,
    reconcile,
    tabulate,
    throttle,
    usage,
    webhook,
)
from bench.config import PARTS, Config
from bench.report import RESULTS, PartResult, markdown, meta, where_time_went, write_json

RUNNERS: dict[str, Callable[[Config, Callable[[str], None]], PartResult]] = {
    "webhook": webhook.run,
    "archiver": archiver.run,
    "memory": memory.run,
    "throttle": throttle.run,
    "reconcile": reconcile.run,
    "tabulate": tabulate.run,
    "latency": latency.run,
    "cost": cost.run,
    "usage": usage.run,
    "hostile": hostile.run,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller counts (about 3 minutes)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PART",
        help=f"run only these parts ({', '.join(PARTS)}); repeat or comma-separate",
    )
    p.add_argument(
        "--paths",
        default=None,
        help="archiver paths: host,inprocess (default both)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="in-process archiver (default: host.json batchSize + newBatchThreshold)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile the in-process archiver (cProfile, extra unmeasured runs)",
    )
    args = p.parse_args(argv)
    only = [x.strip() for item in args.only for x in item.split(",") if x.strip()]
    unknown = [x for x in only if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    args.parts = tuple(x for x in PARTS if x in only) if only else PARTS
    if args.paths:
        args.paths = tuple(x.strip() for x in args.paths.split(","))
        if not set(args.paths) <= {"host", "inprocess"}:
            p.error("--paths takes host and/or inprocess")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / f"{stamp}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    cfg = Config.make(
        args.quick,
        args.parts,
        logdir,
        paths=args.paths,
        concurrency=args.concurrency,
        profile=args.profile or None,
    )
    info = meta(argv)
    log(f"{'quick ' if cfg.quick else ''}run of {', '.join(cfg.parts)}; logs in {logdir}")
    parts: list[PartResult] = []
    started = time.perf_counter()
    for name in cfg.parts:
        t = time.perf_counter()
        log(f"{name}: starting")
        try:
            part = RUNNERS[name](cfg, log)
        except Exception as exc:
            part = PartResult(name, error=f"{type(exc).__name__}: {exc}")
            log(f"{name}: FAILED\n{traceback.format_exc()}")
        part.seconds = time.perf_counter() - t
        log(f"{name}: done in {part.seconds:.0f}s")
        parts.append(part)
    info["seconds"] = round(time.perf_counter() - started, 1)
    path = write_json(info, parts, stamp)

    rows = [r for p in parts for r in p.rows]
    print(f"## make bench{' --quick' if cfg.quick else ''} — {info['started']}\n")
    print(markdown(rows))
    for text in (t for p in parts for t in p.text):
        print(f"\n{text}")
    cpu = where_time_went(parts)
    if cpu:
        print("\nWhere the time went (CPU seconds per process during each measurement; ")
        print("busy = all of them ÷ (wall x cores)):\n")
        print(cpu)
    warnings = [w for p in parts for w in p.warnings]
    if warnings:
        print("\nWarnings (figures marked INCOMPLETE are not to be trusted):\n")
        print("\n".join(f"- {w}" for w in warnings))
    failed = [p for p in parts if p.error]
    for p in failed:
        print(f"\n**{p.name} did not run**: {p.error}")
    missed = [r for r in rows if r.met is False]
    print(
        f"\n{sum(1 for r in rows if r.met)} targets met, {len(missed)} missed; "
        f"{info['seconds']:.0f} s; results: {path.relative_to(RESULTS.parent.parent)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
