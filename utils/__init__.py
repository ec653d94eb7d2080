"""The course's ``utils`` module: image decoding and cropping, pickles, and ``apply_model``.

    import utils
    img_embeds, img_fns = utils.apply_model("train2014_sample.zip", model, preprocess_for_model)
    utils.save_pickle(img_embeds, "train_img_embeds.pickle")
"""

from utils.embedding import apply_model
from utils.images import crop_and_preprocess, decode_image_from_buf, image_center_crop
from utils.pickle_io import read_pickle, save_pickle

__all__ = [
    "apply_model",
    "crop_and_preprocess",
    "decode_image_from_buf",
    "image_center_crop",
    "read_pickle",
    "save_pickle",
]
