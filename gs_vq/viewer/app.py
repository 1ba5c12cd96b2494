"""The browser viewer: a viser server with nerfview's render loop around :class:`ViewRenderer`.

nerfview renders in a thread per browser tab: while the camera moves it lowers the resolution
to what the last frames' rays per second allow at 30 frames per second (at least 30 pixels
high), and once the camera rests it renders at the panel's *max resolution*. The panel shows the
model's facts, a render mode and, for semantic models, a text query with its mask rule and
threshold.
"""

import socket
import threading
import time
import traceback
from typing import Optional

import numpy as np
import viser
import viser.transforms as vt
from nerfview import RenderTabState, Viewer
from nerfview._renderer import InterruptRenderException

from ..errors import GsVqError, error_text
from .model import ViewerModel, facts_markdown
from .render import MODES, ViewOptions, ViewRenderer

MODE_LABELS = {"rgb": "RGB", "pca": "semantic PCA", "heatmap": "query heatmap", "mask": "query mask"}


def check_port_free(host: str, port: int) -> None:
    """GsVqError unless ``host:port`` can be bound (viser would silently move to the next port)."""
    if not 0 < port < 65536:
        raise GsVqError(f"port must be in 1..65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise GsVqError(f"port {port} on {host} is in use or not available ({e.strerror}): "
                            f"pick another with --port") from None


def start_pose(model: ViewerModel):
    """``(position, look_at, up, fov_y)`` of the first training view, or a view of the whole model."""
    center = model.center()
    if model.cameras:
        cam = model.cameras[0]
        pos, forward = cam.c2w[:3, 3], cam.c2w[:3, 2]
        dist = float(np.dot(center - pos, forward))
        dist = dist if dist > 1e-3 else float(np.linalg.norm(center - pos)) or 1.0
        return pos, pos + dist * forward, model.up, cam.fov_y
    means = model.splats["means"].double().cpu().numpy()
    radius = float(np.percentile(np.linalg.norm(means - center, axis=1), 90)) or 1.0
    return center + radius * np.array([0.0, -1.5, -2.0]), center, np.array([0.0, -1.0, 0.0]), np.deg2rad(50.0)


def look_at_c2w(pos: np.ndarray, target: np.ndarray, up: Optional[np.ndarray]) -> np.ndarray:
    """Camera-to-world ``[4, 4]`` (OpenCV axes: y down) at ``pos`` looking at ``target``."""
    forward = (target - pos) / max(np.linalg.norm(target - pos), 1e-9)
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:  # looking along the up axis
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    c2w[:3, 3] = pos
    return c2w


class GsVqViewer(Viewer):
    """nerfview's :class:`Viewer` with gs-vq's panel (facts, mode, query) and render function."""

    def __init__(self, server: viser.ViserServer, model: ViewerModel, max_res: int, backend: str = "auto"):
        self.model = model
        self.renderer = ViewRenderer(model)
        self.opts = ViewOptions(backend=backend)
        self.max_res = max_res
        self.frames = 0  # frames rendered (shown in the status line)
        # one small frame before serving: loads (or builds) the C++ rasterizer outside nerfview's
        # interruptible render loop, whose interrupt would otherwise land inside the kernel loader
        pos, look_at, _, fov = start_pose(model)
        self.renderer.render(look_at_c2w(pos, look_at, model.up), fov, 32, 24, self.opts)
        self._query_lock = threading.Lock()
        self.query_note = ""  # why text queries cannot run, shown under the query box
        self.query_error = ""  # the last query's error, kept in the status line
        if model.semantic:  # load the text encoder now, not on the first query
            try:
                self.renderer.query_scores("object", self.opts.rule)
            except GsVqError as e:
                self.query_note = f"text queries unavailable: {e}"
        super().__init__(server, self.render_frame, mode="rendering")
        server.gui.set_panel_label("gs-vq viewer")

    # ---- nerfview hooks -------------------------------------------------------------------------
    def _init_rendering_tab(self):
        self.render_tab_state = RenderTabState(viewer_res=self.max_res)
        self._rendering_tab_handles = {}
        self._rendering_folder = self.server.gui.add_folder("Model")

    def _populate_rendering_tab(self):
        gui = self.server.gui
        with self._rendering_folder:
            gui.add_markdown(facts_markdown(self.model.facts))
        with gui.add_folder("View"):
            res = gui.add_slider("Max resolution", min=64, max=2048, step=16, initial_value=self.max_res,
                                 hint="Pixels on the long side once the camera rests (lower while it moves).")

            @res.on_update
            def _(_) -> None:
                self.render_tab_state.viewer_res = int(res.value)
                self.rerender(None)

            if self.model.cameras:
                view = gui.add_slider("Training view", min=0, max=max(len(self.model.cameras) - 1, 1), step=1,
                                      initial_value=0, hint="Jump to one of the scene's training cameras.")

                @view.on_update
                def _(_) -> None:
                    self.go_to(self.model.cameras[min(int(view.value), len(self.model.cameras) - 1)])

            modes = [m for m in MODES if m == "rgb" or self.model.semantic]
            mode = gui.add_dropdown("Render mode", [MODE_LABELS[m] for m in modes], initial_value=MODE_LABELS["rgb"])
            self.mode_handle = mode

            @mode.on_update
            def _(_) -> None:
                self.opts.mode = next(m for m, label in MODE_LABELS.items() if label == mode.value)
                self.rerender(None)

            self.status = gui.add_markdown("")
        if self.model.semantic:
            self._populate_query_folder()
        # Per-Gaussian labels (issue 14) plug in here: a checkbox that sets ``self.opts.keep`` to the
        # query's selected Gaussians; ViewRenderer.render already draws only those.

    def _populate_query_folder(self):
        from ..semantics.scoring import MASK_RULES

        gui = self.server.gui
        with gui.add_folder("Query"):
            text = gui.add_text("Text query", initial_value="", hint="e.g. 'red apple'; Enter or leave the box to apply")
            rule = gui.add_dropdown("Mask rule", list(MASK_RULES), initial_value=self.opts.rule)
            threshold = gui.add_slider("Threshold", min=0.0, max=1.0, step=0.01, initial_value=self.opts.threshold)
            if self.query_note:
                gui.add_markdown(self.query_note)

        def apply(_) -> None:
            with self._query_lock:  # viser runs callbacks in a thread pool; one query at a time
                rule_value, query = rule.value, text.value.strip()  # the latest values
                if query:
                    try:
                        self.renderer.query_scores(query, rule_value)  # the text encoder runs here, once
                    except GsVqError as e:
                        self.query_error = f"; error: {e}"
                        self.status.content = f"error: {e}"
                        return
                    if self.opts.mode in ("rgb", "pca"):
                        self.opts.mode = "heatmap"
                        self.mode_handle.value = MODE_LABELS["heatmap"]
                self.query_error = ""
                self.opts.rule, self.opts.threshold, self.opts.query = rule_value, float(threshold.value), query
            self.rerender(None)

        text.on_update(apply)
        rule.on_update(apply)
        threshold.on_update(apply)

    def render_frame(self, camera_state, render_tab_state) -> np.ndarray:
        """nerfview's render function; never raises (nerfview would end the process)."""
        W, H = render_tab_state.viewer_width, render_tab_state.viewer_height
        tic, note = time.perf_counter(), ""
        try:
            img = self.renderer.render(camera_state.c2w, camera_state.fov, W, H, self.opts)
        except InterruptRenderException:  # the camera moved: nerfview starts a new frame
            raise
        except Exception as e:  # shown in the status line; the frame falls back to RGB
            if not isinstance(e, GsVqError):
                traceback.print_exc()
            note = f"; error: {error_text(e)}"
            self.opts.mode, self.opts.query = "rgb", ""
            img = self.renderer.render(camera_state.c2w, camera_state.fov, W, H, ViewOptions(backend=self.opts.backend))
        self.frames += 1
        what = MODE_LABELS[self.opts.mode] + (f" '{self.opts.query}'" if self.opts.mode in ("heatmap", "mask") else "")
        ms = 1000 * (time.perf_counter() - tic)
        self.status.content = f"frame {self.frames}: {W}x{H}, {ms:.0f} ms, {what}{note}{self.query_error}"
        return img

    def go_to(self, cam) -> None:
        """Move every connected browser's camera to ``cam``."""
        center = self.model.center()
        pos, forward = cam.c2w[:3, 3], cam.c2w[:3, 2]
        dist = max(float(np.dot(center - pos, forward)), 1e-3)
        for client in self.server.get_clients().values():
            with client.atomic():
                client.camera.wxyz = vt.SO3.from_matrix(cam.c2w[:3, :3]).wxyz
                client.camera.position = pos
                client.camera.look_at = pos + dist * forward
                client.camera.fov = cam.fov_y


def serve(model: ViewerModel, host: str = "0.0.0.0", port: int = 8080, max_res: int = 384,
          backend: str = "auto") -> None:
    """Serve ``model`` at ``http://host:port`` until Ctrl-C (or SIGTERM)."""
    check_port_free(host, port)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    if server.get_port() != port:  # someone took the port between the check and the start
        server.stop()
        raise GsVqError(f"port {port} on {host} is in use: pick another with --port")
    pos, look_at, up, fov = start_pose(model)
    if up is not None:
        server.scene.set_up_direction(tuple(float(u) for u in up))
        server.initial_camera.up = up
    server.initial_camera.position = pos
    server.initial_camera.look_at = look_at
    server.initial_camera.fov = float(fov)
    GsVqViewer(server, model, max_res, backend)
    shown = "localhost" if host in ("0.0.0.0", "") else host
    print(f"[gs-vq] viewer at http://{shown}:{port} ({model.facts['gaussians']:,} Gaussians); Ctrl-C stops it",
          flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
