"""Query scoring: text -> a score per codebook entry -> a score per pixel -> a mask (and its IoU).

A text query goes one way through this module: :func:`entry_scores` embeds it (with the encoder
the 2D maps were made with) and scores each of the ``K`` codebook entries of a
:class:`~gs_vq.semantics.head.SemanticHead` under a mask rule (``[T, K]``);
:func:`pixel_scores` / :func:`query_mask` turn a view's decoded entry weights ``[H, W, K]`` and
one query's entry scores ``[K]`` into a pixel score and a mask; :func:`iou_counts` compares a mask
with the ground truth. 3D selection (:mod:`.select`) uses the same entry scores per Gaussian label.

A query is embedded once and scored against the ``K`` codebook entries; a pixel's score is the
softmax-weighted sum of its entries' scores (``weights [H, W, K] @ e [K]``), so the cost per pixel
is a ``K``-dot product whatever the text encoder's dimension.

Per-entry scores and mask rules (``threshold`` 0.5 on a pixel score in [0, 1]):

- ``lerf``: LERF's relevancy of each entry against the canonical negatives "object", "things",
  "stuff", "texture", ``min_j exp(t s_q) / (exp(t s_q) + exp(t s_j))`` (t = 10), thresholded as is.
  With MiniLM the label embeddings are close to each other and this passes most entries
  (shared/README.md): kept as the baseline and for heatmaps.
- ``view``: the same relevancy per pixel, min-max normalised per view (LangSplat's evaluation).
  Fails when the object is absent from a view (something else becomes the maximum).
- ``codebook``: compare each entry with the *other entries*. With ``s_k = cos(q, c_k)``
  and the best active entry's ``s_max``, ``e_k = exp(mask_tau * (s_k - s_max))`` is 1 for the best
  match and 0.5 at ``ln 2 / mask_tau`` (0.035 for mask_tau 20) below it; a pixel is in the mask
  when more than half of its weight is on matching entries. Several entries can match (a query for
  "fruit" keeps apple and banana), and a view without the object gets an empty mask.

- ``gap``: also for queries that name several objects ("fruit", "furniture"). Among
  the selectable entries within ``window`` (0.1) cosine of the best match, and the first active
  entry below that window, cut the sorted similarities at their largest drop: every entry above
  the cut matches (e = 1), the rest do not (e = 0). An entry is selectable when the query is
  closer to it than each of LERF's canonical negatives is (a "background" entry is nearer
  "texture" than most queries). The threshold is the query's own; a pixel is in the mask when
  more than half of its weight is on matching entries, so a view without any of them gets an
  empty mask.

- ``nearest``: the query and the label texts are embedded as prompt ensembles
  (:data:`TEMPLATES`, CLIP practice); an entry that is (cosine >= 0.95) one of the labels the 2D
  maps were made from (``SemanticHead.texts``) is scored by its label's ensemble, others by the
  entry itself. :func:`select_entries` keeps the best match and every entry the query is nearer
  to than to that entry's nearest other entry. The default before issue 26.

- ``labels`` (default): the query is scored against the scene's label texts, not the entries:
  every entry takes the decision of the label text it is nearest to (cosine >= :data:`LABEL_MIN_COS`
  to the plain label embedding; farther entries never match), and :func:`select_labels` turns the
  query's cosines to the label ensembles (:data:`LABEL_TEMPLATES`) into a set of labels. The background label
  (:data:`BACKGROUND_TEXTS`) is never selected, a query that is one of the labels selects that
  label alone, a query that starts like a description of one thing (:func:`names_one_object`: "a
  ...", "the ...", "something ...", "where ...") selects the best label alone, and any other query
  ("fruit", "garden tools") may name several: the ``nearest`` selection over labels, and at least
  the best :data:`SEVERAL_MIN` labels. Chosen, against ``nearest`` / ``gap`` and other candidates,
  on the six validation labelled scenes only (``python -m bench.semantic_tuning --end-to-end``;
  docs/semantics.md). Without label texts (``SemanticHead.texts`` empty, e.g. CLIP features) it is
  the ``nearest`` rule.

``active`` entries are those the training views use; unused entries never set ``s_max``.

Label-text features know only what the label texts say: a query about an attribute no label
names (a colour, a material: "something blue" where the label is "coffee mug") cannot be
answered from them; image features (``--source clip``) or labels that name it can.
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GsVqError
from .encoders import encode_texts

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")  # LERF's canonical phrases
MASK_RULES = ("codebook", "view", "lerf", "gap", "nearest", "labels")
DEFAULT_MASK_RULE = "labels"  # chosen on the validation labelled scenes only (docs/semantics.md)
TEMPLATES = ("{}", "a photo of {}", "an image of {}")  # prompt ensemble of the nearest / labels rules (queries and labels)
NEAREST_MARGIN = 0.05  # nearest rule: cosine by which the query must beat an entry's nearest other entry
NEAREST_WINDOW = 0.2  # nearest rule: ... and lie within this of the best match
LABEL_TEMPLATES = TEMPLATES + ("a picture of {}",)  # labels rule's prompt ensemble (queries and labels)
LABEL_MIN_COS = 0.95  # labels rule: an entry takes its nearest label's decision when at least this close to it
SAME_TEXT_COS = 0.95  # labels rule: a query this close to a label's ensemble is that label
SEVERAL_MIN = 2  # labels rule: a query that may name several objects selects at least this many labels
BACKGROUND_TEXTS = ("background",)  # label texts a query never selects (labels.json's id 0)
ONE_OBJECT_WORDS = ("a", "an", "the", "one", "this", "that", "my", "your", "something", "somewhere", "someone",
                    "somebody", "where")  # first words of a query that describes one thing

def entry_relevancy(codes: Tensor, query: Tensor, negatives: Tensor, tau: float = 10.0) -> Tensor:
    """LERF relevancy of each entry: ``min_j exp(t s_q) / (exp(t s_q) + exp(t s_j))``.

    ``codes [K, D]`` and ``query [D]``, ``negatives [M, D]`` unit vectors; returns ``[K]`` in (0, 1).
    """
    s_q = codes @ query  # [K]
    s_n = codes @ negatives.T  # [K, M]
    return torch.sigmoid(tau * (s_q[:, None] - s_n)).min(dim=1).values


def entry_match(codes: Tensor, query: Tensor, active: Optional[Tensor] = None, tau: float = 20.0) -> Tensor:
    """``exp(tau * (s_k - s_max))`` clipped to 1: how close each entry is to the best active match.

    ``codes [K, D]``, ``query [D]`` unit vectors, ``active [K]`` bool -> ``[K]`` in (0, 1].
    """
    s = codes @ query  # [K]
    best = s[active].max() if active is not None and active.any() else s.max()
    return torch.exp(tau * (s - best)).clamp(max=1.0)


def entry_gap_match(codes: Tensor, query: Tensor, active: Optional[Tensor] = None, window: float = 0.1,
                    negatives: Optional[Tensor] = None) -> Tensor:
    """``[K]`` in {0, 1}: the entries above the largest drop of the sorted similarities among the
    selectable entries within ``window`` of the best one (and the first active entry below the
    window).

    ``codes [K, D]``, ``query [D]`` unit vectors, ``active [K]`` bool. With ``negatives [M, D]``
    (LERF's canonical phrases) an entry is selectable only when the query is closer to it than
    every negative is: entries that are "stuff" or "texture" more than they are the query (a
    background entry) never match (if none is selectable, all active entries are). Near-duplicate
    entries (similarities within 1e-3) count as one value.
    """
    s = codes @ query  # [K]
    used = active if active is not None and active.any() else torch.ones_like(s, dtype=torch.bool)
    allowed = torch.ones_like(used)  # [K] entries that may match (unused ones too: decoding gives them weight)
    if negatives is not None:
        beaten = s <= (codes @ negatives.T).max(dim=1).values  # [K]
        if (used & ~beaten).any():
            allowed = ~beaten
    pool = used & allowed
    best = s[pool].max()
    inside = torch.unique(torch.round(s[pool & (s >= best - window)] / 1e-3)).flip(0) * 1e-3  # descending
    outside = s[used & (s < best - window)]  # the first active entry below the window
    candidates = torch.cat([inside, outside.max()[None]]) if len(outside) else inside
    cut = best
    if len(candidates) >= 2:
        drops = candidates[:-1] - candidates[1:]  # [c-1]
        cut = candidates[int(drops.argmax())]
    return (allowed & (s >= cut - 1e-3)).float()


def select_entries(s: Tensor, ll: Tensor, margin: float = NEAREST_MARGIN, window: float = NEAREST_WINDOW,
                   active: Optional[Tensor] = None, negatives: Optional[Tensor] = None) -> Tensor:
    """``[K]`` bool: the entries a query selects under the ``nearest`` rule.

    ``s [K]``: the query's cosine to each entry; ``ll [K, K]``: the entries' cosines to each other;
    ``active [K]`` bool; ``negatives [K, M]``: each entry's cosine to LERF's canonical phrases.
    The best active match is selected, and so is every active entry the query is nearer to than
    that entry's nearest other active entry is (by ``margin``), within ``window`` of the best: a
    query for "fruit" is nearer to "apple" than "apple" is to any other label of the scene. An
    entry nearer a canonical negative than the query ("background" is more "texture" than it is
    anything) is not selectable. Copies of a selected entry (cosine 1) are selected with it.
    """
    K = s.shape[0]
    used = active if active is not None and active.any() else torch.ones(K, dtype=torch.bool, device=s.device)
    pool = used.clone()  # [K] selectable entries
    if negatives is not None:
        beaten = s <= negatives.max(dim=1).values  # [K]
        if (pool & ~beaten).any():
            pool &= ~beaten
    same = ll > 1.0 - 1e-6  # [K, K] copies of one entry
    others = ll.masked_fill(same | ~used[None, :], -2.0)  # [K, K] the other active entries (not query-dependent)
    nearest = others.max(dim=1).values  # [K] cosine of each entry to its nearest other entry
    best = s.masked_fill(~pool, -2.0).max()
    chosen = pool & (s >= best - 1e-6) | pool & (s > nearest + margin) & (s >= best - window)  # [K]
    return (same & chosen[None, :]).any(dim=1)  # [K] with the copies


def names_one_object(text: str) -> bool:
    """True when ``text`` starts like a description of one thing ("a couch", "the grass",
    "something to drink from", "where birds drink": :data:`ONE_OBJECT_WORDS`); False for a bare
    noun phrase that may name several ("fruit", "garden tools", "things you can eat")."""
    words = text.lower().split()
    return bool(words) and words[0] in ONE_OBJECT_WORDS


def select_labels(s: Tensor, ll: Tensor, one: bool, margin: float = NEAREST_MARGIN, window: float = NEAREST_WINDOW,
                  several_min: int = SEVERAL_MIN, same: float = SAME_TEXT_COS) -> Tensor:
    """``[L]`` bool: the labels a query selects under the ``labels`` rule.

    ``s [L]``: the query's cosine to each selectable label (ensembles); ``ll [L, L]``: the labels'
    cosines to each other; ``one``: the query describes one thing (:func:`names_one_object`). A
    query that is a label (``s >= same``) or describes one thing selects the best label; any other
    selects what :func:`select_entries` keeps among the labels and at least the best
    ``several_min``.
    """
    chosen = torch.zeros_like(s, dtype=torch.bool)
    if s.numel() == 0:
        return chosen
    order = s.argsort(descending=True)
    if one or float(s.max()) >= same:
        chosen[order[0]] = True
        return chosen
    chosen = select_entries(s, ll, margin, window)
    chosen[order[:several_min]] = True
    return chosen


def check_rule(rule: str) -> None:
    """One-line GsVqError unless ``rule`` is one of :data:`MASK_RULES`."""
    if rule not in MASK_RULES:
        raise GsVqError(f"mask rule must be one of {', '.join(MASK_RULES)}, got {rule}")


def ensemble(encoder, texts: Sequence[str], templates: Sequence[str] = TEMPLATES) -> Tensor:
    """``[T, D]`` unit vectors: the mean embedding of each text in every template, normalised."""
    emb = encode_texts(encoder, [t.format(x) for t in templates for x in texts])  # [len(templates) * T, D]
    return F.normalize(emb.reshape(len(templates), len(texts), -1).mean(dim=0), dim=-1)


@torch.no_grad()
def entry_vectors(head, encoder) -> Tensor:
    """``[K, D]``: each entry of ``head`` (a :class:`~gs_vq.semantics.head.SemanticHead`) as the
    prompt ensemble of its label text when it is one of ``head.texts`` (cosine >= 0.95 to the plain
    label embedding), else the entry itself."""
    codes = head.codebook.unit_codes().detach()  # [K, D]
    if not head.texts:
        return codes
    raw = encode_texts(encoder, list(head.texts)).to(codes.device)  # [L, D], as the maps were made
    cos, which = (codes @ raw.T).max(dim=1)  # [K]
    return torch.where((cos >= 0.95)[:, None], ensemble(encoder, head.texts).to(codes.device)[which], codes)


@torch.no_grad()
def nearest_scores(head, texts: Sequence[str], encoder) -> Tensor:
    """``[T, K]`` in {0, 1}: the entries of ``head`` each text selects under the ``nearest`` rule."""
    E = entry_vectors(head, encoder)  # [K, D]
    queries = ensemble(encoder, texts).to(E.device)  # [T, D]
    negatives = E @ ensemble(encoder, head.negatives).to(E.device).T  # [K, M]
    ll = E @ E.T  # [K, K]
    return torch.stack([select_entries(E @ q, ll, active=head.active, negatives=negatives).float()
                        for q in queries])


@torch.no_grad()
def label_rule_scores(head, texts: Sequence[str], encoder) -> Tensor:
    """``[T, K]`` in {0, 1}: the entries of ``head`` each text selects under the ``labels`` rule
    (the ``nearest`` rule's when the head has no label texts)."""
    if not head.texts:
        return nearest_scores(head, texts, encoder)
    codes = head.codebook.unit_codes().detach()  # [K, D]
    raw = encode_texts(encoder, list(head.texts)).to(codes.device)  # [L, D], as the maps were made
    cos, owner = (codes @ raw.T).max(dim=1)  # [K] each entry's nearest label
    owner = torch.where(cos >= LABEL_MIN_COS, owner, torch.full_like(owner, -1))  # [K], -1: no label
    keep = torch.tensor([t.strip().lower() not in BACKGROUND_TEXTS for t in head.texts], device=codes.device)  # [L]
    labels = ensemble(encoder, head.texts, LABEL_TEMPLATES).to(codes.device)  # [L, D]
    queries = ensemble(encoder, texts, LABEL_TEMPLATES).to(codes.device)  # [T, D]
    idx = torch.nonzero(keep).flatten()  # [L'] selectable labels
    ll = labels[idx] @ labels[idx].T  # [L', L']
    out = torch.zeros(len(texts), codes.shape[0], device=codes.device)
    for t, (text, q) in enumerate(zip(texts, queries)):
        chosen = idx[select_labels(labels[idx] @ q, ll, names_one_object(text))]  # label indices
        out[t] = torch.isin(owner, chosen).float()
    return out


@torch.no_grad()
def entry_scores(head, texts: Sequence[str], rule: str, encoder) -> Tensor:
    """Per-entry scores ``[T, K]`` of each text under ``rule`` (each text embedded once).

    ``head``: a :class:`~gs_vq.semantics.head.SemanticHead` (its unit codebook entries, ``active``
    entries, canonical ``negatives``, label ``texts`` and temperatures); ``encoder``: the loaded
    text encoder of ``head.encoder``. Values in [0, 1]: a match for ``codebook`` / ``gap`` /
    ``nearest`` / ``labels``, LERF relevancy for ``view`` / ``lerf``.
    """
    check_rule(rule)
    if rule == "nearest":
        return nearest_scores(head, texts, encoder)
    if rule == "labels":
        return label_rule_scores(head, texts, encoder)
    emb = encode_texts(encoder, list(texts) + list(head.negatives)).to(head.active.device)  # [T+M, D]
    queries, negatives = emb[: len(texts)], emb[len(texts):]
    codes = head.codebook.unit_codes()  # [K, D]
    if rule == "codebook":
        return torch.stack([entry_match(codes, q, head.active, head.mask_tau) for q in queries])
    if rule == "gap":
        return torch.stack([entry_gap_match(codes, q, head.active, negatives=negatives) for q in queries])
    return torch.stack([entry_relevancy(codes, q, negatives, head.relevancy_tau) for q in queries])


def pixel_scores(weights: Tensor, e: Tensor, rule: str = "codebook") -> Tensor:
    """Pixel scores in [0, 1] from entry weights ``[..., K]`` and entry scores ``e [K]`` (the
    rule's: match for ``codebook``, relevancy for ``view`` / ``lerf``)."""
    check_rule(rule)
    score = weights @ e  # [...]
    if rule == "view":
        score = (score - score.min()) / (score.max() - score.min()).clamp_min(1e-8)
    return score


def query_mask(weights: Tensor, e: Tensor, rule: str = "codebook", threshold: float = 0.5) -> Tuple[Tensor, Tensor]:
    """``(score [...] in [0, 1], mask [...] bool)`` for entry scores ``e [K]`` under ``rule``."""
    score = pixel_scores(weights, e, rule)
    return score, score > threshold


def iou_counts(pred: Tensor, gt: Tensor) -> Tuple[int, int]:
    """``(intersection, union)`` pixel counts of two bool masks of the same shape."""
    if pred.shape != gt.shape:
        raise GsVqError(f"mask shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    return int((pred & gt).sum()), int((pred | gt).sum())
