"""Gateways working as one: shared state in Redis, rooms homed on nodes, relays."""
