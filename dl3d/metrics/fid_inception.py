"""The FID Inception network (the TensorFlow ``inception-2015-12-05`` graph as ported by pytorch-fid), built
with torchvision's Inception v3 modules and loaded from a user-given state dict (never downloaded).

It differs from torchvision's Inception v3 in four places (pytorch-fid's ``fid_inception_v3``): 1008
output classes; the average pools of the ``Mixed_5*``, ``Mixed_6b-e`` and ``Mixed_7b`` blocks leave the
zero padding out of the average; and ``Mixed_7c`` max-pools its pool branch. Features: images in [0, 1]
resized bilinearly to 299 x 299, mapped to [-1, 1], the 2048 values of the last average pool.
The weights file is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pool(x: Tensor, kind: str) -> Tensor:
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _blocks():
    from torchvision.models.inception import InceptionA, InceptionC, InceptionE

    class FidA(InceptionA):
        def forward(self, x: Tensor) -> Tensor:
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat((self.branch1x1(x), b5, b3, self.branch_pool(_pool(x, "avg"))), 1)

    class FidC(InceptionC):
        def forward(self, x: Tensor) -> Tensor:
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                d = layer(d)
            return torch.cat((self.branch1x1(x), b7, d, self.branch_pool(_pool(x, "avg"))), 1)

    class FidE(InceptionE):
        pool_kind = "avg"

        def forward(self, x: Tensor) -> Tensor:
            b3 = self.branch3x3_1(x)
            b3 = torch.cat((self.branch3x3_2a(b3), self.branch3x3_2b(b3)), 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat((self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)), 1)
            return torch.cat((self.branch1x1(x), b3, d, self.branch_pool(_pool(x, self.pool_kind))), 1)

    class FidEMax(FidE):
        pool_kind = "max"

    return FidA, FidC, FidE, FidEMax


def fid_inception_v3() -> nn.Module:
    """The FID Inception v3 with random weights (torchvision layout: its state dict keys are pytorch-fid's)."""
    from torchvision.models import inception_v3

    FidA, FidC, FidE, FidEMax = _blocks()
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = FidA(192, 32), FidA(256, 64), FidA(288, 64)
    net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e = FidC(768, 128), FidC(768, 160), FidC(768, 160), FidC(768, 192)
    net.Mixed_7b, net.Mixed_7c = FidE(1280), FidEMax(2048)
    return net


class FidInceptionFeatures(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, 2048) pool features of the FID Inception network."""

    dim = 2048

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        n = self.net
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3,
                      n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                      n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = layer(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_fid_inception(url: str) -> FidInceptionFeatures:
    """The FID feature extractor with the weights at ``url`` (pytorch-fid's state dict, any fsspec URL).

    Raises:
        FileNotFoundError: no file there.
        ValueError: the file is not a torch state dict of the FID Inception network (names the file).
    """
    from dl3d.data import fs as fsx

    data = fsx.open_asset(url, what="Inception weights file",
                          hint="give pytorch-fid's pt_inception-2015-12-05-6726825d.pth (a state dict)")
    try:
        state = torch.load(data, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a corrupt file
        raise ValueError(f"Inception weights {url}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"Inception weights {url}: expected a state dict, found a {type(state).__name__}")
    net = fid_inception_v3()
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"Inception weights {url} do not fit the FID Inception network: {str(exc)[:400]}") from None
    return FidInceptionFeatures(net.eval())
