"""Typed keys for the state the aiohttp application carries."""

from __future__ import annotations

import weakref

from aiohttp import web

from .config import Config
from .rooms.registry import Registry

CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", Registry)
# Open signaling sockets, closed with 1001 (going away) when the server shuts down.
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
