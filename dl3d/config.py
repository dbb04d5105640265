"""Typed configuration: dataclass fields with a default and a one-line help text.

The ``dl3d`` command line is generated from these dataclasses (``dl3d.jobs.cli_args``), so an
option is declared once, next to the code it configures.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose help text the CLI shows."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
