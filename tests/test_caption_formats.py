"""The field's caption formats: Flickr8k token file + split lists, Flickr30k results.csv, the split JSON."""

import json

import numpy as np
import pytest

from capstone.__main__ import main
from capstone.data.caption_files import load_captions, load_split_lists
from capstone.errors import CapstoneError
from utils import read_pickle, save_pickle

TOKENS = ("a.jpg#0\tA dog runs .  \r\n"
          "a.jpg#1\t  A brown dog on grass .\r\n"
          "\n"
          "b.jpg#0\tTwo children play .\n"
          "c.jpg#0\tA man rides a bike .\n"
          "d.jpg#0\tA cat sleeps .\n"
          "e.jpg#0\tA bird sings .\n")
LISTS = {"Flickr_8k.trainImages.txt": "a.jpg\nd.jpg\n", "Flickr_8k.devImages.txt": "b.jpg\n",
         "Flickr_8k.testImages.txt": "\nc.jpg  \n"}


def write_flickr8k(folder, tokens=TOKENS, lists=LISTS):
    (folder / "Flickr8k.token.txt").write_text(tokens)
    for name, text in lists.items():
        (folder / name).write_text(text)
    return str(folder / "Flickr8k.token.txt")


def split_json(images):
    return {"images": images, "dataset": "flickr8k"}


def image(fn, split, *raws):
    return {"filename": fn, "split": split, "imgid": 0,
            "sentences": [{"raw": raw, "tokens": raw.lower().strip(" .").split()} for raw in raws]}


def write_json(path, data):
    path.write_text(json.dumps(data))
    return str(path)


KARPATHY = split_json([image("a.jpg", "train", " A dog runs. ", "A dog."), image("b.jpg", "val", "Kids play."),
                       image("c.jpg", "test", "A man on a bike."), image("d.jpg", "restval", "A cat.")])


def test_flickr8k_token_file_and_its_split_lists(tmp_path):
    token_fn = write_flickr8k(tmp_path)
    captions = load_captions(token_fn)
    assert list(captions) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert captions["a.jpg"] == ["A dog runs .", "A brown dog on grass ."]  # spaces and \r trimmed
    assert sum(map(len, captions.values())) == 6
    # e.jpg has captions but is in no list: left out, with a warning that counts it
    with pytest.warns(UserWarning, match=r"Flickr8k.token.txt: 1 images with captions are in no split list"):
        lists = load_split_lists(token_fn)
    assert lists == {"train": ["a.jpg", "d.jpg"], "val": ["b.jpg"], "test": ["c.jpg"]}
    # recognised by content too, whatever the name
    (tmp_path / "tokens.txt").write_text(TOKENS)
    assert load_captions(str(tmp_path / "tokens.txt")) == captions


def test_flickr30k_results_csv(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("image_name| comment_number| comment\n"
                       "1000092795.jpg| 0| Two young guys with shaggy hair look at their hands .\n"
                       "1000092795.jpg| 1|  Two friends enjoy time spent together . \n"
                       "\n"
                       "10002456.jpg| 0| Several men in hard hats are operating a giant pulley system .\n")
    assert load_captions(str(results)) == {
        "1000092795.jpg": ["Two young guys with shaggy hair look at their hands .",
                           "Two friends enjoy time spent together ."],
        "10002456.jpg": ["Several men in hard hats are operating a giant pulley system ."]}
    assert load_split_lists(str(results)) is None


def test_split_json_captions_and_split_with_restval_in_train(tmp_path):
    fn = write_json(tmp_path / "dataset_flickr8k.json", KARPATHY)
    captions = load_captions(fn)
    assert captions == {"a.jpg": ["A dog runs.", "A dog."], "b.jpg": ["Kids play."], "c.jpg": ["A man on a bike."],
                        "d.jpg": ["A cat."]}
    assert load_split_lists(fn) == {"train": ["a.jpg", "d.jpg"], "val": ["b.jpg"], "test": ["c.jpg"]}
    # a sentence with tokens only is its tokens joined
    only_tokens = split_json([{"filename": "x.jpg", "split": "test", "sentences": [{"tokens": ["a", "dog"]}]}])
    assert load_captions(write_json(tmp_path / "tokens_only.json", only_tokens)) == {"x.jpg": ["a dog"]}


def test_sources_without_a_split_give_none(tmp_path):
    (tmp_path / "captions.csv").write_text("image,caption\nx.jpg,a dog\n")
    assert load_split_lists(str(tmp_path / "captions.csv")) is None
    (tmp_path / "captions.txt").write_text("image,caption\nx.jpg,a dog\n")  # Kaggle's Flickr8k layout
    assert load_captions(str(tmp_path / "captions.txt")) == {"x.jpg": ["a dog"]}
    coco = {"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"image_id": 1, "caption": "a dog"}]}
    assert load_split_lists(write_json(tmp_path / "coco.json", coco)) is None
    assert load_captions(str(tmp_path / "coco.json")) == {"x.jpg": ["a dog"]}
    (tmp_path / "lone").mkdir()
    assert load_split_lists(write_flickr8k(tmp_path / "lone", lists={})) is None


BAD_TOKENS = [
    ("a.jpg#0\tA dog .\na.jpg#1 A dog without a tab .\n", r"Flickr8k.token.txt: line 2: no tab"),
    ("a.jpg#0\tA dog .\n\na.jpg\tA dog without its number .\n",
     r"Flickr8k.token.txt: line 3: 'a.jpg' does not end in '#n'"),
    ("a.jpg#x\tA dog .\n", r"Flickr8k.token.txt: line 1: 'a.jpg#x' does not end in '#n'"),
    ("a.jpg#0\t   \n", r"Flickr8k.token.txt: line 1: empty caption for 'a.jpg'"),
]


@pytest.mark.parametrize("tokens, message", BAD_TOKENS)
def test_bad_token_lines_name_the_file_and_line(tmp_path, tokens, message):
    with pytest.raises(CapstoneError, match=message):
        load_captions(write_flickr8k(tmp_path, tokens=tokens, lists={}))


BAD_LISTS = [
    ({**LISTS, "Flickr_8k.devImages.txt": "b.jpg\nz.jpg\n"},
     r"Flickr_8k.devImages.txt: line 2: image 'z.jpg' has no captions in .*Flickr8k.token.txt"),
    ({**LISTS, "Flickr_8k.testImages.txt": "c.jpg\na.jpg\n"},
     r"Flickr_8k.testImages.txt: line 2: image 'a.jpg' is already listed at .*Flickr_8k.trainImages.txt: line 1"),
    ({"Flickr_8k.trainImages.txt": "a.jpg\n"}, r"Flickr8k.token.txt: found \['Flickr_8k.trainImages.txt'\] beside it "
                                                r"but not \['Flickr_8k.devImages.txt', 'Flickr_8k.testImages.txt'\]"),
]


@pytest.mark.parametrize("lists, message", BAD_LISTS)
def test_bad_split_lists_name_the_file_and_line(tmp_path, lists, message):
    token_fn = write_flickr8k(tmp_path, lists=lists)
    with pytest.raises(CapstoneError, match=message):
        load_split_lists(token_fn)


@pytest.mark.parametrize("line, message", [
    ("x.jpg| 0\n", r"results.csv: line 3: expected 3 fields .* got 2"),
    ("x.jpg| 0| A dog | again .\n", r"results.csv: line 3: expected 3 fields .* got 4"),
    ("x.jpg| zero| A dog .\n", r"results.csv: line 3: expected an image name, a comment number and a comment"),
])
def test_bad_results_lines_name_the_file_and_line(tmp_path, line, message):
    results = tmp_path / "results.csv"
    results.write_text("image_name| comment_number| comment\nx.jpg| 0| A dog .\n" + line)
    with pytest.raises(CapstoneError, match=message):
        load_captions(str(results))


def test_bad_split_json_names_the_file_and_entry(tmp_path):
    no_split = split_json([image("a.jpg", "train", "A dog."), {**image("b.jpg", "val", "Kids."), "split": None}])
    del no_split["images"][1]["split"]
    fn = write_json(tmp_path / "dataset_flickr8k.json", no_split)
    assert load_captions(fn)["b.jpg"] == ["Kids."]  # the captions alone are fine
    with pytest.raises(CapstoneError, match=r"dataset_flickr8k.json: images\[1\] \('b.jpg'\): no 'split' field"):
        load_split_lists(fn)
    odd = write_json(tmp_path / "odd.json", split_json([image("a.jpg", "dev", "A dog.")]))
    with pytest.raises(CapstoneError, match=r"odd.json: images\[0\] \('a.jpg'\): split 'dev' is not one of"):
        load_split_lists(odd)
    no_sentences = write_json(tmp_path / "empty.json", split_json([{"filename": "a.jpg", "split": "train"}]))
    with pytest.raises(CapstoneError, match=r"empty.json: images\[0\] \('a.jpg'\): no 'sentences'"):
        load_captions(no_sentences)


def write_embeddings(prefix, fns):
    save_pickle(np.arange(len(fns) * 4, dtype=np.float32).reshape(len(fns), 4), f"{prefix}_img_embeds.pickle")
    save_pickle(list(fns), f"{prefix}_img_fns.pickle")


def read_split(prefix, name):
    embeds, fns = read_pickle(f"{prefix}_{name}_img_embeds.pickle"), read_pickle(f"{prefix}_{name}_img_fns.pickle")
    assert len(embeds) == len(fns)
    return fns


@pytest.mark.parametrize("source", ["token", "json"])
def test_split_command_uses_the_files_split(tmp_path, capsys, source):
    if source == "token":
        captions = write_flickr8k(tmp_path)
    else:
        captions = write_json(tmp_path / "dataset_flickr8k.json", KARPATHY)
    prefix = str(tmp_path / "all")
    write_embeddings(prefix, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"])
    assert main(["split", prefix, "--captions", captions]) == 0
    assert {name: read_split(prefix, name) for name in ("train", "val", "test")} == \
        {"train": ["a.jpg", "d.jpg"], "val": ["b.jpg"], "test": ["c.jpg"]}
    err = capsys.readouterr().err
    assert "1 embedded images are in no split" in err  # e.jpg
    if source == "token":  # and the token file's warning, as one plain line
        assert "warning: " + captions + ": 1 images with captions are in no split list" in err
    # the split is the file's: asking for a random one as well is a mistake
    assert main(["split", prefix, "--captions", captions, "--val", "0.2"]) == 2
    assert "defines the split; drop --val/--test" in capsys.readouterr().err


def test_split_command_without_a_split_in_the_source_is_random_and_seeded(tmp_path, capsys):
    (tmp_path / "captions.csv").write_text("image,caption\nx.jpg,a dog\n")
    prefix = str(tmp_path / "all")
    fns = [f"{i}.jpg" for i in range(20)]
    write_embeddings(prefix, fns)
    assert main(["split", prefix, "--captions", str(tmp_path / "captions.csv"), "--seed", "3"]) == 0
    with_source = [read_split(prefix, name) for name in ("train", "val", "test")]
    assert "defines no split; random split with seed 3" in capsys.readouterr().err
    assert main(["split", prefix, "--seed", "3"]) == 0
    assert [read_split(prefix, name) for name in ("train", "val", "test")] == with_source
    assert [len(part) for part in with_source] == [14, 3, 3]
    assert sorted(sum(with_source, [])) == sorted(fns)
