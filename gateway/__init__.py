"""Python WebRTC media gateway: forwards, transforms and records WebRTC media."""

__version__ = "0.1.0"
