"""Renditions: a published track decoded once, run through a processor pipeline, encoded once."""
