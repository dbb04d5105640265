"""SynSin training: ``cpu-small`` trains end to end through the driver, the paper's 256-pixel networks take a
CPU step in-process (the same family step the driver runs), a preset that differs from another only in
config values is tested as that difference, and the GAN preset trains under DDP on two workers.

That the small preset learns to beat copying the source view on held-out pairs is a learning run: it is
``bench/synsin_training.py`` (a 300-step run took two minutes of this suite); here
``test_synsin_model.py::test_a_few_steps_reduce_l1_on_a_fixed_pair`` keeps the gradient path honest."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from dl3d.synsin import SYNSIN_PRESETS

pytestmark = pytest.mark.slow


FULL_RUN_PRESETS = ("cpu-small", "paper256")
"""Presets that take a real step (below); every other preset is one of these with other config values."""
VALUE_VARIANTS = {"realestate256": ("paper256", {"min_depth": 1.0, "max_depth": 100.0}),
                  "cpu-small-gan": ("cpu-small", {"gan_weight": 1.0, "feature_matching_weight": 10.0,
                                                  "lr_generator": 5e-4, "adam_beta1": 0.0, "adam_beta2": 0.9,
                                                  "lr_schedule": "none", "lr_decay_steps": 0})}
"""preset -> (the preset it is a variant of, the values that differ). The depth range is covered by
test_synsin_config's depth-mapping test, the GAN terms by the DDP test below (and paper256's run), the
paper's optimiser values and the constant-rate schedule by test_synsin_config."""


def _train_on_multiview(tmp_path, spec: dict, **train: object):
    """Render a multiview dataset (``MultiviewSpec(**spec)``), train SynSin on it through the driver on
    the module's local Ray (``TrainConfig(**train)``), and return the ``TrainResult``."""
    from dl3d.jobs.train import TrainConfig, run_training
    from dl3d.synthetic.multiview import MultiviewSpec, write_multiview_dataset

    write_multiview_dataset(str(tmp_path / "pairs"), MultiviewSpec(**spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the perceptual-weights warning of presets without weights
        return run_training("synsin", TrainConfig(data=str(tmp_path / "pairs"), storage=str(tmp_path / "runs"),
                                                  log_every=0, **train))


def test_every_preset_is_a_full_run_preset_or_a_value_variant_of_one():
    assert sorted(FULL_RUN_PRESETS + tuple(VALUE_VARIANTS)) == sorted(SYNSIN_PRESETS), "a new preset needs a test"
    for name, (base, values) in VALUE_VARIANTS.items():
        assert base in FULL_RUN_PRESETS
        assert SYNSIN_PRESETS[name] == dataclasses.replace(SYNSIN_PRESETS[base], **values), name


def test_cpu_small_trains_end_to_end_through_the_driver(local_ray, tmp_path):
    """One step of ``cpu-small`` through the driver (Ray Train, Ray Data, evaluation, checkpoint)."""
    size = SYNSIN_PRESETS["cpu-small"].image_height
    result = _train_on_multiview(tmp_path, dict(scenes=2, pairs_per_scene=2, image_size=size, shards=2, seed=2),
                                 preset="cpu-small", steps=1, batch_size=1, workers=1, eval_every=1, eval_batches=1,
                                 checkpoint_every=1)
    assert result.final_step == 1 and result.checkpoint
    last = result.metrics[-1]
    assert np.isfinite(float(last["g_l1"])) and np.isfinite(float(last["eval_psnr"])), last
    assert "d_total" not in last


def test_paper256_takes_a_cpu_step_in_process(tmp_path):
    """One step of the paper's networks at 256 x 256 (K = 128 points per pixel, the discriminator's step
    too) on multiview data rendered at that size, batch 1, in this process: the family's own decode and
    train step, which the driver runs unchanged (its path is the ``cpu-small`` test above; Ray Train's start
    would double this test's time). Every parameter stays finite and both networks move."""
    import torch

    from dl3d.data import list_shards, read_table
    from dl3d.synsin.family import SYNSIN_FAMILY
    from dl3d.synthetic.multiview import MultiviewSpec, write_multiview_dataset

    cfg = SYNSIN_PRESETS["paper256"]
    assert cfg.image_height == cfg.image_width == 256 and cfg.uses_discriminator
    write_multiview_dataset(str(tmp_path / "pairs"), MultiviewSpec(scenes=1, pairs_per_scene=1, image_size=256,
                                                                  shards=1, seed=2))
    table = read_table(list_shards(str(tmp_path / "pairs"))[0].url, SYNSIN_FAMILY.schema).slice(0, 1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the perceptual-weights warning of presets without weights
        modules = SYNSIN_FAMILY.build(cfg)
    optimizers = SYNSIN_FAMILY.make_optimizers(modules, cfg)
    before = {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in modules.items()}
    metrics = SYNSIN_FAMILY.train_step(modules, optimizers, SYNSIN_FAMILY.decode_batch(table, cfg, torch.device("cpu")),
                                       1, cfg)
    assert np.isfinite(metrics["g_l1"]) and np.isfinite(metrics["d_total"]), metrics
    for name, module in modules.items():
        after = module.state_dict()
        assert all(torch.isfinite(t).all() for t in after.values() if t.is_floating_point()), name
        moved = max(float((after[n].float() - t.float()).abs().max()) for n, t in before[name].items())
        assert moved > 0, f"{name} did not change in the step"


def test_gan_preset_trains_with_ddp_on_two_workers(local_ray, tmp_path):
    """Generator + discriminator, two optimizers, under DDP on two CPU workers, through the driver."""
    result = _train_on_multiview(tmp_path, dict(scenes=4, pairs_per_scene=4, image_size=32, shards=2, seed=1),
                                 preset="cpu-small-gan", steps=2, batch_size=4, workers=2, eval_every=2,
                                 checkpoint_every=2)
    assert result.workers == 2 and result.final_step == 2
    last = result.metrics[-1]
    for key in ("g_l1", "g_gan", "g_feature_matching", "d_total", "eval_psnr"):
        assert key in last and np.isfinite(float(last[key])), (key, last)
