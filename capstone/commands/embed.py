"""``python -m capstone embed``: images (zip or folder) -> the course's embedding pickles."""

import os
import sys

from capstone.errors import CapstoneError
from capstone.support import precision


def add_arguments(p):
    p.add_argument("source", help="zip file or folder of images")
    p.add_argument("--encoder", default="efficientnet_lite0",
                   help="inception_v3 (course), or efficientnet_lite0 / efficientnet_lite1 / efficientnet_lite2 "
                        "(offline; larger is slower and stronger)")
    p.add_argument("--weights", default="imagenet", help="imagenet, a weights file, or an http(s) URL (inception_v3)")
    p.add_argument("--out", required=True, help="PREFIX: writes PREFIX_img_embeds.pickle and PREFIX_img_fns.pickle")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--spatial", action="store_true",
                   help="also write PREFIX_img_features.npy: the CNN's feature grid per image (float16, memory-mapped), "
                        "what 'train --decoder attention' reads")
    precision.add_precision_argument(p)  # recorded in PREFIX_img_meta.json
    p.add_argument("--augment", metavar="VIEWS", default="",
                   help="also embed these views of every photo, for 'train' to use as extra training views: "
                        "flip (mirrored), crop (the central 80%% zoomed); e.g. --augment flip,crop -> "
                        "PREFIX_img_views.npy (and PREFIX_img_view_features.npy with --spatial)")


def run(args):
    from capstone.encoders.embed import IMAGE_EXTENSIONS, embed_images, save_embeddings
    from capstone.encoders import encoder_spec
    from capstone.encoders.meta import meta_path, save_meta
    from capstone.encoders.views import parse_views, views_path
    from utils.image_files import ImageFiles

    spec = encoder_spec(args.encoder)  # an unknown name fails before any work
    views = parse_views(args.augment)
    chosen = precision.resolve(args.precision, path=f"embed:{args.encoder}")
    if not os.path.exists(args.source):
        raise CapstoneError(f"{args.source}: no such zip file or folder")
    if os.path.exists(meta_path(args.out)):  # it would describe older files until the new one is written
        os.remove(meta_path(args.out))
    if args.spatial:
        from capstone.encoders.spatial import embed_spatial, features_path

        embeds, fns = embed_spatial(args.source, args.encoder, args.out, weights=args.weights,
                                     batch_size=args.batch_size, precision=chosen, views=views)
        print(features_path(args.out))
    else:
        embeds, fns = embed_images(args.source, args.encoder, weights=args.weights, batch_size=args.batch_size,
                                   precision=chosen, views=views, prefix=args.out)
    if views:
        print(views_path(args.out) + (f"\n{views_path(args.out, spatial=True)}" if args.spatial else ""))
    for path in save_embeddings(args.out, embeds, fns):
        print(path)
    # The meta file last: it names the encoder and views of the files above, all of which exist now.
    print(save_meta(args.out, args.encoder, spec.image_size, views, weights=args.weights, precision=chosen,
                    images=len(fns)))
    skipped = len(ImageFiles(args.source, IMAGE_EXTENSIONS).files) - len(fns)
    print(f"{len(fns)} images, {embeds.shape[1]}-d embeddings ({args.encoder})"
          + (f"; {skipped} files skipped (named above)" if skipped else ""), file=sys.stderr)
