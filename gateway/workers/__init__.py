"""Several gateway processes on one machine behind one front (server.workers)."""
