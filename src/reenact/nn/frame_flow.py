"""Backward optical flow between consecutive frames, as a sampling grid: torchvision's RAFT-large (Teed & Deng
2020) when its weights resolve through :mod:`reenact.weights`, else OpenCV's DIS or Farneback flow (offline, no
weights). PECHead's CAP (Sec. 3.3, Eq. 4) warps the previous frame's feature with it. RAFT runs on the frames'
device; the OpenCV methods run on the CPU (the frames are copied there and the flow back)."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from reenact.nn.warping import flow_to_grid

log = logging.getLogger(__name__)

FlowMethod = Literal["auto", "raft", "dis", "farneback"]


class FrameFlow:
    """Backward optical flow between consecutive frames, as a sampling grid (no gradients).

    Args:
        method: ``"raft"`` (torchvision RAFT-large, weights via ``reenact.weights``; raises
            ``MissingWeightsError`` if absent), ``"dis"`` / ``"farneback"`` (OpenCV, offline), or ``"auto"``
            (RAFT when its weights are available, else DIS).

    Call: ``previous [B, 3, H, W]``, ``current [B, 3, H, W]`` in ``[0, 1]`` -> grid ``[B, H, W, 2]`` with
    ``warp(previous, grid) ~ current``.
    """

    def __init__(self, method: FlowMethod = "auto") -> None:
        if method not in ("auto", "raft", "dis", "farneback"):
            raise ValueError(f"unknown frame flow {method!r}; expected auto, raft, dis or farneback")
        self._raft: nn.Module | None = None
        if method == "auto":
            from reenact import weights

            method = "raft" if weights.available("raft-large") else "dis"
        if method == "raft":
            self._raft = self._load_raft()
        self.method = method
        log.info("frame flow: %s", {"raft": "RAFT-large (torchvision)",
                                                    "dis": "OpenCV DIS (offline classical flow)",
                                                    "farneback": "OpenCV Farneback (offline classical flow)"}[method])

    @staticmethod
    def _load_raft() -> nn.Module:
        from torchvision.models.optical_flow import raft_large

        from reenact import weights

        model = raft_large(weights=None, progress=False)
        model.load_state_dict(weights.load_state_dict_file(weights.resolve("raft-large")))
        return model.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, previous: Tensor, current: Tensor) -> Tensor:
        if self._raft is not None:
            raft = self._raft.to(current.device)
            # RAFT(image1, image2) gives flow with image1(p) ~ image2(p + flow): image1 = current frame.
            flow = raft(current.float() * 2 - 1, previous.float() * 2 - 1, num_flow_updates=12)[-1]
            return flow_to_grid(flow).to(current.dtype)
        return flow_to_grid(self._opencv(previous, current)).to(current.dtype)

    def _opencv(self, previous: Tensor, current: Tensor) -> Tensor:
        import cv2

        def gray(x: Tensor) -> np.ndarray:
            rgb = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

        flows = []
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if self.method == "dis" else None
        for prev, cur in zip(previous, current, strict=True):
            a, b = gray(cur), gray(prev)
            if dis is not None:
                flow = dis.calc(a, b, None)  # one DIS instance per batch: calc() keeps no state between pairs
            else:
                flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            flows.append(torch.from_numpy(flow).permute(2, 0, 1))
        return torch.stack(flows).to(current.device)


__all__ = ["FlowMethod", "FrameFlow"]
