"""Wording shared by messages: counts with their nouns."""

from __future__ import annotations


def many(count: int, noun: str) -> str:
    """ "1 prediction", "2 predictions" (nouns that take an s)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
