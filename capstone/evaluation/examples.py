"""The course's last cells: caption a photo given as raw bytes and show it with its caption.

    model = FinalModel.load("runs/demo", with_encoder=True)
    apply_model_to_image_raw_bytes(model, open("portal.jpg", "rb").read())
    show_valid_example(model, "val2014_sample.zip", val_img_fns, example_idx=100)

In a notebook the figure is shown inline; with no display (a terminal, CI) it is saved as a
PNG instead (``out_png``, default ``caption_example.png``) and the path is printed.
"""

import os
import zipfile

from capstone.errors import CapstoneError
from capstone.final_model import generate_caption
from capstone.encoders.images import image_for_model
from utils import decode_image_from_buf


def _has_display():
    import matplotlib

    return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template") \
        or bool(os.environ.get("DISPLAY"))


def apply_model_to_image_raw_bytes(model, raw, out_png=None, name="image"):
    """Caption one image file's bytes with ``model`` (loaded with_encoder=True); returns the caption."""
    import matplotlib.pyplot as plt

    if model.input_images is None:
        raise CapstoneError("this model takes embeddings; load it with FinalModel.load(run_dir, with_encoder=True)")
    img = decode_image_from_buf(raw, name=name)
    caption = " ".join(generate_caption(model, image_for_model(raw, model.encoder.image_size, name))[1:-1])
    fig = plt.figure(figsize=(7, 7))
    plt.axis("off")
    plt.imshow(img)
    plt.title(caption)
    if out_png or not _has_display():
        from capstone.support.atomic import atomic_open

        out_png = out_png or "caption_example.png"
        with atomic_open(out_png, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
        plt.close(fig)
        print(f"{caption}  (figure saved to {out_png})")
    else:
        plt.show()
        print(caption)
    return caption


def show_valid_example(model, val_zip, val_img_fns, example_idx=0, out_png=None):
    """Caption the ``example_idx``-th image of ``val_zip`` that is listed in ``val_img_fns``."""
    wanted = {os.path.basename(fn) for fn in val_img_fns}
    with zipfile.ZipFile(val_zip) as zf:
        found = [info for info in zf.filelist if os.path.basename(info.filename) in wanted]
        if not 0 <= example_idx < len(found):
            raise CapstoneError(f"{val_zip}: example_idx {example_idx} out of range (0..{len(found) - 1})")
        example = found[example_idx]
        return apply_model_to_image_raw_bytes(model, zf.read(example), out_png, name=example.filename)
