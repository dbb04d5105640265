"""What the SMPL batch jobs share: the body-model check before the run, reading the model file once per
worker, and writing one mesh file per row."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dl3d.data import JobOutput
from dl3d.workers.base import ShardWorker
from dl3d.workers.smpl_config import BodyModelJobConfig


class SmplJobWorker(ShardWorker):
    """Base of the workers configured by a :class:`BodyModelJobConfig` (``model``, ``meshes``)."""

    config: BodyModelJobConfig

    @classmethod
    def preflight(cls, config: BodyModelJobConfig) -> None:
        """The body model file exists and holds an SMPL-format model (arrays read and checked, nothing built).

        Raises:
            BodyModelError: a missing, garbled or wrongly shaped file, named in the message.
        """
        from dl3d.body import read_body_model_arrays

        read_body_model_arrays(config.model)

    def read_body_model(self) -> dict[str, np.ndarray]:
        """The model file's arrays (``dl3d.body.read_body_model_arrays``); read once, in :meth:`setup`."""
        from dl3d.body import read_body_model_arrays

        return read_body_model_arrays(self.config.model)

    def build_body_model(self, arrays: dict[str, np.ndarray], num_betas: int = 10):
        """smplx's ``SMPL`` on this worker's device from arrays already read; also sets ``self.faces`` (F, 3) int64."""
        import torch

        from dl3d.body import body_model_from_arrays
        from dl3d.body.model_file import resolve_body_model_path

        model = body_model_from_arrays(arrays, num_betas, self.device, source=resolve_body_model_path(self.config.model))
        self.faces = torch.as_tensor(model.faces.astype(np.int64))
        self._ply = None
        return model

    def write_meshes(self, out: JobOutput, shard_index: int, vertices: np.ndarray,
                     keep: Sequence[bool] | np.ndarray | None = None) -> list[Any]:
        """One mesh file per row under ``meshes/``, in ``config.meshes`` format, with ``self.faces``.

        Args:
            out: the job output.
            shard_index: the shard the rows belong to (the files go under its folder).
            vertices: (N, V, 3) float32, metres, one posed body per row.
            keep: (N,) bool; rows where it is False get no file (default: every row).

        Returns:
            N paths relative to the output prefix, None for rows without a file.
        """
        fmt = self.config.meshes
        encode = self._mesh_encoder(fmt)
        paths: list[Any] = []
        for i in range(len(vertices)):
            if keep is not None and not keep[i]:
                paths.append(None)
                continue
            rel = out.mesh_relpath(shard_index, i, fmt)
            out.write_file(rel, encode(vertices[i]))
            paths.append(rel)
        return paths

    def _mesh_encoder(self, fmt: str):
        """(V, 3) float vertices -> file bytes with ``self.faces``: binary PLY from one ``PlyEncoder`` (the face
        block built once per worker), OBJ through ``encode_mesh``."""
        import torch

        from dl3d.mesh import PlyEncoder, encode_mesh

        if fmt == "ply":
            if getattr(self, "_ply", None) is None:
                self._ply = PlyEncoder(np.asarray(self.faces))
            return self._ply

        return lambda v: encode_mesh(torch.from_numpy(np.ascontiguousarray(v)), self.faces, fmt)
