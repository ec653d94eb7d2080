"""Image file bytes -> encoder pixels inside the graph, so a client sends only the file.

The same steps as ``capstone.encoders.images.image_for_model`` (OpenCV in Python), in TensorFlow:
decode to RGB uint8 (JPEGs with the accurate integer DCT, OpenCV's choice), cut the largest
centred square (one more row/column off the top/left when the difference is odd), and resize as
``cv2.resize(..., INTER_LINEAR)`` does on uint8: half-pixel centres, 11-bit fixed-point weights,
OpenCV's SIMD rounding of the vertical pass (``resize_like_cv2``). On the Flickr8k photos the
pixels are bit-identical to OpenCV's. What still differs: OpenCV turns a photo by its EXIF
orientation and TensorFlow does not; another libjpeg build may round a DCT differently.
"""

import tensorflow as tf


def decode_rgb(image_bytes):
    """[] string (JPEG, PNG, BMP, GIF first frame) -> [H, W, 3] uint8 RGB; alpha dropped, grey made RGB."""
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.ensure_shape(tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
                                [None, None, 3]))


def centre_square(image):
    """[H, W, C] -> [S, S, C], S = min(H, W), as ``utils.images.image_center_crop``."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top = (height - side + 1) // 2
    left = (width - side + 1) // 2
    return image[top:top + side, left:left + side]


def pixels_for_model(image_bytes, image_size):
    """[] string -> [S, S, 3] float32 pixels in [0, 255], S = image_size."""
    return tf.cast(resize_like_cv2(centre_square(decode_rgb(image_bytes)), image_size), tf.float32)


RESIZE_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: weights are integers out of 2048


def _linear_taps(source, target, clamp_weights):
    """Source indices (i0, i1) and integer weights (w0, w1) of each of ``target`` outputs.

    OpenCV: f = float32((d + 0.5) * (source / target) - 0.5), i0 = floor(f), w1 = round(frac * 2048).
    Columns outside the picture take the edge pixel with weight 2048 (``clamp_weights``); rows keep
    their fractional weights and only clamp the indices, as OpenCV's resize does.
    """
    scale = tf.cast(source, tf.float64) / tf.cast(target, tf.float64)
    position = tf.cast((tf.cast(tf.range(target), tf.float64) + 0.5) * scale - 0.5, tf.float32)
    first = tf.floor(position)
    frac = position - first
    first = tf.cast(first, tf.int32)
    if clamp_weights:
        frac = tf.where(first < 0, 0.0, frac)
        first = tf.maximum(first, 0)
        frac = tf.where(first >= source - 1, 0.0, frac)
        first = tf.minimum(first, source - 1)
    one = float(2 ** RESIZE_COEF_BITS)
    w0 = tf.cast(tf.round((1.0 - frac) * one), tf.int32)
    w1 = tf.cast(tf.round(frac * one), tf.int32)
    return tf.clip_by_value(first, 0, source - 1), tf.clip_by_value(first + 1, 0, source - 1), w0, w1


def resize_like_cv2(square, size):
    """[N, N, 3] uint8 -> [size, size, 3] uint8, as cv2.resize(square, (size, size)) (INTER_LINEAR)."""
    side = tf.shape(square)[0]
    pixels = tf.cast(square, tf.int32)
    x0, x1, a0, a1 = _linear_taps(side, size, clamp_weights=True)
    rows = (tf.gather(pixels, x0, axis=1) * a0[None, :, None]
            + tf.gather(pixels, x1, axis=1) * a1[None, :, None])                      # [N, size, 3], x 2048
    y0, y1, b0, b1 = _linear_taps(side, size, clamp_weights=False)
    shift = tf.bitwise.right_shift
    # OpenCV's vectorised vertical pass: ((r >> 4) * b >> 16) per row, then (sum + 2) >> 2.
    top = shift(shift(tf.gather(rows, y0), 4) * b0[:, None, None], 16)
    bottom = shift(shift(tf.gather(rows, y1), 4) * b1[:, None, None], 16)
    return tf.cast(tf.clip_by_value(shift(top + bottom + 2, 2), 0, 255), tf.uint8)               # [size, size, 3]


def batch_pixels_for_model(image_bytes, image_size):
    """[B] string -> [B, S, S, 3] float32."""
    return tf.map_fn(lambda one: pixels_for_model(one, image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
                     name="decode_images")
