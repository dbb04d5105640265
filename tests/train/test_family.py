"""The model-family contract, its registry, the toy family and checkpoint folders: no Ray."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch

import dl3d.train.family as family_mod
from dl3d.data import DataError, list_shards, read_meta, read_table
from dl3d.jobs.cli import build_parser
from dl3d.jobs.train import TrainConfig, configs_from_args, split_shards
from dl3d.train import get_family, known_families, load_checkpoint, read_checkpoint, register_family, save_checkpoint
from dl3d.train.checkpoint import metrics_from_csv, metrics_to_csv
from dl3d.train.toy import TOY_FAMILY, TOY_REGRESSION, ToyConfig, make_toy_dataset
from train_reference import max_abs_diff, reference_train


@pytest.fixture
def registry(monkeypatch):
    """An empty registry for the test (built-ins still load lazily)."""
    monkeypatch.setattr(family_mod, "FAMILIES", {})
    return family_mod


@pytest.fixture
def toy_url(tmp_path) -> str:
    url = str(tmp_path / "toy")
    make_toy_dataset(url, rows=40, shards=4, seed=3)
    return url


def test_builtin_family_loads_lazily_and_once(registry):
    assert registry.FAMILIES == {}
    assert get_family("toy") is TOY_FAMILY
    assert registry.FAMILIES == {"toy": TOY_FAMILY}
    assert get_family("toy") is TOY_FAMILY
    assert "toy" in known_families()


def test_unknown_family_lists_known_names(registry):
    with pytest.raises(ValueError, match=r"unknown model family 'no-such-family'; known families: .*toy"):
        get_family("no-such-family")


def test_register_rejects_duplicates_and_builtin_names(registry):
    other = dataclasses.replace(TOY_FAMILY, name="toy2")
    register_family(other)
    assert get_family("toy2") is other
    with pytest.raises(ValueError, match="'toy2' is registered twice"):
        register_family(dataclasses.replace(TOY_FAMILY, name="toy2"))
    with pytest.raises(ValueError, match="'toy' is taken by the built-in dl3d.train.toy:TOY_FAMILY"):
        register_family(dataclasses.replace(TOY_FAMILY, name="toy", doc="an impostor"))


def test_family_checks_presets_kind_and_overrides():
    with pytest.raises(TypeError, match="preset 'bad' is a dict, expected ToyConfig"):
        dataclasses.replace(TOY_FAMILY, presets={"bad": {"lr": 1.0}})
    with pytest.raises(ValueError, match="dataset_kind 'images' differs from its schema's kind 'toy_regression'"):
        dataclasses.replace(TOY_FAMILY, dataset_kind="images")
    assert TOY_FAMILY.config() == ToyConfig()
    assert TOY_FAMILY.config("mlp", lr=0.5) == ToyConfig(hidden=32, optimizer="adam", lr=0.5)
    with pytest.raises(ValueError, match="no preset 'huge'; known presets: linear, mlp"):
        TOY_FAMILY.config("huge")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['lr_'\]"):
        TOY_FAMILY.config(lr_=0.1)


def test_toy_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = TOY_FAMILY.build(ToyConfig(hidden=4))["model"].state_dict()
    assert torch.equal(torch.rand(3), expected_next), "build must not consume the global RNG"
    b = TOY_FAMILY.build(ToyConfig(hidden=4))["model"].state_dict()
    c = TOY_FAMILY.build(ToyConfig(hidden=4, init_seed=1))["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 0.1


def test_toy_dataset_is_sharded_and_fits_its_linear_law(toy_url):
    assert read_meta(toy_url)["kind"] == "toy_regression" and read_meta(toy_url)["num_rows"] == 40
    shards = list_shards(toy_url)
    assert [s.index for s in shards] == [0, 1, 2, 3]
    table = pa.concat_tables([read_table(s.url, TOY_REGRESSION) for s in shards])
    assert table.column("id").to_pylist() == [f"r{i:05d}" for i in range(40)]
    batch = TOY_FAMILY.decode_batch(table, ToyConfig(), torch.device("cpu"))
    assert batch["x"].shape == (40, 8) and batch["x"].dtype == torch.float32 and batch["y"].shape == (40,)
    design = np.concatenate([batch["x"].numpy(), np.ones((40, 1), np.float32)], 1)
    coef, *_ = np.linalg.lstsq(design, batch["y"].numpy(), rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - batch["y"].numpy()) ** 2)))
    assert rms < 0.02, f"residual {rms} of a linear fit; the writer's noise is 0.01"
    assert abs(coef[-1] - 0.5) < 0.02


def test_toy_decode_names_the_bad_column(toy_url):
    table = read_table(list_shards(toy_url)[0].url)
    with pytest.raises(DataError, match="column 'x': expected length 6 at level 0, found 8"):
        TOY_FAMILY.decode_batch(table, ToyConfig(features=6), torch.device("cpu"))


def test_toy_sgd_step_matches_the_closed_form_gradient(toy_url):
    cfg = ToyConfig(lr=0.1)
    modules = TOY_FAMILY.build(cfg)
    lin = modules["model"].net
    w0, b0 = lin.weight.detach().clone()[0], lin.bias.detach().clone()[0]
    batch = TOY_FAMILY.decode_batch(read_table(list_shards(toy_url)[0].url), cfg, torch.device("cpu"))
    x, y = batch["x"].double(), batch["y"].double()
    r = x @ w0.double() + b0.double() - y
    metrics = TOY_FAMILY.train_step(modules, TOY_FAMILY.make_optimizers(modules, cfg), batch, 1, cfg)
    assert metrics["loss"] == pytest.approx(float((r**2).mean()), rel=1e-5)
    n = len(y)
    assert torch.allclose(lin.weight.detach()[0].double(), w0.double() - 0.1 * 2 / n * x.T @ r, atol=1e-6)
    assert float(lin.bias.detach()[0]) == pytest.approx(float(b0 - 0.1 * 2 / n * r.sum()), abs=1e-6)


def test_checkpoint_roundtrip_restores_modules_optimizers_and_metrics(tmp_path, toy_url):
    cfg = ToyConfig(hidden=4, optimizer="adam", lr=0.01)
    urls = [s.url for s in list_shards(toy_url)]
    modules = TOY_FAMILY.build(cfg)
    optimizers = TOY_FAMILY.make_optimizers(modules, cfg)
    batch = TOY_FAMILY.decode_batch(read_table(urls[0]), cfg, torch.device("cpu"))
    for step in (1, 2):
        TOY_FAMILY.train_step(modules, optimizers, batch, step, cfg)
    rows = [{"step": 1, "loss": 0.5, "run": "a"}, {"step": 2, "loss": 0.25, "eval_loss": 0.3, "run": "a"}]
    save_checkpoint(str(tmp_path / "ck"), modules, optimizers, 2, {"family": "toy"}, rows)

    fresh = TOY_FAMILY.build(cfg)
    fresh_opt = TOY_FAMILY.make_optimizers(fresh, cfg)
    state = load_checkpoint(str(tmp_path / "ck"), fresh, fresh_opt)
    assert state.step == 2 and state.meta == {"family": "toy", "step": 2} and state.metrics == rows
    # Adam's moments came back: one more step from each copy lands on the same parameters.
    TOY_FAMILY.train_step(modules, optimizers, batch, 3, cfg)
    TOY_FAMILY.train_step(fresh, fresh_opt, batch, 3, cfg)
    assert max_abs_diff({"model": modules["model"].state_dict()}, {"model": fresh["model"].state_dict()}) == 0.0
    ck = read_checkpoint(str(tmp_path / "ck"))
    assert ck["step"] == 2 and sorted(ck["optimizers"]["model"]["state"]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"holds modules \['model'\], this model has \['generator'\]"):
        load_checkpoint(str(tmp_path / "ck"), {"generator": fresh["model"]})
    params = list(fresh["model"].parameters())
    two_groups = {"model": torch.optim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.01)}
    with pytest.raises(ValueError, match=r"optimizer 'model' has 1 parameter group\(s\), this run's has 2"):
        load_checkpoint(str(tmp_path / "ck"), fresh, two_groups)


def test_metrics_csv_keeps_types_and_blanks():
    rows = [{"step": 1, "loss": 0.125, "run": "r1"}, {"step": 2, "loss": 1e-9, "eval_mae": 3.5, "run": "r1"}]
    text = metrics_to_csv(rows)
    assert text.splitlines()[0] == "step,loss,run,eval_mae"
    assert metrics_from_csv(text) == rows


def test_reference_loop_wraps_epochs(toy_url):
    """The test reference itself: 4 steps of 10 rows over 30 training rows wrap to the first batch."""
    urls = [s.url for s in list_shards(toy_url)][:3]
    a = reference_train(TOY_FAMILY, ToyConfig(), urls, 4, 10)
    b = reference_train(TOY_FAMILY, ToyConfig(), urls, 3, 10)
    assert max_abs_diff(a, b) > 1e-3


def test_split_holds_out_whole_trailing_shards(toy_url, tmp_path):
    shards = [s.url for s in list_shards(toy_url)]
    assert split_shards(TrainConfig(data=toy_url, storage="x"), TOY_FAMILY) == (shards[:3], shards[3:])
    assert split_shards(TrainConfig(data=toy_url, storage="x", eval_shards=0), TOY_FAMILY) == (shards, [])
    assert split_shards(TrainConfig(data=toy_url, storage="x", eval_data=toy_url), TOY_FAMILY) == (shards, shards)
    with pytest.raises(ValueError, match="has 4 shard\\(s\\): too few to hold out 4"):
        split_shards(TrainConfig(data=toy_url, storage="x", eval_shards=4), TOY_FAMILY)
    other = dataclasses.replace(TOY_FAMILY, name="imgs", dataset_kind="images",
                                schema=dataclasses.replace(TOY_REGRESSION, kind="images"))
    with pytest.raises(DataError, match="dataset kind 'toy_regression'; family 'imgs' trains on 'images'"):
        split_shards(TrainConfig(data=toy_url, storage="x"), other)


def test_train_config_validates():
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        TrainConfig(data="d", storage="s", steps=0)
    with pytest.raises(ValueError, match="cpus_per_worker must be > 0"):
        TrainConfig(data="d", storage="s", cpus_per_worker=0)


def test_cli_options_come_from_the_dataclasses_and_override_the_preset():
    parser = build_parser(["train", "toy"])
    args = parser.parse_args(["train", "toy", "--data", "s3://b/d", "--storage", "/runs", "--steps", "7",
                              "--preset", "mlp", "--hidden", "16", "--no-shuffle", "--workers", "2"])
    cfg, model = configs_from_args(args)
    assert cfg == TrainConfig(data="s3://b/d", storage="/runs", steps=7, preset="mlp", shuffle=False, workers=2)
    assert model == ToyConfig(hidden=16, optimizer="adam", lr=0.01), "given options win, the rest is the preset"
    assert args.func.__name__ == "_cmd_train" and args.model == "toy"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "toy", "--storage", "/runs"])  # --data is required
