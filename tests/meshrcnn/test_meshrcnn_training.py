"""Mesh R-CNN through the training driver: the rcnn preset (torchvision Mask R-CNN + shape heads) takes
training steps under DDP on two CPU workers, checkpoints, evaluates against its baselines, and its checkpoint
resumes."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


def test_rcnn_preset_trains_with_ddp_on_two_workers_through_the_driver(local_ray, tmp_path):
    from dl3d.jobs.train import TrainConfig, run_training
    from dl3d.synthetic.shapes import KINDS, ShapesSpec, write_shapes_dataset
    from dl3d.train.family import get_family

    write_shapes_dataset(str(tmp_path / "shapes"), ShapesSpec(images=6, image_size=64, shards=3, seed=3,
                                                              max_objects=2))
    small = dict(min_size=64, max_size=64, num_classes=len(KINDS), roi_batch_size=8, num_samples=500,
                 eval_samples=1000, box_score_thresh=0.2)
    cfg = get_family("meshrcnn").config("rcnn", **small)
    train = dict(data=str(tmp_path / "shapes"), storage=str(tmp_path / "runs"), batch_size=2, workers=2,
                 eval_every=2, eval_batches=1, checkpoint_every=2, log_every=0)
    result = run_training("meshrcnn", TrainConfig(steps=2, **train), cfg)
    assert result.workers == 2 and result.final_step == 2 and result.checkpoint
    last = result.metrics[-1]
    for key in ("classifier", "mask", "z", "voxel", "chamfer", "normal", "edge", "total", "eval_f1@0.3",
                "eval_sphere_f1@0.3", "eval_mesh_ap"):
        assert key in last and math.isfinite(float(last[key])), (key, last)
    assert float(last["skipped"]) == 0.0
    # The checkpoint the DDP run wrote resumes: modules and optimizer state load into a fresh rcnn model and it
    # steps on. (The driver's resume itself, for every family, is tests/train/test_driver.py's S3 run; a second
    # rcnn driver run here cost ~40 s of a suite at its 10-minute line.)
    import torch

    from dl3d.data import list_shards, read_table
    from dl3d.data.mesh_tables import OBJECT_IMAGES
    from dl3d.train.checkpoint import load_checkpoint

    family = get_family("meshrcnn")
    modules = family.build(cfg)
    optimizers = family.make_optimizers(modules, cfg)
    restored = load_checkpoint(result.checkpoint, modules, optimizers)
    assert restored.step == 2 and restored.metrics, "the step-2 checkpoint holds its step and metrics rows"
    assert all(o.state for o in optimizers.values()), "the optimizer's state (momentum) came back too"
    table = read_table(list_shards(str(tmp_path / "shapes"))[0].url, OBJECT_IMAGES)
    metrics = family.train_step(modules, optimizers, family.decode_batch(table.slice(0, 2), cfg, torch.device("cpu")),
                                3, cfg)
    assert metrics["skipped"] == 0.0 and all(math.isfinite(v) for v in metrics.values()), metrics
