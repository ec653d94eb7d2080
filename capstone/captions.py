"""Captions: tokens, vocabulary, indexing, padding, and the loaders that read them.

Course order: ``split_sentence`` -> ``generate_vocabulary`` -> ``caption_tokens_to_indices``
-> ``batch_captions_to_matrix``. The loaders turn any of the supported caption files into
one mapping ``{image file name: [caption, ...]}``:

* a COCO captions zip, e.g. ``captions_train-val2014.zip`` (every ``captions_*.json`` inside),
  or ``captions_train-val2014.zip:annotations/captions_train2014.json`` for one member;
* a COCO-format JSON file (``{"images": [...], "annotations": [...]}``);
* a CSV file with the header ``image,caption`` (the Flickr8k layout).
"""

import collections
import csv
import json
import os
import re
import zipfile

import numpy as np

from capstone.errors import CapstoneError

# special tokens
PAD = "#PAD#"
UNK = "#UNK#"
START = "#START#"
END = "#END#"
SPECIAL_TOKENS = (PAD, UNK, START, END)


def split_sentence(sentence):
    """Lower-cased word tokens; punctuation splits words and is dropped.

    "A man, riding a horse." -> ["a", "man", "riding", "a", "horse"]
    """
    return [token for token in re.split(r"\W+", sentence.lower()) if token]


def generate_vocabulary(train_captions, min_count=5):
    """Map each frequent token and the 4 special tokens to an index.

    train_captions: one list of caption strings per image, e.g. [["a cat", "the cat"], ...].
    A token is kept when it occurs at least ``min_count`` times over all captions of all
    images. Indices are 0..N-1 in sorted token order, as the course does, so the same
    captions always give the same vocabulary.
    """
    counts = collections.Counter(
        token
        for image_captions in train_captions
        for caption in image_captions
        for token in split_sentence(caption)
    )
    frequent = [token for token, count in counts.items() if count >= min_count]
    if not frequent:
        raise CapstoneError(
            f"vocabulary: no token occurs at least min_count={min_count} times in "
            f"{sum(len(c) for c in train_captions)} captions, so the vocabulary would hold only "
            f"the special tokens; lower min_count or give more captions"
        )
    tokens = sorted(set(frequent) | set(SPECIAL_TOKENS))
    return {token: index for index, token in enumerate(tokens)}


def caption_tokens_to_indices(captions, vocab):
    """Turn every caption into START, its token indices (UNK when unknown), END.

    captions: one list of caption strings per image.
    Returns the same nesting with python ints:
    [["a cat"]] -> [[[vocab[START], vocab["a"], vocab["cat"], vocab[END]]]]
    """
    start, end, unk = vocab[START], vocab[END], vocab[UNK]
    return [
        [[start] + [vocab.get(token, unk) for token in split_sentence(caption)] + [end]
         for caption in image_captions]
        for image_captions in captions
    ]


def batch_captions_to_matrix(batch_captions, pad_idx, max_len=None):
    """Pad (or cut) index lists into one int32 matrix [len(batch), columns].

    columns = the longest caption, or ``max_len`` when that is smaller.
    [[1, 2, 3], [4, 5]]             -> [[1, 2, 3], [4, 5, pad_idx]]
    [[1, 2, 3], [4, 5]], max_len=2  -> [[1, 2], [4, 5]]
    [[1, 2, 3], [4, 5]], max_len=100 -> [[1, 2, 3], [4, 5, pad_idx]]
    """
    lengths = np.array([len(caption) for caption in batch_captions], dtype=np.int64)
    columns = int(lengths.max()) if len(lengths) else 0
    if max_len is not None:
        columns = min(columns, max_len)
    matrix = np.full((len(batch_captions), columns), pad_idx, dtype=np.int32)
    if columns == 0:
        return matrix
    # Scatter all tokens at once: position (row, col) is filled when col < that row's length.
    kept = np.minimum(lengths, columns)
    rows = np.repeat(np.arange(len(batch_captions)), kept)
    cols = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    flat = np.fromiter(
        (token for caption, n in zip(batch_captions, kept) for token in caption[:n]),
        dtype=np.int64, count=int(kept.sum()),
    )
    matrix[rows, cols] = flat
    return matrix


def indices_to_caption(indices, inverse_vocab):
    """Token indices -> caption text, dropping the special tokens and stopping at END."""
    words = []
    for index in indices:
        token = inverse_vocab[int(index)]
        if token == END:
            break
        if token not in SPECIAL_TOKENS:
            words.append(token)
    return " ".join(words)


# ---------------------------------------------------------------------------------------
# Loaders: every format ends up as {image file name: [caption, ...]}.


def _coco_json_to_captions(data, where):
    """COCO {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}."""
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise CapstoneError(f"{where}: not a COCO captions file (expected keys 'images' and 'annotations')")
    try:
        id_to_fn = {image["id"]: image["file_name"] for image in data["images"]}
    except (KeyError, TypeError):
        raise CapstoneError(f"{where}: every entry of 'images' needs 'id' and 'file_name'") from None
    fn_to_captions = collections.OrderedDict((fn, []) for fn in id_to_fn.values())
    for number, annotation in enumerate(data["annotations"]):
        try:
            fn = id_to_fn[annotation["image_id"]]
            fn_to_captions[fn].append(str(annotation["caption"]).strip())
        except KeyError as missing:
            raise CapstoneError(
                f"{where}: annotation #{number} has no {missing} (or refers to an unknown image_id)"
            ) from None
    return fn_to_captions


def _read_json_bytes(raw, where):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CapstoneError(f"{where}: not valid JSON ({error})") from None


def load_coco_json(path):
    """Captions from a COCO-format JSON file."""
    with open(path, "rb") as f:
        return _coco_json_to_captions(_read_json_bytes(f.read(), path), path)


def load_coco_zip(zip_fn, zip_json_path=None):
    """Captions from a COCO captions zip: one member, or every ``captions_*.json`` in it."""
    try:
        zf = zipfile.ZipFile(zip_fn)
    except zipfile.BadZipFile:
        raise CapstoneError(f"{zip_fn}: not a zip file") from None
    with zf:
        names = zf.namelist()
        if zip_json_path is not None:
            if zip_json_path not in names:
                raise CapstoneError(f"{zip_fn}: has no member '{zip_json_path}' (members: {names[:10]})")
            members = [zip_json_path]
        else:
            members = [n for n in names if os.path.basename(n).startswith("captions") and n.endswith(".json")]
            members = members or [n for n in names if n.endswith(".json")]
            if not members:
                raise CapstoneError(f"{zip_fn}: contains no .json captions file")
        fn_to_captions = collections.OrderedDict()
        for member in members:
            where = f"{zip_fn}:{member}"
            for fn, caps in _coco_json_to_captions(_read_json_bytes(zf.read(member), where), where).items():
                fn_to_captions.setdefault(fn, []).extend(caps)
    return fn_to_captions


def read_csv_rows(path):
    """(line number, image, caption) for each row of an ``image,caption`` CSV file."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise CapstoneError(f"{path}: empty file (expected a header line 'image,caption')")
        header = [h.strip().lower() for h in header]
        if "image" not in header or "caption" not in header:
            raise CapstoneError(f"{path}: line 1: header is {header}, expected 'image,caption'")
        image_col, caption_col = header.index("image"), header.index("caption")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines are harmless
            line = reader.line_num
            if len(row) <= max(image_col, caption_col):
                raise CapstoneError(f"{path}: line {line}: expected 2 fields 'image,caption', got {row}")
            fn, caption = row[image_col].strip(), row[caption_col].strip()
            if not fn or not caption:
                raise CapstoneError(f"{path}: line {line}: empty image name or caption")
            rows.append((line, fn, caption))
    if not rows:
        raise CapstoneError(f"{path}: no captions after the header line")
    return rows


def load_csv_captions(path):
    """Captions from a CSV with the header ``image,caption`` (one row per caption)."""
    fn_to_captions = collections.OrderedDict()
    for _, fn, caption in read_csv_rows(path):
        fn_to_captions.setdefault(fn, []).append(caption)
    return fn_to_captions


def load_image_folder_captions(folder, csv_path, extensions=(".jpg", ".jpeg", ".png")):
    """A folder of photos + its ``image,caption`` CSV (the Flickr8k layout), checked both ways.

    Every CSV row must name a file in the folder and every image in the folder must have a
    caption; otherwise the error names the CSV line or the image file.
    """
    if not os.path.isdir(folder):
        raise CapstoneError(f"{folder}: image folder does not exist")
    images = sorted(f for f in os.listdir(folder) if f.lower().endswith(tuple(extensions)))
    if not images:
        raise CapstoneError(f"{folder}: no image files ({', '.join(extensions)})")
    present = set(images)
    fn_to_captions = collections.OrderedDict()
    for line, fn, caption in read_csv_rows(csv_path):
        if fn not in present:
            raise CapstoneError(f"{csv_path}: line {line}: image '{fn}' is not in {folder}")
        fn_to_captions.setdefault(fn, []).append(caption)
    missing = [fn for fn in images if fn not in fn_to_captions]
    if missing:
        raise CapstoneError(f"{os.path.join(folder, missing[0])}: no captions in {csv_path}"
                            + (f" (and {len(missing) - 1} more images)" if len(missing) > 1 else ""))
    return fn_to_captions


def load_captions(source):
    """Any supported caption source -> {image file name: [caption, ...]}.

    source: ``file.csv``, ``file.json``, ``file.zip`` or ``file.zip:member.json``.
    """
    zip_fn, member = source, None
    if ".zip:" in source:
        zip_fn, member = source.split(".zip:", 1)
        zip_fn += ".zip"
    if not os.path.exists(zip_fn):
        raise CapstoneError(f"{zip_fn}: caption file does not exist")
    lower = zip_fn.lower()
    if lower.endswith(".zip"):
        return load_coco_zip(zip_fn, member)
    if lower.endswith(".json"):
        return load_coco_json(zip_fn)
    if lower.endswith(".csv"):
        return load_csv_captions(zip_fn)
    raise CapstoneError(
        f"{source}: unknown caption format (expected .csv 'image,caption', COCO .json, or a COCO .zip)"
    )


def captions_for_fns(fns, fn_to_captions, source="captions"):
    """The captions of each file name, in order; an image without captions is an error."""
    result = []
    for fn in fns:
        caps = fn_to_captions.get(fn) or fn_to_captions.get(os.path.basename(fn))
        if not caps:
            raise CapstoneError(f"{source}: image '{fn}' has no captions")
        result.append(list(caps))
    return result


def get_captions_for_fns(fns, zip_fn, zip_json_path):
    """The course's loader: captions for ``fns`` from one JSON member of a COCO zip."""
    where = f"{zip_fn}:{zip_json_path}"
    return captions_for_fns(fns, load_coco_zip(zip_fn, zip_json_path), where)
