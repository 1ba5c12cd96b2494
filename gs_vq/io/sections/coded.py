"""The ``coded_<a>`` sections: a vector-quantized attribute, its codebooks and index streams.

Payload: per codebook its table (float16/32 words) and its index stream; optionally first a
row-presence flag stream (params ``rows``: absent rows store no indices and decode to 0). Index
columns after the first are coded with the previous column as context. Unused entries are
dropped on writing (most used first; 1-D codebooks in ascending value, so that index slices are
value ranges for the next column's context): decoded values are unchanged.
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ...errors import GsVqError
from .. import entropy as E
from ..check import MAX_TABLE, MAX_VALUES, Check
from ..coding import (INDEX_CODECS, INT_CODECS, WORD_CODECS, column_context, decode_ints, decode_words,
                      encode_ints, encode_words, flag_context)
from ..scene import COMBINE_RULES, PRECISIONS, CodedAttribute, CompressedScene
from .base import Entry, Job, Params, Section, SectionCodec


def _compact(codebook: Tensor, codes: Tensor, rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Drop unused entries, most used first (1-D codebooks: in ascending value, so that index
    slices are value ranges for the next column's context). Only ``rows`` ([N] bool, None = all)
    count as uses; the other rows get index 0. At least one entry is kept. Decoded values of the
    counted rows are unchanged."""
    counts = torch.bincount(codes if rows is None else codes[rows], minlength=codebook.shape[0])
    counts[0] += int(not counts.any())
    used = torch.nonzero(counts).squeeze(1)
    key = codebook[used, 0] if codebook.shape[1] == 1 else -counts[used].double()
    used = used[torch.argsort(key, stable=True)]
    remap = torch.full((codebook.shape[0],), -1, dtype=torch.int64)
    remap[used] = torch.arange(len(used))
    out = remap[codes]
    if rows is not None:
        out[~rows] = 0
    return codebook[used], out


def table_words(table: np.ndarray, precision: str) -> np.ndarray:
    """[K, d] float table -> its stored words: float32 bits (uint32) or float16 bits (uint16)."""
    if precision == "float16":
        return np.ascontiguousarray(table, np.float32).astype(np.float16).view(np.uint16)
    if precision == "float32":
        return np.ascontiguousarray(table, np.float32).view(np.uint32)
    raise ValueError(f"codebook precision must be float32 or float16, got {precision!r}")


def encode_coded(tables: List[np.ndarray], codes: np.ndarray, precision: str,
                 present: Optional[np.ndarray] = None) -> Tuple[Params, bytes]:
    """M codebook tables [K_m, d_m] and [N, M] indices -> params {codebooks: [{size, dim,
    table, table_bytes, index, index_bytes}]} and the payload (tables, then index streams).

    With ``present`` ([N] bool) only those rows' indices are stored; a flag stream (params
    ``rows: {stream, bytes}``) goes first in the payload, and the other rows decode to zeros.
    """
    entries, parts = [], []
    extra: Params = {}
    if present is not None:
        flags = np.asarray(present, bool).reshape(-1)
        rcodec, rpayload = encode_ints(flags.astype(np.uint64), 2, ordered=True)
        extra["rows"] = {"stream": rcodec, "bytes": len(rpayload)}
        parts.append(rpayload)
        codes = codes[flags]
    for m, table in enumerate(tables):
        tcodec, tpayload = encode_words(table_words(table, precision).reshape(-1))
        ctx = column_context(codes[:, m - 1], tables[m - 1].shape[0]) if m else None
        fctx = flag_context(codes[:, m - 1]) if m else None
        icodec, ipayload = encode_ints(codes[:, m], max(1, table.shape[0]), ctx, True, fctx)
        entries.append({"size": int(table.shape[0]), "dim": int(table.shape[1]),
                        "table": tcodec, "table_bytes": len(tpayload),
                        "index": icodec, "index_bytes": len(ipayload)})
        parts += [tpayload, ipayload]
    return {"codec": "vq", "codebooks": entries, **extra}, E.join_payloads(*parts)


def decode_coded(params: Params, payload: bytes, n: int,
                 precision: str) -> Tuple[List[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """-> (M float32 tables [K_m, d_m], [n, M] int64 indices (0 in absent rows), [n] bool rows
    present or None when all are)."""
    entries, rows = params["codebooks"], params.get("rows")
    parts = list(E.split_payloads(payload, 2 * len(entries) + (rows is not None)))
    present = None
    if rows is not None:
        present = decode_ints(rows["stream"], parts.pop(0), 2, n).astype(bool)
    count = n if present is None else int(present.sum())
    width = 2 if precision == "float16" else 4
    tables, codes = [], np.zeros((count, len(entries)), dtype=np.int64)
    for m, e in enumerate(entries):
        k, d = int(e["size"]), int(e["dim"])
        words = decode_words(e["table"], parts[2 * m], width, k * d).reshape(k, d)
        table = (words.view(np.float16) if width == 2 else words.view(np.float32)).astype(np.float32)
        if not np.isfinite(table).all():
            raise ValueError(f"codebook {m} holds NaN or infinite values")
        tables.append(table)
        ctx = column_context(codes[:, m - 1], tables[m - 1].shape[0]) if m else None
        fctx = flag_context(codes[:, m - 1]) if m else None
        codes[:, m] = decode_ints(e["index"], parts[2 * m + 1], k, count, ctx, fctx).astype(np.int64)
    if present is not None:
        full = np.zeros((n, len(entries)), dtype=np.int64)
        full[present] = codes
        codes = full
    return tables, codes, present


class Coded(SectionCodec):
    kind = "coded"
    prefix = "coded"

    def encode(self, job: Job) -> List[Section]:
        return [self._encode_one(job, attr) for attr in job.scene.attributes]

    def _encode_one(self, job: Job, attr: CodedAttribute) -> Section:
        n = job.n
        codes = attr.codes.detach().cpu().long().reshape(n, len(attr.codebooks))[job.order_t]  # [N, M]
        rows = None if attr.present is None else attr.present.detach().cpu().bool().reshape(n)[job.order_t]
        tables, cols = [], []
        for m, cb in enumerate(attr.codebooks):
            cb, c = cb.detach().cpu().float(), codes[:, m]
            if job.compact_codebooks and n > 0:
                cb, c = _compact(cb, c, rows)
            tables.append(cb.numpy())
            cols.append(c.numpy())
        stacked = np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.int64)  # [N, M]
        if attr.precision not in PRECISIONS:
            raise GsVqError(f"codebook precision must be float32 or float16, got {attr.precision!r}")
        present = None if rows is None else rows.numpy()
        return self.attribute_section(attr.name, attr.shape, *encode_coded(tables, stacked, attr.precision, present),
                                      combine=attr.combine, precision=attr.precision)

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        tables, codes, present = decode_coded(entry["params"], payload, n, entry["precision"])
        scene.attributes.append(CodedAttribute(
            entry["attr"], tuple(entry.get("shape", ())), [torch.from_numpy(t) for t in tables],
            torch.from_numpy(codes), entry["combine"], entry["precision"],
            None if present is None else torch.from_numpy(present)))

    def check(self, c: Check, e: Entry, p: Params, where: str, size: int) -> None:
        combine = c.choice(e, "combine", COMBINE_RULES, where)
        c.choice(e, "precision", PRECISIONS, where)
        c.choice(p, "codec", ("vq",), f"{where}.params")
        books = p.get("codebooks")
        if not isinstance(books, list) or not 1 <= len(books) <= 64:
            c.fail(f"{where}.params.codebooks", "must be a list of 1 to 64 codebooks")
        dims, total = [], 0
        for m, b in enumerate(books):
            at = f"{where}.params.codebooks[{m}]"
            k = c.int(b, "size", 1, MAX_TABLE, at)
            dims.append(c.int(b, "dim", 1, MAX_VALUES, at))
            if k * dims[-1] > MAX_TABLE:
                c.fail(at, f"holds {k * dims[-1]} values (at most {MAX_TABLE})")
            c.choice(b, "table", WORD_CODECS, at)
            c.choice(b, "index", INDEX_CODECS if m else INT_CODECS, at)
            total += c.int(b, "table_bytes", 0, 1 << 40, at) + c.int(b, "index_bytes", 0, 1 << 40, at)
        rows = p.get("rows")
        if rows is not None:
            if not isinstance(rows, dict):
                c.fail(f"{where}.params.rows", "must be an object")
            c.choice(rows, "stream", INT_CODECS, f"{where}.params.rows")
            total += c.int(rows, "bytes", 0, 1 << 40, f"{where}.params.rows") + 4
        if total + 8 * len(books) != e["bytes"]:
            c.fail(f"{where}.params.codebooks", "sizes do not add up to the section's size")
        want = sum(dims) if combine == "concat" else dims[0]
        if (combine == "sum" and len(set(dims)) != 1) or want != size:
            c.fail(f"{where}.shape", f"does not match its codebooks under the {combine!r} rule")

    def bits(self, entry: Entry, n: int) -> Dict[str, float]:
        """``<a>.index`` (all index streams), ``<a>.codebook`` and, when some rows store no
        indices, ``<a>.rows``."""
        p, attr = entry["params"], entry["attr"]
        out = {f"{attr}.index": 8.0 * sum(b["index_bytes"] for b in p["codebooks"]) / n,
               f"{attr}.codebook": 8.0 * sum(b["table_bytes"] for b in p["codebooks"]) / n}
        if "rows" in p:
            out[f"{attr}.rows"] = 8.0 * p["rows"]["bytes"] / n
        return out
