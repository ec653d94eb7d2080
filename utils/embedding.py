"""``apply_model``: every image of a zip or folder -> one CNN embedding per image.

Worker threads read, decode and crop images (cv2 releases the GIL while it works)
while the main thread runs the model on batches of 32:

    worker threads: read bytes -> decode_image_from_buf -> crop_and_preprocess -> results
    main thread:    results, put back in sorted order -> batch [32, H, W, 3] -> model -> [32, D]
"""

import os
import queue
import threading
import warnings
import zipfile
import zlib

import cv2
import numpy as np
import tqdm

from capstone.errors import CapstoneError
from utils.image_files import MAX_IMAGE_BYTES, ImageFiles
from utils.images import MAX_PIXELS, _check_input_shape, crop_and_preprocess, decode_image_from_buf

# How many bad files one warning names before it says "and N more".
_MAX_NAMED_SKIPS = 20
# How often (seconds) a waiting thread checks whether it was told to stop.
_POLL_SECONDS = 0.1


def apply_model(zip_or_folder, model, preprocess_for_model, extensions=(".jpg",),
                input_shape=(224, 224), batch_size=32, num_threads=None, show_progress=True,
                max_image_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_PIXELS):
    """Embed every image of a zip archive or folder with a CNN.

    zip_or_folder:        e.g. "train2014_sample.zip" or "flickr8k-dev/images".
    model:                a Keras model, or any function batch [B, H, W, 3] float32 -> [B, D].
    preprocess_for_model: the encoder's normalization, applied to each cropped image.
    extensions:           which files are images, matched case-insensitively.
    input_shape:          (height, width) of the model's input, e.g. (224, 224).
    batch_size:           images per model call.
    num_threads:          decoding threads; None picks one fewer than the CPU cores (at least 1).
    show_progress:        show a tqdm progress bar over the images.
    max_image_bytes:      a file (or zip entry, by its header) larger than this is skipped unread.
    max_pixels:           an image whose header claims more pixels than this is skipped undecoded.
    Returns (img_embeds, img_fns): float32 array [N, D] and the N file names, sorted by name
    (zip: the name without folders, as in the course; folder: the path relative to it).

    Files that are not decodable images (empty, truncated, text, over the limits above) are
    skipped and named in one warning. Raises CapstoneError when the path does not exist or holds no decodable image.
    """
    image_files = ImageFiles(zip_or_folder, extensions)
    if not image_files.files:
        raise CapstoneError(
            f"{image_files.path}: no files ending in {' or '.join(image_files.extensions)}"
        )
    height, width = _check_input_shape(input_shape)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CapstoneError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if num_threads is None:
        num_threads = default_num_threads()
    elif not isinstance(num_threads, int) or num_threads < 1:
        raise CapstoneError(f"num_threads: expected a positive integer or None, got {num_threads!r}")
    run_model = _batch_function(model)

    def decode(buf, name):
        return decode_image_from_buf(buf, name=name, max_pixels=max_pixels)

    def prepare(img):
        return crop_and_preprocess(img, (height, width), preprocess_for_model)

    num_files = len(image_files.files)
    img_embeds = None    # float32 [num_files, D], allocated once D is known; rows of skipped
                         # files stay unused, so the result never needs a second full-size copy
    img_fns = []
    batch_imgs = []      # up to batch_size arrays [H, W, 3]
    skipped = []         # "name: why" for each file that did not decode

    def process_batch():
        nonlocal img_embeds
        batch = np.stack(batch_imgs)                  # [B, H, W, 3]
        embed_size = None if img_embeds is None else img_embeds.shape[1]
        embeds = _embeddings(run_model(batch), len(batch_imgs), embed_size)  # [B, D]
        if img_embeds is None:
            img_embeds = np.empty((num_files, embeds.shape[1]), dtype=np.float32)
        done = len(img_fns) - len(batch_imgs)         # rows already filled
        img_embeds[done:done + len(batch_imgs)] = embeds
        batch_imgs.clear()

    # Enough decoded images in flight to fill the next batch while the model runs.
    max_in_flight = 2 * batch_size + num_threads
    with _DecodeWorkers(image_files, decode, prepare, num_threads, max_in_flight, max_image_bytes) as workers, \
            tqdm.tqdm(total=num_files, unit="img", disable=not show_progress,
                      desc=os.path.basename(os.path.normpath(image_files.path))) as progress:
        for image_file, img, problem in workers.in_order():
            progress.update(1)
            if problem is not None:
                skipped.append(problem)
                continue
            img_fns.append(image_file.name)
            batch_imgs.append(img)
            if len(batch_imgs) == batch_size:
                process_batch()
        if batch_imgs:
            process_batch()

    if skipped:
        warnings.warn(_skipped_message(image_files.path, skipped, num_files),
                      stacklevel=2)
    if not img_fns:
        raise CapstoneError(
            f"{image_files.path}: none of the {len(skipped)} image files could be decoded"
        )
    return img_embeds[:len(img_fns)], img_fns


def default_num_threads():
    """Decoding threads: leave one core to the model, since decoding a photo costs
    far less than running the CNN on it (1 thread on a 2-core machine, at most 8)."""
    from capstone.support.tf_session import usable_cores  # the cores this process may use

    return max(1, min(8, usable_cores() - 1))


def _batch_function(model):
    """A function batch [B, H, W, 3] -> embeddings [B, D] for a Keras model or a callable."""
    if hasattr(model, "predict_on_batch"):
        # Keras: runs the compiled predict step with no per-call progress bar or data pipeline.
        return model.predict_on_batch
    if hasattr(model, "predict"):
        return lambda batch: model.predict(batch, verbose=0)
    if callable(model):
        return model
    raise CapstoneError(
        f"model: expected a Keras model or a function batch -> embeddings, got {type(model).__name__}"
    )


def _embeddings(output, batch_len, embed_size=None):
    """The model's output as float32 [batch_len, D], or a CapstoneError saying its shape.

    embed_size: D of the earlier batches (None for the first), which every batch must keep.
    """
    embeds = np.asarray(output, dtype=np.float32)
    width = "D" if embed_size is None else embed_size
    if embeds.ndim != 2 or embeds.shape[0] != batch_len or embed_size not in (None, embeds.shape[1]):
        raise CapstoneError(
            f"model: expected embeddings of shape [{batch_len}, {width}] for a batch of {batch_len} "
            f"images, got {list(embeds.shape)} (does the encoder end with pooling?)"
        )
    return embeds


def _skipped_message(path, skipped, total):
    named = "; ".join(skipped[:_MAX_NAMED_SKIPS])
    more = len(skipped) - _MAX_NAMED_SKIPS
    if more > 0:
        named += f"; and {more} more"
    return f"{path}: skipped {len(skipped)} of {total} image files that could not be used: {named}"


# Errors that mean "this one file cannot be read or decoded", not "the program is wrong".
_READ_ERRORS = (CapstoneError, OSError, zipfile.BadZipFile, zlib.error, cv2.error, MemoryError,
                NotImplementedError, RuntimeError)  # last two: unsupported/encrypted zip members
# Marks a result that carries a worker's unexpected exception instead of an image.
_WORKER_FAILED = -1


class _DecodeWorkers:
    """Threads that read, decode and prepare ``image_files.files``, handed back in order.

    Workers take files in sorted order and at most ``max_in_flight`` prepared images
    wait for the main thread, which bounds memory and keeps the image the main thread
    needs next always in progress. Leaving the ``with`` block stops and joins the threads.
    """

    def __init__(self, image_files, decode, prepare, num_threads, max_in_flight, max_bytes):
        self._image_files = image_files
        self._decode = decode      # (bytes, name) -> uint8 [H, W, 3]
        self._prepare = prepare
        self._max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._next_index = 0
        self._index_lock = threading.Lock()
        self._results = queue.Queue()   # (index, img or None, problem or None)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"decode-{i}", daemon=True)
            for i in range(num_threads)
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def in_order(self):
        """Yields (image_file, img float32 [H, W, 3] or None, problem str or None) by index."""
        waiting = {}   # index -> (img, problem), finished out of order
        for index, image_file in enumerate(self._image_files.files):
            while index not in waiting:
                done_index, img, problem = self._next_result()
                waiting[done_index] = (img, problem)
            img, problem = waiting.pop(index)
            self._slots.release()   # this image left the pipeline; a worker may take another
            yield image_file, img, problem

    def _next_result(self):
        while True:
            try:
                result = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if any(thread.is_alive() for thread in self._threads):
                    continue
                try:  # all workers ended: whatever they put is already in the queue
                    result = self._results.get_nowait()
                except queue.Empty:
                    raise RuntimeError("apply_model: decode threads ended early") from None
            if result[0] == _WORKER_FAILED:
                raise result[1]   # a worker's unexpected error, re-raised here
            return result

    def _take_index(self):
        """The next file index to decode, or None when all are taken."""
        with self._index_lock:
            index = self._next_index
            if index >= len(self._image_files.files):
                return None
            self._next_index += 1
            return index

    def _work(self):
        reader = None
        try:
            reader = self._image_files.open_reader(self._max_bytes)
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=_POLL_SECONDS):
                    continue
                index = self._take_index()
                if index is None:
                    self._slots.release()
                    return
                image_file = self._image_files.files[index]
                label = image_file.location if self._image_files.is_zip else image_file.name
                try:
                    img = self._decode(reader.read(image_file), label)
                except _READ_ERRORS as error:
                    problem = str(error) if isinstance(error, CapstoneError) else f"{label}: {error}"
                    self._results.put((index, None, problem))
                    continue
                self._results.put((index, self._prepare(img), None))
        except BaseException as error:  # e.g. preprocess_for_model failed: the caller must see it
            self._results.put((_WORKER_FAILED, error, None))
        finally:
            if reader is not None:
                reader.close()
