"""``dl3d smpl export``: SMPL parameters in, posed joints (and optionally vertices and meshes) out."""

from __future__ import annotations

from typing import Any

import numpy as np

from dl3d.data import JobOutput, read_table, to_table
from dl3d.data.smpl_tables import SMPL_EXPORT, SMPL_PARAMS, decode_smpl_params, passthrough_columns
from dl3d.workers.base import ShardTask
from dl3d.workers.smpl_common import SmplJobWorker
from dl3d.workers.smpl_config import SmplExportConfig


def smpl_forward(model, betas, global_orient, body_pose, transl, batch_size: int, vertices: bool):
    """Run an smplx SMPL model over many rows in batches.

    Args:
        model: an ``smplx.SMPL`` module.
        betas: (N, B) float, B <= model.num_betas (zero-padded).
        global_orient: (N, 3), body_pose: (N, 69) axis-angle radians; transl: (N, 3) metres.

    Returns:
        joints (N, J, 3) float32 metres, and vertices (N, V, 3) or None.
    """
    import torch

    device = model.shapedirs.device
    n = betas.shape[0]
    nb = model.num_betas
    if betas.shape[1] < nb:
        betas = np.concatenate([betas, np.zeros((n, nb - betas.shape[1]), np.float32)], axis=1)
    inputs = [betas, global_orient, body_pose, transl]
    if n == 0:  # one zero row, so an empty shard's outputs still have the model's shapes
        inputs = [np.zeros((1,) + a.shape[1:], np.float32) for a in inputs]
    joints, verts = [], []
    with torch.inference_mode():
        for s in range(0, len(inputs[0]), batch_size):
            b, go, bp, tr = (torch.tensor(a[s:s + batch_size], dtype=torch.float32, device=device) for a in inputs)
            o = model(betas=b, global_orient=go, body_pose=bp, transl=tr)
            joints.append(o.joints.cpu().numpy())
            if vertices:
                verts.append(o.vertices.cpu().numpy())
    return np.concatenate(joints)[:n], (np.concatenate(verts)[:n] if vertices else None)


class SmplExportWorker(SmplJobWorker):
    """Poses an SMPL-format body model for every row of an ``smpl_params`` shard."""

    config_cls = SmplExportConfig
    job_kind = "smpl_export"

    def setup(self) -> None:
        self.model = self.build_body_model(self.read_body_model(), num_betas=self.config.num_betas)

    def read_shard(self, task: ShardTask) -> tuple[Any, Any]:
        """The shard's table and its decoded SMPL parameters (``decode_smpl_params``)."""
        table = read_table(task.shard.url, SMPL_PARAMS)
        return table, decode_smpl_params(table, task.shard.url, max_betas=self.model.num_betas)

    def compute_shard(self, task: ShardTask, data: tuple[Any, Any]) -> dict[str, Any]:
        """Posed joints (N, J, 3) and, when stored or meshed, vertices (N, 6890, 3), metres."""
        cfg = self.config
        table, params = data
        if cfg.format == "amass-npz":  # one animation NPZ per track: posing and writing are one call
            return {"amass": (table, params)}
        joints, verts = smpl_forward(
            self.model, params.betas, params.global_orient, params.body_pose, params.transl,
            cfg.batch_size, vertices=cfg.vertices or cfg.meshes != "none",
        )
        return {"table": table, "ids": params.ids, "rows": len(params), "joints": joints, "vertices": verts}

    def write_shard(self, task: ShardTask, out: JobOutput, result: dict[str, Any]) -> int:
        cfg = self.config
        if "amass" in result:
            from dl3d.body.amass import write_amass_shard

            table, params = result["amass"]
            with self.stage("compute"):  # it runs the model: never beside the next shard's compute
                index = write_amass_shard(self.model, table, params, out, task.shard.index, cfg.fps, cfg.gender)
            out.write_part(task.shard.index, index)
            return index.num_rows
        columns: dict[str, Any] = {"id": result["ids"], **passthrough_columns(result["table"]),
                                   "joints": result["joints"]}
        if cfg.vertices:
            columns["vertices"] = result["vertices"]
        if cfg.meshes != "none":
            columns["mesh_path"] = self.write_meshes(out, task.shard.index, result["vertices"])
        out.write_part(task.shard.index, to_table(SMPL_EXPORT, columns))
        return result["rows"]
