"""Helpers shared by the test suites: media sources, peers, a gateway under test."""
