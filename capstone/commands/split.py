"""``python -m capstone split``: train/val/test embedding pickles, seeded at random or as a caption file says."""

import os
import sys
import warnings

from capstone.errors import CapstoneError

DEFAULT_FRACTION = 0.15  # of the images, for each of val and test, in a random split


def add_arguments(p):
    p.add_argument("prefix", help="PREFIX of PREFIX_img_embeds.pickle / PREFIX_img_fns.pickle")
    p.add_argument("--captions", metavar="SRC",
                   help="use the split this caption source defines (Flickr8k.token.txt with its Flickr_8k.*Images.txt "
                        "lists beside it, or a split JSON dataset_*.json; restval goes to train); "
                        "a source that defines none gives the random split")
    p.add_argument("--val", type=float, help=f"random split: fraction (or count, if >= 1) for validation "
                                              f"(default {DEFAULT_FRACTION})")
    p.add_argument("--test", type=float, help=f"random split: fraction (or count, if >= 1) for test "
                                               f"(default {DEFAULT_FRACTION})")
    p.add_argument("--seed", type=int, default=0, help="random split: seed")


def random_parts(n, val, test, seed, prefix):
    """{"train", "val", "test"} -> row numbers, a seeded permutation of ``n`` rows."""
    import numpy as np

    sizes = [int(x) if x >= 1 else int(round(x * n)) for x in (val, test)]
    if min(sizes) < 1 or sum(sizes) >= n:
        raise CapstoneError(f"{prefix}: cannot take {sizes[0]} val + {sizes[1]} test images out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return {"val": order[:sizes[0]], "test": order[sizes[0]:sum(sizes)], "train": order[sum(sizes):]}


def given_parts(fns, lists, source):
    """{"train", "val", "test"} -> row numbers of the embedded images each list names (by name or base name).

    Embedded images no list names are left out, listed images that were not embedded are skipped;
    both are counted on stderr. A split with no embedded image is an error.
    """
    split_of = {fn: split for split, names in lists.items() for fn in names}
    parts, unlisted = {split: [] for split in lists}, []
    for row, fn in enumerate(fns):
        split = split_of.get(fn) or split_of.get(os.path.basename(fn))
        if split is None:
            unlisted.append(fn)
        else:
            parts[split].append(row)
    if unlisted:
        print(f"{source}: {len(unlisted)} embedded images are in no split and are left out (e.g. {unlisted[:3]})",
              file=sys.stderr)
    not_embedded = len(split_of) - (len(fns) - len(unlisted))
    if not_embedded > 0:
        print(f"{source}: {not_embedded} listed images are not in the embeddings", file=sys.stderr)
    for split, rows in parts.items():
        if not rows:
            raise CapstoneError(f"{source}: none of the embedded images is in its {split!r} split "
                                f"({len(lists[split])} listed)")
    return parts


def run(args):
    """PREFIX -> PREFIX_train, PREFIX_val, PREFIX_test pickles (and spatial features, if any), split by image.

    Rows keep the embeddings' order in every split.
    """
    import numpy as np

    from capstone.data.caption_files import load_split_lists
    from capstone.encoders.embed import embeddings_paths, read_embeddings, save_embeddings
    from capstone.encoders.meta import read_meta, save_meta
    from capstone.encoders.spatial import features_path, read_features, write_rows
    from capstone.encoders.views import read_views, views_path

    embeds, fns = read_embeddings(*embeddings_paths(args.prefix))
    with warnings.catch_warnings(record=True) as caught:  # one plain line each, as for errors
        warnings.simplefilter("always")
        lists = load_split_lists(args.captions) if args.captions else None
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if lists is not None:
        if args.val is not None or args.test is not None:
            raise CapstoneError(f"{args.captions} defines the split; drop --val/--test (or drop --captions "
                                f"for a random split)")
        parts = given_parts(fns, lists, args.captions)
        print(f"{args.captions}: the split as given", file=sys.stderr)
    else:
        if args.captions:
            print(f"{args.captions}: defines no split; random split with seed {args.seed}", file=sys.stderr)
        val, test = (DEFAULT_FRACTION if x is None else x for x in (args.val, args.test))
        parts = random_parts(len(fns), val, test, args.seed, args.prefix)
    n = len(fns)
    features = read_features(features_path(args.prefix), n) if os.path.exists(features_path(args.prefix)) else None
    meta = read_meta(args.prefix)  # the encoder and the views; absent for embeddings older than it
    views = []  # (path function, array [N, V, ...]) of each views file to split
    if meta is not None and meta["views"]:
        views.append((views_path, read_views(views_path(args.prefix), n, meta["views"], embeds.shape[1:])))
        if features is not None:
            views.append((lambda prefix: views_path(prefix, spatial=True),
                          read_views(views_path(args.prefix, True), n, meta["views"], features.shape[1:])))
    for name in ("train", "val", "test"):
        rows = np.sort(np.asarray(parts[name], dtype=np.int64))
        save_embeddings(f"{args.prefix}_{name}", embeds[rows], [fns[i] for i in rows])
        if features is not None:
            write_rows(features_path(f"{args.prefix}_{name}"), features, rows)
        # Views are training data: only the train part keeps them, so val and test scores are on photos alone.
        for path_of, array in (views if name == "train" else []):
            write_rows(path_of(f"{args.prefix}_{name}"), array, rows)
        if meta is not None:
            save_meta(f"{args.prefix}_{name}", meta["encoder"], meta.get("image_size"),
                      meta["views"] if name == "train" else [], weights=meta.get("weights"),
                      precision=meta.get("precision"), images=len(rows))
        print(f"{args.prefix}_{name}: {len(rows)} images")
