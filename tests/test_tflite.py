"""``export --tflite``: the TFLite models caption like FinalModel, with the word loop on the host."""

import numpy as np
import pytest

from capstone.deploy import tflite
from capstone.deploy.export import export
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs
from serve_support import SCENES, embed_pictures, load_model, scene_picture, tiny_encoder, trained_run_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("edge") / "tflite"
    tflite.export_tflite(runs.load_run(trained_run_dir()), tiny_encoder(), str(out))
    return out


@pytest.fixture(scope="module")
def embeddings():
    """60 scene pictures' embeddings, as the service computes them."""
    rng = np.random.default_rng(11)
    return embed_pictures(tiny_encoder(), [scene_picture(*SCENES[i % len(SCENES)], rng=rng) for i in range(60)])


def test_float32_captions_are_finalmodels(folder, embeddings):
    model = load_model()
    runner = tflite.TFLiteCaptioner(str(folder), "float32")
    assert runner.sample_tokens(embeddings=embeddings) == model.sample_tokens(embeddings=embeddings)
    assert runner.captions(embeddings=embeddings) == model.captions(embeddings=embeddings)
    pixels = np.asarray([scene_picture(*SCENES[i], size=16) for i in range(len(SCENES))], np.float32)
    assert runner.captions(images=pixels) == model.captions(images=pixels)  # the encoder runs in TFLite too


@pytest.mark.parametrize("variant", ["float16", "int8"])
def test_quantised_models_agree_on_at_least_95_percent_of_tokens(folder, embeddings, variant):
    expected = load_model().sample_tokens(embeddings=embeddings)
    got = tflite.TFLiteCaptioner(str(folder), variant).sample_tokens(embeddings=embeddings)
    same = sum(a == b for want, have in zip(expected, got) for a, b in zip(want, have))
    total = sum(max(len(want), len(have)) for want, have in zip(expected, got))
    print(f"\n{variant}: {same / total:.1%} of {total} tokens identical, "
          f"{np.mean([a == b for a, b in zip(expected, got)]):.1%} of captions; "
          f"{(folder / tflite.VARIANTS[variant]).stat().st_size} bytes vs "
          f"{(folder / tflite.VARIANTS['float32']).stat().st_size} float32")
    assert same / total >= 0.95


def test_export_tflite_writes_every_variant(tmp_path):
    written = export(trained_run_dir(), str(tmp_path / "model"), also=tflite.write_tflite_into, encoder=tiny_encoder())
    assert {f"tflite/{name}" for name in tflite.VARIANTS.values()} | {"tflite/decoder.json"} <= set(written)


def test_a_rejected_conversion_names_the_op(tmp_path):
    """The SavedModel's serving signature decodes JPEGs in the graph: no TFLite builtin does that."""
    export(trained_run_dir(), str(tmp_path / "model"), encoder=tiny_encoder())
    with pytest.raises(CapstoneError, match=r"TFLite converter rejected serving_default .*tf\.\w+") as error:
        tflite.convert(str(tmp_path / "model"), signature_keys=["serving_default"])
    print("\n" + str(error.value))
    assert "\n" not in str(error.value)


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(CapstoneError, match="no such TFLite model"):
        tflite.TFLiteCaptioner(str(tmp_path), "float32")
