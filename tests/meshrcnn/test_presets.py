"""Every preset builds and takes one CPU step through the family's decode/step/evaluate on rendered shapes;
presets that differ only in values are tested as that difference; the shapes data is what it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dl3d.data import read_table
from dl3d.data.mesh_tables import OBJECT_IMAGES, decode_mask, decode_objects
from dl3d.meshrcnn import MESHRCNN_PRESETS, MeshRCNNConfig
from dl3d.synthetic.shapes import KINDS, ShapesSpec, write_shapes_dataset
from dl3d.train.family import get_family

FAMILY = get_family("meshrcnn")
# Sizes only (not the architecture) are reduced so every preset steps in seconds on 2 CPU cores.
SMALL = {"voxmesh": dict(image_size=64), "sphereinit": dict(image_size=64, ico_sphere_level=3),
         "pixel2mesh": dict(image_size=64), "cpu-small": {},
         "rcnn": dict(min_size=64, max_size=64, num_classes=len(KINDS), roi_batch_size=8)}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    single = write_shapes_dataset(str(root / "one"), ShapesSpec(images=2, image_size=64, shards=1, seed=1))
    multi = write_shapes_dataset(str(root / "multi"), ShapesSpec(images=2, image_size=64, shards=1, seed=2,
                                                                    min_objects=2, max_objects=3))
    assert single["categories"] == list(KINDS) and multi["kind"] == "object_images"
    return {"one": read_table(str(root / "one" / "part-00000.parquet"), OBJECT_IMAGES),
            "multi": read_table(str(root / "multi" / "part-00000.parquet"), OBJECT_IMAGES)}


def test_presets_differ_from_the_official_configs_only_as_documented():
    p = MESHRCNN_PRESETS
    assert (p["voxmesh"].voxel_size, p["voxmesh"].cubify_threshold, p["voxmesh"].voxel_only_iters) == (48, 0.2, 100)
    assert (p["voxmesh"].chamfer_weight, p["voxmesh"].normal_weight, p["voxmesh"].edge_weight) == (1.0, 0.0, 0.2)
    assert (p["voxmesh"].mesh_stages, p["voxmesh"].graph_convs, p["voxmesh"].graph_conv_dim) == (3, 3, 128)
    assert p["sphereinit"].replace(arch="voxmesh", ico_sphere_level=4, voxel_only_iters=100) == p["voxmesh"]
    assert p["pixel2mesh"].replace(arch="sphereinit", ico_sphere_level=4) == p["sphereinit"]
    r = p["rcnn"]
    assert (r.voxel_size, r.voxel_pooler, r.voxel_loss_weight, r.mesh_pooler, r.z_pooler) == (24, 12, 3.0, 14, 7)
    assert (r.chamfer_weight, r.normal_weight, r.edge_weight, r.gt_coord_thresh) == (1.0, 0.1, 1.0, 5.0)
    assert (r.optimizer, r.lr, r.weight_decay, r.stage_reduction) == ("sgd", 0.02, 1e-4, "sum")
    with pytest.raises(ValueError, match="voxel_pooler"):
        MeshRCNNConfig(arch="rcnn", voxel_size=24, voxel_pooler=14)
    with pytest.raises(ValueError, match="z_near < z_far"):
        MeshRCNNConfig(z_near=3.0, z_far=2.0)


def test_shapes_rows_hold_consistent_objects(shapes):
    t = shapes["multi"]
    for i in range(t.num_rows):
        o = decode_objects(t, i, f"row {i}")
        K = np.asarray(t.column("intrinsics")[i].as_py(), np.float64)
        assert len(o["labels"]) >= 1 and set(o["labels"].tolist()) <= set(range(1, 6))
        for j in range(len(o["labels"])):
            mask = decode_mask(o["masks"][j], "m")
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(o["boxes"][j], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            v = o["verts"][j].astype(np.float64)
            uv = (v @ K.T)[:, :2] / v[:, 2:]
            # the visible box lies inside the projected mesh's extent (occlusion only shrinks it)
            assert o["boxes"][j][0] >= math.floor(uv[:, 0].min()) - 1 and o["boxes"][j][2] <= math.ceil(uv[:, 0].max()) + 1
            # occupancy through its transform lands inside the mesh's camera-frame bounds
            T, occ = o["occupancy_to_camera"][j].astype(np.float64), o["occupancy"][j]
            R = occ.shape[0]
            k, jj, ii = np.nonzero(occ)
            c = np.stack([ii, jj, k], 1) * 2 / R - 1 + 1 / R
            cam = c @ T[:3, :3].T + T[:3, 3]
            assert (cam.min(0) >= v.min(0) - 0.05).all() and (cam.max(0) <= v.max(0) + 0.05).all()


@pytest.mark.parametrize("preset", sorted(MESHRCNN_PRESETS))
def test_every_preset_builds_and_takes_one_cpu_step(preset, shapes):
    cfg = FAMILY.config(preset, num_samples=500, eval_samples=500, **SMALL[preset])
    modules = FAMILY.build(cfg)
    opts = FAMILY.make_optimizers(modules, cfg)
    table = shapes["multi" if cfg.is_detector else "one"]
    batch = FAMILY.decode_batch(table, cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in modules["model"].state_dict().items() if v.dtype.is_floating_point}
    step = cfg.voxel_only_iters + 1 if cfg.uses_voxels and preset != "voxmesh" else 1
    metrics = FAMILY.train_step(modules, opts, batch, step, cfg)
    assert metrics["skipped"] == 0.0 and all(math.isfinite(v) for v in metrics.values()), metrics
    assert ("voxel" in metrics) == cfg.uses_voxels
    changed = [k for k, v in modules["model"].state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any("mesh_head" in k for k in changed), "the refiner was updated"
    if preset == "cpu-small":
        modules["model"].eval()
        ev = FAMILY.evaluate(modules, batch, cfg)
        for key in ("f1@0.3", "sphere_f1@0.3", "cubified_f1@0.3", "voxel_iou", "chamfer_l2"):
            assert math.isfinite(ev[key]), (key, ev)


@pytest.mark.parametrize("mesh_weight", [0.0, 1.0])
def test_voxel_only_steps_touch_the_refiner_only_with_a_mesh_weight(mesh_weight, shapes):
    cfg = FAMILY.config("cpu-small", num_samples=200, voxel_only_iters=5, voxel_only_mesh_weight=mesh_weight)
    modules = FAMILY.build(cfg)
    opts = FAMILY.make_optimizers(modules, cfg)
    batch = FAMILY.decode_batch(shapes["one"], cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in modules["model"].state_dict().items() if v.dtype.is_floating_point}
    metrics = FAMILY.train_step(modules, opts, batch, 1, cfg)  # step 1 <= voxel_only_iters: dummy tetrahedra
    assert metrics["skipped"] == 0.0
    assert (metrics["chamfer"] > 0) == (mesh_weight > 0), "weight 0: the mesh losses are not computed"
    grads = {n: p.grad for n, p in modules["model"].named_parameters() if n.startswith("mesh_head.")}
    assert grads and all(g is not None for g in grads.values()), "every refiner parameter has a gradient (DDP)"
    assert all(bool(g.abs().sum() == 0) for g in grads.values()) == (mesh_weight == 0)
    assert metrics["total"] == pytest.approx(cfg.voxel_loss_weight * metrics["voxel"] + mesh_weight * (
        metrics["chamfer"] + metrics["normal"] + metrics["edge"]), rel=1e-5)
    state = modules["model"].state_dict()
    moved = {k for k, v in before.items() if not torch.equal(state[k], v)}
    assert any(k.startswith("voxel_head.") for k in moved)
    assert any(k.startswith("mesh_head.") for k in moved) == (mesh_weight > 0), sorted(moved)[:5]


def test_shapes_rendered_in_spawned_processes_equal_the_serial_dataset(tmp_path, shapes):
    # `shapes` ran torch in this process first: forked workers could hang, spawned ones must not
    spec = ShapesSpec(images=6, image_size=64, shards=3, seed=1)
    write_shapes_dataset(str(tmp_path / "serial"), spec)
    write_shapes_dataset(str(tmp_path / "pool"), spec, processes=2)
    for shard in range(3):
        name = f"part-{shard:05d}.parquet"
        assert read_table(str(tmp_path / "pool" / name), OBJECT_IMAGES).equals(
            read_table(str(tmp_path / "serial" / name), OBJECT_IMAGES))
