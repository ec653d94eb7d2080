"""EfficientNet-Lite1 and -Lite2: the architecture fits their .pth exactly and classifies like ImageNet."""

import numpy as np
import pytest

from capstone import encoders
from capstone.encoders import efficientnet_lite
from capstone.encoders.torch_pickle import read_state_dict
from capstone.errors import CapstoneError
from test_encoders import CAT_CLASSES, COFFEE_CLASSES, photos

# Lite2 scales width and depth, Lite1 depth only: Lite2 in the default run, both with --runslow.
LARGER = [pytest.param("efficientnet_lite1", marks=pytest.mark.slow), "efficientnet_lite2"]


def test_scaled_stage_tables():
    # Channels rounded to multiples of 8 (40 * 1.1 = 44 -> 48), middle repeats rounded up (2 * 1.2 -> 3).
    assert [efficientnet_lite.scaled_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == \
        [16, 24, 48, 88, 120, 208, 352]
    lite1 = efficientnet_lite.variant_stages(efficientnet_lite.VARIANTS["efficientnet_lite1"])
    lite2 = efficientnet_lite.variant_stages(efficientnet_lite.VARIANTS["efficientnet_lite2"])
    assert [stage[0] for stage in lite1] == [stage[0] for stage in lite2] == [1, 3, 3, 4, 4, 5, 1]
    assert efficientnet_lite.variant_stages(efficientnet_lite.VARIANTS["efficientnet_lite0"]) == \
        efficientnet_lite.LITE0_STAGES
    assert encoders.ENCODERS["efficientnet_lite1"] == encoders.EncoderSpec(240, 1280, grid=8)
    assert encoders.ENCODERS["efficientnet_lite2"] == encoders.EncoderSpec(260, 1280, grid=9)


@pytest.mark.parametrize("name", LARGER)
def test_every_weight_used_and_imagenet_classes(name):
    model = efficientnet_lite.efficientnet_lite(name, include_top=True, weights=None)
    params = read_state_dict(efficientnet_lite.packaged_weights_path(name))
    assert len(params) == 386  # 21 blocks
    # Every array of the file lands in a layer of the right shape, and every layer gets one.
    assert efficientnet_lite.load_torch_weights(model, params, name) == []
    params["_blocks.21._bn2.weight"] = params["_blocks.20._bn2.weight"]  # a block the model does not have
    assert efficientnet_lite.load_torch_weights(model, params, name) == ["_blocks.21._bn2.weight"]

    size = encoders.ENCODERS[name].image_size
    logits = model.predict(efficientnet_lite.preprocess_input(photos(size)), verbose=0)  # [2, 1000]
    cat_top3, coffee_top3 = np.argsort(-logits, axis=1)[:, :3]
    print(name, "chelsea top-3:", cat_top3, "coffee top-3:", coffee_top3)
    # A wrong layer order, stride or scaling still loads (shapes can agree) but loses these classes.
    assert set(cat_top3) <= set(CAT_CLASSES)
    assert coffee_top3[0] in COFFEE_CLASSES


def test_weights_of_another_variant_are_refused():
    lite2_weights = efficientnet_lite.packaged_weights_path("efficientnet_lite2")
    with pytest.raises(CapstoneError, match=r"lite2-9656183e.pth: _blocks.4._project_conv has shape .*Lite1"):
        efficientnet_lite.efficientnet_lite("efficientnet_lite1", weights=lite2_weights)
    lite1_weights = efficientnet_lite.packaged_weights_path("efficientnet_lite1")
    with pytest.raises(CapstoneError, match="lite1-77cc7160.pth: _blocks.3._depthwise_conv has shape"):
        efficientnet_lite.efficientnet_lite0(weights=lite1_weights)
