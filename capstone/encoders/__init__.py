"""Image encoders: a pretrained CNN turns a photo into the embedding the decoder starts from.

    cnn.py                the course's ``get_cnn_encoder`` (InceptionV3, EfficientNet-Lite0)
    efficientnet_lite.py  EfficientNet-Lite0 in TensorFlow, weights read by torch_pickle.py
    frozen.py             a Keras encoder frozen into a GraphDef that any v1 graph imports
    images.py             decode + centre-crop + resize a photo for an encoder
    embed.py              embed a zip or folder of photos; the course's embedding pickles

May import: ``capstone.errors``, ``capstone.support``, ``utils``. Nothing of the decoder.
"""

from capstone.encoders.cnn import ENCODERS, EncoderSpec, encoder_spec, get_cnn_encoder
from capstone.encoders.frozen import FrozenEncoder, freeze_encoder, frozen_encoder, import_encoder

__all__ = ["ENCODERS", "EncoderSpec", "FrozenEncoder", "encoder_spec", "freeze_encoder", "frozen_encoder",
           "get_cnn_encoder", "import_encoder"]
