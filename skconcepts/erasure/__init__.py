"""Targeted concept erasure: remove a protected attribute from activations."""

from ._taco import TaCoEraser

__all__ = ["TaCoEraser"]
