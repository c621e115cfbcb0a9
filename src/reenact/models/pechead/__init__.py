"""PECHead (Gao et al., "High-Fidelity and Freely Controllable Talking Head Video Generation", CVPR 2023).

Pure-torch parts: :mod:`.reconstructor` (R, Eq. 1), :mod:`.keypoints` (E, Eq. 2), :mod:`.mmfa` (Sec. 3.2, Eq. 3),
:mod:`.cap` (Sec. 3.3, Eq. 4), :mod:`.torch_model` (the generator), :mod:`.losses` (Eq. 5); the Lightning wrapper is
:mod:`.lightning_model` (import it explicitly: it pulls in Lightning). See ``README.md`` for the equation -> code map.
"""

from reenact.models.pechead.reconstructor import FaceShapeReconstructor
from reenact.models.pechead.torch_model import PECHeadConfig, PECHeadGenerator

__all__ = ["FaceShapeReconstructor", "PECHeadConfig", "PECHeadGenerator"]
