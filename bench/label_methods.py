"""3D selection mIoU of a semantic model with per-Gaussian labels by each method (lift / direct).

    python -m bench.label_methods MODEL RESOLUTION

Label queries of the scene's labels.json, scored on the test views at ``-r RESOLUTION``; label
CPU time per method. Table on stdout, JSON in bench/results/label_methods.json.
"""

import json
import os
import sys
import time

from bench import report

from gs_vq.config import load_config
from gs_vq.data import load_scene
from gs_vq.io import load_splats
from gs_vq.semantics.labels import CONF_KEY, LABEL_KEY, compute_labels
from gs_vq.semantics.head import SemanticHead
from gs_vq.semantics.select import evaluate_selection


def main() -> None:
    model, res = sys.argv[1], int(sys.argv[2])
    cfg = load_config(os.path.join(model, "cfg.yaml"))
    scene = load_scene(cfg.source_path, resolution=res, eval=True)
    with open(os.path.join(cfg.source_path, "labels.json")) as f:
        labels_json = {k: v for k, v in json.load(f).items() if k != "queries"}
    splats = load_splats(os.path.join(model, "point_cloud.ply"))
    head = SemanticHead.load(model)
    out, rows = {"model": os.path.abspath(model), "resolution": res}, []
    for method in ("direct", "lift"):
        t = time.process_time()
        labels, conf = compute_labels(splats, head, scene.train_cameras, method)
        secs = round(time.process_time() - t, 2)
        r = evaluate_selection({**splats, LABEL_KEY: labels, CONF_KEY: conf}, scene.test_cameras, head, labels_json, "cpu")
        out[method] = {"miou_3d": r["miou_3d"], "iou_3d": r["iou_3d"], "label_cpu_seconds": secs}
        rows.append([method, r["miou_3d"], secs])
    print(report.markdown(["labels", "3D mIoU (label queries)", "label CPU s"], rows))
    report.write_json(os.path.join(report.ROOT, "bench", "results", "label_methods.json"), out)


if __name__ == "__main__":
    main()
