"""Language-queryable semantics: 2D feature maps, per-Gaussian features, a semantic codebook, queries.

Inputs and training:

- :mod:`.labels_json` a scene's labels.json: label texts and extra queries with their ids
- :mod:`.encoders`  text encoders (MiniLM, open_clip text tower), recorded in the maps' meta.json
- :mod:`.features`  2D feature maps (masks + labels, or dense open_clip) on disk
- :mod:`.codebook`  decoder + K-entry codebook, the cos / CE / entropy losses, entry usage
- :mod:`.field_setup` :class:`SemanticConfig` (the ``semantic:`` section), the maps and the ``features`` parameter
- :mod:`.state`     :class:`SemanticState`, the plugin's run state
- :mod:`.plugin`    :class:`SemanticField`, the training plugin (``--semantic``)
- :mod:`.lift`      training-free field on an RGB model

Queries (a text goes head -> scoring -> pixels or Gaussians):

- :mod:`.head`      :class:`SemanticHead`: decoder + codebook + encoder, the ``semantic_head.pt`` file
- :mod:`.scoring`   a text query's score per codebook entry (mask rules), per pixel, masks, IoU
- :mod:`.view_queries` queries in rendered views: heatmaps, masks, PCA pictures, 2D mIoU for ``render.py``
- :mod:`.labels`    per-Gaussian labels (codebook index + confidence): lifted or decoded directly
- :mod:`.labelfiles` labels into point_cloud.ply / compressed.ply
- :mod:`.select`    3D selection by text, ``--extract`` / ``--remove``, 3D selection IoU

The command lines are in :mod:`gs_vq.cli` (``python -m gs_vq.cli.features`` / ``lift`` / ``labelfiles``,
and :mod:`gs_vq.cli.semantic_render`: ``render.py``'s semantic options); this package never imports
it. Names are imported lazily.
"""

import importlib

_EXPORTS = {
    "codebook": ["SemanticCodebook", "code_ce_loss", "cosine_loss", "entropy_loss", "entry_usage", "semantic_losses"],
    "encoders": ["EncoderSpec", "load_text_encoder"],
    "features": ["FeatureMaps", "compute_clip_features", "compute_label_features", "load_features"],
    "plugin": ["SemanticField"],
    "state": ["SemanticState"],
    "field_setup": ["SemanticConfig", "add_feature_param"],
    "labels": ["compute_labels", "labels_for", "stored_labels"],
    "lift": ["lift_field", "lift_model"],
    "select": ["evaluate_selection", "query_selection", "write_selection"],
    "view_queries": ["evaluate_queries", "render_pca", "render_queries"],
    "head": ["HEAD_NAME", "SemanticHead"],
    "labels_json": ["extra_queries", "label_queries", "label_table", "read_labels"],
    "scoring": ["CANONICAL_NEGATIVES", "MASK_RULES", "entry_relevancy", "entry_scores", "query_mask"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'gs_vq.semantics' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
