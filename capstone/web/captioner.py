"""What the service does with an image, free of HTTP: check it, caption it, describe it.

``Captioner`` wraps one FinalModel loaded with its image encoder; every method may be called
from many threads at once (nothing changes after loading; a Session runs concurrent calls safely).
"""

import contextlib
import glob
import hashlib
import json
import os
import threading

import cv2

import numpy as np

from capstone.config import NO_REPEAT_NGRAM
from capstone.encoders.images import image_for_model
from capstone.errors import CapstoneError
from capstone.support import run_dir as runs
from utils.images import check_image_pixels

MEGABYTE = 2 ** 20
DEFAULT_MAX_UPLOAD_BYTES = 10 * MEGABYTE  # an upload or a fetched image larger than this is refused (413)
# A small file can claim a huge picture ("decompression bomb"): a 105 KB PNG of 6000 x 6000 took 6 s and
# ~190 MB to decode. 24 megapixels lets a 6000 x 4000 photo in; the model sees 224 x 224 of it anyway.
DEFAULT_MAX_PIXELS = 24_000_000
DEFAULT_MAX_IN_FLIGHT = 4   # images decoded and captioned at once; more wait for a slot
DEFAULT_QUEUE_SECONDS = 5.0  # how long a request waits for a slot before its answer is 503
HEADER_BYTES = 256 * 1024   # enough of a file for Pillow to read its size (JPEG: past EXIF, to the frame header)


class TooManyPixels(CapstoneError):
    """The image's header claims more pixels than the limit (400)."""


class Busy(CapstoneError):
    """Every slot is taken and stayed taken: 503 with Retry-After."""
    status = 503
    retry_after = 2
MAX_QUERY_CHARS = 500
MAX_RESULTS = 100


def check_image_header(buf, name, max_pixels):
    """Refuse bytes that are not an image, or whose header claims more than ``max_pixels``,
    before anything allocates the decoded picture (``utils.check_image_pixels`` reads the header)."""
    try:
        size = check_image_pixels(buf, name, max_pixels)
    except CapstoneError as error:
        raise TooManyPixels(str(error)) from None
    if size is None:
        raise CapstoneError(f"{name}: not an image (expected a JPEG, PNG, BMP or WebP file)")


class Captioner:
    """One FinalModel with its image encoder, as the service uses it.

    model: a ``capstone.final_model.FinalModel`` loaded with an encoder (raw pixels in).
    Every method may be called from many threads at once: nothing here or in the model changes
    after loading, and a TensorFlow Session runs concurrent ``run`` calls safely.
    """

    def __init__(self, model, beam_size=3, max_len=20, top_words=5, max_pixels=DEFAULT_MAX_PIXELS,
                 max_in_flight=DEFAULT_MAX_IN_FLIGHT, queue_seconds=DEFAULT_QUEUE_SECONDS,
                 no_repeat_ngram=NO_REPEAT_NGRAM):
        if model.input_images is None:
            raise CapstoneError("the caption service needs the model's image encoder: load it with with_encoder=True")
        self.model = model
        self.beam_size = beam_size
        self.max_len = max_len
        self.no_repeat_ngram = no_repeat_ngram  # no n-gram of this many words twice in a caption (0: off)
        self.top_words = top_words
        self.max_pixels = max_pixels
        self.queue_seconds = queue_seconds
        self.slots = threading.BoundedSemaphore(max_in_flight)

    @contextlib.contextmanager
    def slot(self):
        """Hold one of ``max_in_flight`` slots (decoding + captioning), or raise Busy after ``queue_seconds``."""
        if not self.slots.acquire(timeout=self.queue_seconds):
            raise Busy(f"busy: every slot is taken; retry in {Busy.retry_after} s")
        try:
            yield
        finally:
            self.slots.release()

    @property
    def image_size(self):
        return self.model.encoder.image_size

    def pixels(self, buf, name="image"):
        """Bytes of an image file -> [S, S, 3] float32 pixels: its centre square, resized."""
        check_image_header(buf, name, self.max_pixels)
        try:
            return image_for_model(buf, self.image_size, name=name)
        except cv2.error as error:  # e.g. a header that lies about the data; never a 500
            first_line = str(error).strip().splitlines()[-1][:200] if str(error).strip() else "cv2.error"
            raise CapstoneError(f"{name}: not a decodable image ({first_line})") from None

    def embed(self, pixels):
        """[S, S, 3] pixels -> [1, IMG_EMBED]: the CNN runs once, then the decoder is fed the
        embedding for the greedy caption, the beam search and the first-word probabilities."""
        return self.model.session.run(self.model.img_embeds, {self.model.input_images: pixels[None]})

    def describe(self, pixels):
        """-> {"caption", "beam_captions": [{"caption", "score"}], "next_words": [{"word", "probability"}]},
        and for an attention model "attention": [{"word", "weights": G x G}] (where each word looked)."""
        embedding = self.embed(pixels)
        caption = self.model.captions(embeddings=embedding, max_len=self.max_len,
                                      no_repeat_ngram=self.no_repeat_ngram)[0]
        beams = self.model.beam_captions(embeddings=embedding, beam_size=self.beam_size, max_len=self.max_len,
                                         no_repeat_ngram=self.no_repeat_ngram)[0]
        result = {
            "caption": caption,
            "beam_captions": [{"caption": text, "score": float(score)} for text, score in beams],
            "next_words": self.first_words(embedding),
        }
        if self.model.attends:
            maps = self.model.attention_maps(embeddings=embedding, max_len=self.max_len,
                                             no_repeat_ngram=self.no_repeat_ngram)[0]
            result["attention"] = [{"word": word, "weights": np.round(weights, 4).tolist()} for word, weights in maps]
        return result

    def first_words(self, embedding):
        """The ``top_words`` most likely first words after START, with their probabilities."""
        probs = self.model.first_word_probabilities(embeddings=embedding)[0].astype(np.float64)  # [vocab]
        probs[self.model.banned_tokens] = 0.0  # PAD and START are never predicted
        best = np.argsort(-probs, kind="stable")[:self.top_words]
        return [{"word": self.model.inverse_vocab[int(i)], "probability": float(probs[i])} for i in best]

    def captions_for_file(self, path):
        """An image file -> its captions for the search index: greedy first, then the beams."""
        with open(path, "rb") as f:
            buf = f.read()
        return all_captions(self.describe(self.pixels(buf, name=os.path.basename(path))))


def all_captions(result):
    """The greedy caption, then the beam captions that differ from it: what an image is searched
    by (in the index), or searched with (search by image)."""
    return list(dict.fromkeys([result["caption"]] + [beam["caption"] for beam in result["beam_captions"]]))


def model_id(run_path, **settings):
    """A short hash of what the captions depend on: config, vocabulary, checkpoint files, settings.

    A saved search index made with another id is captioned again.
    """
    digest = hashlib.sha256()
    for name in (runs.CONFIG, runs.VOCAB):
        with open(os.path.join(run_path, name), "rb") as f:
            digest.update(f.read())
    checkpoint = runs.best_checkpoint(run_path)
    for path in sorted(glob.glob(glob.escape(checkpoint) + ".*")):
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


