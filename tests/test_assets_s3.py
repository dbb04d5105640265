"""Every user-given asset (body model, GMM prior, VGG weights, SynSin and training checkpoints) read
from an ``s3://`` URL on a moto server, at the library and worker level; one CLI run on S3 assets.

Each asset is first written locally, copied to S3, and what comes back from S3 is compared with what
the local file gives, so a test fails if the S3 read is skipped, truncated or served from elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dl3d.data import fs as fsx

BUCKET = "s3://dl3d-test"


@pytest.fixture
def s3_dir(s3_server) -> str:
    """A fresh prefix in the moto bucket for one test."""
    return f"{BUCKET}/assets-{uuid.uuid4().hex[:8]}"


def _upload(local: str | Path, url: str) -> str:
    return fsx.write_file(url, Path(local).read_bytes())


# ---- dl3d.data.fs ---------------------------------------------------------------------------------


def test_read_asset_round_trip_and_errors(s3_dir, tmp_path):
    payload = os.urandom(70_000)
    url = fsx.write_file(f"{s3_dir}/blob.bin", payload)
    assert fsx.read_asset(url) == payload
    assert fsx.open_asset(url).read() == payload
    with pytest.raises(FileNotFoundError, match=re.escape(f"weights file not found: {s3_dir}/none.bin; get it")):
        fsx.read_asset(f"{s3_dir}/none.bin", what="weights file", hint="get it")
    with pytest.raises(FileNotFoundError, match=re.escape(f"model not found: {tmp_path}") + ".*it is a folder"):
        fsx.read_asset(tmp_path, what="model")
    with pytest.raises(ValueError, match="expected the path or URL of a GMM prior file, got an empty string"):
        fsx.read_asset("  ", what="GMM prior file")


def test_write_file_is_whole_or_nothing_locally(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    fsx.write_file(target, b"first")
    fsx.write_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"], "no temporary file left behind"


# ---- --model ----------------------------------------------------------------------------------------


def test_body_model_from_s3(s3_dir, body_model_path):
    from dl3d.body import BodyModelError, load_body_model, read_body_model_arrays

    url = _upload(body_model_path, f"{s3_dir}/smpl_procedural.pkl")
    local, remote = read_body_model_arrays(body_model_path), read_body_model_arrays(url)
    assert sorted(local) == sorted(remote)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f"):
        np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
    model = load_body_model(url, num_betas=4)
    with torch.no_grad():
        joints = model(betas=torch.zeros(1, 4)).joints[0, :24].numpy()
    np.testing.assert_allclose(joints, local["J_regressor"] @ local["v_template"], atol=1e-5)
    with pytest.raises(BodyModelError, match=re.escape(f"file not found: {s3_dir}/SMPL_NEUTRAL.pkl; download SMPL")):
        read_body_model_arrays(f"{s3_dir}/SMPL_NEUTRAL.pkl")


# ---- --gmm ------------------------------------------------------------------------------------------


def test_gmm_prior_from_s3(s3_dir):
    from dl3d.fitting.priors import GmmPriorError, builtin_pose_arrays, builtin_pose_prior, load_gmm_prior, write_gmm_file

    rng = np.random.default_rng(0)
    a = builtin_pose_arrays()
    means = np.concatenate([a["means"], a["means"] + rng.normal(0, 0.1, (1, 69))])
    covars = np.concatenate([a["covars"], 2.0 * a["covars"]])
    url = write_gmm_file(f"{s3_dir}/gmm_02.pkl", means, covars, np.array([0.7, 0.3]))
    prior = load_gmm_prior(url)
    assert prior.num_components == 2 and prior.source == url
    pose = torch.as_tensor(rng.normal(0, 0.3, (5, 69)), dtype=torch.float32)
    single = write_gmm_file(f"{s3_dir}/gmm_01.pkl", **a)
    torch.testing.assert_close(load_gmm_prior(single)(pose), builtin_pose_prior()(pose), rtol=1e-6, atol=1e-5)
    nll = prior.component_nll(pose)
    assert not torch.allclose(nll[:, 0], nll[:, 1]), "the two components differ, so the file's content was used"
    with pytest.raises(GmmPriorError, match=re.escape(f"{s3_dir}/absent.pkl: GMM prior file not found")):
        load_gmm_prior(f"{s3_dir}/absent.pkl")
    fsx.write_file(f"{s3_dir}/exploit.pkl", b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(GmmPriorError, match="refusing to unpickle os.system"):
        load_gmm_prior(f"{s3_dir}/exploit.pkl")


# ---- SynSin perceptual weights (VGG19) and perceptual_distance weights (VGG16) ------------------------


def _constant_state(keys_and_shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """A state_dict whose k-th tensor is the constant k + 1, stored as one number (stride 0): a tiny file
    that still tells every tensor apart."""
    return {k: torch.full((1,), float(i + 1)).expand(shape) for i, (k, shape) in enumerate(keys_and_shapes.items())}


def _torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_synsin_perceptual_weights_from_s3(s3_dir):
    import dataclasses

    from dl3d.synsin import SYNSIN_PRESETS, VGG19Features, build_synsin, load_vgg19_features
    from dl3d.synsin.vgg import VGG19_SLICES

    # torchvision's vgg19 state_dict layout: features.<index>.weight / .bias
    net = VGG19Features()
    shapes = {}
    for si, (a, b) in enumerate(VGG19_SLICES):
        for j, i in enumerate(range(a, b)):
            for name in ("weight", "bias"):
                target = f"slices.{si}.{j}.{name}"
                if target in net.state_dict():
                    shapes[f"features.{i}.{name}"] = net.state_dict()[target].shape
    state = _constant_state(shapes)
    url = fsx.write_file(f"{s3_dir}/vgg19.pth", _torch_bytes(state))
    assert len(fsx.read_asset(url)) < 100_000
    loaded = load_vgg19_features(url)
    for si, (a, b) in enumerate(VGG19_SLICES):
        for j, i in enumerate(range(a, b)):
            key = f"features.{i}.weight"
            if key in state:
                assert torch.equal(loaded.slices[si][j].weight, state[key]), key
    cfg = dataclasses.replace(SYNSIN_PRESETS["cpu-small"], perceptual_weights=url, perceptual_weight=1.0)
    models = build_synsin(cfg, load_perceptual=True)
    assert torch.equal(models["perceptual"].slices[4][0].weight, state["features.21.weight"])
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f"VGG19 weights file for the perceptual loss not found: {s3_dir}/none.pth")):
        load_vgg19_features(f"{s3_dir}/none.pth")


def test_perceptual_distance_weights_from_s3(s3_dir):
    from dl3d.metrics.image import _VGG16_SLICES, VGG16PerceptualNet, load_perceptual_net

    mine = VGG16PerceptualNet().state_dict()
    shapes, where = {}, {}
    for si, (a, b) in enumerate(_VGG16_SLICES):
        for j, i in enumerate(range(a, b)):
            for name in ("weight", "bias"):
                if f"slices.{si}.{j}.{name}" in mine:
                    shapes[f"features.{i}.{name}"] = mine[f"slices.{si}.{j}.{name}"].shape
                    where[f"features.{i}.{name}"] = f"slices.{si}.{j}.{name}"
    state = _constant_state(shapes)
    url = fsx.write_file(f"{s3_dir}/vgg16.pth", _torch_bytes(state))
    loaded = load_perceptual_net(url).state_dict()
    for key, target in where.items():
        assert torch.equal(loaded[target], state[key]), key
    with pytest.raises(FileNotFoundError, match=re.escape(f"perceptual_distance not found: {s3_dir}/none.pth")):
        load_perceptual_net(f"{s3_dir}/none.pth")


def test_meshrcnn_init_weights_from_s3(s3_dir):
    from dl3d.meshrcnn.train_step import load_init_weights

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = {k: torch.full_like(v, float(i + 1)) for i, (k, v) in enumerate(net.state_dict().items())}
    del state["1.bias"]
    url = fsx.write_file(f"{s3_dir}/init.pth", _torch_bytes({"model": state}))
    with pytest.warns(UserWarning, match="1 entries left at their initialisation"):
        assert load_init_weights(net, url, rcnn=True) == ["1.bias"]
    assert torch.equal(net[1].weight, state["1.weight"]) and torch.equal(net[0].bias, state["0.bias"])
    with pytest.raises(FileNotFoundError, match=re.escape(f"Mesh R-CNN init weights not found: {s3_dir}/none.pth")):
        load_init_weights(net, f"{s3_dir}/none.pth", rcnn=True)


# ---- checkpoints --------------------------------------------------------------------------------------


def test_synsin_checkpoint_from_s3_library_and_render_worker(s3_dir, job_assets, tmp_path):
    from render_inputs import write_images_dataset

    from dl3d.data import Shard
    from dl3d.synsin import load_synsin_checkpoint
    from dl3d.workers.base import ShardTask
    from dl3d.workers.synsin_render import SynSinRenderConfig, SynSinRenderWorker

    url = _upload(job_assets["synsin_checkpoint"], f"{s3_dir}/synsin.pt")
    local = load_synsin_checkpoint(job_assets["synsin_checkpoint"])["generator"].state_dict()
    remote = load_synsin_checkpoint(url)["generator"].state_dict()
    assert local.keys() == remote.keys()
    for k in local:
        assert torch.equal(local[k], remote[k]), k
    with pytest.raises(FileNotFoundError, match=re.escape(f"SynSin checkpoint not found: {s3_dir}/none.pt")):
        load_synsin_checkpoint(f"{s3_dir}/none.pt")

    from dl3d.workers.synsin_render import load_render_checkpoint

    with pytest.raises(FileNotFoundError, match=re.escape(f"SynSin checkpoint not found: {s3_dir}/none.pt; expected a "
                                                          "training checkpoint folder holding state.pt, or a .pt file")):
        load_render_checkpoint(f"{s3_dir}/none.pt")
    write_images_dataset(str(tmp_path / "images"), shards=1, per_shard=1, size=32)
    worker = SynSinRenderWorker(SynSinRenderConfig(checkpoint=url, steps=2))
    result = worker.process(ShardTask(Shard(0, str(tmp_path / "images" / "part-00000.parquet")), str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 2
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2


def test_training_checkpoint_folder_from_s3(s3_dir, tmp_path):
    from dl3d.train import read_checkpoint
    from dl3d.train.checkpoint import save_checkpoint

    module = torch.nn.Linear(3, 2)
    save_checkpoint(str(tmp_path / "ckpt"), {"net": module}, {"net": torch.optim.SGD(module.parameters(), lr=0.1)},
                    step=7, meta={"family": "toy"}, metrics=[{"step": 7, "loss": 0.5}])
    for f in (tmp_path / "ckpt").iterdir():
        _upload(f, f"{s3_dir}/ckpt/{f.name}")
    back = read_checkpoint(f"{s3_dir}/ckpt")
    assert back["step"] == 7 and back["meta"]["family"] == "toy"
    assert torch.equal(back["modules"]["net"]["weight"], module.weight.detach())
    with pytest.raises(FileNotFoundError, match=re.escape(f"not found: {s3_dir}/nothing/state.pt")):
        read_checkpoint(f"{s3_dir}/nothing")


# ---- body model and GMM prior in the SMPL workers ---------------------------------------------------------


def _keypoints_dataset(url: str, body_model_path: str, frames: int = 6) -> None:
    from dl3d.body import read_body_model_arrays
    from dl3d.ingest import IngestConfig, ingest_openpose
    from dl3d.synthetic.smpl_video_dataset import SmplVideoDatasetSpec, write_smpl_video_dataset

    videos = f"{url}-videos"
    write_smpl_video_dataset(videos, read_body_model_arrays(body_model_path),
                             SmplVideoDatasetSpec(videos=1, frames=frames, seed=4))
    ingest_openpose(f"{videos}/openpose", url, IngestConfig(videos_per_shard=1, image_width=1280, image_height=720,
                                                            focal_length=1000.0, keypoint_format="body25"))


def test_smpl_workers_read_model_and_gmm_from_s3(s3_dir, body_model_path, tmp_path):
    """The fit worker's prior and kernel come from the S3 files (a full fit on S3 assets: the CLI test)."""
    from dl3d.body import read_body_model_arrays
    from dl3d.data import Shard
    from dl3d.fitting.priors import builtin_pose_arrays, write_gmm_file
    from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset
    from dl3d.workers.base import ShardTask
    from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker
    from dl3d.workers.smpl_fit import SmplFitConfig, SmplFitWorker

    model = _upload(body_model_path, f"{s3_dir}/smpl_procedural.pkl")
    a = builtin_pose_arrays()
    means = np.concatenate([a["means"], a["means"] + 0.1])
    gmm = write_gmm_file(f"{s3_dir}/gmm_02.pkl", means, np.concatenate([a["covars"]] * 2), np.array([0.5, 0.5]))
    cfg = SmplFitConfig(model=model, gmm=gmm, preset="fast")
    SmplFitWorker.preflight(cfg)
    worker = SmplFitWorker(cfg)
    assert worker.prior.source == gmm and worker.prior.num_components == 2
    np.testing.assert_allclose(worker.prior.means.cpu().numpy(), means, atol=1e-6)
    arrays = read_body_model_arrays(body_model_path)
    with torch.no_grad():
        rest = worker.kernel(torch.zeros(1, worker.kernel.num_betas), torch.zeros(1, 3), torch.zeros(1, 69)).joints[0]
    np.testing.assert_allclose(rest.numpy(), arrays["J_regressor"] @ arrays["v_template"], atol=1e-5)
    with pytest.raises(ValueError, match=re.escape(f"{s3_dir}/none.pkl: GMM prior file not found")):
        SmplFitWorker.preflight(SmplFitConfig(model=model, gmm=f"{s3_dir}/none.pkl"))

    write_smpl_params_dataset(str(tmp_path / "params"), SmplParamsSpec(videos=1, frames=3, shards=1))
    export = SmplExportWorker(SmplExportConfig(model=model, meshes="ply"))
    done = export.process(ShardTask(Shard(0, str(tmp_path / "params" / "part-00000.parquet")), str(tmp_path / "exp")))
    assert done.status == "ok" and done.rows == 3 and len(list((tmp_path / "exp").rglob("*.ply"))) == 3


# ---- one CLI run ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_smpl_fit_with_model_and_gmm_on_s3(s3_dir, body_model_path, tmp_path):
    from dl3d.fitting.priors import builtin_pose_arrays, write_gmm_file

    model = _upload(body_model_path, f"{s3_dir}/smpl_procedural.pkl")
    gmm = write_gmm_file(f"{s3_dir}/gmm_01.pkl", **builtin_pose_arrays())
    _keypoints_dataset(str(tmp_path / "kp"), body_model_path, frames=4)
    out = f"{s3_dir}/fit"
    cmd = [str(Path(sys.executable).parent / "dl3d"), "smpl", "fit", "--input", str(tmp_path / "kp"), "--output", out,
           "--model", model, "--gmm", gmm, "--preset", "fast", "--workers", "1", "--no-progress"]
    done = subprocess.run(cmd, env=os.environ | {"RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    fs, root = fsx.resolve(out)
    table = pq.read_table(fs.open(fsx.join(root, "part-00000.parquet"), "rb"))
    assert table.num_rows == 4 and set(table.column("status").to_pylist()) == {"ok"}
