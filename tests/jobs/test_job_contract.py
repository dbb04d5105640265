"""Every batch job keeps the runner's contract: S3 output identical to local, a second run skips every
committed shard, dead workers replaced, failing shards recorded under _errors/ while the others complete."""

from __future__ import annotations

import pytest
from contract_checks import check_dead_worker_and_failing_shard, check_second_run_skips_everything
from job_cases import CASES, JobCase

from dl3d.jobs.runner import RunnerConfig, run_shards

pytestmark = pytest.mark.slow


def _runner(**kw) -> RunnerConfig:
    return RunnerConfig(**({"workers": 2, "progress": False} | kw))


def _outputs(root) -> dict[str, bytes]:
    """Every output file and commit marker (not the run records: _job.json, leases)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and (not p.relative_to(root).parts[0].startswith("_") or p.parts[-2] == "_committed")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, job_assets) -> dict[str, tuple[str, int]]:
    root = tmp_path_factory.mktemp("contract-inputs")
    return {case.name: (str(root / case.name), case.make_input(str(root / case.name), job_assets, 3))
            for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_over_s3_is_identical_to_local(case: JobCase, local_ray, s3_server, inputs, job_assets, tmp_path):
    import s3fs

    src, rows = inputs[case.name]
    cfg = case.config(job_assets)
    local = run_shards(case.name, case.worker(), cfg, src, str(tmp_path / "local"), _runner())
    assert local.exit_code == 0 and local.rows == rows
    before = _outputs(tmp_path / "local")
    check_second_run_skips_everything(run_shards(case.name, case.worker(), cfg, src, str(tmp_path / "local"), _runner()), 3)
    assert _outputs(tmp_path / "local") == before, "a second run of the same job rewrote committed outputs"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.put(src, f"dl3d-test/{case.name}-in", recursive=True)
    remote = run_shards(case.name, case.worker(), cfg, f"s3://dl3d-test/{case.name}-in",
                        f"s3://dl3d-test/{case.name}-out", _runner())
    assert remote.exit_code == 0 and remote.count("ok") == 3
    files = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*")
                   if p.is_file() and p.parts[-2] != "_committed" and p.name != "_job.json")
    assert len([f for f in files if f.startswith("part-")]) == 3
    assert case.check_files(tmp_path / "local") > 0
    fs.invalidate_cache()
    prefix = f"dl3d-test/{case.name}-out/"
    on_s3 = sorted(p[len(prefix):] for p in fs.find(prefix) if "/_committed/" not in p and not p.endswith("_job.json"))
    assert on_s3 == files
    for rel in files:
        assert fs.cat_file(prefix + rel) == (tmp_path / "local" / rel).read_bytes(), f"{rel} differs between S3 and local"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_dead_worker_is_replaced_and_failing_shard_is_recorded(case: JobCase, local_ray, inputs, job_assets, tmp_path):
    from faulty_workers import poisoned

    src, _ = inputs[case.name]
    out = tmp_path / "out"
    worker = poisoned(case.worker(), die_shard=0, fail_shard=1)
    report = run_shards(case.name, worker, case.config(job_assets), src, str(out), _runner(max_attempts=3))
    check_dead_worker_and_failing_shard(report, out)
