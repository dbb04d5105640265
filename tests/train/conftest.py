"""Training-driver fixtures: make the test-only families in this folder importable by Ray workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
# One actor fewer per run (it watches for spot-instance preemption, which a test box never sees).
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# The Train controller polls its workers every 2 s by default: reports, checkpoint commits and the end
# of a run are noticed sooner with a shorter interval.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Ray workers unpickle the test families by module name (train_faults), so they need this folder too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p)
