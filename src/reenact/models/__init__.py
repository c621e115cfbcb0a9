"""The model zoo: ``list_models()``, ``create_model(name, preset=..., **overrides)``, ``load_from_checkpoint``.

>>> import reenact.models
>>> reenact.models.list_models()
['copy-source', 'keypoint-warp']
>>> model = reenact.models.create_model("copy-source", preset="tiny")
"""

from reenact.registry import (
    create_model,
    get_entry,
    list_models,
    load_from_checkpoint,
    preset_config,
    register_model,
)

register_model(
    "copy-source", "reenact.models.copy_source:CopySource",
    "Reference floor: outputs the source frame for every driving frame; nothing to train.",
)
register_model(
    "keypoint-warp", "reenact.models.keypoint_warp.module:KeypointWarp",
    "Small FOMM-style learned reference: unsupervised keypoints, dense motion, occlusion-aware warping.",
    paper="Siarohin et al., First Order Motion Model, NeurIPS 2019 (without Jacobians)",
)

__all__ = ["create_model", "get_entry", "list_models", "load_from_checkpoint", "preset_config", "register_model"]
