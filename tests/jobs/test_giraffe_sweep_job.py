"""``dl3d giraffe sweep``: frames equal the generator's renders, a retried shard writes the same bytes, bad
plan rows and bad checkpoints are clear errors; and the shared job contract (S3 = local, a second run skips
every shard and leaves the outputs byte-identical, dead workers, failing shards), reusing the contract tests
of tests/jobs (the killed-driver CLI resume is the runner's, tested once in test_resume_cli.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from job_cases import JobCase
from PIL import Image

from dl3d.data import Shard, list_shards, to_table
from dl3d.data.giraffe_tables import GIRAFFE_PLAN
from dl3d.workers.base import ShardTask


def write_giraffe_checkpoint(folder: str) -> str:
    """An untrained cpu-small GIRAFFE training checkpoint whose objects have density (visible alphas)."""
    from dl3d.giraffe import GIRAFFE_PRESETS
    from dl3d.giraffe.family import GIRAFFE_FAMILY
    from dl3d.train.checkpoint import save_checkpoint
    from dl3d.train.family import config_to_dict

    cfg = GIRAFFE_PRESETS["cpu-small"]
    modules = GIRAFFE_FAMILY.build(cfg)
    with torch.no_grad():
        for p in (modules["generator"].object_field.sigma_out.bias, modules["generator"].ema.object_field__sigma_out__bias):
            p.fill_(3.0)
    save_checkpoint(folder, modules, GIRAFFE_FAMILY.make_optimizers(modules, cfg), 1,
                    {"family": "giraffe", "model_config": config_to_dict(cfg)}, [{"step": 1}])
    return folder


@pytest.fixture(scope="module")
def giraffe_assets(tmp_path_factory) -> dict[str, str]:
    return {"giraffe_checkpoint": write_giraffe_checkpoint(str(tmp_path_factory.mktemp("giraffe-ckpt") / "ckpt"))}


def _plan_input(url: str, assets, shards: int) -> int:
    """``shards`` shards of 2 samples x 3 frames (object translation); returns the frame rows."""
    from dl3d.workers.giraffe_config import GiraffePlanSpec
    from dl3d.workers.giraffe_sweep import write_plan

    write_plan(url, GiraffePlanSpec(program="object_translation_horizontal", samples=2 * shards, frames=3,
                                    shards=shards, seed=4))
    return 6 * shards


def _worker():
    from dl3d.workers.giraffe_sweep import GiraffeSweepWorker

    return GiraffeSweepWorker


def _config(assets):
    from dl3d.workers.giraffe_config import GiraffeSweepConfig

    return GiraffeSweepConfig(checkpoint=assets["giraffe_checkpoint"], alpha=True)


SWEEP = JobCase("giraffe", ("giraffe", "sweep"), _worker, _config, _plan_input,
                lambda a: ("--checkpoint", a["giraffe_checkpoint"], "--alpha"), "image_path", "frames")


def test_frames_equal_the_generator_and_a_retry_writes_the_same_bytes(giraffe_assets, tmp_path):
    from dl3d.giraffe.family import load_giraffe_generator
    from dl3d.giraffe.programs import program_scene
    from dl3d.train.checkpoint import read_checkpoint
    from dl3d.workers.giraffe_sweep import GiraffeSweepWorker

    _plan_input(str(tmp_path / "plan"), giraffe_assets, 1)
    shard = list_shards(str(tmp_path / "plan"))[0]
    worker = GiraffeSweepWorker(_config(giraffe_assets))
    first = worker.process(ShardTask(shard, str(tmp_path / "a")))
    again = GiraffeSweepWorker(_config(giraffe_assets)).process(ShardTask(shard, str(tmp_path / "b"), attempt=2))
    assert first.status == again.status == "ok" and first.rows == 6
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
                   and "_committed" not in p.parts)
    assert len([f for f in files if f.suffix == ".gif"]) == 2 and len([f for f in files if "alpha" in f.parts]) == 12
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f"{f} differs on retry"
    index = pq.read_table(tmp_path / "a" / "part-00000.parquet").to_pylist()
    assert [r["id"] for r in index[:3]] == ["object_translation_horizontal-00000/000", "object_translation_horizontal-00000/001",
                                           "object_translation_horizontal-00000/002"]
    assert [json.loads(r["controls"])["translation_y"] for r in index[:3]] == [0.0, 0.5, 1.0]
    # frame 2 of sample 1 equals the EMA generator's render of the program's controls (PNG-quantised)
    gen, cfg = load_giraffe_generator(read_checkpoint(giraffe_assets["giraffe_checkpoint"]))
    plan = pq.read_table(shard.url).to_pylist()[1]
    scene = program_scene(cfg, plan["program"], 3, plan["seed"])
    only = scene.pop("only_background")
    scene.pop("controls")
    with torch.no_grad():
        ref = gen.render(**scene, only_background=only, return_alpha=True)
    png = np.asarray(Image.open(io.BytesIO((tmp_path / "a" / index[5]["image_path"]).read_bytes())))
    assert np.abs(png / 255.0 - ref.image[2].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    alpha = np.asarray(Image.open(io.BytesIO((tmp_path / "a" / index[5]["alpha_paths"][1]).read_bytes())))
    assert alpha.shape == (32, 32) and alpha.max() > 10, "the moving object is visible in its alpha map"
    # the moved object's alpha centroid follows the commanded translation (untrained, but geometric)
    cols = [np.nonzero(np.asarray(Image.open(io.BytesIO((tmp_path / "a" / r["alpha_paths"][1]).read_bytes()))) > 127)[1].mean()
            for r in index[3:6]]
    assert cols[0] < cols[1] < cols[2], cols


def test_bad_plan_rows_are_row_errors(giraffe_assets, tmp_path):
    from dl3d.workers.giraffe_sweep import GiraffeSweepWorker

    table = to_table(GIRAFFE_PLAN, {"id": ["good", "bad", "explicit"], "program": ["camera_elevation", "juggling", "explicit"],
                                    "seed": [1, 2, 3], "frames": [2, 2, 2],
                                    "controls": [None, None, json.dumps([{"u": 0.2}, {"t": [[0, 0, 0], [1, 1, 0]]}])]})
    src = tmp_path / "part-00000.parquet"
    pq.write_table(table, src)
    result = GiraffeSweepWorker(_config(giraffe_assets)).process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 6
    index = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    bad = [r for r in index if r["sample_id"] == "bad"]
    assert [r["status"] for r in bad] == ["bad_plan", "bad_plan"] and bad[0]["image_path"] is None
    assert "unknown render program 'juggling'" in bad[0]["error"] and "row 1 (id 'bad')" in bad[0]["error"]
    assert all(r["status"] == "ok" for r in index if r["sample_id"] != "bad")


def test_missing_or_corrupt_checkpoint_exits_2_naming_the_file(giraffe_assets, tmp_path, capsys):
    import shutil

    from dl3d.jobs.cli import main

    _plan_input(str(tmp_path / "plan"), giraffe_assets, 1)
    base = ["giraffe", "sweep", "--input", str(tmp_path / "plan"), "--no-progress"]
    assert main([*base, "--output", str(tmp_path / "o1"), "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere" / "state.pt") in capsys.readouterr().err
    bad = tmp_path / "corrupt"
    shutil.copytree(giraffe_assets["giraffe_checkpoint"], bad)
    (bad / "state.pt").write_bytes(b"not a torch file")
    assert main([*base, "--output", str(tmp_path / "o2"), "--checkpoint", str(bad)]) == 2
    assert f"{bad}: state.pt is not a torch checkpoint" in capsys.readouterr().err
    whole = (tmp_path / "corrupt" / "state.pt")
    whole.write_bytes(open(f"{giraffe_assets['giraffe_checkpoint']}/state.pt", "rb").read()[:-100])
    assert main([*base, "--output", str(tmp_path / "o3"), "--checkpoint", str(bad)]) == 2
    assert f"{bad}: state.pt is not readable: a truncated or damaged torch checkpoint" in capsys.readouterr().err


# ---- the shared job contract, on this job ----------------------------------------------------------------


@pytest.fixture(scope="module")
def giraffe_inputs(tmp_path_factory, giraffe_assets) -> dict[str, tuple[str, int]]:
    url = str(tmp_path_factory.mktemp("giraffe-inputs") / "plan")
    return {SWEEP.name: (url, SWEEP.make_input(url, giraffe_assets, 3))}


@pytest.mark.slow
def test_contract_output_over_s3_is_identical_to_local(local_ray, s3_server, giraffe_inputs, giraffe_assets, tmp_path):
    from test_job_contract import test_output_over_s3_is_identical_to_local as contract

    contract(SWEEP, local_ray, s3_server, giraffe_inputs, giraffe_assets, tmp_path)


@pytest.mark.slow
def test_contract_dead_worker_is_replaced_and_failing_shard_is_recorded(local_ray, giraffe_inputs, giraffe_assets,
                                                                       tmp_path):
    from test_job_contract import test_dead_worker_is_replaced_and_failing_shard_is_recorded as contract

    contract(SWEEP, local_ray, giraffe_inputs, giraffe_assets, tmp_path)

