"""Fitting and refreshing the plugin's quantizers (all k-means lives in gs_vq.quant)."""

from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

from ..errors import GsVqError
from ..quant import QUANTIZERS, VectorQuantizer, build_quantizer, kmeans
from ..quant.factory import accepted_options
from ..quant.rate import distortion, ecvq_step, rate_codes
from .config import VQConfig
from .slot import Slot

# quantizers whose per-vector state cannot follow densification (trainable per-row logits)
UNSUPPORTED = {"soft": "its per-Gaussian logits do not follow densification and pruning"}


def quantizer_spec(cfg: VQConfig, name: str, n: int, dim: int) -> Dict[str, Any]:
    """The ``build_quantizer`` spec of attribute ``name`` for ``n`` vectors of ``dim``.

    Fills ``dim``, and, unless the entry sets them, ``iters`` (``cfg.init_iters``), ``seed`` and
    ``max_points`` (``cfg.max_samples``); caps ``codebook_size`` at ``n`` (k-means needs K <= N)
    and at ``max_k_fraction * n`` when that is set.
    """
    spec = cfg.quantizer_spec(name)
    kind = spec.get("type")
    if kind not in QUANTIZERS:
        raise GsVqError(f"vq.attributes.{name}: unknown quantizer type {kind!r} "
                        f"(expected one of {', '.join(QUANTIZERS)})")
    if kind in UNSUPPORTED:
        raise GsVqError(f"vq.attributes.{name}: quantizer type {kind!r} cannot be trained by the "
                        f"VQ plugin: {UNSUPPORTED[kind]}")
    spec["dim"] = dim
    defaults = {"iters": cfg.init_iters, "seed": cfg.seed,
                "max_points": cfg.max_samples or None}
    for option, value in defaults.items():
        if option not in spec and option in accepted_options(kind):
            spec[option] = value
    if "codebook_size" in spec:
        k = int(spec["codebook_size"])
        if cfg.max_k_fraction > 0:
            k = min(k, max(2, int(cfg.max_k_fraction * n)))
        spec["codebook_size"] = max(1, min(k, n))
        if spec.get("max_points") is not None:  # k-means needs K <= points
            spec["max_points"] = max(int(spec["max_points"]), spec["codebook_size"])
    return spec


def present_attributes(cfg: VQConfig, keys) -> List[str]:
    """The configured attributes among ``keys`` (splat names), in config order; an error if none is."""
    names = [name for name in cfg.attributes if name in keys]
    if not names:
        raise GsVqError(f"vq: none of the configured attributes ({', '.join(cfg.attributes) or 'none'}) "
                        "is in the splats")
    return names


def build_slots(cfg: VQConfig, vectors: Dict[str, Tensor], shapes: Dict[str, Tuple[int, ...]],
                weights: Optional[Dict[str, Optional[Tensor]]] = None) -> Tuple[Dict[str, Slot], List[Tensor]]:
    """Fit one quantizer per configured attribute present in ``vectors`` ({name: [N, d]}); the
    codewords end as their members' means, weighted by ``weights[name] [N]`` where given.

    Returns the slots (codes in columns 1.. of the code table, in config order) and the code
    columns ``[N, M]`` of each.
    """
    slots: Dict[str, Slot] = {}
    columns: List[Tensor] = []
    start = 1  # column 0 holds the row tags
    for name in present_attributes(cfg, vectors):
        x = vectors[name]  # [N, d]
        spec = quantizer_spec(cfg, name, x.shape[0], x.shape[1])
        quantizer = build_quantizer(spec).to(x.device).fit(x)
        codes = quantizer.encode(x)  # [N, M]
        slot = Slot(name, shapes[name], quantizer, start, codes.shape[1],
                    cfg.codebook_precision(name), spec, Slot.rule_of(name, quantizer),
                    mantissa=cfg.codebook_mantissa, resolution=cfg.codebook_step(name))
        quantizer.update_codebooks_from_assignments(x, codes, (weights or {}).get(name))
        slots[name] = slot
        columns.append(codes)
        start += codes.shape[1]
    return slots, columns


def refresh_slot(slot: Slot, x: Tensor, cfg: VQConfig, weights: Optional[Tensor] = None) -> Tensor:
    """``refresh_iters`` k-means iterations (assign to the nearest codeword, then move every
    codeword to its members' mean) warm-started from the current codebooks, with the attribute's
    rate term (``cfg.rate_of``) in the final assignment. Returns the final assignments [N, M] of
    ``x`` [N, d]; the codewords end as their members' means (weighted by ``weights [N]``)."""
    q, rate = slot.quantizer, cfg.rate_of(slot.name)
    extra = max(cfg.refresh_iters, 1) - 1  # iterations before the final assignment
    if isinstance(q, VectorQuantizer) and x.shape[0] >= q.codebook_sizes[0]:
        # one codebook: k-means' own final assignment pass gives the codes
        r = kmeans(x, q.codebook_sizes[0], iters=extra, metric=q.metric, seed=cfg.seed,
                   init_centroids=q.codebook_0, chunk_size=q.kmeans_args["chunk_size"], weights=weights)
        q.codebook_0.copy_(r.centroids)
        codes = r.assignments[:, None]
        if rate > 0:  # entropy-constrained: frequent codes get cheaper (gs_vq.quant.rate)
            if slot.rate_scale is None:  # price bits against the plain distortion, once
                slot.rate_scale = distortion(x, q.codebook_0, codes[:, 0])
            centroids, idx = ecvq_step(x, q.codebook_0, codes[:, 0], rate, slot.rate_scale)
            q.codebook_0.copy_(centroids)
            codes = idx[:, None]
    else:
        if extra and x.shape[0] >= max(q.codebook_sizes):  # k-means needs K <= N
            q.refit(x, iters=extra)
        codes = q.encode(x)
        if rate > 0:  # each index priced by its own stream (residual stages greedily)
            if slot.rate_scale is None:
                slot.rate_scale = float((x - q.decode(codes)).square().sum(dim=1).mean())
            codes = rate_codes(x, q.codebooks, codes, slot.combine, rate * slot.rate_scale)
    q.update_codebooks_from_assignments(x, codes, weights)
    return codes
