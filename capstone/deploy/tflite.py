"""The decoder (and its image encoder) as TFLite models, with the word loop on the host.

Which split, and why: the in-graph decoders (``capstone.fast.decoding``) are v1 while loops with a
growing TensorArray and, for beam search, float64 top-k bookkeeping; the TFLite converter would
need Select TF ops (the full TensorFlow runtime) for parts of them, which defeats the point on a
phone. So the models hold only what is arithmetic, three signatures in one ``.tflite`` file:

    encode  images [B, S, S, 3] float32 pixels 0..255      -> img_embeds [B, IMG_EMBED]
    init    img_embeds [B, IMG_EMBED]                       -> c, h [B, LSTM_UNITS]
    step    word [B] int32, c, h                            -> probs [B, vocab], c, h

and ``TFLiteCaptioner`` runs the greedy loop in numpy, exactly as the Python oracle in tests/decoding_oracle.py
(banned tokens zeroed, argmax, stop at #END# or max_len). One ``step`` call per word for the whole
batch costs microseconds in LiteRT (no Session overhead), so the loop on the host is cheap.

Files in OUT/tflite/: ``model.tflite`` (float32), ``model_float16.tflite`` (weights in float16),
``model_int8.tflite`` (dynamic-range int8 weights), ``decoder.json`` (vocabulary, START/END ids,
banned ids). ``TFLiteCaptioner`` needs numpy and ``ai_edge_litert`` (or ``tf.lite``), not TensorFlow.
"""

import json
import os
import re
import tempfile

import numpy as np

from capstone.errors import CapstoneError

VARIANTS = {"float32": "model.tflite", "float16": "model_float16.tflite", "int8": "model_int8.tflite"}
DECODER_FILE = "decoder.json"
SIGNATURES = ("encode", "init", "step")


def build_edge_saved_model(run, encoder, path, checkpoint=None):
    """A v1 SavedModel at ``path`` with the three signatures above (FinalModel's own tensors).

    Returns the decoder.json dictionary (vocabulary in index order, START/END/banned ids).
    """
    import tensorflow as tf

    from capstone.captions import END, START
    from capstone.deploy.graphs import TAG, unfinalized
    from capstone.encoders import import_encoder
    from capstone.final_model import FinalModel

    v1 = tf.compat.v1
    if run.model_config.decoder != "show_and_tell":
        raise CapstoneError(f"{run.path}: TFLite export covers the show_and_tell decoder; a {run.model_config.decoder} "
                            f"decoder's step also reads the image grid: export it as a SavedModel (without --tflite)")
    model = FinalModel(run, checkpoint=checkpoint)  # embeddings in: the encoder is added beside it
    try:
        with unfinalized(model.graph):
            size = encoder.image_size
            images = v1.placeholder(tf.float32, [None, size, size, 3], name="edge_images")
            embeds = import_encoder(encoder, images)                                  # [B, IMG_EMBED]
            predict = v1.saved_model.signature_def_utils.predict_signature_def
            init_c, init_h = model.init_lstm
            new_probs, new_c, new_h = model.one_step
            signatures = {
                "encode": predict({"images": images}, {"img_embeds": embeds}),
                "init": predict({"img_embeds": model.img_embeds},
                                {"c": tf.identity(init_c, "edge_init_c"), "h": tf.identity(init_h, "edge_init_h")}),
                "step": predict({"word": model.current_word, "c": model.lstm_c, "h": model.lstm_h},
                                {"probs": new_probs, "new_c": new_c, "new_h": new_h}),
            }
            saver = v1.train.Saver(v1.global_variables(), sharded=True)
            builder = v1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(model.session, [TAG], signature_def_map=signatures, saver=saver,
                                                 clear_devices=True, strip_default_attrs=True)
            builder.save()
        return {"words": [model.inverse_vocab[i] for i in range(len(model.inverse_vocab))],
                "start": model.vocab[START], "end": model.vocab[END],
                "banned": sorted(int(i) for i in model.banned_tokens), "image_size": encoder.image_size,
                "encoder": encoder.name}
    finally:
        model.close()


def convert(saved_model_dir, variant="float32", signature_keys=SIGNATURES):
    """Bytes of a .tflite model of the SavedModel's signatures; ``variant`` in VARIANTS.

    A graph the converter rejects is a CapstoneError naming the ops it could not convert.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=list(signature_keys),
                                                         tags={"serve"})
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # weights int8, activations float (dynamic range)
    elif variant != "float32":
        raise CapstoneError(f"TFLite variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    try:
        return converter.convert()
    except Exception as error:  # ConverterError, or errors of the MLIR importer
        text = str(error)
        ops = sorted(set(re.findall(r"'((?:tf|tfl)\.[A-Za-z0-9_]+)' op", text)))
        named = ", ".join(ops) if ops else text.strip().splitlines()[-1][:300] if text.strip() else type(error).__name__
        raise CapstoneError(f"{saved_model_dir}: the TFLite converter rejected "
                            f"{', '.join(signature_keys)} ({variant}): unsupported op(s) {named}") from None


def export_tflite(run, encoder, out_dir, checkpoint=None, log=lambda text: None):
    """Write VARIANTS and decoder.json into ``out_dir`` (created)."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="capstone-edge-") as work:
        saved = os.path.join(work, "edge")
        decoder = build_edge_saved_model(run, encoder, saved, checkpoint)
        for variant, name in VARIANTS.items():
            log(f"converting to TFLite ({variant}) ...")
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(convert(saved, variant))
    with open(os.path.join(out_dir, DECODER_FILE), "w", encoding="utf-8") as f:
        json.dump(decoder, f, ensure_ascii=False)


def make_interpreter(model_path, num_threads=None):
    """LiteRT's Interpreter (``ai_edge_litert``), else ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=model_path, num_threads=num_threads)


class TFLiteCaptioner:
    """Greedy captions from OUT/tflite/ with no TensorFlow session: the word loop is numpy.

    folder: OUT/tflite; variant: a key of VARIANTS. Not thread-safe (one interpreter): one per thread.
    """

    def __init__(self, folder, variant="float32", num_threads=None):
        path = os.path.join(folder, VARIANTS.get(variant, str(variant)))
        if not os.path.isfile(path):
            raise CapstoneError(f"{path}: no such TFLite model; run 'export --tflite' first")
        with open(os.path.join(folder, DECODER_FILE), encoding="utf-8") as f:
            self.decoder = json.load(f)
        self.interpreter = make_interpreter(path, num_threads)
        self.runners = {name: self.interpreter.get_signature_runner(name) for name in SIGNATURES}

    def embed(self, images):
        """[B, S, S, 3] pixels -> [B, IMG_EMBED]."""
        return self.runners["encode"](images=np.asarray(images, np.float32))["img_embeds"]

    def sample_tokens(self, images=None, embeddings=None, max_len=20):
        """As ``FinalModel.sample_tokens`` (greedy): index lists without START, ending at END or max_len."""
        embeddings = self.embed(images) if embeddings is None else np.asarray(embeddings, np.float32)
        state = self.runners["init"](img_embeds=embeddings)
        c, h = state["c"], state["h"]
        batch = len(embeddings)
        words = np.full(batch, self.decoder["start"], np.int32)
        tokens = [[] for _ in range(batch)]
        done = np.zeros(batch, bool)
        for _ in range(max_len if batch else 0):
            out = self.runners["step"](word=words, c=c, h=h)
            probs, c, h = out["probs"].copy(), out["new_c"], out["new_h"]
            probs[:, self.decoder["banned"]] = 0.0
            words = probs.argmax(axis=1).astype(np.int32)
            for row in np.flatnonzero(~done):
                tokens[row].append(int(words[row]))
            done |= words == self.decoder["end"]
            if done.all():
                break
        return tokens

    def captions(self, images=None, embeddings=None, max_len=20):
        """Caption text per image, as ``capstone.captions.indices_to_caption``."""
        words, special = self.decoder["words"], {"#PAD#", "#UNK#", "#START#", "#END#"}
        texts = []
        for ids in self.sample_tokens(images, embeddings, max_len):
            kept = []
            for i in ids:
                if words[i] == "#END#":
                    break
                if words[i] not in special:
                    kept.append(words[i])
            texts.append(" ".join(kept))
        return texts


def write_tflite_into(model, checkpoint, staged, log=lambda text: None):
    """``export(..., also=write_tflite_into)``: the TFLite models in STAGED/tflite/, inside the
    SavedModel's folder before it is renamed into place."""
    export_tflite(model.run, model.encoder, os.path.join(staged, "tflite"), checkpoint=checkpoint, log=log)
