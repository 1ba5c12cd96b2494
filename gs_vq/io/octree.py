"""Positions on a grid as an entropy-coded octree (the occupancy coding of point-cloud codecs).

Morton codes of ``bits`` bits per axis are the leaves of an octree of depth ``bits``. Level by
level from the root, every occupied node stores an 8-bit mask of its occupied children, range
coded (:mod:`gs_vq.io.entropy`) with one frequency table per level and per context; the context
is how many siblings the node has (1, 2, 3 or more children in its parent's mask): a lone node
usually has a lone child. Several Gaussians in one leaf cell are stored as a per-leaf count.
Everything is vectorised per level; decoding yields the codes in ascending order.
"""

from typing import List

import numpy as np

from . import entropy as E

_CONTEXTS = 3
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _sibling_context(parent_masks: np.ndarray, parent_of_node: np.ndarray) -> np.ndarray:
    return np.minimum(_POPCOUNT[parent_masks[parent_of_node]], _CONTEXTS) - 1


def encode_octree(codes: np.ndarray, bits: int) -> bytes:
    """Ascending [N] uint64 Morton codes (< 2**(3 * bits), repeats allowed) -> bytes."""
    codes = np.asarray(codes, dtype=np.uint64).reshape(-1)
    if codes.size == 0:
        return b""
    if np.any(codes[1:] < codes[:-1]):
        raise ValueError("octree codes must be sorted")
    leaves, counts = np.unique(codes, return_counts=True)
    parts: List[bytes] = []
    masks = np.zeros(1, dtype=np.int64)  # a virtual parent of the root with one child
    masks[0] = 1
    parent_of = np.zeros(1, dtype=np.int64)
    for level in range(1, bits + 1):
        children = np.unique(leaves >> np.uint64(3 * (bits - level)))  # [C] ascending
        parents, first = np.unique(children >> np.uint64(3), return_index=True)
        node_of_child = np.searchsorted(parents, children >> np.uint64(3))
        bit = np.left_shift(1, (children & np.uint64(7)).astype(np.int64))
        level_masks = np.zeros(parents.size, dtype=np.int64)
        np.bitwise_or.at(level_masks, node_of_child, bit)
        ctx = _sibling_context(masks, parent_of)  # context of each node (= parent of children)
        parts.append(E.encode_symbols(level_masks, 256, ctx, _CONTEXTS))
        masks, parent_of = level_masks, node_of_child
    parts.append(E.encode_symbols(counts - 1, int(counts.max())))
    return E.join_payloads(np.asarray([int(counts.max())], "<u4").tobytes(), *parts)


def decode_octree(payload: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_octree` -> [count] ascending uint64. ValueError on bad input."""
    if count == 0:
        if payload:
            raise ValueError("octree of no points has a payload")
        return np.zeros(0, dtype=np.uint64)
    head, *levels, mult = E.split_payloads(payload, bits + 2)
    if len(head) != 4:
        raise ValueError("octree header malformed")
    max_count = int(np.frombuffer(head, "<u4")[0])
    if not 1 <= max_count <= count:
        raise ValueError("octree leaf count out of range")
    nodes = np.zeros(1, dtype=np.uint64)
    masks = np.ones(1, dtype=np.int64)
    parent_of = np.zeros(1, dtype=np.int64)
    for level_payload in levels:
        if nodes.size > count:
            raise ValueError("octree has more nodes than points")
        ctx = _sibling_context(masks, parent_of)
        level_masks = E.decode_symbols(level_payload, 256, int(nodes.size), ctx, _CONTEXTS)
        level_masks = level_masks.astype(np.int64)
        if np.any(level_masks == 0):
            raise ValueError("octree node without children")
        occupied = ((level_masks[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)  # [P, 8]
        parent_of = np.nonzero(occupied)[0]
        child = np.nonzero(occupied)[1].astype(np.uint64)
        nodes = (nodes[parent_of] << np.uint64(3)) | child
        masks = level_masks
    counts = E.decode_symbols(mult, max_count, int(nodes.size)).astype(np.int64) + 1
    if int(counts.sum()) != count:
        raise ValueError(f"octree holds {int(counts.sum())} points, {count} expected")
    return np.repeat(nodes, counts)
