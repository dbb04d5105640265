"""The layout of a job's output prefix, and its commit protocol.

For input shard NNNNN a job writes ``part-NNNNN.parquet``, any mesh files under
``meshes/part-NNNNN/``, then the marker ``_committed/part-NNNNN.json`` last. A shard is done iff its
marker exists: a re-run skips it; a shard without a marker is redone from scratch, overwriting the
same deterministic names, so nothing is lost or duplicated. A shard that failed all its attempts is
described in ``_errors/part-NNNNN.json``; ``_job.json`` records the last run.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from dl3d.data import fs as fsx
from dl3d.data.dataset import part_name, table_to_parquet, write_json

COMMITTED_DIR = "_committed"
ERRORS_DIR = "_errors"
JOB_META = "_job.json"
MESHES_DIR = "meshes"


class JobOutput:
    """Reads and writes one job output prefix (local path or any fsspec URL)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url
        self.fs, self.root = fsx.resolve(url, storage_options)

    def path(self, relpath: str) -> str:
        return fsx.join(self.root, relpath)

    def mesh_relpath(self, index: int, row: int, fmt: str) -> str:
        """``meshes/part-NNNNN/RRRRRR.ply``: one mesh per output row."""
        return f"{MESHES_DIR}/{part_name(index, '')}/{row:06d}.{fmt}"

    def committed(self) -> set[int]:
        """Shard numbers whose commit marker exists."""
        d = self.path(COMMITTED_DIR)
        self.fs.invalidate_cache(d)
        if not self.fs.exists(d):
            return set()
        out = set()
        for p in self.fs.ls(d, detail=False):
            name = p.rsplit("/", 1)[-1]
            if name.startswith("part-") and name.endswith(".json"):
                out.add(int(name[5:-5]))
        return out

    def is_committed(self, index: int) -> bool:
        return fsx.exists(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}"))

    def write_part(self, index: int, table: pa.Table) -> str:
        rel = part_name(index)
        fsx.put_bytes(self.fs, self.path(rel), table_to_parquet(table))
        return rel

    def write_file(self, relpath: str, data: bytes) -> None:
        fsx.put_bytes(self.fs, self.path(relpath), data)

    def commit(self, index: int, info: dict[str, Any]) -> None:
        """Write the marker for shard ``index`` (call after all its objects are written) and clear old errors."""
        write_json(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}"), info)
        fsx.remove(self.fs, self.path(f"{ERRORS_DIR}/{part_name(index, '.json')}"))

    def read_marker(self, index: int) -> dict[str, Any]:
        return json.loads(fsx.get_bytes(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}")))

    def record_error(self, index: int, info: dict[str, Any]) -> None:
        write_json(self.fs, self.path(f"{ERRORS_DIR}/{part_name(index, '.json')}"), info)

    def errors(self) -> dict[int, dict[str, Any]]:
        d = self.path(ERRORS_DIR)
        self.fs.invalidate_cache(d)
        if not self.fs.exists(d):
            return {}
        out = {}
        for p in self.fs.ls(d, detail=False):
            name = p.rsplit("/", 1)[-1]
            if name.startswith("part-") and name.endswith(".json"):
                out[int(name[5:-5])] = json.loads(fsx.get_bytes(self.fs, p))
        return out

    def write_job_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.fs, self.path(JOB_META), meta)
