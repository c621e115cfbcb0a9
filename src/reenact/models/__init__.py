"""The model zoo: ``list_models()``, ``create_model(name, preset=..., **overrides)``, ``load_from_checkpoint``.

>>> import reenact.models
>>> reenact.models.list_models()
['copy-source', 'fsrt', 'keypoint-warp', 'lia', 'lpmm']
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
register_model(
    "fsrt", "reenact.models.fsrt.module:FSRT",
    "Set-latent transformer: keypoints + expression vectors, pixel-wise transformer decoder, any number of sources.",
    paper="Rochow, Schwarz and Behnke, FSRT: Facial Scene Representation Transformer, CVPR 2024",
)
register_model(
    "pechead", "reenact.models.pechead.module:PECHead",
    "Face-model landmarks + pose-aware learned keypoints, multi-scale deformable alignment, recurrent context (CAP).",
    paper="Gao et al., High-Fidelity and Freely Controllable Talking Head Video Generation, CVPR 2023",
)
register_model(
    "lia", "reenact.models.lia.module:LIA",
    "Latent Image Animator: StyleGAN2 encoder/synthesis, orthonormal motion directions, flow-warped skip features.",
    paper="Wang et al., Latent Image Animator: Learning to Animate Images via Latent Space Navigation, ICLR 2022",
)
register_model(
    "lpmm", "reenact.models.lpmm.module:LPMM",
    "Landmark-parameter morphable model: PCA landmark rig, LP-regressor and LP-adaptor driving a frozen LIA.",
    paper="Lee et al., LPMM: Intuitive Pose Control for Neural Talking-Head Model via Landmark-Parameter "
          "Morphable Model, arXiv 2305.10456, 2023",
)

__all__ = ["create_model", "get_entry", "list_models", "load_from_checkpoint", "preset_config", "register_model"]
