"""Codebook library: k-means, vector / product / residual / additive / scalar / soft quantizers.

Everything runs on CPU and CUDA tensors alike, in float32, chunked so that memory stays bounded::

    from gs_vq.quant import build_quantizer, kmeans

    result = kmeans(x, 4096, iters=25)                     # x: [N, D]
    result.centroids, result.assignments, result.mse

    q = build_quantizer({"type": "pq", "dim": 45, "num_subvectors": 5, "codebook_size": 256})
    q.fit(shN.reshape(-1, 45))
    codes = q.encode(shN.reshape(-1, 45))                  # [N, 5] int64, q.bits_per_vector = 40
    sh_hat = q(shN.reshape(-1, 45))                        # quantized, straight-through gradient
"""

from .additive import AdditiveQuantizer, least_squares_codebooks
from .base import Quantizer, bits_for, straight_through
from .factory import QUANTIZERS, build_quantizer
from .kmeans import KMeansResult, hierarchical_kmeans, kmeans
from .product import ProductQuantizer, VectorQuantizer
from .residual import ResidualQuantizer, beam_search
from .scalar import FSQ, ScalarQuantizer
from .search import assign, nearest
from .soft import SoftIndexQuantizer

__all__ = [
    "AdditiveQuantizer",
    "FSQ",
    "KMeansResult",
    "ProductQuantizer",
    "QUANTIZERS",
    "Quantizer",
    "ResidualQuantizer",
    "ScalarQuantizer",
    "SoftIndexQuantizer",
    "VectorQuantizer",
    "assign",
    "beam_search",
    "bits_for",
    "build_quantizer",
    "hierarchical_kmeans",
    "kmeans",
    "least_squares_codebooks",
    "nearest",
    "straight_through",
]
