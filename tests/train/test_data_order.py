"""The training stream with ``shuffle`` on (the default): one seed, one stream.

Each worker's batches come from Ray Train's split of the dataset (``train_data_config``) through
``epoch_batches``, as in the training loop. Ray Data hands out read blocks as they finish unless it keeps
their order; it did not, and two runs with one ``--seed`` trained on different streams (a run resumed
mid-epoch then skipped other batches than those it had trained on). Built here without the trainer: the
driver's dataset and DataConfig, configured for one worker as Ray Train configures them.
"""

from __future__ import annotations

import pytest

from dl3d.data import list_shards
from dl3d.jobs.train import TrainConfig, _train_dataset, train_data_config
from dl3d.jobs.train_loop import epoch_batches
from dl3d.train.toy import make_toy_dataset

pytestmark = pytest.mark.slow


def _stream(urls: list[str], cfg: TrainConfig, epochs: int = 2) -> list[list[list[str]]]:
    """Row ids of each batch of each epoch, as rank 0 of one worker would get them."""
    (split,) = train_data_config().configure({"train": _train_dataset(urls, cfg, None)}, world_size=1,
                                             worker_handles=None, worker_node_ids=None)
    return [[b.column("id").to_pylist() for b in epoch_batches(split["train"], cfg.batch_size, cfg.shuffle,
                                                                cfg.seed, epoch, 0)]
            for epoch in range(epochs)]


def test_one_seed_gives_one_shuffled_stream(local_ray, tmp_path):
    data = str(tmp_path / "data")
    make_toy_dataset(data, rows=40, shards=5, seed=4)  # 4 shards of 8 rows train: 4 batches of 8 per epoch
    urls = [s.url for s in list_shards(data)[:4]]
    cfg = TrainConfig(data=data, storage=str(tmp_path / "runs"), batch_size=8, shuffle=True, seed=11)
    first, second = _stream(urls, cfg), _stream(urls, cfg, epochs=1)
    assert first[0] == second[0], "the same seed must give the same batches"
    in_order = [f"r{i:05d}" for i in range(32)]
    for epoch in first:
        ids = [i for batch in epoch for i in batch]
        assert sorted(ids) == in_order, "every training row once per epoch"
        assert ids != in_order, "shuffled"
    assert first[0] != first[1], "each epoch is shuffled anew"
