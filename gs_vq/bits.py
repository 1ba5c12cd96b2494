"""Index widths: the bits of one index into a table of ``k`` entries.

The one definition, shared by the codebook library (``gs_vq.quant``: a quantizer's bits per
vector) and the file format (``gs_vq.io``: fixed-width index streams), which do not import each
other.
"""


def bits_for(k: int) -> int:
    """Bits of one index into a codebook of ``k`` entries: ``ceil(log2 k)`` (0 when k = 1), exact for
    any size (the log2 of a float is not)."""
    if k < 1:
        raise ValueError(f"codebook size must be >= 1, got {k}")
    return int(k - 1).bit_length()
