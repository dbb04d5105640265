"""Errors about input data: raised at the boundary, with the file, column and problem named."""

from __future__ import annotations


class DataError(ValueError):
    """Input data is unreadable or does not match what a job needs.

    Deterministic: retrying the same shard cannot help, so the job runner records it without retrying.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}" if source else problem)
