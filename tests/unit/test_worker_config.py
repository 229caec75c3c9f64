"""A worker's settings: the front's, on loopback at its own port, as a node of the machine's
cluster; written as YAML and read back by the worker exactly."""

from __future__ import annotations

from pathlib import Path

from gateway.config import AuthKey, Config, IceServer, load
from gateway.workers.spawn import WORKER_VIEWERS, WorkerSpec, to_yaml, worker_config


def test_a_worker_config_round_trips(tmp_path: Path) -> None:
    front = Config()
    front.server.host = "0.0.0.0"
    front.server.workers = 4
    front.server.trusted_proxies = ["10.0.0.0/8"]
    front.auth.enabled = True
    front.auth.keys = [AuthKey("k1", "a secret that is long enough for HS256!!")]
    front.ice.servers = [IceServer(["stun:stun.example.net:3478"])]
    front.server.cors_origins = ["https://app.example.com"]
    spec = WorkerSpec(2, 40123, "edge-w2")
    worker = worker_config(front, spec, "unix:///run/gw/redis.sock", "/run/gw/pipes")
    path = tmp_path / "worker.yaml"
    path.write_text(to_yaml(worker))
    loaded = load(path, environ={})
    assert loaded == worker
    assert (loaded.server.host, loaded.server.port, loaded.server.workers) == (
        "127.0.0.1",
        40123,
        1,
    )
    assert loaded.server.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert loaded.cluster.redis_url == "unix:///run/gw/redis.sock"
    assert (loaded.cluster.node_id, loaded.cluster.advertise_url) == (
        "edge-w2",
        "http://127.0.0.1:40123",
    )
    assert loaded.cluster.pipe_dir == "/run/gw/pipes"
    assert loaded.server.max_viewers == WORKER_VIEWERS  # the front had no cap
    assert loaded.auth.keys == front.auth.keys and loaded.ice.servers == front.ice.servers
    assert front.server.workers == 4 and front.server.host == "0.0.0.0"  # untouched


def test_a_front_cap_is_each_workers(tmp_path: Path) -> None:
    front = Config()
    front.server.max_viewers = 40
    worker = worker_config(front, WorkerSpec(0, 40000, "w0"), "redis://127.0.0.1/0", "/run/p")
    assert worker.server.max_viewers == 40
