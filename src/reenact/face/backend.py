"""The common shape of face-analysis backends (landmarks, identity): a name, a description for results, an
availability check that loads nothing, and loaded models that never travel in a pickle."""

from __future__ import annotations

from typing import Any, ClassVar


class FaceBackend:
    """Base of every face-analysis backend."""

    name: ClassVar[str]
    #: Attributes holding loaded models: dropped when pickled or deep-copied (metrics are cloned and sent to
    #: DDP workers; dlib/onnxruntime/mediapipe objects cannot be pickled) and reloaded lazily on the next use.
    _lazy_attributes: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._lazy_attributes:
            if key in state:
                state[key] = None
        return state

    def describe(self) -> str:
        """Human-readable backend name for results (what ran, which model files)."""
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can. Loads nothing heavy."""
        return None
