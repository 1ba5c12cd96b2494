"""The browser viewer (``python view.py -m MODEL``), on viser + nerfview.

- :mod:`.model`   what is shown: splats, facts (size, bits per Gaussian, PSNR), cameras, semantic head
- :mod:`.render`  the render function: pose + size + :class:`ViewOptions` -> uint8 image
- :mod:`.app`     the viser server, nerfview's render loop and the panel

:mod:`.app` imports viser and nerfview (the ``viewer`` extra); the other two need only torch.
"""

from .model import ViewCamera, ViewerModel, facts_markdown, load_viewer_model
from .render import MODES, ViewOptions, ViewRenderer, camera_matrices

__all__ = ["MODES", "ViewCamera", "ViewOptions", "ViewRenderer", "ViewerModel", "camera_matrices",
           "facts_markdown", "load_viewer_model"]
