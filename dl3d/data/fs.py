"""Filesystem access through fsspec: local paths, ``s3://`` and any other fsspec URL.

S3 settings come from the usual environment variables, read by botocore/s3fs themselves
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
``AWS_DEFAULT_REGION``), plus ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for an S3-compatible
endpoint (MinIO, Ceph, a moto server). Explicit ``storage_options`` win over the environment.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: Environment variables that configure S3 access; the job runner forwards them to Ray workers.
S3_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def s3_env() -> dict[str, str]:
    """The S3-related environment variables that are set in this process."""
    return {k: os.environ[k] for k in S3_ENV_VARS if k in os.environ}


def _default_options(protocol: str) -> dict[str, Any]:
    if protocol not in ("s3", "s3a"):
        return {}
    options: dict[str, Any] = {"skip_instance_cache": True}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def resolve(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for a URL; the path has no protocol prefix and no trailing slash."""
    if not url:
        raise ValueError("expected a dataset URL or path, got an empty string")
    protocol = fsspec.utils.get_protocol(url)
    options = _default_options(protocol)
    options.update(storage_options or {})
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path.rstrip("/") or path


def join(path: str, *parts: str) -> str:
    """Join path parts with ``/`` (fsspec paths are POSIX-style on every filesystem)."""
    return posixpath.join(path, *parts)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def put_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing, the old object or the whole new one.

    Local files are written beside the target and renamed over it (atomic on POSIX); object stores
    (S3) publish an object only when its upload completes, so a single put is already whole.
    """
    parent = posixpath.dirname(path)
    if is_local(fs):
        os.makedirs(parent, exist_ok=True)
        tmp = join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def get_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    return fs.cat_file(path)


def write_file(url: str | os.PathLike[str], data: bytes, storage_options: dict[str, Any] | None = None) -> str:
    """Write ``data`` to a file at a local path or any fsspec URL, whole or not at all (see ``put_bytes``).

    Local parent folders are created. Returns the path or URL as given (``os.fspath``).
    """
    text = os.fspath(url)
    fs, path = resolve(_expand(text), storage_options)
    put_bytes(fs, path, data)
    return text


# ---- user-given files (assets) ---------------------------------------------------------------------


def read_asset(
    url: str | os.PathLike[str],
    *,
    what: str = "file",
    hint: str = "",
    storage_options: dict[str, Any] | None = None,
) -> bytes:
    """The whole content of a user-given file: a body model, a GMM prior, a checkpoint, weights.

    Every asset dl3d reads comes through here, so any fsspec URL works wherever a path does (a
    cluster's workers share no disk: ``s3://bucket/gmm_08.pkl`` reaches them all).

    Args:
        url: a local path (``~`` expanded), ``file://...``, ``s3://...`` or any fsspec URL.
        what: what the file is, for messages (``"GMM prior file"``, ``"SynSin checkpoint"``).
        hint: what to do when it is missing; appended to the not-found message after ``"; "``.
        storage_options: fsspec options; S3 settings come from the environment (module docstring).

    Raises:
        ValueError: an empty ``url``.
        FileNotFoundError: no file there (or a folder): ``"{what} not found: {url}[; {hint}]"``.
        OSError: the file exists but cannot be read; the message names ``what`` and ``url``.
    """
    text = os.fspath(url)
    if not text.strip():
        raise ValueError(f"expected the path or URL of a {what}, got an empty string")
    missing = f"{what} not found: {text}" + (f"; {hint}" if hint else "")
    try:
        fs, path = resolve(_expand(text), storage_options)
        if fs.isdir(path):
            raise FileNotFoundError(f"{missing} (it is a folder)")
        return fs.cat_file(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(str(err) if str(err).startswith(missing) else missing) from None
    except OSError as err:
        raise OSError(f"cannot read {what} {text}: {err}") from err


def open_asset(
    url: str | os.PathLike[str],
    *,
    what: str = "file",
    hint: str = "",
    storage_options: dict[str, Any] | None = None,
) -> io.BytesIO:
    """``read_asset`` as a seekable binary file object (for ``torch.load``, ``pickle``, ``np.load``)."""
    return io.BytesIO(read_asset(url, what=what, hint=hint, storage_options=storage_options))


def _expand(text: str) -> str:
    """``~`` expanded in a local path; URLs unchanged."""
    return text if "://" in text else os.path.expanduser(text)


def exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    fs.invalidate_cache(posixpath.dirname(path))
    return fs.exists(path)


def remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a file if it exists."""
    if exists(fs, path):
        fs.rm_file(path)
