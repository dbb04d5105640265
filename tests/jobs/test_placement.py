"""Where workers run: fake GPUs on a CPU box (the same path a GPU node takes), and two Ray nodes."""

from __future__ import annotations

import json

import pytest
import ray

from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset
from dl3d.workers.base import pick_device
from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def params_url(tmp_path) -> str:
    url = str(tmp_path / "params")
    write_smpl_params_dataset(url, SmplParamsSpec(videos=8, frames=4, shards=8, seed=5))
    return url


def test_fake_gpus_are_pinned_one_per_worker(params_url, body_model_path, tmp_path):
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False)
    try:
        # Auto settings: the cluster has GPUs, so each worker asks for one, and there are two workers.
        report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path), params_url,
                            str(tmp_path / "out"), RunnerConfig(progress=False))
        assert report.exit_code == 0
        job = json.loads((tmp_path / "out" / "_job.json").read_text())
        assert job["runner"]["num_gpus"] == 1.0 and job["runner"]["workers"] == 2
        ids = {tuple(s["worker"]["gpu_ids"]) for s in job["shards"]}
        assert ids == {("0",), ("1",)}, f"two workers with one GPU each must see different GPU ids, saw {ids}"
        visible = {s["worker"]["cuda_visible_devices"] for s in job["shards"]}
        assert visible == {"0", "1"}
        # Fake GPUs: an id is assigned but CUDA is absent, so the device must still be the CPU.
        assert {s["worker"]["device"] for s in job["shards"]} == {"cpu"}
    finally:
        ray.shutdown()
    assert pick_device().type in ("cpu", "cuda")


def test_job_uses_workers_on_two_nodes(params_url, body_model_path, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path), params_url,
                            str(tmp_path / "out"), RunnerConfig(workers=2, num_cpus=1, progress=False,
                                                                 ray_address=cluster.address))
        assert report.exit_code == 0 and report.count("ok") == 8
        nodes = {s.worker["node_id"] for s in report.shards}
        assert len(nodes) == 2, f"expected shards processed on both nodes, got {nodes}"
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
