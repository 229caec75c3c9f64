"""Rooms and sessions: who publishes and who watches, and their lifetimes."""
