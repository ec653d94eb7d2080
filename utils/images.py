"""Image helpers from the course: bytes -> RGB array -> centered square -> model input.

The course calls them in this order inside ``apply_model``::

    img = decode_image_from_buf(buf)                                  # [H, W, 3] uint8 RGB
    img = crop_and_preprocess(img, (224, 224), preprocess_for_model)  # [224, 224, 3] float32
"""

import io

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib; used for headers only

from capstone.errors import CapstoneError

# A small file can claim a huge picture ("decompression bomb"): 40 million pixels (a 40 MP photo,
# 120 MB decoded) is the most we decode. The same limit as the web demo's uploads.
MAX_PIXELS = 40_000_000

# JPEG markers: every JPEG starts with SOI; image data follows the last SOS and ends at EOI.
_JPEG_START_OF_IMAGE = b"\xff\xd8"
_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END_OF_IMAGE = b"\xff\xd9"


def decode_image_from_buf(buf, name="image", max_pixels=MAX_PIXELS):
    """Decode the bytes of a JPEG/PNG/... file into an RGB picture.

    buf:        bytes (or bytearray / memoryview / uint8 array) of an image file, e.g. ``zf.read(fn)``.
    name:       what to call the file in the error message.
    max_pixels: refuse, from the header alone, a picture of more pixels than this.
    Returns a uint8 array [H, W, 3] in RGB order; grayscale and alpha images come back
    with 3 colour channels (alpha is dropped).
    Raises CapstoneError when the bytes are empty, truncated, too large, or not an image.
    """
    data = np.frombuffer(buf, dtype=np.uint8)
    if data.size == 0:
        # cv2.imdecode asserts on an empty buffer instead of returning None.
        raise CapstoneError(f"{name}: empty file, expected image bytes")
    if _is_truncated_jpeg(data.tobytes()):
        # Older OpenCV builds fill the missing part with gray and return it; we refuse.
        raise CapstoneError(f"{name}: truncated JPEG (no end-of-image marker)")
    check_image_pixels(data, name, max_pixels)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # [H, W, 3] BGR, or None
    except cv2.error as error:  # e.g. over OpenCV's own size limit, or out of memory
        raise CapstoneError(f"{name}: not decodable ({str(error).strip().splitlines()[-1][:200]})") from None
    if img is None:
        raise CapstoneError(f"{name}: not a decodable image ({data.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_image_pixels(data, name, max_pixels):
    """Refuse a picture whose header claims more than ``max_pixels``, before it is decoded.

    Pillow reads only the header here. Returns (width, height), or None for bytes it does not
    recognise (left to OpenCV, or refused by the caller).
    """
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
    except Image.DecompressionBombError:  # Pillow's own limit (~179 million pixels) came first
        raise CapstoneError(f"{name}: more than the limit of {max_pixels:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if width * height > max_pixels:
        raise CapstoneError(f"{name}: {width} x {height} is more than the limit of {max_pixels:,} pixels")
    return width, height


def _is_truncated_jpeg(data):
    """True for a JPEG with no end-of-image marker after its last scan (or none at all).

    Markers cannot occur inside compressed scan data (0xFF bytes there are
    followed by 0x00), so a complete file has EOI after its last SOS.
    """
    if not data.startswith(_JPEG_START_OF_IMAGE):
        return False
    end = data.rfind(_JPEG_END_OF_IMAGE)
    return end == -1 or end < data.rfind(_JPEG_START_OF_SCAN)


def image_center_crop(img):
    """The largest centered square of a picture.

    img: array [H, W, ...], e.g. a 300 x 500 landscape photo.
    Returns a view [S, S, ...] with S = min(H, W), e.g. [300, 300, 3]; when the
    difference is odd, one more row/column is cut from the top/left (as the course did).
    """
    height, width = img.shape[:2]
    side = min(height, width)
    top = (height - side + 1) // 2
    left = (width - side + 1) // 2
    return img[top:top + side, left:left + side]


def crop_and_preprocess(img, input_shape, preprocess_for_model):
    """Turn a decoded picture into one input of the CNN encoder.

    img:                  uint8 array [H, W, 3] from ``decode_image_from_buf``.
    input_shape:          (height, width) the encoder expects, e.g. (224, 224).
    preprocess_for_model: the encoder's normalization, e.g. keras' ``preprocess_input``;
                          takes and returns a float32 array [height, width, 3].
    Returns a float32 array [height, width, 3].

    Resizing uses cv2's default bilinear interpolation, as the course did, so our
    embeddings match embeddings computed with the course code.
    """
    height, width = _check_input_shape(input_shape)
    img = image_center_crop(img)  # [S, S, 3]
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)  # cv2 takes (w, h)
    img = img.astype(np.float32)  # prepare for normalization
    img = preprocess_for_model(img)
    return np.asarray(img, dtype=np.float32)


def _check_input_shape(input_shape):
    """(height, width) as two positive ints, or a CapstoneError naming what was given."""
    try:
        height, width = (int(size) for size in input_shape)
    except (TypeError, ValueError):
        raise CapstoneError(f"input_shape: expected (height, width), got {input_shape!r}") from None
    if height <= 0 or width <= 0:
        raise CapstoneError(f"input_shape: expected positive sizes, got {input_shape!r}")
    return height, width
