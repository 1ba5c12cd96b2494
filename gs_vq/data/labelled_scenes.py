"""Procedural labelled scenes for choosing and checking the text-query path: ten rooms of coloured
primitives standing in for everyday objects, each with masks and a ``labels.json`` of label
texts and natural-language queries.

    python -m gs_vq.data.labelled_scenes -o DIR [--scenes kitchen office] [--size 128] [--seed 0]

Every scene has eight objects on a ground slab (nine labels plus the background, id 0) and
queries of five kinds (``"kind"`` in each entry of ``"queries"``):

- ``synonym``: the object in other words ("a couch" for the sofa);
- ``use``: what it is for ("something to drink from" for the coffee mug);
- ``class`` / ``several``: a class or a description covering two or more objects ("fruit",
  "somewhere to sit").

``"attribute_queries"`` hold colour and material queries the labels do not name: label-text
features cannot answer them (the limits of the ``labels`` source), so they are kept out of the
natural-language scores and reported on their own.

``ROLES`` splits the scenes: the query path is tuned on the ``validation`` scenes only and
reported on the ``held-out`` ones, which share no object with them. Since VERSION 2 the six rooms
of VERSION 1 (kitchen, office, living room, playroom, garden, bedroom) are all ``validation``:
playroom, garden and bedroom were VERSION 1's held-out rooms, but their numbers have been looked
at and drove a decision, so they no longer count as unseen. Four new rooms (workshop,
bathroom, classroom, campsite), with objects no other room has, are the held-out ones; their
objects and queries were written, and committed, before any query was run on them. Scenes are
deterministic in ``seed`` (the layout: which grid slot each object takes, its jitter and
rotation, drawn with the scene's fixed :data:`LAYOUT_INDEX`, so the first six rooms are traced
as in VERSION 1); the tracer is :mod:`gs_vq.data.demo`'s.
"""

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from gs_vq.data.demo import Primitive, bands, checker, solid, write_scene
from gs_vq.data.images import default_cache_root
from gs_vq.errors import GsVqError

VERSION = 2  # bump whenever a generated scene changes (2: four held-out rooms added; the first six all validation)
SLOT = 0.75  # grid spacing of the object slots (3 x 3 on the ground)
GROUND = (1.3, 1.3, 0.05)  # half-extents of the ground slab, top at z = 0

# object: (label, shape, size, colour(s), [(query kind, text)]); shape "sphere" (radius) or "box" (half-extents)
Obj = Tuple[str, str, object, tuple, List[Tuple[str, str]]]

SCENES: Dict[str, Dict] = {
    "kitchen": {
        "ground": ("kitchen counter", (0.75, 0.72, 0.66), [("synonym", "a worktop")]),
        "objects": [
            ("apple", "sphere", 0.2, (0.75, 0.08, 0.05), []),
            ("lemon", "sphere", 0.15, (0.95, 0.85, 0.1), [("synonym", "a sour citrus fruit")]),
            ("coffee mug", "box", (0.12, 0.12, 0.14), (0.1, 0.2, 0.8), [("use", "something to drink from")]),
            ("frying pan", "box", (0.3, 0.3, 0.04), (0.12, 0.12, 0.13), [("use", "something to cook eggs in")]),
            ("teapot", "sphere", 0.22, (0.9, 0.9, 0.88), [("use", "something to make tea in")]),
            ("loaf of bread", "box", (0.25, 0.14, 0.12), (0.6, 0.38, 0.15), [("synonym", "something baked")]),
            ("cutting board", "box", (0.3, 0.2, 0.025), ((0.55, 0.4, 0.2), (0.45, 0.3, 0.15)),
             [("use", "a board for chopping vegetables")]),
            ("wine bottle", "box", (0.08, 0.08, 0.3), (0.05, 0.35, 0.1), [("synonym", "an alcoholic drink")]),
        ],
        "several": [("class", "fruit", ["apple", "lemon"]),
                    ("several", "things you can eat", ["apple", "lemon", "loaf of bread"])],
        "attributes": [("colour", "something blue", ["coffee mug"]), ("material", "something made of glass",
                                                                       ["wine bottle"])],
    },
    "office": {
        "ground": ("desk", (0.5, 0.35, 0.2), [("synonym", "a table to work at")]),
        "objects": [
            ("laptop", "box", (0.3, 0.22, 0.02), (0.7, 0.7, 0.72), [("synonym", "a portable computer")]),
            ("desk lamp", "box", (0.07, 0.07, 0.3), (0.95, 0.8, 0.1), [("use", "a light for reading")]),
            ("stapler", "box", (0.14, 0.06, 0.06), (0.8, 0.1, 0.1), [("use", "something to fasten sheets together")]),
            ("notebook", "box", (0.15, 0.2, 0.02), (0.1, 0.25, 0.75), [("use", "something to write notes in")]),
            ("cactus", "box", (0.08, 0.08, 0.22), ((0.1, 0.55, 0.15), (0.05, 0.35, 0.1)),
             [("synonym", "a spiky desert plant")]),
            ("computer mouse", "sphere", 0.09, (0.3, 0.3, 0.32), [("synonym", "a pointing device")]),
            ("pencil holder", "box", (0.08, 0.08, 0.12), (0.95, 0.5, 0.1), [("synonym", "a cup for pens")]),
            ("headphones", "sphere", 0.13, (0.05, 0.05, 0.05), [("use", "something to listen to music with")]),
        ],
        "several": [("class", "office supplies", ["stapler", "notebook", "pencil holder"]),
                    ("class", "electronics", ["laptop", "computer mouse", "headphones"])],
        "attributes": [("colour", "something red", ["stapler"]), ("material", "something made of metal",
                                                                  ["laptop"])],
    },
    "living room": {
        "ground": ("rug", (0.6, 0.15, 0.15), [("synonym", "a carpet")]),
        "objects": [
            ("sofa", "box", (0.4, 0.2, 0.18), (0.7, 0.1, 0.1), [("synonym", "a couch")]),
            ("armchair", "box", (0.2, 0.2, 0.18), (0.15, 0.5, 0.2), [("synonym", "a comfy chair for one person")]),
            ("coffee table", "box", (0.25, 0.18, 0.1), ((0.5, 0.33, 0.15), (0.4, 0.25, 0.1)),
             [("synonym", "a low table")]),
            ("television", "box", (0.3, 0.05, 0.2), (0.03, 0.03, 0.04), [("use", "something to watch films on")]),
            ("floor lamp", "box", (0.06, 0.06, 0.4), (0.95, 0.95, 0.9), [("use", "something that lights the room")]),
            ("bookshelf", "box", (0.25, 0.1, 0.35), ((0.4, 0.25, 0.1), (0.2, 0.3, 0.7)),
             [("use", "a place to keep books")]),
            ("vase of flowers", "box", (0.07, 0.07, 0.18), (0.95, 0.5, 0.7), [("synonym", "a bouquet")]),
            ("cushion", "box", (0.12, 0.12, 0.05), (0.95, 0.85, 0.2), [("synonym", "a soft pillow")]),
        ],
        "several": [("class", "furniture", ["sofa", "armchair", "coffee table", "bookshelf"]),
                    ("several", "somewhere to sit", ["sofa", "armchair"])],
        "attributes": [("colour", "something pink", ["vase of flowers"]),
                       ("material", "something made of wood", ["coffee table", "bookshelf"])],
    },
    "playroom": {
        "ground": ("play mat", (0.3, 0.6, 0.8), [("synonym", "a soft floor")]),
        "objects": [
            ("teddy bear", "sphere", 0.2, (0.55, 0.35, 0.15), [("synonym", "a stuffed animal")]),
            ("toy car", "box", (0.16, 0.08, 0.07), (0.85, 0.1, 0.1), [("synonym", "a small vehicle")]),
            ("football", "sphere", 0.15, ((0.95, 0.95, 0.95), (0.05, 0.05, 0.05)), [("use", "a ball to kick")]),
            ("building blocks", "box", (0.15, 0.15, 0.15), ((0.9, 0.2, 0.2), (0.2, 0.4, 0.9)),
             [("use", "something to stack")]),
            ("rocking horse", "box", (0.25, 0.08, 0.2), (0.9, 0.9, 0.85), [("synonym", "a pony to ride on")]),
            ("toy drum", "box", (0.13, 0.13, 0.1), (0.15, 0.3, 0.85), [("class", "a musical instrument")]),
            ("picture book", "box", (0.15, 0.2, 0.02), (0.2, 0.7, 0.3), [("use", "a story for children")]),
            ("kite", "box", (0.25, 0.2, 0.015), (0.95, 0.85, 0.1), [("use", "something that flies in the wind")]),
        ],
        "several": [("several", "animals", ["teddy bear", "rocking horse"]),
                    ("several", "things to play with outdoors", ["football", "kite"])],
        "attributes": [("colour", "something blue", ["toy drum"]), ("material", "something made of wood",
                                                                    ["rocking horse"])],
    },
    "garden": {
        "ground": ("lawn", (0.2, 0.55, 0.15), [("synonym", "the grass")]),
        "objects": [
            ("watering can", "box", (0.15, 0.08, 0.14), (0.15, 0.5, 0.25),
             [("use", "something to water the plants with")]),
            ("flower pot", "box", (0.1, 0.1, 0.1), (0.75, 0.35, 0.2), [("synonym", "a planter")]),
            ("garden gnome", "box", (0.07, 0.07, 0.2), ((0.85, 0.1, 0.1), (0.2, 0.3, 0.8)),
             [("synonym", "a small statue")]),
            ("wheelbarrow", "box", (0.28, 0.15, 0.12), (0.2, 0.25, 0.3), [("use", "a cart for carrying soil")]),
            ("pumpkin", "sphere", 0.2, (0.95, 0.45, 0.05), [("use", "something to carve at halloween")]),
            ("cabbage", "sphere", 0.16, (0.5, 0.75, 0.3), [("synonym", "a leafy vegetable")]),
            ("shovel", "box", (0.06, 0.06, 0.35), (0.4, 0.4, 0.42), [("use", "a tool for digging")]),
            ("bird bath", "box", (0.15, 0.15, 0.12), (0.6, 0.6, 0.6), [("use", "where birds drink and wash")]),
        ],
        "several": [("class", "vegetables", ["pumpkin", "cabbage"]),
                    ("class", "garden tools", ["watering can", "wheelbarrow", "shovel"])],
        "attributes": [("colour", "something orange", ["pumpkin"]), ("material", "something made of stone",
                                                                     ["bird bath"])],
    },
    "bedroom": {
        "ground": ("wooden floor", (0.55, 0.4, 0.25), [("synonym", "the ground")]),
        "objects": [
            ("bed", "box", (0.4, 0.28, 0.12), (0.85, 0.85, 0.95), [("use", "somewhere to sleep")]),
            ("pillow", "box", (0.14, 0.08, 0.04), (0.95, 0.95, 0.95), [("use", "something to rest your head on")]),
            ("alarm clock", "box", (0.07, 0.05, 0.07), (0.85, 0.1, 0.1), [("use", "something that wakes you up")]),
            ("wardrobe", "box", (0.22, 0.12, 0.4), (0.45, 0.28, 0.12), [("synonym", "a closet for clothes")]),
            ("guitar", "box", (0.22, 0.07, 0.06), (0.8, 0.5, 0.2), [("synonym", "an instrument with strings")]),
            ("globe", "sphere", 0.15, (0.15, 0.35, 0.85), [("synonym", "a map of the world")]),
            ("backpack", "box", (0.12, 0.08, 0.15), (0.45, 0.15, 0.6), [("synonym", "a bag for school")]),
            ("slippers", "box", (0.12, 0.08, 0.03), (0.95, 0.6, 0.75), [("synonym", "shoes to wear at home")]),
        ],
        "several": [("class", "furniture", ["bed", "wardrobe"]),
                    ("several", "bedding", ["bed", "pillow"])],
        "attributes": [("colour", "something purple", ["backpack"]), ("material", "something made of wood",
                                                                      ["wardrobe", "guitar"])],
    },
    # Held-out rooms since VERSION 2: written (objects and queries phrased as a user would) before
    # any query setting was measured on them, never used for choosing.
    "workshop": {
        "ground": ("concrete floor", (0.55, 0.55, 0.55), [("synonym", "the floor")]),
        "objects": [
            ("hammer", "box", (0.18, 0.05, 0.05), (0.5, 0.3, 0.15), [("use", "something to drive nails with")]),
            ("toolbox", "box", (0.25, 0.13, 0.12), (0.8, 0.1, 0.1), [("synonym", "a chest for storing tools")]),
            ("power drill", "box", (0.12, 0.05, 0.12), (0.1, 0.6, 0.2), [("use", "something to bore holes with")]),
            ("saw", "box", (0.3, 0.1, 0.015), ((0.75, 0.75, 0.78), (0.5, 0.5, 0.52)),
             [("use", "a tool for cutting wood")]),
            ("paint can", "box", (0.1, 0.1, 0.12), (0.2, 0.3, 0.85), [("synonym", "a tin of paint")]),
            ("ladder", "box", (0.08, 0.2, 0.4), ((0.85, 0.7, 0.4), (0.6, 0.45, 0.2)),
             [("use", "something to climb up on")]),
            ("hard hat", "sphere", 0.14, (0.95, 0.85, 0.1), [("synonym", "a helmet for builders")]),
            ("safety goggles", "box", (0.13, 0.07, 0.05), (0.1, 0.1, 0.1), [("use", "something to protect your eyes")]),
        ],
        "several": [("class", "hand tools", ["hammer", "saw"]),
                    ("several", "safety gear", ["hard hat", "safety goggles"])],
        "attributes": [("colour", "something yellow", ["hard hat"]), ("material", "something made of metal",
                                                                      ["saw", "hammer"])],
    },
    "bathroom": {
        "ground": ("tiled floor", (0.8, 0.85, 0.9), [("synonym", "the tiles")]),
        "objects": [
            ("bathtub", "box", (0.4, 0.2, 0.15), (0.95, 0.95, 0.97), [("use", "somewhere to soak in hot water")]),
            ("toilet", "box", (0.12, 0.16, 0.14), (0.85, 0.88, 0.9), [("synonym", "the loo")]),
            ("sink", "box", (0.16, 0.12, 0.2), (0.7, 0.75, 0.8), [("use", "a basin to wash your hands in")]),
            ("towel", "box", (0.2, 0.12, 0.03), (0.2, 0.65, 0.3), [("use", "something to dry yourself with")]),
            ("toothbrush", "box", (0.14, 0.035, 0.035), (0.1, 0.5, 0.9), [("use", "something to clean your teeth")]),
            ("bar of soap", "box", (0.09, 0.06, 0.04), (0.95, 0.6, 0.75), [("synonym", "a cake of soap")]),
            ("mirror", "box", (0.18, 0.03, 0.22), ((0.75, 0.8, 0.85), (0.6, 0.65, 0.7)),
             [("synonym", "a looking glass")]),
            ("laundry basket", "box", (0.13, 0.13, 0.16), ((0.7, 0.55, 0.3), (0.55, 0.4, 0.2)),
             [("synonym", "a hamper for dirty clothes")]),
        ],
        "several": [("class", "toiletries", ["toothbrush", "bar of soap"]),
                    ("class", "bathroom fixtures", ["bathtub", "toilet", "sink"])],
        "attributes": [("colour", "something green", ["towel"]), ("material", "something made of porcelain",
                                                                  ["toilet", "sink"])],
    },
    "classroom": {
        "ground": ("parquet floor", (0.6, 0.42, 0.25), [("synonym", "the floorboards")]),
        "objects": [
            ("blackboard", "box", (0.35, 0.03, 0.25), (0.1, 0.3, 0.15), [("synonym", "a board to write on with chalk")]),
            ("school desk", "box", (0.25, 0.18, 0.14), (0.7, 0.55, 0.35), [("synonym", "a desk for a pupil")]),
            ("chair", "box", (0.12, 0.12, 0.16), (0.2, 0.35, 0.8), [("synonym", "a seat")]),
            ("pencil case", "box", (0.15, 0.06, 0.04), (0.9, 0.3, 0.5), [("synonym", "a pouch for pens")]),
            ("textbook", "box", (0.14, 0.18, 0.03), (0.85, 0.45, 0.1), [("synonym", "a book for studying")]),
            ("calculator", "box", (0.09, 0.13, 0.025), (0.15, 0.15, 0.18), [("use", "something to do sums with")]),
            ("ruler", "box", (0.25, 0.05, 0.015), (0.95, 0.9, 0.3), [("use", "something to draw straight lines with")]),
            ("wastepaper basket", "box", (0.1, 0.1, 0.14), (0.4, 0.4, 0.45), [("synonym", "a bin for rubbish")]),
        ],
        "several": [("class", "stationery", ["pencil case", "ruler"]),
                    ("several", "classroom furniture", ["school desk", "chair"])],
        "attributes": [("colour", "something green", ["blackboard"]), ("material", "something made of plastic",
                                                                      ["calculator", "ruler"])],
    },
    "campsite": {
        "ground": ("forest floor", (0.35, 0.3, 0.15), [("synonym", "the dirt")]),
        "objects": [
            ("tent", "box", (0.3, 0.25, 0.22), (0.95, 0.5, 0.1), [("synonym", "a shelter to sleep in outdoors")]),
            ("sleeping bag", "box", (0.3, 0.12, 0.05), (0.2, 0.3, 0.7), [("use", "something warm to sleep in")]),
            ("campfire", "sphere", 0.15, ((0.95, 0.4, 0.05), (0.9, 0.8, 0.1)), [("synonym", "a fire to keep warm")]),
            ("lantern", "box", (0.06, 0.06, 0.14), (0.95, 0.95, 0.6), [("use", "a light to carry at night")]),
            ("canoe", "box", (0.4, 0.1, 0.07), (0.7, 0.2, 0.1), [("synonym", "a small boat")]),
            ("cool box", "box", (0.16, 0.11, 0.12), (0.2, 0.6, 0.8), [("use", "something to keep drinks cold")]),
            ("fishing rod", "box", (0.35, 0.03, 0.03), (0.15, 0.15, 0.15), [("use", "something to catch fish with")]),
            ("hiking boots", "box", (0.12, 0.08, 0.06), (0.45, 0.3, 0.15), [("synonym", "shoes for walking in the mountains")]),
        ],
        "several": [("several", "things to sleep in", ["tent", "sleeping bag"]),
                    ("several", "light sources", ["campfire", "lantern"])],
        "attributes": [("colour", "something orange", ["tent"]), ("material", "something made of wood",
                                                                  ["canoe"])],
    },
}
ROLES = {"kitchen": "validation", "office": "validation", "living room": "validation",
         "playroom": "validation", "garden": "validation", "bedroom": "validation",
         "workshop": "held-out", "bathroom": "held-out", "classroom": "held-out", "campsite": "held-out"}
# each scene's layout seed: the first six keep their VERSION 1 seed (their sorted order), new rooms follow
LAYOUT_INDEX = {name: i for i, name in enumerate(["bedroom", "garden", "kitchen", "living room", "office", "playroom",
                                                   "workshop", "bathroom", "classroom", "campsite"])}


def _albedo(colour: tuple):
    """A solid colour, or two colours in horizontal bands (a second tone so RGB training sees texture)."""
    if isinstance(colour[0], (tuple, list)):
        return bands(colour[0], colour[1], 6.0)
    return solid(colour)


def scene_labels(name: str) -> Dict:
    """``labels.json`` of scene ``name``: ids 1..8 the objects, 9 the ground, and the queries."""
    spec = SCENES[name]
    objects = [o[0] for o in spec["objects"]] + [spec["ground"][0]]
    ids = {label: i + 1 for i, label in enumerate(objects)}
    labels: Dict = {"0": "background", **{str(i): label for label, i in ids.items()}}
    per_object = [(kind, text, [label]) for label, *_, queries in spec["objects"] for kind, text in queries]
    per_object += [(kind, text, [spec["ground"][0]]) for kind, text in spec["ground"][2]]
    entry = lambda kind, text, names: {"text": text, "ids": sorted(ids[n] for n in names), "kind": kind}  # noqa: E731
    labels["queries"] = [entry(*q) for q in per_object + spec["several"]]
    labels["attribute_queries"] = [entry(*q) for q in spec["attributes"]]
    labels["role"] = ROLES[name]
    return labels


def scene_primitives(name: str, seed: int = 0) -> List[Primitive]:
    """The traced objects of scene ``name``: the ground slab and eight objects in eight of the nine
    grid slots (which slot, a jitter of up to 0.08 and a rotation: drawn from ``seed``)."""
    spec = SCENES[name]
    rng = np.random.default_rng([seed, LAYOUT_INDEX[name]])
    slots = [(SLOT * (i % 3 - 1), SLOT * (i // 3 - 1)) for i in rng.permutation(9)[:len(spec["objects"])]]
    prims = [Primitive(len(spec["objects"]) + 1, "box", (0.0, 0.0, -GROUND[2]), GROUND, 0.0,
                       checker(spec["ground"][1], tuple(0.8 * c for c in spec["ground"][1]), 2.0))]
    for k, ((label, shape, size, colour, _), (x, y)) in enumerate(zip(spec["objects"], slots)):
        dx, dy = rng.uniform(-0.08, 0.08, 2)
        angle = float(rng.uniform(0, math.pi))
        z = size if shape == "sphere" else size[2]  # resting on the ground
        prims.append(Primitive(k + 1, shape, (float(x + dx), float(y + dy), float(z) + 1e-3), size, angle,
                               _albedo(colour), shiny=shape == "sphere"))
    return prims


def scene_path(name: str, root: Optional[str] = None, seed: int = 0, size: int = 128) -> Path:
    """``<root or cache>/labelled_scenes_v<VERSION>/<name>-s<seed>-<size>``."""
    base = Path(root) if root else default_cache_root() / f"labelled_scenes_v{VERSION}"
    return base / f"{name.replace(' ', '_')}-s{seed}-{size}"


def write_labelled_scene(name: str, root: Optional[str] = None, seed: int = 0, size: int = 128, n_train: int = 24,
                         n_test: int = 8, force: bool = False) -> Path:
    """Write scene ``name`` (once; NeRF-synthetic layout with ``masks/`` and ``labels.json``). Returns its folder."""
    if name not in SCENES:
        raise GsVqError(f"unknown labelled scene {name!r}: one of {', '.join(sorted(SCENES))}")
    return write_scene(scene_path(name, root, seed, size), scene_primitives(name, seed), scene_labels(name), n_train,
                       n_test, size, force)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from gs_vq.console import OneLineParser, guarded

    p = OneLineParser(prog="python -m gs_vq.data.labelled_scenes",
                      description="Write the procedural labelled scenes (masks + labels.json).")
    p.add_argument("-o", "--out", help="parent folder (default: the gs_vq cache)")
    p.add_argument("--scenes", nargs="+", default=list(SCENES), metavar="NAME",
                   help=f"which scenes (default all: {', '.join(SCENES)})")
    p.add_argument("--seed", type=int, default=0, help="layout seed")
    p.add_argument("--size", type=int, default=128, help="image width = height in pixels")
    p.add_argument("--train", type=int, default=24, help="training views")
    p.add_argument("--test", type=int, default=8, help="test views")
    p.add_argument("--force", action="store_true", help="rewrite scenes that exist")

    @guarded
    def run(argv):
        args = p.parse_args(argv)
        if args.size < 8 or args.train < 1 or args.test < 0:
            raise GsVqError(f"bad scene sizes: --size {args.size} (>= 8), --train {args.train} (>= 1), "
                            f"--test {args.test} (>= 0)")
        for name in args.scenes:
            path = write_labelled_scene(name, args.out, args.seed, args.size, args.train, args.test, args.force)
            print(f"{name:12s} {ROLES[name]:10s} {path}")

    run(argv)


if __name__ == "__main__":
    main()
