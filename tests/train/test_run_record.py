"""The run record (``_train.json``) that lets a re-run resume only the same model: no Ray needed."""

from __future__ import annotations

import pytest

from dl3d.data import fs as fsx
from dl3d.jobs.train import TrainConfig, _claim_run
from dl3d.giraffe.config import GIRAFFE_PRESETS
from dl3d.train.family import config_to_dict


def test_a_config_with_tuple_fields_resumes_and_a_changed_one_is_refused(tmp_path):
    """GIRAFFE's config holds tuples (depth range, box ranges); JSON gives them back as lists, and the
    re-run of the same command must still be recognised as the same run."""
    fs, root = fsx.resolve(str(tmp_path / "run"))
    fs.makedirs(root, exist_ok=True)
    cfg = GIRAFFE_PRESETS["cpu-small"]
    meta = {"family": "giraffe", "model_config": config_to_dict(cfg)}
    assert any(isinstance(v, tuple) for v in meta["model_config"].values()), "the case needs a tuple field"
    train_cfg = TrainConfig(data=str(tmp_path / "data"), storage=str(tmp_path))
    _claim_run(fs, root, "run", meta, train_cfg)
    _claim_run(fs, root, "run", meta, train_cfg)  # the same command again: resumes
    other = {**meta, "model_config": {**meta["model_config"], "depth_range": (1.0, 5.0)}}
    with pytest.raises(ValueError, match="was trained with model_config"):
        _claim_run(fs, root, "run", other, train_cfg)
