"""Image files -> the raw-pixel batches the captioning graph takes.

The frozen encoder graph does its own normalisation, so here an image is only decoded,
centre-cropped and resized: float32 RGB in [0, 255], [N, S, S, 3].
"""

import numpy as np

from capstone.errors import CapstoneError
from utils import crop_and_preprocess, decode_image_from_buf


def image_for_model(buf, image_size, name="image"):
    """Bytes of one image file -> [S, S, 3] float32 pixels."""
    return crop_and_preprocess(decode_image_from_buf(buf, name=name), (image_size, image_size), lambda x: x)


def load_images_for_model(paths, image_size):
    """Image files -> [N, S, S, 3]; a missing or undecodable file is an error naming it."""
    images = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                buf = f.read()
        except OSError as error:
            raise CapstoneError(f"{path}: cannot read image file ({error.strerror})") from None
        images.append(image_for_model(buf, image_size, name=path))
    return np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.float32)
