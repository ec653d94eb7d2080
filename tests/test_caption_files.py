"""Caption files: COCO zip/JSON and CSV loaders, with errors that name the file and line."""

import json
import zipfile

import pytest

from capstone.data.caption_files import captions_for_fns, get_captions_for_fns, load_captions
from capstone.errors import CapstoneError

def _coco(images, annotations):
    return {"images": [{"id": i, "file_name": fn} for i, fn in images],
            "annotations": [{"image_id": i, "id": n, "caption": c} for n, (i, c) in enumerate(annotations)]}


def test_loaders_read_coco_zip_json_and_csv(tmp_path):
    train = _coco([(1, "COCO_train_1.jpg"), (2, "COCO_train_2.jpg")], [(1, "a cat"), (2, "a dog"), (1, "the cat")])
    val = _coco([(5, "COCO_val_5.jpg")], [(5, "a bird")])
    zip_fn = tmp_path / "captions_train-val2014.zip"
    with zipfile.ZipFile(zip_fn, "w") as zf:
        zf.writestr("annotations/captions_train2014.json", json.dumps(train))
        zf.writestr("annotations/captions_val2014.json", json.dumps(val))
    # the course's call
    assert get_captions_for_fns(["COCO_train_2.jpg", "COCO_train_1.jpg"], str(zip_fn),
                                "annotations/captions_train2014.json") == [["a dog"], ["a cat", "the cat"]]
    # the whole zip merges every captions file; zip:member picks one
    assert load_captions(str(zip_fn))["COCO_val_5.jpg"] == ["a bird"]
    assert "COCO_val_5.jpg" not in load_captions(f"{zip_fn}:annotations/captions_train2014.json")
    json_fn = tmp_path / "caps.json"
    json_fn.write_text(json.dumps(train))
    assert load_captions(str(json_fn))["COCO_train_1.jpg"] == ["a cat", "the cat"]
    csv_fn = tmp_path / "captions.csv"
    csv_fn.write_text('image,caption\nx.jpg,"A dog, running."\nx.jpg,a dog\n\ny.jpg,a cat\n')
    assert load_captions(str(csv_fn)) == {"x.jpg": ["A dog, running.", "a dog"], "y.jpg": ["a cat"]}


def test_loader_errors_name_the_file_and_line(tmp_path):
    csv_fn = tmp_path / "bad.csv"
    csv_fn.write_text("image,caption\nx.jpg\n")
    with pytest.raises(CapstoneError, match=r"bad.csv: line 2"):
        load_captions(str(csv_fn))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CapstoneError, match="empty.csv: empty file"):
        load_captions(str(tmp_path / "empty.csv"))
    (tmp_path / "caps.txt").write_text("x")
    with pytest.raises(CapstoneError, match="unknown caption format"):
        load_captions(str(tmp_path / "caps.txt"))
    (tmp_path / "notcoco.json").write_text('{"a": 1}')
    with pytest.raises(CapstoneError, match="not a COCO captions file"):
        load_captions(str(tmp_path / "notcoco.json"))
    with pytest.raises(CapstoneError, match="does not exist"):
        load_captions(str(tmp_path / "missing.csv"))
    with pytest.raises(CapstoneError, match="image 'z.jpg' has no captions"):
        captions_for_fns(["z.jpg"], {"x.jpg": ["a"]}, "captions.csv")


def test_flickr_csv_loads_five_captions_per_image(flickr_dir):
    captions = load_captions(str(flickr_dir / "captions.csv"))
    assert len(captions) == 577
    assert all(len(c) == 5 for c in captions.values())
