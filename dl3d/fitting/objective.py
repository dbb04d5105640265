"""SMPLify's data and smoothness terms as small pure functions (batched, differentiable).

Units: pixels for 2D residuals, metres for 3D joints. Every term returns one value per row (the
temporal term one per inner row) so callers can both sum it for the optimiser and report it per frame.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["MAX_RESIDUAL_SIGMAS", "gmof", "project_points", "reprojection_term", "second_difference_term"]

MAX_RESIDUAL_SIGMAS = 1e4
"""Residuals are clamped to this many ``sigma`` before squaring: GMoF is flat there (within 1e-8 of
``sigma²``), and a residual of 1e20 px would overflow float32 to inf, then to NaN (inf / inf)."""


def gmof(residual: Tensor, sigma: float) -> Tensor:
    """Geman-McClure robust penalty, elementwise: ``sigma² r² / (sigma² + r²)``.

    residual: (...) float, e.g. pixels; sigma: same units (SMPLify uses 100 px).
    Returns (...) float, units², about ``r²`` for ``|r| << sigma`` and at most ``sigma²``; finite
    with a finite gradient for any finite residual (clamped at ``MAX_RESIDUAL_SIGMAS * sigma``).
    """
    bound = MAX_RESIDUAL_SIGMAS * sigma
    residual = residual.clamp(-bound, bound)
    sq = residual * residual
    return (sigma * sigma) * sq / (sq + sigma * sigma)


def project_points(points: Tensor, focal: Tensor, principal_point: Tensor, min_depth: float = 1e-2) -> Tensor:
    """Pinhole projection, OpenCV convention (x right, y down, z forward), no distortion.

    points: (N, P, 3) float, camera frame, metres.
    focal: (N,) float, pixels (square pixels).
    principal_point: (N, 2) float, pixels.
    min_depth: depths below this (metres) are clamped to it, so points at or behind the camera
        give large but finite pixels.
    Returns (N, P, 2) float, pixels.
    """
    z = points[..., 2:3].clamp_min(min_depth)
    return points[..., :2] / z * focal[:, None, None] + principal_point[:, None, :]


def reprojection_term(projected: Tensor, observed: Tensor, weight: Tensor, sigma: float) -> Tensor:
    """SMPLify's data term per row: ``sum_j weight_j² * sum_xy gmof(projected - observed)``.

    projected: (N, J, 2) float, pixels; observed: (N, J, 2) float, pixels (finite everywhere:
    missing keypoints must be zero-filled and carry zero weight).
    weight: (N, J) float, confidence times per-joint weight (0 = ignore).
    Returns (N,) float, pixels².
    """
    return (weight * weight * gmof(projected - observed, sigma).sum(-1)).sum(-1)


def second_difference_term(points: Tensor, valid: Tensor) -> Tensor:
    """Squared acceleration ``|x[i+1] - 2 x[i] + x[i-1]|²`` summed over points, for rows i = 1..N-2.

    points: (N, P, 3) float, camera frame, metres, rows sorted by (track, frame).
    valid: (N - 2,) float or bool, 1 where rows i-1, i, i+1 are consecutive frames of one track
        (``tracks.consecutive_mask``), else 0.
    Returns (N - 2,) float, metres² (per frame²), 0 where not valid. Slices, no gathers: cheap to
    differentiate.
    """
    if points.shape[0] < 3:
        return points.new_zeros(0)
    acc = points[2:] - 2 * points[1:-1] + points[:-2]
    return (acc * acc).sum((-1, -2)) * valid.to(points.dtype)
