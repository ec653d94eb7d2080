"""Caption files: every supported format ends up as ``{image file name: [caption, ...]}``.

* a COCO captions zip, e.g. ``captions_train-val2014.zip`` (every ``captions_*.json`` inside),
  or ``captions_train-val2014.zip:annotations/captions_train2014.json`` for one member;
* a COCO-format JSON file (``{"images": [...], "annotations": [...]}``);
* a CSV file with the header ``image,caption`` (the Flickr8k layout);
* Flickr8k's ``Flickr8k.token.txt``, Flickr30k's ``results.csv`` (``flickr_files``) and the split
  JSON ``dataset_*.json`` (``split_json``); ``load_split_lists`` returns the split they define.
"""

import collections
import csv
import json
import os
import zipfile

from capstone.data import flickr_files, split_json
from capstone.errors import CapstoneError


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


def _read_json_file(path):
    with open(path, "rb") as f:
        return _read_json_bytes(f.read(), path)


def load_coco_json(path):
    """Captions from a COCO-format JSON file."""
    return _coco_json_to_captions(_read_json_file(path), path)


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


# What ``--captions SRC`` accepts, for the commands' help.
CAPTION_SOURCES_HELP = ("COCO .zip (optionally zip:member.json), COCO .json, image,caption .csv, Flickr8k's "
                        "Flickr8k.token.txt, Flickr30k's results.csv, or a split JSON (Karpathy's dataset_*.json)")


def _source_format(source):
    """``source`` -> (format, path, zip member or None); format: zip, json, csv, results, token."""
    path, member = source, None
    if ".zip:" in source:
        path, member = source.split(".zip:", 1)
        path += ".zip"
    if not os.path.exists(path):
        raise CapstoneError(f"{path}: caption file does not exist")
    lower = path.lower()
    if lower.endswith(".zip"):
        return "zip", path, member
    if lower.endswith(".json"):
        return "json", path, None
    if lower.endswith(".csv"):
        return ("results" if flickr_files.looks_like_results_csv(path) else "csv"), path, None
    if lower.endswith(".txt") and flickr_files.looks_like_token_file(path):
        return "token", path, None
    if lower.endswith(".txt") and flickr_files.first_line(path).replace(" ", "").lower() == "image,caption":
        return "csv", path, None  # Kaggle's Flickr8k captions.txt
    raise CapstoneError(f"{source}: unknown caption format (expected {CAPTION_SOURCES_HELP})")


def load_captions(source):
    """Any supported caption source -> {image file name: [caption, ...]}.

    source: ``file.csv`` (``image,caption``, or Flickr30k's ``results.csv``), ``file.json`` (COCO, or a
    split JSON), ``file.zip`` or ``file.zip:member.json``, ``Flickr8k.token.txt``, or Kaggle's
    Flickr8k ``captions.txt`` (``image,caption``).
    """
    kind, path, member = _source_format(source)
    if kind == "zip":
        return load_coco_zip(path, member)
    if kind == "json":
        data = _read_json_file(path)
        if split_json.is_split_json(data):
            return split_json.split_json_captions(data, path)
        return _coco_json_to_captions(data, path)
    if kind == "results":
        return flickr_files.load_flickr30k_results(path)
    if kind == "token":
        return flickr_files.load_flickr8k_tokens(path)
    return load_csv_captions(path)


def load_split_lists(source):
    """The split a caption source defines -> {"train": [...], "val": [...], "test": [...]}, or None.

    Flickr8k's token file: its three ``Flickr_8k.*Images.txt`` lists beside it (dev -> val), None
    when they are absent. A split JSON: each image's ``split``, with "restval" put into train (as
    papers train on it). COCO, ``image,caption`` CSV and results.csv define no split: None.
    """
    kind, path, _ = _source_format(source)
    if kind == "json":
        data = _read_json_file(path)
        return split_json.split_json_lists(data, path) if split_json.is_split_json(data) else None
    if kind == "token":
        return flickr_files.flickr8k_split_lists(path, flickr_files.load_flickr8k_tokens(path))
    return None


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
