"""FSRT: Facial Scene Representation Transformer (Rochow, Schwarz and Behnke, CVPR 2024).

* :mod:`~reenact.models.fsrt.torch_model`: the pure-PyTorch generator (keypoint detector, expression network, encoder,
  decoder) with chunked rendering and absolute/relative animation;
* :mod:`~reenact.models.fsrt.lightning_model`: the Lightning module ``fsrt`` (three-phase training, regularisation);
* :mod:`~reenact.models.fsrt.official`: :func:`load_official` for the released checkpoints.

See ``README.md`` in this folder for the paper-to-code map and the deviations.
"""

from reenact.models.fsrt.official import OFFICIAL_PARTS, load_official, official_layout
from reenact.models.fsrt.torch_model import FSRTConfig, FSRTGenerator, best_initial_frame, pixel_grid

__all__ = ["OFFICIAL_PARTS", "FSRTConfig", "FSRTGenerator", "best_initial_frame", "load_official", "official_layout",
           "pixel_grid"]
