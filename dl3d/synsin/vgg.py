"""Frozen VGG19 feature slices for SynSin's perceptual loss, loaded from a user-given weights file.

The layers are torchvision's VGG19 ``features`` (``make_layers(cfgs["E"])``, as ``vgg19(weights=None)``
builds them, without the 500 MB classifier the loss never reads); nothing is downloaded. The weights
come from a state_dict file in torchvision's layout (a whole ``vgg19`` state_dict with ``features.*`` keys, or the
``features`` module's own ``0.weight``, ``0.bias``, ... keys).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.vgg import cfgs as _vgg_cfgs
from torchvision.models.vgg import make_layers as _vgg_make_layers

from dl3d.data import fs as fsx
from dl3d.metrics.vgg_weights import load_sliced_vgg_state

# (start, stop) indices in vgg19.features: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (as SPADE/SynSin).
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] feature maps.

    Inputs are ImageNet-normalised first (the official SynSin code feeds [-1, 1] images unnormalised; the
    ImageNet normalisation is what torchvision's VGG weights expect). Parameters are frozen.
    """

    def __init__(self):
        super().__init__()
        features = _vgg_make_layers(_vgg_cfgs["E"], batch_norm=False)  # == torchvision vgg19().features
        self.slices = nn.ModuleList(
            [nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in VGG19_SLICES])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode (no dropout/BN here, but keep it explicit)."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected image of shape (N, 3, H, W), got {tuple(image.shape)}")
        h = (image - self.mean) / self.std
        outs = []
        for s in self.slices:
            h = s(h)
            outs.append(h)
        return outs

    def load_features_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "state_dict") -> None:
        """Load torchvision ``vgg19`` weights (``features.*`` keys) or ``vgg19().features`` weights."""
        load_sliced_vgg_state(self, state, VGG19_SLICES, arch="VGG19", source=source)


def load_vgg19_features(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGG19Features:
    """Build ``VGG19Features`` from a weights file (torch.save of a torchvision vgg19 state_dict).

    path: a local path or any fsspec URL (``s3://...``), read through ``dl3d.data.fs.read_asset``.

    Raises FileNotFoundError when the file is missing and ValueError when it is not VGG19 weights.
    """
    path = os.fspath(path)
    data = fsx.open_asset(path, what="VGG19 weights file for the perceptual loss",
                          hint="give a torchvision vgg19 state_dict saved with torch.save")
    try:
        state = torch.load(data, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling error means "not a weights file"
        raise ValueError(f"{path}: cannot read a VGG19 state_dict: {e}") from e
    net = VGG19Features()
    net.load_features_state_dict(state, source=path)
    return net.to(device)
