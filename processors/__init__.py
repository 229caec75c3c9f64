"""Frame processors for server-side video and audio transforms (the processing path)."""
