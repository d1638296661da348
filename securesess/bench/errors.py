"""What the benchmark raises when a workload misbehaves."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A workload did not behave as the benchmark expects (a bug, not a slow result)."""
