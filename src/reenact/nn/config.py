"""Frozen configs: one dataclass per pure-torch generator (its architecture), declared once, and the base they
share with the other config sections (e.g. :class:`reenact.evaluation.EvaluationConfig`).

A Lightning module takes its generator's config as one argument, ``generator`` (``model.generator.*`` in config
files and on the command line, where jsonargparse lists the fields), instead of re-declaring every size; the
generator is built from it, and the module stores it as a plain mapping so checkpoints stay loadable with
``torch.load(weights_only=True)`` and config files stay plain YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any, TypeVar

Config = TypeVar("Config", bound="FrozenConfig")


@dataclass(frozen=True)
class FrozenConfig:
    """Base of reenact's config sections: lists from YAML/JSON become tuples (configs stay hashable and compare
    equal whichever way they were written), and :meth:`coerce` accepts the forms a config arrives in."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))

    @classmethod
    def field_names(cls) -> set[str]:
        return {field.name for field in fields(cls)}

    @classmethod
    def coerce(cls: type[Config], value: Config | Mapping[str, Any] | None) -> Config:
        """``None`` (the defaults), a mapping of fields (a config file's ``generator:`` section, a checkpoint's
        hyper-parameters) or a config -> a config; unknown fields raise a ``TypeError`` naming them."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        unknown = sorted(set(value) - cls.field_names())
        if unknown:
            raise TypeError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(cls.field_names())}")
        return cls(**dict(value))

    @classmethod
    def resolve(cls: type[Config], value: Config | Mapping[str, Any] | None, **overrides: Any) -> Config:
        """:meth:`coerce`, then keyword ``overrides`` of single fields on top: what a generator's constructor
        takes (``FSRTGenerator(config, latent_dim=96)``)."""
        return replace(cls.coerce(value), **overrides)


@dataclass(frozen=True)
class ArchitectureConfig(FrozenConfig):
    """Base of the generator configs (the ``generator`` argument of a Lightning module)."""

    @classmethod
    def gather(cls, hparams: Mapping[str, Any], section: str = "generator") -> dict[str, Any]:
        """Constructor arguments stored flat (checkpoints written before the ``section`` existed) -> the same with
        this config's fields moved into ``section``. A flat ``None`` whose field has a non-``None`` default is
        dropped: the old constructors spelled "the default" as ``None``. Already upgraded mappings pass unchanged."""
        names = cls.field_names()
        flat = {key: value for key, value in hparams.items() if key in names}
        if not flat:
            return dict(hparams)
        defaults = {field.name: field.default for field in fields(cls)}
        for key, value in list(flat.items()):
            if value is None and defaults[key] is not None and defaults[key] is not MISSING:
                del flat[key]
        rest = {key: value for key, value in hparams.items() if key not in names}
        return {**rest, section: {**flat, **(rest.get(section) or {})}}


__all__ = ["ArchitectureConfig", "FrozenConfig"]
