"""Sinks: where predictions go."""
