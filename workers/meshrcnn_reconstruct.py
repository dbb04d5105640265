"""``dl3d meshrcnn reconstruct``: detections, masks, depth extents and camera-frame meshes of every image.

One output row per detection (``dl3d.data.mesh_tables.MESHRCNN_RECONSTRUCT``), meshes under
``meshes/part-NNNNN/``. ``rcnn`` checkpoints detect objects; the mesh predicted in each detection's
unit box is placed in the camera frame with the detection's predicted dz at ``object_distance``
metres and focal length f (Mesh R-CNN predicts depth only up to scale; both are recorded per row).
ShapeNet-style checkpoints (voxmesh, sphereinit, pixel2mesh) predict one object per image directly in
the camera frame: one row per image, box = the whole image, object_distance = the mesh's centre depth.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from dl3d.data import DataError, JobOutput, arrow_to_tensor, read_table, to_table
from dl3d.data import fs as fsx
from dl3d.data.mesh_tables import MESHRCNN_RECONSTRUCT
from dl3d.data.view_tables import IMAGES
from dl3d.workers.base import ShardTask, ShardWorker
from dl3d.workers.checkpoints import check_checkpoint, read_checkpoint_file
from dl3d.workers.meshrcnn_config import MeshRCNNReconstructConfig


WHAT = "Mesh R-CNN checkpoint"


def read_reconstruct_checkpoint(url: str) -> dict:
    """The Mesh R-CNN checkpoint dict of a training checkpoint folder (``state.pt``) or a ``.pt`` file at any URL."""
    kind, ckpt = read_checkpoint_file(url, WHAT)
    if kind == "training":
        import dataclasses

        from dl3d.meshrcnn.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
        from dl3d.meshrcnn.family import meshrcnn_checkpoint_from_training

        cfg, state = meshrcnn_checkpoint_from_training(ckpt)
        ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": dataclasses.asdict(cfg),
                "model": state, "categories": None}
    return ckpt


class MeshRCNNReconstructWorker(ShardWorker):
    """Reconstructs the objects of every image of an ``images`` shard."""

    config_cls = MeshRCNNReconstructConfig
    job_kind = "meshrcnn_reconstruct"

    @classmethod
    def preflight(cls, config: MeshRCNNReconstructConfig) -> None:
        """Files only for a training folder; a ``.pt`` file is read (weights only) to check its format."""
        from dl3d.meshrcnn.checkpoint import meshrcnn_config_of

        check_checkpoint(config.checkpoint, "meshrcnn", WHAT)
        fs, path = fsx.resolve(config.checkpoint)
        if not fs.isdir(path):
            meshrcnn_config_of(read_checkpoint_file(config.checkpoint, WHAT)[1], config.checkpoint)

    def setup(self) -> None:
        from dl3d.meshrcnn.checkpoint import load_meshrcnn_checkpoint

        url = self.config.checkpoint
        self.model, self.cfg, self.categories = load_meshrcnn_checkpoint(read_reconstruct_checkpoint(url), url)
        self.model.to(self.device)
        if self.cfg.is_detector:  # the shape heads run only on the detections that will be kept
            heads = self.model.detector.roi_heads
            heads.score_thresh = self.config.score_threshold
            heads.detections_per_img = self.config.max_detections

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        from dl3d.data.images import decode_image

        src = task.shard.url
        table = read_table(src, IMAGES)
        rows: dict[str, list] = {c.name: [] for c in MESHRCNN_RECONSTRUCT.columns}
        ids = [str(i) for i in table.column("id").to_pylist()]
        batch = []
        for i, image_id in enumerate(ids):
            where = f"{src} row {i} (id {image_id!r})"
            try:
                data = table.column("image")[i].as_py()
                if not data:
                    raise DataError(where, "no image bytes")
                img = decode_image(data, where)
            except DataError as exc:
                self._row(rows, i, image_id, -1, status="bad_image", error=str(exc))
                continue
            batch.append((i, image_id, img, self._intrinsics(table, i, img, src)))
            if len(batch) == self.config.batch_size:
                self._reconstruct(batch, rows, task, out)
                batch = []
        if batch:
            self._reconstruct(batch, rows, task, out)
        from dl3d.data import tensor_type

        order = sorted(range(len(rows["id"])), key=lambda k: rows["_order"][k])  # input order, then detection
        rows.pop("_order", None)
        rows = {k: [v[j] for j in order] for k, v in rows.items()}
        rows["box"] = pa.array(rows["box"], tensor_type((4,)))  # null where no detection
        out.write_part(task.shard.index, to_table(MESHRCNN_RECONSTRUCT, rows))
        return len(rows["id"])

    def _intrinsics(self, table: pa.Table, i: int, img: np.ndarray, src: str) -> torch.Tensor:
        h, w = img.shape[:2]
        if "intrinsics" in table.column_names and table.column("intrinsics")[i].is_valid:
            K = torch.from_numpy(arrow_to_tensor(table.column("intrinsics").slice(i, 1), (3, 3), name="intrinsics",
                                                 source=src)[0].copy())
        else:
            K = torch.tensor([[float(w), 0, w / 2], [0, float(w), h / 2], [0, 0, 1]])
        if self.config.focal_length is not None:
            K[0, 0] = K[1, 1] = self.config.focal_length
        return K.float()

    def _reconstruct(self, batch, rows, task: ShardTask, out: JobOutput) -> None:
        with torch.inference_mode():
            if self.cfg.is_detector:
                self._detect(batch, rows, task, out)
            else:
                self._single(batch, rows, task, out)

    def _single(self, batch, rows, task, out) -> None:
        from dl3d.data.images import resize_image

        s = self.cfg.image_size
        imgs, Ks = [], []
        for _, _, img, K in batch:
            h, w = img.shape[:2]
            K = K.clone()
            K[0] *= s / w
            K[1] *= s / h
            imgs.append(torch.from_numpy(np.array(resize_image(img, (s, s)) if (h, w) != (s, s) else img)))
            Ks.append(K)
        x = (torch.stack(imgs).permute(0, 3, 1, 2).float() / 255).to(self.device)
        meshes = self.model(x, torch.stack(Ks).to(self.device))["meshes"][-1]
        for k, (row, image_id, img, K) in enumerate(batch):
            v, f = meshes.get_mesh_verts_faces(k)
            z0, z1 = float(v[:, 2].min()), float(v[:, 2].max())
            zc = (z0 + z1) / 2
            h, w = img.shape[:2]
            self._write_mesh(rows, out, task, row, 0, image_id, v, f, box=[0.0, 0.0, float(w), float(h)],
                             dz=float(K[0, 0]) * (z1 - z0) / zc, focal=float(K[0, 0]), distance=zc)

    def _detect(self, batch, rows, task, out) -> None:
        from dl3d.data.mesh_tables import encode_mask
        from dl3d.meshrcnn.unit_box import unit_box_to_camera, zrange_from_dz

        images = [(torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255).to(self.device) for _, _, img, _ in batch]
        results = self.model(images)
        c = self.config
        for (row, image_id, img, K), r in zip(batch, results):
            keep = torch.nonzero(r["scores"] >= c.score_threshold)[:, 0][: c.max_detections].tolist()
            if not keep:
                self._row(rows, row, image_id, -1, status="no_detection")
                continue
            K = K.to(self.device)
            for d, k in enumerate(keep):
                box = r["boxes"][k]
                zr = zrange_from_dz(r["dz"][k:k + 1], K[0, 0:1], torch.tensor([c.object_distance], device=self.device))
                v, f = r["meshes"][k]
                cam = unit_box_to_camera(v[None], box[None], K[None], zr)[0]
                mask = encode_mask((r["masks"][k, 0] > 0.5).cpu().numpy())
                label = int(r["labels"][k])
                self._write_mesh(rows, out, task, row, d, image_id, cam, f, box=box.tolist(), dz=float(r["dz"][k]),
                                 focal=float(K[0, 0]), distance=c.object_distance, label=label,
                                 score=float(r["scores"][k]), mask=mask)

    def _write_mesh(self, rows, out, task, row, d, image_id, verts, faces, *, box, dz, focal, distance, label=None,
                    score=None, mask=None) -> None:
        from dl3d.mesh.io import encode_mesh

        fmt = self.config.meshes
        rel = f"meshes/part-{task.shard.index:05d}/{row:06d}_{d:03d}.{fmt}"
        out.write_file(rel, encode_mesh(verts.cpu(), faces.cpu(), fmt))
        name = self.categories[label - 1] if label and self.categories and label <= len(self.categories) else None
        self._row(rows, row, image_id, d, status="ok", label=label, class_name=name, score=score, box=box, mask=mask,
                  dz=dz, focal_length=focal, object_distance=distance, mesh_path=rel, num_verts=len(verts),
                  num_faces=len(faces))

    @staticmethod
    def _row(rows, row: int, image_id: str, d: int, **values) -> None:
        rows.setdefault("_order", []).append((row, d))
        rows["id"].append(f"{image_id}/{d:03d}" if d >= 0 else f"{image_id}/none")
        rows["image_id"].append(image_id)
        rows["detection"].append(d)
        for name in rows:
            if name not in ("id", "image_id", "detection", "_order"):
                rows[name].append(values.get(name))
