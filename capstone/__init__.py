"""Show and Tell image captioning: the HSE "Intro to Deep Learning" week-6 capstone
as low-level ``tf.compat.v1`` graph code that runs on TensorFlow 2.21 / Keras 3.

Read the modules in the course's order:
captions -> layers -> decoder -> training -> final_model -> encoders -> evaluation.
"""

from capstone.errors import CapstoneError

__all__ = ["CapstoneError"]
