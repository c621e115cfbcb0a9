"""LPMM (Lee et al. 2023): landmark-parameter morphable model, LP-regressor, LP-adaptor and rig-like control over
a frozen latent talking-head backbone (LIA)."""

from reenact.models.lpmm.adaptor import LIABackbone, LPAdaptor, PoseLatentBackbone
from reenact.models.lpmm.control import PresetLibrary, edit
from reenact.models.lpmm.pca import LandmarkPCA, align_landmarks, nme
from reenact.models.lpmm.regressor import LPRegressor

__all__ = ["LIABackbone", "LPAdaptor", "LPRegressor", "LandmarkPCA", "PoseLatentBackbone", "PresetLibrary",
           "align_landmarks", "edit", "nme"]
