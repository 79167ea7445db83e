"""``python -m devtools.graphsim``: serve the simulator until SIGINT/SIGTERM.

Prints ``graphsim listening on http://HOST:PORT`` once it accepts connections; with a
``--state-file`` the records and subscriptions survive a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web

from devtools.graphsim.app import build_app
from devtools.graphsim.server import Settings, Simulator
from devtools.graphsim.tenant import run_tenant
from devtools.graphsim.tokens import SECRET_ENV


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devtools.graphsim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8055, help="0 picks a free port")
    p.add_argument("--base-url", default="", help="public base URL if not http://HOST:PORT")
    p.add_argument("--identity-header", default="local-simulator")
    p.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    p.add_argument("--seed", type=int, default=None, help="makes ids, records, faults repeatable")
    p.add_argument("--state-file", type=Path, default=None, help="load at start, save at stop")
    p.add_argument("--tenant", action="store_true", help="keep producing calls")
    p.add_argument("--calls-per-minute", type=float, default=6.0)
    p.add_argument("--max-sessions", type=int, default=200)
    p.add_argument("--subscription-quota", type=int, default=None)
    p.add_argument("--validation-timeout", type=float, default=None, help="seconds (10)")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    secret = os.environ.get(SECRET_ENV, "").encode() or secrets.token_bytes(32)
    settings = Settings(
        identity_header=args.identity_header,
        token_lifetime=args.token_lifetime,
        seed=args.seed,
        secret=secret,
        state_file=args.state_file,
        subscription_quota=args.subscription_quota,
        validation_timeout=args.validation_timeout,
    )
    sim = Simulator(settings)
    runner = web.AppRunner(
        build_app(sim), access_log=logging.getLogger("aiohttp.access") if args.access_log else None
    )
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None)  # an asyncio.Server once listening
    port = sockets[0].getsockname()[1] if sockets else args.port
    listening = f"http://{args.host}:{port}"
    sim.base_url = (args.base_url or listening).rstrip("/")
    print(f"graphsim listening on {listening}", flush=True)
    if sim.base_url != listening:
        logging.getLogger("graphsim").info("next links and contexts use %s", sim.base_url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tenant = None
    if args.tenant:
        tenant = asyncio.create_task(
            run_tenant(sim, args.calls_per_minute, args.max_sessions, args.seed)
        )
    try:
        await stop.wait()
    finally:
        if tenant:
            tenant.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tenant
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
