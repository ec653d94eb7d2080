"""A trained run as a SavedModel that plain TensorFlow (or TensorFlow Serving) runs alone.

    python -m capstone export RUN_DIR --out DIR [--force] [--tflite]

The export graph is FinalModel's own graph with another input step (``ExportModel.build_inputs``):
a batch of image *files* (JPEG/PNG bytes) is decoded, centre-cropped and resized in the graph
(``capstone.deploy.image_ops``), then the frozen encoder runs. Token ids become text in the graph
too (``caption_strings``: a constant vocabulary, cut at #END#, specials dropped), so a client
needs neither this package nor the vocabulary. Signatures (tag ``serve``):

    serving_default  image_bytes [B] string                -> caption [B] string (greedy)
    beam             image_bytes [B] string                -> captions [B, K] string, scores [B, K] float64
    embeddings       img_embeds [B, IMG_EMBED] float32     -> caption [B], beam_captions [B, K], beam_scores [B, K]

K = 3 beams and at most 20 words, the defaults of ``caption``. DIR is written in a temporary
folder beside it and renamed into place at the end, so it is complete or absent.
"""

import contextlib
import os
import shutil
import tempfile

import tensorflow as tf

from capstone.captions import END, SPECIAL_TOKENS
from capstone.deploy.graphs import TAG, unfinalized
from capstone.deploy.image_ops import batch_pixels_for_model
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.support import run_dir as runs

v1 = tf.compat.v1
BEAM_SIGNATURE = "beam"
EMBEDDINGS_SIGNATURE = "embeddings"


class ExportModel(FinalModel):
    """FinalModel whose input is a batch of encoded image files; adds the caption strings.

    Args: as FinalModel; ``encoder`` is required (a ``capstone.encoders.FrozenEncoder``).
    """

    def __init__(self, run, checkpoint=None, encoder=None):
        if encoder is None:
            raise CapstoneError(f"{run.path}: exporting needs the run's image encoder (config.json names none)")
        super().__init__(run, checkpoint=checkpoint, encoder=encoder)
        with unfinalized(self.graph):
            self.build_caption_strings()
            # The SavedModel builder's own Saver: variables by name, no device pins.
            self.export_saver = v1.train.Saver(v1.global_variables(), sharded=True, allow_empty=True)

    def build_inputs(self):
        """Inputs: none.
        Outputs: image_bytes [B] string (JPEG/PNG files); input_images [B, S, S, 3] pixels 0..255
          decoded from them; img_embeds [B, IMG_EMBED], the frozen encoder's output unless fed
          (a placeholder with that default: feed it to caption precomputed embeddings).
        """
        depth = self.model_config.img_embed_size
        if self.encoder.embed_size != depth:
            raise CapstoneError(
                f"encoder {self.encoder.name} gives {self.encoder.embed_size}-d embeddings but the decoder in "
                f"{self.run.path} was trained on {depth}-d ones")
        from capstone.encoders import import_encoder
        self.image_bytes = v1.placeholder(tf.string, [None], name="image_bytes")
        self.input_images = batch_pixels_for_model(self.image_bytes, self.encoder.image_size)  # [B, S, S, 3]
        # [B, IMG_EMBED], or the attention decoder's feature grid [B, G, G, IMG_EMBED]
        encoded = import_encoder(self.encoder, self.input_images, spatial=self.attends)
        shape = [None, None, None, depth] if self.attends else [None, depth]
        self.img_embeds = v1.placeholder_with_default(encoded, shape, name="img_embeds")

    def build_caption_strings(self):
        """Inputs: greedy_tokens, beam_tokens.
        Outputs: greedy_caption [B] string; beam_captions [B, K] string; beam_scores [B, K] float64.
        """
        words = [self.inverse_vocab[i] for i in range(len(self.inverse_vocab))]
        tokens, lengths = self.greedy_tokens
        self.greedy_caption = caption_strings(tokens, lengths, words, name="greedy_caption")
        tokens, lengths, scores = self.beam_tokens
        self.beam_captions = caption_strings(tokens, lengths, words, name="beam_captions")
        self.beam_scores = tf.identity(scores, name="beam_scores")

    def signatures(self):
        """{name: SignatureDef} of the SavedModel."""
        predict = v1.saved_model.signature_def_utils.predict_signature_def
        return {
            v1.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: predict(
                {"image_bytes": self.image_bytes}, {"caption": self.greedy_caption}),
            BEAM_SIGNATURE: predict(
                {"image_bytes": self.image_bytes}, {"captions": self.beam_captions, "scores": self.beam_scores}),
            EMBEDDINGS_SIGNATURE: predict(
                {"img_embeds": self.img_embeds},
                {"caption": self.greedy_caption, "beam_captions": self.beam_captions,
                 "beam_scores": self.beam_scores}),
        }


def caption_strings(tokens, lengths, words, name="captions"):
    """Token ids -> caption text in the graph, as ``capstone.captions.indices_to_caption``.

    tokens [..., T] int32 (ids; -1 past the end is fine), lengths [...] int32; words: the vocabulary
    in index order. Keeps tokens[..., :length] up to the first #END#, drops special tokens, joins
    with spaces: [[7, 4, 2(#END#)]] with words[7] = "a", words[4] = "dog" -> ["a dog"].
    """
    vocab = tf.constant(words, tf.string)                                          # [vocab]
    special = tf.constant([word in SPECIAL_TOKENS for word in words])              # [vocab] bool
    end_idx = words.index(END)
    within = tf.range(tf.shape(tokens)[-1]) < lengths[..., None]                   # [..., T]
    ids = tf.where(within, tokens, end_idx)
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, end_idx), tf.int32), axis=-1), 0)
    keep = tf.logical_and(before_end, tf.logical_not(tf.gather(special, ids)))
    steps = tf.shape(ids)[-1]
    flat_words = tf.reshape(tf.gather(vocab, ids), [-1, steps])                     # [N, T]
    kept = tf.ragged.boolean_mask(flat_words, tf.reshape(keep, [-1, steps]))         # [N, (words)]
    joined = tf.strings.reduce_join(kept, axis=-1, separator=" ")                    # [N]
    return tf.reshape(joined, tf.shape(ids)[:-1], name=name)                         # [...], dense


def load_export_model(run_dir, encoder=None, checkpoint=None):
    """ExportModel of a run: its best checkpoint, its encoder by name unless one is given."""
    run = runs.load_run(run_dir)
    checkpoint = checkpoint or runs.best_checkpoint(run_dir)  # "no checkpoint" is an error before any work
    if encoder is None:
        if not run.encoder:
            raise CapstoneError(f"{os.path.join(run_dir, runs.CONFIG)}: names no image encoder, so there is "
                                f"nothing to turn image bytes into embeddings; train on 'embed' output")
        from capstone.encoders import frozen_encoder
        encoder = frozen_encoder(run.encoder)
    return ExportModel(run, checkpoint=checkpoint, encoder=encoder)


def write_saved_model(model, path):
    """The model's graph and restored variables as a SavedModel at ``path`` (must not exist)."""
    with unfinalized(model.graph):  # the v1 builder works in graph mode and touches collections
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(model.session, [TAG], signature_def_map=model.signatures(),
                                             saver=model.export_saver, clear_devices=True,
                                             strip_default_attrs=True)
        builder.save()


def check_out_dir(out, force):
    """Refuse an existing output folder unless ``force``."""
    if os.path.lexists(out) and not force:
        raise CapstoneError(f"{out}: already exists; choose another --out or pass --force to replace it")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise CapstoneError(f"{out}: exists and is not a folder; refusing to replace it")


@contextlib.contextmanager
def staged_dir(out, force):
    """Yield a fresh folder beside ``out``; on success it becomes ``out`` (the old one, with
    ``force``, is removed only then); on failure it is removed and ``out`` is untouched."""
    check_out_dir(out, force)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(out)) + ".", suffix=".tmp", dir=parent)
    staged = os.path.join(work, "export")
    try:
        yield staged
        check_out_dir(out, force)  # someone may have made it meanwhile
        old = None
        if os.path.lexists(out):
            old = os.path.join(work, "old")
            os.rename(out, old)
        os.rename(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export(run_dir, out, force=False, also=None, encoder=None, checkpoint=None, log=lambda text: None):
    """Write the SavedModel of a run to ``out``; ``also(model, checkpoint, staged_dir)`` may add files
    (the TFLite models) before the folder is renamed into place.

    Returns the list of files written, relative to ``out``.
    """
    check_out_dir(out, force)
    model = load_export_model(run_dir, encoder=encoder, checkpoint=checkpoint)
    try:
        with staged_dir(out, force) as staged:
            log(f"writing SavedModel ({model.encoder.name}, vocabulary {len(model.vocab)}) ...")
            write_saved_model(model, staged)
            if also is not None:
                also(model, checkpoint or runs.best_checkpoint(run_dir), staged)
            written = sorted(os.path.relpath(os.path.join(root, name), staged)
                             for root, _, names in os.walk(staged) for name in names)
    finally:
        model.close()
    return written
