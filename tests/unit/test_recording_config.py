"""The recording section of the settings: defaults, overrides, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load


def test_defaults_and_environment_overrides() -> None:
    config = load(environ={})
    assert config.recording.directory == "recordings"
    assert config.recording.auto_record == []
    config = load(environ={"GATEWAY_RECORDING_AUTO_RECORD": "['class-*', demo]"})
    assert config.recording.auto_record == ["class-*", "demo"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("recording:\n  queue_frames: 1\n", "recording.queue_frames"),
        ("recording:\n  cluster_ms: 10000\n", "recording.cluster_ms"),
        ("recording:\n  fsync_interval_s: 0\n", "recording.fsync_interval_s"),
        ("recording:\n  directory: ' '\n", "recording.directory"),
        ("recording:\n  auto_record: '*'\n", "recording.auto_record"),
        ("recording:\n  directroy: x\n", "recording.directroy"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(path, environ={})
