"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

``lpips`` is the learned perceptual distance between each generated frame and its driving frame (the ground
truth of same-identity reconstruction), averaged over frames; lower is better. It is computed with the PyPI
package ``lpips`` (v0.1 metric, AlexNet backbone by default as the authors recommend for evaluation; VGG16 with
``net="vgg"``) at the frames' own resolution, after mapping [0, 1] RGB to the [-1, 1] range the network expects.

Weights follow the project rule (:mod:`reenact.weights`). The linear calibration layers ship inside the
``lpips`` wheel (``lpips/weights/v0.1/{alex,vgg}.pth``, entries ``lpips-linear-alex`` / ``lpips-linear-vgg``).
The backbone is torchvision's ImageNet classifier, which ``lpips`` would download at run time; here it is
looked up instead (entry ``lpips-alex``: ``alexnet-owt-7be5be79.pth``; ``lpips-vgg``: ``vgg16-397923af.pth``,
in ``$TORCH_HOME/hub/checkpoints``, the reenact weights folder or ``$REENACT_WEIGHTS_LPIPS_ALEX``). The network
is built with ``pnet_rand=True`` (so ``lpips`` never downloads) and both parts are then loaded from the
resolved files with strict key checks; when a file is missing the metric reports ``value=None`` with the
message naming it, never a number from random backbone weights.

States are a float64 sum and a frame count reduced with ``sum`` (DDP-safe). The network is loaded at the first
``update`` and cached per process, weights files and device.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from reenact import weights
from reenact.metrics.base import SAME_IDENTITY, ReenactMetric
from reenact.metrics.registry import register_metric

#: Backbones offered: lpips ``net`` name -> (torchvision constructor name, display name).
BACKBONES = {"alex": ("alexnet", "AlexNet"), "vgg": ("vgg16", "VGG16")}
#: Frames per forward pass.
DEFAULT_BATCH_SIZE = 32


def lpips_version() -> str | None:
    """Installed version of the ``lpips`` package, or None when it is not installed (imports nothing)."""
    if importlib.util.find_spec("lpips") is None:
        return None
    try:
        return version("lpips")
    except PackageNotFoundError:
        return "unknown version"


def _backbone_state(net: str, path: Path) -> nn.Sequential:
    """torchvision's ``features`` stack of the backbone, loaded strictly from an ImageNet state dict file.

    Only the ``features.*`` entries are used (the ``classifier.*`` head is allowed and ignored); any other key,
    a missing key or a shape mismatch raises ``ValueError`` naming the file.
    """
    import torchvision

    tv_name, display = BACKBONES[net]
    model = getattr(torchvision.models, tv_name)(weights=None)
    state = weights.load_state_dict_file(path)
    other = sorted(k for k in state if not k.startswith(("features.", "classifier.")))
    if other:
        raise ValueError(f"{path} is not a torchvision {display} state dict (unexpected keys {other[:5]})")
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match torchvision {display}'s features: {err}") from err
    return model.features


def build_lpips(net: str, backbone_path: str | Path, linear_path: str | Path) -> nn.Module:
    """An ``lpips.LPIPS`` v0.1 network whose backbone and linear layers come from the given files (CPU, eval).

    ``lpips`` is asked for a randomly initialised trunk (``pnet_rand=True``, so it downloads nothing) and no
    linear weights (``pretrained=False``, it would load them with ``strict=False``); both are then loaded here
    with strict checks, so no layer can stay at its random initialisation.
    """
    import lpips

    if net not in BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose from {sorted(BACKBONES)}")
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", lpips=True, pnet_rand=True, verbose=False)
    features = _backbone_state(net, Path(backbone_path))
    copied: set[int] = set()
    for slice_module in model.net.children():
        for index, layer in slice_module.named_children():
            layer.load_state_dict(features[int(index)].state_dict(), strict=True)
            copied.add(int(index))
    uncopied = [i for i, layer in enumerate(features) if list(layer.parameters()) and i not in copied]
    if uncopied:  # a parameterised backbone layer lpips does not use would mean a layout change in lpips
        raise RuntimeError(f"lpips {net} trunk skips parameterised torchvision layers {uncopied}")
    linear = dict(weights.load_state_dict_file(linear_path))
    # lin0..linK (``lins`` is a ModuleList aliasing the same layers, so its keys are duplicates).
    expected = {k for k in model.state_dict() if re.match(r"lin\d+\.", k)}
    if set(linear) != expected:
        raise ValueError(f"{linear_path} does not hold the LPIPS {net} linear layers: missing "
                         f"{sorted(expected - set(linear))}, unexpected {sorted(set(linear) - expected)}")
    model.load_state_dict(linear, strict=False)  # strict on the lin* keys checked above; trunk loaded already
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=4)
def load_lpips(net: str, backbone_path: str, linear_path: str, device: str = "cpu") -> nn.Module:
    """:func:`build_lpips`, cached per process, files and device (metric instances share one copy)."""
    return build_lpips(net, backbone_path, linear_path).to(torch.device(device))


@register_metric
class LPIPS(ReenactMetric):
    """Learned perceptual image patch similarity between generated and driving frames, mean over frames.

    ``update(generated, target)``: ``[N, 3, H, W]`` in [0, 1] (clamped), compared at their own resolution.
    Same-identity protocol only (the driving frame must be the ground truth). Lower is better.

    Args:
        net: ``"alex"`` (default; the LPIPS authors' recommendation for a forward metric) or ``"vgg"``.
        batch_size: frames per forward pass.
    """

    name = "lpips"
    higher_is_better = False
    protocols: ClassVar[tuple[str, ...]] = (SAME_IDENTITY,)

    def __init__(self, net: str = "alex", batch_size: int = DEFAULT_BATCH_SIZE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS backbone {net!r}; choose from {sorted(BACKBONES)}")
        self.net = net
        self.batch_size = batch_size
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    # ---------------------------------------------------------------- weights
    @property
    def weights_name(self) -> str:
        return f"lpips-{self.net}"

    def _paths(self) -> tuple[Path, Path]:
        """Backbone and linear-layer files; :class:`~reenact.weights.MissingWeightsError` when one is missing."""
        return weights.resolve(self.weights_name), weights.resolve(f"lpips-linear-{self.net}")

    def unavailable_reason(self) -> str | None:
        """Why LPIPS cannot run (package or weights file missing, with where to put it), or None. Loads nothing."""
        if lpips_version() is None:
            return "the lpips package is not installed (`pip install lpips`)"
        return weights.missing_reason(self.weights_name, f"lpips-linear-{self.net}")

    def backend(self) -> str:
        display = BACKBONES[self.net][1]
        head = f"lpips {lpips_version() or '(not installed)'} LPIPS v0.1-{self.net}"
        try:
            backbone, linear = self._paths()
        except weights.MissingWeightsError:
            return f"{head}: torchvision {display} ImageNet weights {self.weights_name!r} missing"
        return (f"{head}: torchvision {display} ImageNet backbone {backbone.name} ({backbone}), linear layers "
                f"{linear.name}; [0,1] -> [-1,1], native resolution, mean over frames")

    def _network(self, device: torch.device) -> nn.Module:
        backbone, linear = self._paths()
        return load_lpips(self.net, str(backbone), str(linear), str(device))

    # ---------------------------------------------------------------- state
    def per_frame(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` x2 in [0, 1] -> ``[N]`` LPIPS distances (loads the network on first use)."""
        if generated.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64, device=generated.device)
        net = self._network(generated.device)
        out = []
        with torch.no_grad():
            for g, t in zip(generated.split(self.batch_size), target.split(self.batch_size), strict=True):
                g = g.float().clamp(0, 1) * 2 - 1
                t = t.float().clamp(0, 1) * 2 - 1
                out.append(net(g, t).flatten())
        return torch.cat(out).double()

    def update(self, generated: torch.Tensor, target: torch.Tensor, **context: Any) -> None:
        if generated.shape != target.shape or generated.ndim != 4 or generated.shape[1] != 3:
            raise ValueError(f"expected two [N, 3, H, W] tensors of equal shape, got {tuple(generated.shape)} "
                             f"and {tuple(target.shape)}")
        scores = self.per_frame(generated, target)
        self.total += scores.sum()
        self.count += scores.numel()

    def _value(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)

    def details(self) -> dict[str, Any]:
        return {"net": self.net, "version": "0.1", "input": "[0,1] RGB mapped to [-1,1], native resolution"}


__all__ = ["BACKBONES", "LPIPS", "build_lpips", "load_lpips", "lpips_version"]
