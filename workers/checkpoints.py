"""The ``--checkpoint`` of a render or reconstruction job: one check for the driver, one reader for workers.

A checkpoint is either a training checkpoint folder as ``dl3d train`` writes it (``state.pt`` and
``train.json``, whose ``family`` names the model family) or a single ``.pt`` file, at any fsspec URL.
The driver's :func:`check_checkpoint` reads files only (the header and, for a zip, its directory at the
end of the file: a truncated file is caught); nothing is unpickled and no model is built there.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

from dl3d.data import fs as fsx

CHECKPOINT_HEADERS = (b"PK\x03\x04", b"\x80")
"""First bytes of a ``torch.save`` file: a zip archive (the default since torch 1.6), or a pickle."""

_HINT = "expected a training checkpoint folder holding state.pt, or a .pt file"


def check_checkpoint(url: str, family: str, what: str, *, folder_only: bool = False) -> None:
    """The driver's check of ``--checkpoint`` before any worker starts: files only.

    url: a training checkpoint folder or a ``.pt`` file (any fsspec URL); family: the registry name
    its ``train.json`` must give; what: how messages name it, e.g. ``"SynSin checkpoint"``;
    folder_only: accept training checkpoint folders only.

    Raises:
        FileNotFoundError: nothing at ``url``, or a folder without ``train.json``.
        ValueError: a file that is not a whole torch checkpoint (wrong header, or a zip whose
            directory cannot be read), or a training checkpoint of another family.
    """
    from dl3d.train.checkpoint import META_FILE, STATE_FILE

    fs, path = fsx.resolve(url)
    state = fsx.join(path, STATE_FILE)
    if fsx.exists(fs, state):
        meta_path = fsx.join(path, META_FILE)
        if not fsx.exists(fs, meta_path):
            raise FileNotFoundError(f"{what} {url}: a training checkpoint folder without {META_FILE}")
        found = json.loads(fsx.get_bytes(fs, meta_path)).get("family")
        if found != family:
            raise ValueError(f"{what} {url}: written by model family {found!r}, not {family!r}")
        path = state
    elif folder_only:
        raise FileNotFoundError(f"{what} not found: {url.rstrip('/')}/{STATE_FILE} (expected a training "
                                f"checkpoint folder, as dl3d train {family} writes)")
    elif not fsx.exists(fs, path) or fs.isdir(path):
        raise FileNotFoundError(f"{what} not found: {url} ({_HINT})")
    name = path.rsplit("/", 1)[-1]
    with fs.open(path, "rb") as f:
        head = f.read(4)
        if not head.startswith(CHECKPOINT_HEADERS):
            raise ValueError(f"{what} {url}: {name} is not a torch checkpoint "
                             f"(expected a zip or pickle header, found {head!r})")
        if head.startswith(b"PK"):
            f.seek(0)
            try:
                zipfile.ZipFile(f).close()
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise ValueError(f"{what} {url}: {name} is not readable: a truncated or damaged "
                                 f"torch checkpoint ({exc})") from None


def read_checkpoint_file(url: str, what: str) -> tuple[str, Any]:
    """``("training", dict)`` from a training checkpoint folder (``dl3d.train.checkpoint.read_checkpoint``)
    or ``("file", object)`` from a ``.pt`` file, on the CPU; any other failure to read names the file.

    Raises:
        FileNotFoundError: nothing at ``url``.
        ValueError: a file that cannot be unpickled as a torch checkpoint (weights only).
    """
    import torch

    from dl3d.train.checkpoint import STATE_FILE, read_checkpoint

    fs, path = fsx.resolve(url)
    training = fsx.exists(fs, fsx.join(path, STATE_FILE))
    source = f"{url.rstrip('/')}/{STATE_FILE}" if training else url
    try:
        if training:
            return "training", read_checkpoint(url)
        return "file", torch.load(fsx.open_asset(url, what=what, hint=_HINT), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load/json raise many types for a corrupt file
        raise ValueError(f"{what} {source} is not readable: {type(exc).__name__}: {exc}") from None


__all__ = ["CHECKPOINT_HEADERS", "check_checkpoint", "read_checkpoint_file"]
