"""Command line: ``python -m gateway [--config PATH] [--host H] [--port P]`` runs the
gateway until SIGTERM/SIGINT (drained: see app.drain; a second signal exits at once);
``python -m gateway token --identity ID [--room R --publish ...]`` mints a token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from . import config as config_module
from .access_log import AccessLogger
from .app import create_app, drain
from .appkeys import REGISTRY
from .recording.api import RECORDINGS

logger = logging.getLogger("gateway")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORCED_EXIT = 1  # a second signal: sessions were not given their drain time
FORCED_FINALIZE_S = 2.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["token"]:
        from . import cli_token

        return cli_token.main(argv[1:])
    parser = argparse.ArgumentParser(prog="webrtc-gateway", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (default: embedded defaults)")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
        if args.host is not None:
            config.server.host = args.host
        if args.port is not None:
            if not 1 <= args.port <= 65535:
                raise config_module.ConfigError(f"--port: must be 1-65535, got {args.port}")
            config.server.port = args.port
        config_module.check_exposure(config)
    except config_module.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    if config.server.workers != 1:
        from .workers.supervisor import serve_workers

        return asyncio.run(serve_workers(config))
    return asyncio.run(serve(config))


async def serve(config: config_module.Config) -> int:
    """Serves until SIGTERM/SIGINT, then drains (app.drain), shuts down and returns 0. A
    second signal cuts that short: recordings get FORCED_FINALIZE_S to finish, then the
    process exits with FORCED_EXIT."""
    app = create_app(config)
    # Our own signal handling, not aiohttp's: the first signal drains, the second exits.
    runner = web.AppRunner(app, handle_signals=False, access_log_class=AccessLogger)
    await runner.setup()
    loop = asyncio.get_running_loop()
    first, second = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (second if first.is_set() else first).set()

    for number in SIGNALS:
        loop.add_signal_handler(number, on_signal)
    stopping: asyncio.Future[None] | None = None
    try:
        await web.TCPSite(runner, config.server.host, config.server.port).start()
        print(
            f"gateway: web UI at http://{_display(config.server.host)}:{config.server.port}/",
            flush=True,
        )
        await first.wait()
        stopping = asyncio.ensure_future(_stop(app, runner))
        forced = asyncio.ensure_future(second.wait())
        await asyncio.wait([stopping, forced], return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            forced.cancel()
            stopping.result()
            return 0
        logger.warning("second signal: exiting without waiting for sessions")
        app[REGISTRY].drain.cut()
        try:
            # Begun by the drain; most likely done already.
            await asyncio.wait_for(app[RECORDINGS].close(), FORCED_FINALIZE_S)
        except TimeoutError:
            logger.error("recordings not finalized in %gs; their files play", FORCED_FINALIZE_S)
        _exit_now(FORCED_EXIT)
    finally:
        for number in SIGNALS:
            loop.remove_signal_handler(number)
        if stopping is None:  # a failure before any signal: shut down as usual
            await runner.cleanup()
    return 0  # not reached: _exit_now does not return


async def _stop(app: web.Application, runner: web.AppRunner) -> None:
    await drain(app)
    await runner.cleanup()  # sockets closed (1001), then the registry and recordings


def _exit_now(code: int) -> None:
    """Ends the process without interpreter teardown, which would wait for the peers'
    tasks and threads; recordings are crash-safe, so nothing on disk breaks."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _display(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host


if __name__ == "__main__":
    sys.exit(main())
