"""Typed keys for the state the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .rooms.registry import Registry

CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", Registry)
