"""GIRAFFE through the training driver (Ray Train, Ray Data, checkpoints): set-level KID/FID reach the
metrics, the checkpoint loads as an EMA generator, and the GAN step (with R1's double backward) runs under
DDP on two workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clevr(tmp_path_factory) -> str:
    from dl3d.synthetic.clevr import ClevrSpec, write_clevr_dataset

    url = str(tmp_path_factory.mktemp("giraffe-data") / "clevr")
    write_clevr_dataset(url, ClevrSpec(scenes=12, image_size=32, shards=3, max_objects=2, seed=5))
    return url


def test_cpu_small_trains_with_set_level_metrics_and_its_checkpoint_renders(clevr, local_ray, tmp_path):
    from dl3d.giraffe.family import load_giraffe_generator
    from dl3d.jobs.train import TrainConfig, run_training
    from dl3d.train.checkpoint import read_checkpoint

    result = run_training("giraffe", TrainConfig(data=clevr, storage=str(tmp_path / "runs"), preset="cpu-small",
                                                 steps=3, batch_size=4, workers=1, eval_every=3, checkpoint_every=3,
                                                 log_every=0))
    assert result.final_step == 3 and result.checkpoint
    last = result.metrics[-1]
    for key in ("g_loss", "d_real", "d_fake", "d_r1", "eval_kid_randfeat", "eval_fid_randfeat", "eval_d_prob_real"):
        assert key in last and np.isfinite(float(last[key])), (key, last)
    assert float(last["eval_images"]) == 4, "every held-out image (the last shard) is in the set"
    gen, cfg = load_giraffe_generator(read_checkpoint(result.checkpoint))
    state = read_checkpoint(result.checkpoint)["modules"]["generator"]
    assert torch.equal(gen.object_field.fc_in.weight, state["ema.object_field__fc_in__weight"]), "EMA weights"
    with torch.no_grad():
        img = gen(2, mode="eval")
    assert img.shape == (2, 3, 32, 32) and cfg.image_size == 32


def test_gan_step_with_r1_trains_under_ddp_on_two_workers(clevr, local_ray, tmp_path):
    from dl3d.jobs.train import TrainConfig, run_training

    result = run_training("giraffe", TrainConfig(data=clevr, storage=str(tmp_path / "runs"), preset="cpu-small",
                                                 steps=2, batch_size=4, workers=2, eval_every=0, checkpoint_every=2,
                                                 log_every=0, eval_shards=0))
    assert result.workers == 2 and result.final_step == 2
    assert all(np.isfinite(float(result.metrics[-1][k])) for k in ("g_loss", "d_r1"))
