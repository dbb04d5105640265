"""torchvision VGG ``features`` weights into a feature extractor cut into slices.

Shared by ``perceptual_distance`` (VGG16, ``dl3d.metrics.image``) and SynSin's perceptual loss (VGG19,
``dl3d.synsin.vgg``): both keep torchvision's ``features`` layers, grouped as ``slices.<s>.<j>``, and
read the user's weights in torchvision's layout (a whole ``vgg16``/``vgg19`` state_dict with
``features.<i>.*`` keys, or the ``features`` module's own ``<i>.weight``/``<i>.bias`` keys).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["load_sliced_vgg_state"]


def load_sliced_vgg_state(net: nn.Module, state: object, slices: tuple[tuple[int, int], ...], *,
                          arch: str, source: str) -> None:
    """Load torchvision VGG ``features`` weights into ``net`` (strict: every parameter of ``net`` is set).

    net: a module whose parameters are named ``slices.<s>.<j>.weight|bias``, slice ``s`` holding
        torchvision's ``features[a:b]`` for ``(a, b) = slices[s]``.
    state: the loaded weights file (a mapping of tensors, see the module docstring).
    arch: ``"VGG16"`` or ``"VGG19"``, for messages. source: the file, for messages.

    Raises:
        ValueError: ``state`` is not a mapping, or lacks a key, or holds a tensor of the wrong shape;
            the message names ``source``, the key and both shapes.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: expected a {arch} state_dict (a mapping of tensors), got {type(state).__name__}")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    mine = net.state_dict()
    own: dict[str, torch.Tensor] = {}
    for si, (a, b) in enumerate(slices):
        for j, i in enumerate(range(a, b)):
            for name in ("weight", "bias"):
                key, target = f"{i}.{name}", f"slices.{si}.{j}.{name}"
                if target not in mine:
                    continue
                if key not in state:
                    raise ValueError(f"{source}: not a {arch} state_dict: missing {key!r} (or 'features.{key}')")
                if tuple(state[key].shape) != tuple(mine[target].shape):
                    raise ValueError(f"{source}: {key!r} has shape {tuple(state[key].shape)}, expected "
                                     f"{tuple(mine[target].shape)} ({arch})")
                own[target] = state[key]
    net.load_state_dict(own, strict=True)
