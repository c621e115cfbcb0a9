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

# The built-in models are registered in :mod:`reenact.registry` itself (``BUILTIN_MODELS``), so the registry
# never imports this package.

__all__ = ["create_model", "get_entry", "list_models", "load_from_checkpoint", "preset_config", "register_model"]
