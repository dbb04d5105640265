"""Where workers run: the worker-count rule, fake GPUs on a CPU box (the same path a GPU node takes),
and two Ray nodes."""

from __future__ import annotations

import json

import pytest
import ray

from dl3d.jobs.cli import build_parser
from dl3d.jobs.cli_args import dataclass_from_args
from dl3d.jobs.placement import Placement, WorkerPlan, plan_workers
from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.jobs.train import TrainConfig
from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset
from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker


@pytest.mark.parametrize("placement, gpus, cpus, kw, expected", [
    (Placement(), 0, 8, {}, WorkerPlan(8, 0.0, 1.0)),                        # CPU cluster: fill the CPUs
    (Placement(cpus_per_worker=3), 0, 8, {}, WorkerPlan(2, 0.0, 3.0)),
    (Placement(cpus_per_worker=16), 0, 8, {}, WorkerPlan(1, 0.0, 16.0)),     # never 0 by itself
    (Placement(), 0, 8, {"cpu_auto": "one"}, WorkerPlan(1, 0.0, 1.0)),       # training on CPUs
    (Placement(), 4, 64, {}, WorkerPlan(4, 1.0, 1.0)),                       # one per GPU
    (Placement(gpus_per_worker=0.5), 3, 64, {"cpu_auto": "one"}, WorkerPlan(6, 0.5, 1.0)),
    (Placement(gpus_per_worker=0), 4, 6, {}, WorkerPlan(6, 0.0, 1.0)),       # GPUs there, asked for none
    (Placement(workers=5), 4, 6, {}, WorkerPlan(5, 1.0, 1.0)),               # explicit count wins
    (Placement(), 0, 8, {"max_workers": 3}, WorkerPlan(3, 0.0, 1.0)),        # capped by the shards to do
    (Placement(workers=2), 0, 8, {"max_workers": 0}, WorkerPlan(0, 0.0, 1.0)),  # nothing to do
])
def test_worker_count(placement, gpus, cpus, kw, expected):
    assert plan_workers(placement, gpus, cpus, **kw) == expected


def test_one_spelling_for_batch_jobs_and_training(capsys):
    """Both take --gpus-per-worker/--cpus-per-worker; the batch jobs' old --num-gpus/--num-cpus still parse, with a warning."""
    for argv, cls in ((["smpl", "export", "--input", "i", "--output", "o", "--model", "m"], RunnerConfig),
                      (["train", "toy", "--data", "d", "--storage", "s"], TrainConfig)):
        args = build_parser(argv).parse_args(argv + ["--gpus-per-worker", "0.5", "--cpus-per-worker", "2"])
        cfg = dataclass_from_args(cls, args)
        assert isinstance(cfg, Placement) and (cfg.gpus_per_worker, cfg.cpus_per_worker) == (0.5, 2.0)
    assert capsys.readouterr().err == ""
    argv = ["smpl", "export", "--input", "i", "--output", "o", "--model", "m", "--num-gpus", "1", "--num-cpus", "3"]
    cfg = dataclass_from_args(RunnerConfig, build_parser(argv).parse_args(argv))
    assert (cfg.gpus_per_worker, cfg.cpus_per_worker) == (1.0, 3.0)
    err = capsys.readouterr().err
    assert "--num-gpus is deprecated; use --gpus-per-worker" in err and "--num-cpus is deprecated" in err
    with pytest.raises(SystemExit):
        build_parser(argv[:2]).parse_args(argv[:2] + ["--help"])
    help_text = capsys.readouterr().out
    assert "--gpus-per-worker" in help_text and "--num-gpus" not in help_text, "the old spelling is hidden"


@pytest.mark.parametrize("bad, message", [({"workers": -1}, "workers must be >= 0, got -1"),
                                          ({"cpus_per_worker": 0}, "cpus_per_worker must be > 0, got 0"),
                                          ({"gpus_per_worker": -1}, "gpus_per_worker must be >= 0, got -1")])
def test_placement_validates(bad, message):
    for make in (lambda: Placement(**bad), lambda: RunnerConfig(**bad),
                 lambda: TrainConfig(data="d", storage="s", **bad)):
        with pytest.raises(ValueError, match=message):
            make()


@pytest.fixture
def params_url(tmp_path) -> str:
    url = str(tmp_path / "params")
    write_smpl_params_dataset(url, SmplParamsSpec(videos=8, frames=4, shards=8, seed=5))
    return url


@pytest.mark.slow
def test_fake_gpus_are_pinned_one_per_worker(own_ray, params_url, body_model_path, tmp_path):
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False)
    try:
        # Auto settings: the cluster has GPUs, so each worker asks for one, and there are two workers.
        report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path), params_url,
                            str(tmp_path / "out"), RunnerConfig(progress=False))
        assert report.exit_code == 0
        job = json.loads((tmp_path / "out" / "_job.json").read_text())
        assert job["runner"]["gpus_per_worker"] == 1.0 and job["runner"]["workers"] == 2
        ids = {tuple(w["gpu_ids"]) for w in job["workers"]}
        assert ids == {("0",), ("1",)}, f"two workers with one GPU each must see different GPU ids, saw {ids}"
        visible = {w["cuda_visible_devices"] for w in job["workers"]}
        assert visible == {"0", "1"}
        # Fake GPUs: an id is assigned but CUDA is absent, so the device must still be the CPU.
        assert {w["device"] for w in job["workers"]} == {"cpu"}
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_job_uses_workers_on_two_nodes(own_ray, params_url, body_model_path, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path), params_url,
                            str(tmp_path / "out"), RunnerConfig(workers=2, cpus_per_worker=1, progress=False,
                                                                 ray_address=cluster.address))
        assert report.exit_code == 0 and report.count("ok") == 8
        nodes = {w["node_id"] for w in report.workers if w["shards"]}
        assert len(nodes) == 2, f"expected shards processed on both nodes, got {nodes}"
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
