"""The split JSON most papers use (Karpathy's ``dataset_flickr8k.json``, ``dataset_flickr30k.json``,
``dataset_coco.json``): captions and the train/val/test split in one file::

    {"images": [{"filename": "x.jpg", "filepath": "val2014", "split": "restval",
                 "sentences": [{"raw": "A dog runs.", "tokens": ["a", "dog", "runs"]}, ...]}, ...],
     "dataset": "coco"}
    -> captions {"x.jpg": ["A dog runs."]},  split {"train": ["x.jpg"], "val": [], "test": []}

Images are named by ``filename`` (``filepath`` is not needed: captions are also found by base name).
Errors name the file and the entry: ``dataset_coco.json: images[3] ('x.jpg'): ...``.
"""

import collections

from capstone.errors import CapstoneError

# The file's split -> ours. "restval" is COCO's val2014 images outside Karpathy's 5,000 val and
# 5,000 test images; papers train on them ("train + restval" = 113,287 images), and so do we.
SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def is_split_json(data):
    """A split JSON has 'images' whose entries carry 'sentences' (a COCO file has 'annotations')."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or "annotations" in data:
        return False
    first = data["images"][0] if data["images"] else None
    return "dataset" in data or (isinstance(first, dict) and "sentences" in first)


def _entries(data, path):
    """(where, filename, entry) for each image, checked for a file name."""
    for number, entry in enumerate(data["images"]):
        fn = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(fn, str) or not fn.strip():
            raise CapstoneError(f"{path}: images[{number}] has no 'filename'")
        yield f"{path}: images[{number}] ('{fn.strip()}')", fn.strip(), entry


def split_json_captions(data, path):
    """{filename: [raw sentence, ...]}; a sentence without 'raw' is its 'tokens' joined by spaces."""
    fn_to_captions = collections.OrderedDict()
    for where, fn, entry in _entries(data, path):
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise CapstoneError(f"{where}: no 'sentences' (expected [{{'raw': ..., 'tokens': [...]}}, ...])")
        captions = fn_to_captions.setdefault(fn, [])
        for number, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            if raw is None and isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
                raw = " ".join(map(str, sentence["tokens"]))
            if not isinstance(raw, str) or not raw.strip():
                raise CapstoneError(f"{where}: sentences[{number}] has no 'raw' text or 'tokens'")
            captions.append(raw.strip())
    if not fn_to_captions:
        raise CapstoneError(f"{path}: 'images' is empty")
    return fn_to_captions


def split_json_lists(data, path):
    """{"train": [...], "val": [...], "test": [...]} as the file gives it; "restval" goes into train.

    Every image needs a 'split' (a split JSON without one is an error: the split is its point).
    """
    lists, seen = {"train": [], "val": [], "test": []}, {}
    for where, fn, entry in _entries(data, path):
        split = entry.get("split")
        if split is None:
            raise CapstoneError(f"{where}: no 'split' field (expected one of {sorted(SPLITS)})")
        if split not in SPLITS:
            raise CapstoneError(f"{where}: split {split!r} is not one of {sorted(SPLITS)}")
        if fn in seen and seen[fn] != SPLITS[split]:
            raise CapstoneError(f"{where}: in split {SPLITS[split]!r}, but an earlier entry puts it in {seen[fn]!r}")
        if fn not in seen:
            seen[fn] = SPLITS[split]
            lists[SPLITS[split]].append(fn)
    return lists
