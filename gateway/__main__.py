"""Command line: ``python -m gateway [--config PATH] [--host H] [--port P]`` runs the
gateway; ``python -m gateway token --identity ID [--room R --publish ...]`` mints a token."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from . import config as config_module
from .access_log import AccessLogger
from .app import create_app


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
    print(
        f"gateway: web UI at http://{_display(config.server.host)}:{config.server.port}/",
        flush=True,
    )
    web.run_app(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        print=None,
        access_log_class=AccessLogger,
    )
    return 0


def _display(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host


if __name__ == "__main__":
    sys.exit(main())
