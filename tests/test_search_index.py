"""capstone.web.search_index: TF-IDF numbers, ranking, the saved index and when it is redone, and that
only indexed files can ever be looked up. A fake captioner reads each "image" file's text."""

import json
import os

import numpy as np
import pytest

from capstone.errors import CapstoneError
from capstone.web.search_index import INDEX_FILE, SearchIndex, TfidfVectors, load_or_build


class FakeCaptioner:
    """path -> [its text]; files starting with "BAD" are not images. Counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(os.path.basename(path))
        text = open(path, encoding="utf-8").read()
        if text.startswith("BAD"):
            raise CapstoneError(f"{path}: not a decodable image")
        return text.split("|")


def write(folder, name, text, mtime=None):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    write(folder, "dog1.jpg", "a dog runs on the grass|a brown dog on grass")
    write(folder, "dog2.jpg", "a dog with a ball")
    write(folder, "cat.png", "a cat sleeps on a sofa")
    write(folder, "beach/surf.jpeg", "a man surfs a wave")
    write(folder, "notes.txt", "a dog")  # not an image extension: never indexed
    write(folder, "broken.jpg", "BAD bytes")
    return folder


def test_tfidf_numbers_match_the_formula():
    tfidf = TfidfVectors([["a", "dog"], ["a", "cat"], ["a", "dog", "dog"]])
    assert tfidf.vocabulary == {"a": 0, "cat": 1, "dog": 2}
    # idf = ln((1 + N) / (1 + df)) + 1 with N = 3 and df = a: 3, cat: 1, dog: 2
    np.testing.assert_allclose(tfidf.idf, [1.0, np.log(2) + 1, np.log(4 / 3) + 1], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(tfidf.doc_vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(tfidf.doc_vectors[0], [0.61333, 0, 0.78983], atol=1e-4)
    np.testing.assert_allclose(tfidf.scores(["dog"]), [0.78983, 0.0, 0.93215], atol=1e-4)
    np.testing.assert_allclose(tfidf.scores(["zebra"]), [0, 0, 0])


def test_search_ranks_by_cosine_and_ignores_unknown_words(photos):
    index = load_or_build(str(photos), FakeCaptioner(), "model-A", log=lambda _: None)
    assert sorted(image.name for image in index.images) == ["beach/surf.jpeg", "cat.png", "dog1.jpg", "dog2.jpg"]
    hits = index.search("dog on the grass")
    assert [hit.name for hit in hits][:2] == ["dog1.jpg", "dog2.jpg"]
    assert hits[0].caption == "a dog runs on the grass"  # the first (greedy) caption is shown
    assert all(0 < hit.score <= 1 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert "beach/surf.jpeg" not in [hit.name for hit in hits]  # shares no word with the query
    assert index.search("SURFS!")[0].name == "beach/surf.jpeg"  # same tokenizer as the captions
    assert index.search("zebra") == [] and index.search("") == [] and index.search("...") == []
    # search by image: several captions at once
    assert index.search(["a cat", "a cat on a sofa"])[0].name == "cat.png"
    assert len(index.search("dog", top_k=1)) == 1


def test_common_words_never_make_a_match_and_scores_are_the_fraction_of_words_found(photos):
    index = load_or_build(str(photos), FakeCaptioner(), "model-A", log=lambda _: None)
    hits = index.search("dog on grass")  # cat.png ("a cat sleeps on a sofa") shares only "on"
    assert [(h.name, h.score, h.matched) for h in hits] == [("dog1.jpg", 1.0, ("dog", "grass")),
                                                            ("dog2.jpg", 0.5, ("dog",))]
    assert index.search("on the") == [] and index.search("a with") == []
    assert index.no_match_message("on the") == ("no match: 'on', 'the' are too common to search by; use words "
                                                 "that say what is in the picture, e.g. 'dog grass'")
    assert index.no_match_message("a zebra") == "no match: no caption of the 4 images has 'zebra'"
    assert index.search("a zebra on a sofa")[0].score == 0.5  # 1 of 2 content words
    # equal fractions: the TF-IDF cosine orders them (dog2's caption is mostly "dog")
    assert [h.name for h in index.search("dog")] == ["dog2.jpg", "dog1.jpg"]


def test_index_is_saved_and_reused_until_files_or_model_change(photos):
    logs = []
    captioner = FakeCaptioner()
    first = load_or_build(str(photos), captioner, "model-A", log=logs.append)
    assert sorted(captioner.calls) == ["broken.jpg", "cat.png", "dog1.jpg", "dog2.jpg", "surf.jpeg"]
    saved = json.loads((photos / INDEX_FILE).read_text())
    assert saved["model"] == "model-A" and saved["format"] == 1
    assert {e["name"]: e["captions"] for e in saved["images"]}["dog1.jpg"] == [
        "a dog runs on the grass", "a brown dog on grass"]
    assert [e["name"] for e in saved["skipped"]] == ["broken.jpg"]
    assert "not a decodable image" in saved["skipped"][0]["reason"]
    assert any("broken.jpg: skipped" in line for line in logs)
    assert [p for p in os.listdir(photos) if p.endswith(".tmp")] == []  # atomic write left nothing behind

    captioner.calls.clear()
    again = load_or_build(str(photos), captioner, "model-A", log=logs.append)
    assert captioner.calls == []  # nothing changed: nothing captioned, broken.jpg not retried
    assert [(i.name, i.captions) for i in again.images] == [(i.name, i.captions) for i in first.images]
    assert logs[-1] == "index: 4 images (5 reused, 0 captioned, 1 skipped)"

    write(photos, "dog2.jpg", "a zebra in a field", mtime=1_000_000_000)  # changed file
    write(photos, "new.jpg", "a red bus")                                  # new file
    os.remove(photos / "cat.png")                                          # deleted file
    changed = load_or_build(str(photos), captioner, "model-A", log=logs.append)
    assert sorted(captioner.calls) == ["dog2.jpg", "new.jpg"]
    assert changed.search("zebra")[0].name == "dog2.jpg" and changed.path_of("cat.png") is None
    assert "cat.png" not in (photos / INDEX_FILE).read_text()

    captioner.calls.clear()
    load_or_build(str(photos), captioner, "model-B", log=logs.append)  # another run dir / checkpoint
    assert len(captioner.calls) == 5


def test_a_corrupt_or_foreign_index_file_is_rebuilt(photos, tmp_path):
    index_path = tmp_path / "elsewhere" / "index.json"  # --index-file: folder may be read-only
    load_or_build(str(photos), FakeCaptioner(), "model-A", index_path=str(index_path), log=lambda _: None)
    assert not (photos / INDEX_FILE).exists() and index_path.exists()
    for garbage in ("{not json", json.dumps([1, 2]), json.dumps({"format": 1, "model": "model-A", "images": 3})):
        index_path.write_text(garbage)
        logs, captioner = [], FakeCaptioner()
        index = load_or_build(str(photos), captioner, "model-A", index_path=str(index_path), log=logs.append)
        assert len(captioner.calls) == 5 and len(index) == 4
        assert "rebuilding the index" in logs[0]
        assert json.loads(index_path.read_text())["model"] == "model-A"


def test_only_indexed_names_can_be_looked_up(photos, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_text("a secret document")
    os.symlink(secret, photos / "link.jpg")  # points outside the folder: never indexed
    index = load_or_build(str(photos), FakeCaptioner(), "model-A", log=lambda _: None)
    assert index.path_of("dog1.jpg") == os.path.join(os.path.realpath(photos), "dog1.jpg")
    assert index.path_of("beach/surf.jpeg").endswith(os.path.join("beach", "surf.jpeg"))
    for name in ("link.jpg", "../secret.jpg", str(secret), "notes.txt", "broken.jpg", INDEX_FILE,
                 "beach/../dog1.jpg", "/etc/passwd", "", "dog1.jpg\x00"):
        assert index.path_of(name) is None, name
    assert "secret" not in json.dumps(index.to_json("m"))


def test_empty_folder_and_missing_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    index = load_or_build(str(empty), FakeCaptioner(), "m", log=lambda _: None)
    assert len(index) == 0 and index.search("dog") == []
    assert isinstance(SearchIndex(str(empty), []).tfidf.doc_vectors, np.ndarray)
    with pytest.raises(CapstoneError, match="image folder does not exist"):
        load_or_build(str(tmp_path / "nowhere"), FakeCaptioner(), "m")
