"""A human-readable description of a dataset or job output: what ``dl3d inspect URL`` prints."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

from dl3d.data import fs as fsx
from dl3d.data.dataset import DATASET_META, list_shards
from dl3d.data.output import JOB_META, MESHES_DIR


def describe(url: str) -> str:
    """Summarise ``url``: its metadata files, shards, rows, schema, and mesh files (the first one parsed)."""
    fs, root = fsx.resolve(url)
    lines = [url]
    for meta_name in (DATASET_META, JOB_META):
        path = fsx.join(root, meta_name)
        if fsx.exists(fs, path):
            meta = json.loads(fsx.get_bytes(fs, path))
            keep = {k: meta[k] for k in ("kind", "job", "status", "num_rows", "num_shards", "counts", "seconds",
                                         "keypoint_format") if k in meta}
            lines.append(f"{meta_name}: {json.dumps(keep)}")
            lines += [f"warning: {w}" for w in meta.get("warnings") or []]  # e.g. rows without an image size
    shards = list_shards(url)
    rows = 0
    schema = None
    for s in shards:
        sfs, spath = fsx.resolve(s.url)
        md = pq.read_metadata(io.BytesIO(fsx.get_bytes(sfs, spath)))
        rows += md.num_rows
        schema = schema or md.schema.to_arrow_schema()
    lines.append(f"shards: {len(shards)}, rows: {rows}")
    if schema is not None:
        lines.append("columns: " + ", ".join(f"{f.name}: {f.type}" for f in schema))
    mesh_dir = fsx.join(root, MESHES_DIR)
    if fsx.exists(fs, mesh_dir):
        meshes = sorted(p for p in fs.find(mesh_dir)  # not the partial files an interrupted write left
                        if not p.rsplit("/", 1)[-1].startswith(".") and not p.endswith(".tmp"))
        lines.append(f"mesh files: {len(meshes)}")
        if meshes:
            lines.append(f"first mesh: {meshes[0]}: {_mesh_summary(fs, meshes[0])}")
    return "\n".join(lines)


def _mesh_summary(fs, path: str) -> str:
    from pytorch3d.io import load_obj, load_ply

    data = fsx.get_bytes(fs, path)
    if path.endswith(".ply"):
        verts, faces = load_ply(io.BytesIO(data))
    else:
        verts, faces_t, _ = load_obj(io.StringIO(data.decode()), load_textures=False)
        faces = faces_t.verts_idx
    lo, hi = verts.min(0).values.tolist(), verts.max(0).values.tolist()
    size = [round(h - low, 3) for h, low in zip(hi, lo)]
    return f"{verts.shape[0]} vertices, {faces.shape[0]} faces, bounding box {size} m"
