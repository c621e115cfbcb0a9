"""Context Adaptation and Propagation (PECHead Sec. 3.3, Fig. 5, Eq. 4) and the frame flow it needs.

Eq. 4::

    h_t          = ConvGRU(f^c_{t-1}, h_{t-1})
    f~^r_{t-1}   = W(W(f^r_{t-1}, w_{t-1->t}), w^{s->d}_local)          (two-step warping)
    f^c_t        = FR(CA(c(f^a_t, f~^r_{t-1}, f^c_{t-1}, h_{t-1})))

``h`` and ``f^c`` start as zeros for the first frame. The code follows Eq. 4 as written: frame ``t`` computes
``h_t`` from the previous frame's ``f^c_{t-1}`` and ``h_{t-1}``, concatenates ``h_{t-1}`` (not ``h_t``) with the
other features, and hands ``h_t`` to frame ``t + 1``; the hidden state thus reaches ``f^c`` one frame later than
the adapted feature does. (The paper's text says ``h`` "is updated with the adapted feature"; Eq. 4 says which.)

The frame flow ``w_{t-1->t}`` is computed between consecutive *source* frames ``x^s_{t-1}, x^s_t`` by an
image-based estimator (the paper: RAFT, Teed & Deng 2020). :class:`~reenact.nn.frame_flow.FrameFlow` (shared,
``reenact.nn``) uses torchvision's RAFT-large
when its weights resolve through :mod:`reenact.weights` (``raft-large``), otherwise OpenCV's DIS or
Farneback flow (offline, no weights); the choice is logged. When the source does not change between frames
(one source image animated by a video) the flow is the identity and is not computed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reenact.nn.blocks import ConvGRUCell, ResBlock2d, SameBlock2d
from reenact.nn.frame_flow import FrameFlow
from reenact.nn.warping import warp


class CAP(nn.Module):
    """Eq. 4 for one frame.

    Args:
        channels: ``C`` of the aligned feature ``f^a`` (and of ``f^r``, ``f^c``, ``h``).
        num_adaptation_blocks: conv blocks of Context Adaptation (CA) after the ``4C -> C`` reduction.
        num_refinement_blocks: residual blocks of Feature Refinement (FR).

    Forward: ``aligned [B, C, h, w]`` (``f^a_t``), ``raw [B, C, h, w]`` (``f^r_t``, kept for the next frame),
    ``local_deformation [B, h', w', 2]``, ``frame_grid [B, H', W', 2]`` or ``None`` (source unchanged), ``state``
    (``None`` for the first frame) -> ``(f^c_t [B, C, h, w], new state)``. The state is a dict ``raw``, ``adapted``,
    ``hidden``.
    """

    def __init__(self, channels: int, num_adaptation_blocks: int = 2, num_refinement_blocks: int = 2) -> None:
        super().__init__()
        adaptation: list[nn.Module] = [SameBlock2d(4 * channels, channels)]
        adaptation += [SameBlock2d(channels, channels) for _ in range(num_adaptation_blocks)]
        self.adaptation = nn.Sequential(*adaptation)
        self.refinement = nn.Sequential(*[ResBlock2d(channels) for _ in range(num_refinement_blocks)])
        self.gru = ConvGRUCell(channels, channels)

    @staticmethod
    def initial_state(raw: Tensor) -> dict[str, Tensor]:
        """Zeros for ``h`` and ``f^c`` (Sec. 3.3); the previous raw feature of the first frame is zero as well, so
        the first frame's two-step warp contributes nothing."""
        zeros = torch.zeros_like(raw)
        return {"raw": zeros, "adapted": zeros, "hidden": zeros}

    def forward(self, aligned: Tensor, raw: Tensor, local_deformation: Tensor, frame_grid: Tensor | None,
                state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        if state is None:
            state = self.initial_state(raw)
        previous = state["raw"]
        if frame_grid is not None:
            previous = warp(previous, frame_grid)
        previous = warp(previous, local_deformation)  # two-step warping
        hidden = self.gru(state["adapted"], state["hidden"])  # h_t = ConvGRU(f^c_{t-1}, h_{t-1})
        # f^c_t = FR(CA(c(f^a_t, f~^r_{t-1}, f^c_{t-1}, h_{t-1}))): the concatenation takes h_{t-1}, as Eq. 4 writes.
        adapted = self.refinement(self.adaptation(
            torch.cat([aligned, previous, state["adapted"], state["hidden"]], dim=1)))
        return adapted, {"raw": raw, "adapted": adapted, "hidden": hidden}


__all__ = ["CAP", "FrameFlow"]
