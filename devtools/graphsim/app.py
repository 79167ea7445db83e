"""The aiohttp application: token endpoint, Graph routes and control API under one roof,
with a middleware that turns every unexpected error into a JSON answer, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from devtools.graphsim.control import Control
from devtools.graphsim.server import Simulator

log = logging.getLogger("graphsim")


@web.middleware
async def _errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Nothing a client sends gets a stack trace: unknown routes and bugs become JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        body = {"error": {"code": exc.reason.replace(" ", ""), "message": exc.reason}}
        return web.json_response(body, status=exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.path)
        body = {"error": {"code": "generalException", "message": "Simulator error (see its log)."}}
        return web.json_response(body, status=500)


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=1024 * 1024)
    app.router.add_get("/msi/token", sim.msi_token)
    app.router.add_route("*", "/v1.0/{tail:.*}", sim.graph_entry)
    app.router.add_routes(Control(sim).routes())
    app.router.add_routes(sim.usage.routes())
    app["sim"] = sim

    async def on_startup(app: web.Application) -> None:
        await sim.notifier.start()

    async def on_cleanup(app: web.Application) -> None:
        await sim.notifier.close()
        if sim.settings.state_file:
            sim.state.save(sim.settings.state_file)
            log.info("saved state to %s", sim.settings.state_file)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
