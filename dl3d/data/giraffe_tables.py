"""Dataset kinds of GIRAFFE render sweeps: ``giraffe_plan`` (what to render) and the sweep's output index."""

from __future__ import annotations

import pyarrow as pa

from dl3d.data.schema import Column, TableSchema

GIRAFFE_PLAN = TableSchema(
    kind="giraffe_plan",
    version=1,
    doc="One row per sample of a GIRAFFE render sweep: its program, latent seed and frame count.",
    columns=(
        Column("id", pa.string(), doc="sample id"),
        Column("program", pa.string(), doc="render program (dl3d.giraffe.programs.PROGRAMS)"),
        Column("seed", pa.int64(), doc="seed of every random number of the sample (latents, prior boxes)"),
        Column("frames", pa.int64(), doc="frames rendered for the sample"),
        Column("controls", pa.string(), required=False,
               doc="program 'explicit': JSON list of per-frame controls {u, v, s, t, r} in [0, 1] units"),
    ),
)

GIRAFFE_SWEEP = TableSchema(
    kind="giraffe_sweep",
    version=1,
    doc="One row per rendered frame of a GIRAFFE sweep (paths relative to the output prefix).",
    columns=(
        Column("id", pa.string(), doc="{sample}/{frame:03d}"),
        Column("sample_id", pa.string()),
        Column("frame", pa.int64()),
        Column("program", pa.string()),
        Column("seed", pa.int64()),
        Column("controls", pa.string(), doc="JSON: the values this frame's program set"),
        Column("image_path", pa.string(), required=False, doc="PNG of the frame; null when the sample failed"),
        Column("alpha_paths", pa.list_(pa.string()), required=False,
               doc="one grey PNG per object: its opacity rendered alone (with --alpha)"),
        Column("status", pa.string(), doc="ok | bad_plan"),
        Column("error", pa.string(), required=False),
    ),
)
