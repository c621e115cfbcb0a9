"""``reenact studio``: edit and reenact faces in the browser (a local Gradio app; ``pip install -e ".[studio]"``).

:mod:`~reenact.studio.session` holds what the page does, without Gradio (tested directly);
:mod:`~reenact.studio.app` lays out the page.
"""

from reenact.studio.session import StudioError, StudioSession

__all__ = ["StudioError", "StudioSession"]
