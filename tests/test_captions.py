"""The course grader's checks on captions, vocabulary, indexing and batching, plus the loaders."""

import json
import zipfile

import numpy as np
import pytest

from capstone.captions import (END, PAD, START, UNK, batch_captions_to_matrix, caption_tokens_to_indices,
                               captions_for_fns, generate_vocabulary, get_captions_for_fns, indices_to_caption,
                               load_captions, split_sentence)
from capstone.errors import CapstoneError

TRAIN_CAPTIONS = [
    ["A man riding a horse.", "A man on a horse!", "The man rides a brown horse"],
    ["A dog runs on the grass", "a dog, running", "Dog on grass."],
    ["A man and a dog", "the dog and the man", "a horse"],
]


def test_split_sentence_lowercases_and_drops_punctuation():
    assert split_sentence("A man, riding a HORSE.") == ["a", "man", "riding", "a", "horse"]
    assert split_sentence("  ...  ") == []


def test_generate_vocabulary_counts_over_all_captions_and_sorts():
    vocab = generate_vocabulary(TRAIN_CAPTIONS, min_count=3)
    # counts: a=9, man=5, horse=4, dog=4, the=4, on=3 ; everything else < 3
    expected_tokens = sorted(["a", "man", "horse", "dog", "the", "on", PAD, UNK, START, END])
    assert vocab == {token: i for i, token in enumerate(expected_tokens)}
    # the grader's checks: size, unique indices 0..N-1, specials present
    assert len(vocab) == 10
    assert sorted(vocab.values()) == list(range(10))
    assert all(s in vocab for s in (PAD, UNK, START, END))


def test_generate_vocabulary_with_only_rare_words_is_a_clear_error():
    with pytest.raises(CapstoneError, match="only\\s+the special tokens|min_count=5"):
        generate_vocabulary([["one two three"]], min_count=5)


def test_caption_tokens_to_indices_adds_start_end_and_unk():
    vocab = generate_vocabulary(TRAIN_CAPTIONS, min_count=3)
    indexed = caption_tokens_to_indices(TRAIN_CAPTIONS, vocab)
    assert [len(c) for c in indexed] == [3, 3, 3]
    first = indexed[0][0]  # "A man riding a horse."
    assert first == [vocab[START], vocab["a"], vocab["man"], vocab[UNK], vocab["a"], vocab["horse"], vocab[END]]
    flat = [caption for image in indexed for caption in image]
    assert {c[0] for c in flat} == {vocab[START]} and {c[-1] for c in flat} == {vocab[END]}
    assert all(type(i) is int for c in flat for i in c)
    assert sum(i == vocab[UNK] for c in flat for i in c) == 9  # riding rides brown runs grass running grass and and


def test_batch_captions_to_matrix_course_examples():
    pad = 0
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad), [[1, 2, 3], [4, 5, pad]])
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad, max_len=2), [[1, 2], [4, 5]])
    np.testing.assert_array_equal(batch_captions_to_matrix([[1, 2, 3], [4, 5]], pad, max_len=100),
                                  [[1, 2, 3], [4, 5, pad]])
    m = batch_captions_to_matrix([[7], [1, 2, 3, 4], []], 9)
    assert m.dtype == np.int32 and m.tolist() == [[7, 9, 9, 9], [1, 2, 3, 4], [9, 9, 9, 9]]


def test_indices_to_caption_stops_at_end_and_hides_specials():
    vocab = {PAD: 0, UNK: 1, START: 2, END: 3, "a": 4, "cat": 5}
    inverse = {i: t for t, i in vocab.items()}
    assert indices_to_caption([2, 4, 1, 5, 3, 4, 4], inverse) == "a cat"


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


def test_image_folder_with_csv_is_checked_both_ways(tmp_path):
    from capstone.captions import load_image_folder_captions

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"\xff\xd8")
    good = tmp_path / "good.csv"
    good.write_text("image,caption\na.jpg,a cat\nb.jpg,a dog\na.jpg,the cat\n")
    assert load_image_folder_captions(str(folder), str(good)) == {"a.jpg": ["a cat", "the cat"], "b.jpg": ["a dog"]}
    extra = tmp_path / "extra.csv"
    extra.write_text("image,caption\na.jpg,a cat\nb.jpg,a dog\nc.jpg,a bird\n")
    with pytest.raises(CapstoneError, match=r"extra.csv: line 4: image 'c.jpg' is not in"):
        load_image_folder_captions(str(folder), str(extra))
    short = tmp_path / "short.csv"
    short.write_text("image,caption\na.jpg,a cat\n")
    with pytest.raises(CapstoneError, match=r"b.jpg: no captions in .*short.csv"):
        load_image_folder_captions(str(folder), str(short))


def test_flickr_folder_matches_its_csv(flickr_dir):
    from capstone.captions import load_image_folder_captions

    captions = load_image_folder_captions(str(flickr_dir / "images"), str(flickr_dir / "captions.csv"))
    assert len(captions) == 577 and sum(map(len, captions.values())) == 2885
