"""Score SMPLify fits against ground truth: MPJPE, PA-MPJPE (mm), acceleration error, 2D error (px).

Fits (``smpl_fit`` datasets) and truth (``smpl_params`` datasets with a ``joints`` (24, 3) column,
as ``dl3d data make smpl-video`` writes) are joined on ``id``. Only rows whose fit status is "ok"
enter MPJPE/PA-MPJPE; acceleration error uses each track's runs of consecutive "ok" frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from dl3d.data import DataError, arrow_to_tensor, list_shards, read_table
from dl3d.data.smpl_tables import SMPL_FIT
from dl3d.metrics.pose import acceleration_error, mpjpe, pa_mpjpe


def _read_all(url: str, schema=None) -> pa.Table:
    tables = [read_table(s.url, schema) for s in list_shards(url)]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def evaluate_fit(fit_url: str, truth_url: str) -> dict[str, Any]:
    """Metrics of a fit output against truth; returns overall figures and per-video rows.

    Returns a dict: rows, rows_ok, mpjpe_mm, pa_mpjpe_mm (means over ok rows), accel_error_mm
    (mm/frame², mean over tracks), median_2d_error_px (over ok rows), and ``videos``: a list of
    per-video dicts with the same keys.
    """
    fit = _read_all(fit_url, SMPL_FIT)
    truth = _read_all(truth_url)
    if "joints" not in truth.column_names:
        raise DataError(truth_url, "truth needs a 'joints' column of (24, 3) SMPL joints, metres")
    truth_index = {v: i for i, v in enumerate(truth.column("id").to_pylist())}
    ids = fit.column("id").to_pylist()
    missing = [i for i in ids if i not in truth_index]
    if missing:
        raise DataError(truth_url, f"{len(missing)} fitted ids have no truth row, e.g. {missing[0]!r}")
    take = pa.array([truth_index[i] for i in ids], pa.int64())
    gt = arrow_to_tensor(truth.column("joints").take(take), (24, 3), name="joints", source=truth_url, dtype=np.float64)
    pred = arrow_to_tensor(fit.column("joints"), (24, 3), name="joints", source=fit_url, dtype=np.float64)
    ok = np.array([s == "ok" for s in fit.column("status").to_pylist()])
    err2d = np.asarray(fit.column("reprojection_error_px").to_numpy(zero_copy_only=False), dtype=np.float64)
    videos = np.array(fit.column("video").to_pylist(), dtype=object)
    tracks = np.asarray(fit.column("track").to_pylist())
    frames = np.asarray(fit.column("frame").to_pylist())

    def score(rows: np.ndarray) -> dict[str, Any]:
        good = rows[ok[rows]]
        accel = [_track_accel(pred, gt, good[(videos[good] == v) & (tracks[good] == t)], frames)
                 for v, t in sorted({(videos[i], tracks[i]) for i in good})]
        accel = [a for a in accel if np.isfinite(a)]
        return {
            "rows": int(len(rows)), "rows_ok": int(len(good)),
            "mpjpe_mm": float(np.mean(mpjpe(pred[good], gt[good])) * 1000) if len(good) else float("nan"),
            "pa_mpjpe_mm": float(np.mean(pa_mpjpe(pred[good], gt[good])) * 1000) if len(good) else float("nan"),
            "accel_error_mm": float(np.mean(accel) * 1000) if accel else float("nan"),
            "median_2d_error_px": float(np.median(err2d[good])) if len(good) else float("nan"),
        }

    result = score(np.arange(len(ids)))
    result["videos"] = [{"video": v} | score(np.flatnonzero(videos == v)) for v in sorted(set(videos))]
    return result


def _track_accel(pred: np.ndarray, gt: np.ndarray, rows: np.ndarray, frames: np.ndarray) -> float:
    """Acceleration error over the longest run of consecutive frames of one track (NaN if < 3 frames)."""
    rows = rows[np.argsort(frames[rows])]
    if len(rows) < 3:
        return float("nan")
    breaks = np.flatnonzero(np.diff(frames[rows]) != 1) + 1
    runs = [r for r in np.split(rows, breaks) if len(r) >= 3]
    if not runs:
        return float("nan")
    errors = [acceleration_error(pred[r], gt[r]) for r in runs]
    weights = [len(r) - 2 for r in runs]
    return float(np.average(errors, weights=weights))


def format_report(result: dict[str, Any]) -> str:
    """A table of the per-video and overall metrics."""
    head = f"{'video':<14}{'rows':>6}{'ok':>6}{'MPJPE mm':>10}{'PA-MPJPE mm':>13}{'accel mm/f²':>13}{'2D px (med)':>13}"
    lines = [head]
    for row in result["videos"] + [{"video": "ALL"} | result]:
        lines.append(f"{row['video']:<14}{row['rows']:>6}{row['rows_ok']:>6}{row['mpjpe_mm']:>10.1f}"
                     f"{row['pa_mpjpe_mm']:>13.1f}{row['accel_error_mm']:>13.2f}{row['median_2d_error_px']:>13.2f}")
    return "\n".join(lines)
