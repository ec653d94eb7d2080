"""Find photos by words: every image of a folder is captioned once, captions are indexed with TF-IDF.

    index = load_or_build("photos/", caption_file, model_id)   # captions photos/*.jpg, or reloads them
    index.search("a dog on the grass")  # [SearchHit("dog1.jpg", 1.0, "a dog on grass", ("dog", "grass")), ...]

Only content words count: "a", "on", "the", "with", ... (``STOP_WORDS``) are dropped from captions
and queries alike, so "dog on grass" never finds a photo because its caption says "on". The
score is what a person reads it as: the fraction of the query's content words that the image's
captions contain (1.0: all of them; "dog on grass" -> dog, grass; a caption with "dog" only: 0.5).
Images with the same fraction are ordered by TF-IDF cosine similarity (term frequency x inverse
document frequency: a word's count times ``idf = ln((1 + N) / (1 + df)) + 1``, N images, df of
them use the word; rows scaled to length 1), so rarer words and shorter captions come first.
That is ~30 lines of numpy, the formula of scikit-learn's TfidfVectorizer defaults, without
adding scikit-learn (and SciPy) to the product. A query none of whose words any caption has
finds nothing, and ``no_match_message`` says why.

The captions are saved to ``IMAGE_DIR/.capstone_index.json`` (or ``index_path``), written
atomically, and reused on the next start for every file whose size and modification time are
unchanged, as long as ``model_id`` (which run, checkpoint and caption settings) is the same.
"""

import collections
import dataclasses
import json
import os

import numpy as np

from capstone.support.atomic import write_json
from capstone.captions import split_sentence
from capstone.errors import CapstoneError
from utils.image_files import ImageFiles

INDEX_FILE = ".capstone_index.json"
INDEX_FORMAT = 1  # bump when the file's layout changes: older files are then rebuilt
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Words that say nothing about what is in a picture: never a reason for a match.
STOP_WORDS = frozenset("""
    a an the and or but of on in at to into onto with without by for from up as than
    is are was were be been being has have had it its this that these those there here
    his her their them they he she while who which what very some
""".split())


def content_words(text):
    """split_sentence without the stop words: "A dog on the grass." -> ["dog", "grass"]"""
    return [token for token in split_sentence(text) if token not in STOP_WORDS]


class TfidfVectors:
    """Documents (lists of tokens) -> unit-length TF-IDF rows; a dot product is then a cosine.

    documents: e.g. [["a", "dog", "runs"], ["a", "cat"]].
    After construction: vocabulary {token: column}, idf [V], doc_vectors [N, V] float32.
    """

    def __init__(self, documents):
        self.vocabulary = {token: column for column, token in enumerate(sorted({t for d in documents for t in d}))}
        counts = self.term_counts(documents)                        # [N, V]
        document_frequency = (counts > 0).sum(axis=0)               # [V]: in how many documents each word is
        self.idf = np.log((1 + len(documents)) / (1 + document_frequency)) + 1.0  # [V]
        self.doc_vectors = self._unit_rows(counts * self.idf)       # [N, V]

    def term_counts(self, documents):
        """[len(documents), V] counts of known tokens; unknown tokens are ignored."""
        counts = np.zeros((len(documents), len(self.vocabulary)), dtype=np.float32)
        for row, tokens in enumerate(documents):
            for token, count in collections.Counter(tokens).items():
                if token in self.vocabulary:
                    counts[row, self.vocabulary[token]] = count
        return counts

    @staticmethod
    def _unit_rows(matrix):
        lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(lengths, 1e-12)).astype(np.float32)  # an all-zero row stays zero

    def scores(self, query_tokens):
        """Cosine similarity of the query with every document, [N]; all 0 for unknown words."""
        query = self._unit_rows(self.term_counts([query_tokens]) * self.idf)[0]  # [V]
        return self.doc_vectors @ query


@dataclasses.dataclass(frozen=True)
class SearchHit:
    name: str  # image file name relative to the folder, "/"-separated
    score: float  # fraction of the query's content words its captions contain, 0 < score <= 1
    caption: str  # the image's greedy caption
    matched: tuple = ()  # the query's content words found in its captions, in query order


@dataclasses.dataclass(frozen=True)
class IndexedImage:
    name: str  # relative to the folder, "/"-separated; the only names /images/ serves
    path: str  # absolute path of the file
    size: int  # bytes; with mtime_ns, tells whether the file changed since it was captioned
    mtime_ns: int
    captions: tuple  # greedy caption first, then the other captions that describe it (beam search)


class SearchIndex:
    """Captioned images of one folder, searchable by words. Read-only once built (thread-safe)."""

    def __init__(self, image_dir, images, skipped=()):
        self.image_dir = os.path.realpath(image_dir)
        self.images = list(images)
        self.skipped = list(skipped)  # [{"name", "size", "mtime_ns", "reason"}]: files that are not images
        self._by_name = {image.name: image for image in self.images}
        documents = [[t for caption in image.captions for t in content_words(caption)] for image in self.images]
        self.tfidf = TfidfVectors(documents)

    def __len__(self):
        return len(self.images)

    @staticmethod
    def _query_words(query):
        """The distinct content words of a text, or of several captions (search by image), in order."""
        texts = [query] if isinstance(query, str) else list(query)
        return list(dict.fromkeys(token for text in texts for token in content_words(text)))

    def search(self, query, top_k=10):
        """Best matches for ``query`` (a text, or several captions of an image), best first.

        Only images whose captions contain at least one of the query's content words are returned;
        ranked by that fraction (the score), then by TF-IDF cosine; ties keep name order.
        """
        words = self._query_words(query)
        if not self.images or not words:
            return []
        known = [w for w in words if w in self.tfidf.vocabulary]
        present = self.tfidf.doc_vectors[:, [self.tfidf.vocabulary[w] for w in known]] > 0  # [N, known words]
        fraction = present.sum(axis=1) / len(words)                                          # [N]
        cosine = self.tfidf.scores(words)                                                    # [N]
        order = np.lexsort((-cosine, -fraction))[:top_k]  # by fraction, then cosine; stable
        return [SearchHit(self.images[i].name, float(fraction[i]), self.images[i].captions[0],
                          tuple(w for w, found in zip(known, present[i]) if found))
                for i in order if fraction[i] > 0]

    def no_match_message(self, query):
        """Why ``search(query)`` found nothing, in one sentence for the page and the JSON answer."""
        texts = [query] if isinstance(query, str) else list(query)
        typed = list(dict.fromkeys(t for text in texts for t in split_sentence(text)))
        words = self._query_words(query)
        if not typed:
            return "no match: type some words, e.g. 'dog grass'"
        if not words:
            return (f"no match: {', '.join(repr(w) for w in typed[:5])} {'is' if len(typed) == 1 else 'are'} "
                    f"too common to search by; "
                    f"use words that say what is in the picture, e.g. 'dog grass'")
        return f"no match: no caption of the {len(self)} images has {' or '.join(repr(w) for w in words[:5])}"

    def path_of(self, name):
        """Absolute path of an indexed image, or None for any other name (no path from a visitor
        is ever joined to the folder: it is only looked up among the names we indexed)."""
        image = self._by_name.get(name)
        if image is None or not _inside(image.path, self.image_dir):  # a symlink changed since indexing
            return None
        return image.path

    def to_json(self, model_id):
        return {
            "format": INDEX_FORMAT,
            "model": model_id,
            "images": [{"name": i.name, "size": i.size, "mtime_ns": i.mtime_ns, "captions": list(i.captions)}
                       for i in self.images],
            "skipped": self.skipped,
        }


def _inside(path, folder):
    return os.path.realpath(path).startswith(folder.rstrip(os.sep) + os.sep)


def _read_saved(index_path, model_id, log):
    """{name: (size, mtime_ns, captions or None if skipped, reason)} from a saved index, or {}
    when there is none, it is unreadable, or it was made by another model (then all is redone)."""
    try:
        with open(index_path, encoding="utf-8") as f:
            saved = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log(f"{index_path}: unreadable ({error}); rebuilding the index")
        return {}
    if not isinstance(saved, dict) or saved.get("format") != INDEX_FORMAT or saved.get("model") != model_id:
        log(f"{index_path}: made by another model or version; rebuilding the index")
        return {}
    known = {}
    try:
        for entry in saved["images"]:
            known[entry["name"]] = (entry["size"], entry["mtime_ns"], tuple(str(c) for c in entry["captions"]), None)
        for entry in saved["skipped"]:
            known[entry["name"]] = (entry["size"], entry["mtime_ns"], None, entry["reason"])
    except (KeyError, TypeError):
        log(f"{index_path}: unexpected layout; rebuilding the index")
        return {}
    return known


def load_or_build(image_dir, caption_file, model_id, index_path=None, log=print):
    """The SearchIndex of ``image_dir``, reusing saved captions of unchanged files.

    caption_file: path -> list of captions (greedy first); raises CapstoneError for a file that
      is not an image (it is skipped, remembered, and not retried until it changes).
    model_id: a string naming the model and caption settings; a saved index with another is redone.
    index_path: where the captions are saved (default IMAGE_DIR/.capstone_index.json).
    """
    if not os.path.isdir(image_dir):
        raise CapstoneError(f"{image_dir}: image folder does not exist")
    image_dir = os.path.realpath(image_dir)
    index_path = index_path or os.path.join(image_dir, INDEX_FILE)
    known = _read_saved(index_path, model_id, log)
    images, skipped, captioned = [], [], 0
    for image_file in ImageFiles(image_dir, IMAGE_EXTENSIONS).files:
        path = os.path.abspath(image_file.location)
        if not _inside(path, image_dir):
            log(f"{image_file.name}: links outside {image_dir}; not indexed")
            continue
        stat = os.stat(path)
        previous = known.get(image_file.name)
        if previous is not None and previous[:2] == (stat.st_size, stat.st_mtime_ns):
            captions, reason = previous[2], previous[3]
        else:
            try:
                captions, reason = tuple(caption_file(path)), None
            except CapstoneError as error:
                captions, reason = None, str(error)
                log(f"{image_file.name}: skipped ({error})")
            captioned += 1
            if captioned % 100 == 0:
                log(f"index: captioned {captioned} images")
        if captions is None:
            skipped.append({"name": image_file.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                            "reason": reason})
        else:
            images.append(IndexedImage(image_file.name, path, stat.st_size, stat.st_mtime_ns, captions))
    index = SearchIndex(image_dir, images, skipped)
    if captioned or len(known) != len(images) + len(skipped) or not os.path.exists(index_path):
        try:
            write_json(index_path, index.to_json(model_id))
        except OSError as error:  # a read-only photo folder: still serve, just caption again next time
            log(f"{index_path}: cannot save the index ({error.strerror}); use --index-file to put it elsewhere")
    log(f"index: {len(images)} images ({len(images) + len(skipped) - captioned} reused, {captioned} captioned, "
        f"{len(skipped)} skipped)")
    return index
