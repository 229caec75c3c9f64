"""Abuse limits: rates and counts per client, with counters of what they refused."""
