"""Caption files: every supported format ends up as ``{image file name: [caption, ...]}``.

* a COCO captions zip, e.g. ``captions_train-val2014.zip`` (every ``captions_*.json`` inside),
  or ``captions_train-val2014.zip:annotations/captions_train2014.json`` for one member;
* a COCO-format JSON file (``{"images": [...], "annotations": [...]}``);
* a CSV file with the header ``image,caption`` (the Flickr8k layout).
"""

import collections
import csv
import json
import os
import zipfile

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
