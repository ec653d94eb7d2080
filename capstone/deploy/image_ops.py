"""Image file bytes -> encoder pixels inside the graph, so a client sends only the file.

The same steps as ``capstone.encoders.images.image_for_model`` (OpenCV in Python), in TensorFlow:
decode to RGB uint8, cut the largest centred square (one more row/column off the top/left when
the difference is odd), resize bilinearly with half-pixel centres (cv2.INTER_LINEAR), round to
uint8 as cv2 does, then float32 in [0, 255]; the frozen encoder does its own scaling.

Known differences from OpenCV: JPEGs are decoded with the accurate integer DCT (OpenCV's
default), but the two libjpeg builds may still differ by one grey level here and there; OpenCV
turns a photo by its EXIF orientation, TensorFlow does not; cv2.resize uses 11-bit fixed-point
weights on uint8, TensorFlow float weights. The export tests report how often captions differ.
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
    square = centre_square(decode_rgb(image_bytes))                                       # [side, side, 3]
    resized = tf.image.resize(tf.cast(square, tf.float32), [image_size, image_size],
                              method="bilinear", antialias=False)                          # half-pixel centres
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)                                 # cv2 gives uint8


def batch_pixels_for_model(image_bytes, image_size):
    """[B] string -> [B, S, S, 3] float32."""
    return tf.map_fn(lambda one: pixels_for_model(one, image_size), image_bytes,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
                     name="decode_images")
