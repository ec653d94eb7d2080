"""The caption service: a web page and a JSON API in front of one trained model.

    python -m capstone serve RUN_DIR [--index IMAGE_DIR] [--host 127.0.0.1 --port 8000]

Routes (see ``create_app``):
    GET  /                  page: upload an image or paste its URL
    POST /                  page: that image, its greedy and beam-search captions, likely first words
    POST /api/caption       multipart field ``image``, or JSON {"url": ...} -> JSON
    GET  /search?q=words    page: indexed images ranked by TF-IDF over their captions
    POST /search            page: search by image (caption it, then search with the captions)
    GET  /api/search?q=&k=  JSON;  POST /api/search: search by image, JSON
    GET  /images/NAME       an indexed image; any name not in the index is 404

Safety, the tutorials' versions lacked it: one loaded model serves all requests at once without
shared mutable state (FinalModel feeds the LSTM state, its graph is finalized); uploads have a size
limit (413) and a pixel limit, non-images are a 400 with a message, URLs are fetched only from
public addresses (``capstone.url_fetch``), and the only files served are the indexed ones.
"""

import base64
import glob
import hashlib
import io
import ipaddress
import json
import os
import sys

import cv2
import flask
import numpy as np
from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib; used for headers only
from werkzeug.exceptions import HTTPException

from capstone.captions import START
from capstone.errors import CapstoneError
from capstone.images import image_for_model
from capstone.search_index import load_or_build
from capstone.url_fetch import fetch_url

MEGABYTE = 2 ** 20
DEFAULT_MAX_UPLOAD_BYTES = 10 * MEGABYTE  # an upload or a fetched image larger than this is refused (413)
DEFAULT_MAX_PIXELS = 40_000_000  # a small file can claim a huge picture ("decompression bomb")
MAX_QUERY_CHARS = 500
MAX_RESULTS = 100


def check_image_header(buf, name, max_pixels):
    """Refuse bytes that are not an image, or whose header claims more than ``max_pixels``,
    before anything allocates the decoded picture. Pillow reads only the header here."""
    try:
        with Image.open(io.BytesIO(buf)) as picture:
            width, height = picture.size
    except Image.DecompressionBombError:  # Pillow's own limit (~179 million pixels) came first
        raise CapstoneError(f"{name}: more than the limit of {max_pixels:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise CapstoneError(f"{name}: not an image (expected a JPEG, PNG, BMP or WebP file)") from None
    if width * height > max_pixels:
        raise CapstoneError(f"{name}: {width} x {height} is more than the limit of {max_pixels:,} pixels")


class Captioner:
    """One FinalModel with its image encoder, as the service uses it.

    model: a ``capstone.final_model.FinalModel`` loaded with an encoder (raw pixels in).
    Every method may be called from many threads at once: nothing here or in the model changes
    after loading, and a TensorFlow Session runs concurrent ``run`` calls safely.
    """

    def __init__(self, model, beam_size=3, max_len=20, top_words=5, max_pixels=DEFAULT_MAX_PIXELS):
        if model.input_images is None:
            raise CapstoneError("the caption service needs the model's image encoder: load it with with_encoder=True")
        self.model = model
        self.beam_size = beam_size
        self.max_len = max_len
        self.top_words = top_words
        self.max_pixels = max_pixels

    @property
    def image_size(self):
        return self.model.encoder.image_size

    def pixels(self, buf, name="image"):
        """Bytes of an image file -> [S, S, 3] float32 pixels: its centre square, resized."""
        check_image_header(buf, name, self.max_pixels)
        return image_for_model(buf, self.image_size, name=name)

    def embed(self, pixels):
        """[S, S, 3] pixels -> [1, IMG_EMBED]: the CNN runs once, then the decoder is fed the
        embedding for the greedy caption, the beam search and the first-word probabilities."""
        return self.model.session.run(self.model.img_embeds, {self.model.input_images: pixels[None]})

    def describe(self, pixels):
        """-> {"caption", "beam_captions": [{"caption", "score"}], "next_words": [{"word", "probability"}]}"""
        embedding = self.embed(pixels)
        caption = self.model.captions(embeddings=embedding, max_len=self.max_len)[0]
        beams = self.model.beam_captions(embeddings=embedding, beam_size=self.beam_size, max_len=self.max_len)[0]
        return {
            "caption": caption,
            "beam_captions": [{"caption": text, "score": float(score)} for text, score in beams],
            "next_words": self.first_words(embedding),
        }

    def first_words(self, embedding):
        """The ``top_words`` most likely first words after START, with their probabilities."""
        state = self.model.initial_state(embeddings=embedding)
        probs, _ = self.model.step([self.model.vocab[START]], state)  # [1, vocab]
        probs = probs[0].astype(np.float64)
        probs[self.model.banned_tokens] = 0.0  # PAD and START are never predicted
        best = np.argsort(-probs, kind="stable")[:self.top_words]
        return [{"word": self.model.inverse_vocab[int(i)], "probability": float(probs[i])} for i in best]

    def captions_for_file(self, path):
        """An image file -> its captions for the search index: greedy first, then the beams."""
        with open(path, "rb") as f:
            buf = f.read()
        return all_captions(self.describe(self.pixels(buf, name=os.path.basename(path))))


def all_captions(result):
    """The greedy caption, then the beam captions that differ from it: what an image is searched
    by (in the index), or searched with (search by image)."""
    return list(dict.fromkeys([result["caption"]] + [beam["caption"] for beam in result["beam_captions"]]))


def model_id(run_path, **settings):
    """A short hash of what the captions depend on: config, vocabulary, checkpoint files, settings.

    A saved search index made with another id is captioned again.
    """
    from capstone import run_dir as runs  # imports TensorFlow: only when a model is really used

    digest = hashlib.sha256()
    for name in (runs.CONFIG, runs.VOCAB):
        with open(os.path.join(run_path, name), "rb") as f:
            digest.update(f.read())
    checkpoint = runs.best_checkpoint(run_path)
    for path in sorted(glob.glob(glob.escape(checkpoint) + ".*")):
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def preview_data_uri(pixels):
    """[S, S, 3] float pixels -> "data:image/jpeg;base64,...": the crop the model saw, re-encoded by
    us, so the page never echoes a visitor's own bytes (an SVG or HTML file could carry a script)."""
    bgr = cv2.cvtColor(np.clip(pixels, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else ""


SECURITY_HEADERS = {
    # No scripts at all; images only from us or data: URIs (previews); forms only post to us.
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(model, index=None, *, max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES, allow_private_urls=False,
               fetch_timeout=10.0, beam_size=3, max_len=20, top_words=5, max_pixels=DEFAULT_MAX_PIXELS):
    """The Flask app.

    model: a FinalModel loaded with its encoder, or a Captioner (then the caption settings are its own).
    index: a ``capstone.search_index.SearchIndex``, or None (the search routes then answer 404).
    max_upload_bytes: largest request body and largest fetched image.
    allow_private_urls: also fetch URLs on loopback/private addresses (only for a server you alone use).
    """
    captioner = model if isinstance(model, Captioner) else Captioner(model, beam_size, max_len, top_words, max_pixels)
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes  # bigger bodies: 413 before they are read
    app.json.sort_keys = False
    app.context_processor(lambda: {"has_index": index is not None})  # every page's menu shows search or not

    def is_api():
        return flask.request.path.startswith("/api/")

    def read_image():
        """(bytes, name) of the request's image: multipart ``image``, form ``url`` or JSON {"url"}."""
        if flask.request.is_json:
            body = flask.request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("url"), str):
                raise CapstoneError('request body: expected JSON {"url": "https://..."}')
            url = body["url"]
        else:
            upload = flask.request.files.get("image")
            data = upload.read() if upload is not None else b""
            if data:
                return data, (upload.filename or "image")[:100]
            url = flask.request.form.get("url", "").strip()
            if not url:
                raise CapstoneError("image: send an image file (form field 'image') or an image URL ('url')")
        data = fetch_url(url, max_bytes=max_upload_bytes, timeout=fetch_timeout, allow_private=allow_private_urls)
        return data, url[:100]

    def caption_request():
        """-> (result dict, pixels) for the request's image."""
        buf, name = read_image()
        pixels = captioner.pixels(buf, name)
        return captioner.describe(pixels), pixels

    def require_index():
        if index is None:
            flask.abort(404, "no image index: start the server with --index IMAGE_DIR")

    def top_k():
        text = flask.request.args.get("k", "10")
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_RESULTS:
            raise CapstoneError(f"k: expected a whole number of results from 1 to {MAX_RESULTS}, got {text[:20]!r}")
        return int(text)

    def query_text():
        query = flask.request.args.get("q", "")
        if len(query) > MAX_QUERY_CHARS:
            raise CapstoneError(f"q: longer than {MAX_QUERY_CHARS} characters")
        return query

    def hits_json(hits):
        return [{"name": h.name, "score": h.score, "caption": h.caption,
                 "url": flask.url_for("indexed_image", name=h.name)} for h in hits]

    @app.get("/")
    def caption_page():
        return flask.render_template("caption.html")

    @app.post("/")
    def caption_page_result():
        result, pixels = caption_request()
        return flask.render_template("caption.html", result=result, preview=preview_data_uri(pixels))

    @app.post("/api/caption")
    def api_caption():
        result, _ = caption_request()
        return flask.jsonify(result)

    @app.get("/search")
    def search_page():
        require_index()
        query, k = query_text(), top_k()
        return flask.render_template("search.html", query=query, size=len(index),
                                     hits=hits_json(index.search(query, k)) if query.strip() else None)

    @app.post("/search")
    def search_by_image_page():
        require_index()
        result, pixels = caption_request()
        return flask.render_template("search.html", query="", size=len(index), result=result,
                                     preview=preview_data_uri(pixels),
                                     hits=hits_json(index.search(all_captions(result), top_k())))

    @app.get("/api/search")
    def api_search():
        require_index()
        query, k = query_text(), top_k()
        return flask.jsonify(query=query, results=hits_json(index.search(query, k)))

    @app.post("/api/search")
    def api_search_by_image():
        require_index()
        result, _ = caption_request()
        return flask.jsonify(caption=result["caption"], beam_captions=result["beam_captions"],
                             results=hits_json(index.search(all_captions(result), top_k())))

    @app.get("/images/<path:name>")
    def indexed_image(name):
        path = index.path_of(name) if index is not None else None  # a lookup, never a join with the folder
        if path is None:
            flask.abort(404, "no such indexed image")
        return flask.send_file(path, max_age=3600)

    def error_page(message, status):
        if is_api():
            return flask.jsonify(error=message), status
        template = "search.html" if flask.request.path.startswith("/search") and index is not None else "caption.html"
        return flask.render_template(template, error=message, query="",
                                     size=len(index) if index is not None else 0), status

    @app.errorhandler(CapstoneError)
    def bad_input(error):
        return error_page(str(error), getattr(error, "status", 400))

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code == 413:
            return error_page(f"upload: larger than the limit of {max_upload_bytes / MEGABYTE:g} MB", 413)
        if error.code == 500:  # Flask has logged the traceback; the visitor gets one line
            return error_page("internal error: the server could not caption this image", 500)
        if is_api() or (index is None and flask.request.path.startswith("/search")):
            return error_page(error.description, error.code)
        return error  # werkzeug's own page, e.g. 404 for /images/../secret

    @app.after_request
    def security_headers(response):
        response.headers.update(SECURITY_HEADERS)
        return response

    return app


# -- command line ------------------------------------------------------------------------------


def add_serve_arguments(p):
    p.add_argument("run_dir", help="run directory written by 'train' (its image encoder is loaded too)")
    p.add_argument("--index", metavar="IMAGE_DIR", help="caption the images of this folder and search them by words")
    p.add_argument("--index-file", help="where to save the index (default IMAGE_DIR/.capstone_index.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-private-urls", action="store_true",
                   help="also fetch image URLs on loopback/private networks (only if you alone use the server)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / MEGABYTE,
                   help="largest upload or fetched image in MB (default 10)")
    p.add_argument("--beam", type=int, default=3, help="beam size of the beam-search captions (default 3)")
    p.add_argument("--max-len", type=int, default=20, help="most words per caption (default 20)")


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_serve(args):
    from capstone.final_model import FinalModel

    if args.beam < 1 or args.max_len < 1 or args.max_upload_mb <= 0:
        raise CapstoneError("--beam and --max-len must be at least 1, --max-upload-mb above 0")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    captioner = Captioner(FinalModel.load(args.run_dir, with_encoder=True), args.beam, args.max_len)
    index = None
    if args.index:
        log(f"indexing {args.index} ...")
        index = load_or_build(args.index, captioner.captions_for_file,
                              model_id(args.run_dir, beam=args.beam, max_len=args.max_len),
                              index_path=args.index_file, log=log)
    app = create_app(captioner, index, max_upload_bytes=int(args.max_upload_mb * MEGABYTE),
                     allow_private_urls=args.allow_private_urls)
    if not _is_loopback(args.host):
        log(f"warning: listening on {args.host}: anyone who can reach this computer can use the service")
    log(f"caption service on http://{args.host}:{args.port}/  (Ctrl+C stops)")
    app.run(host=args.host, port=args.port, threaded=True)  # threaded: one model, many requests at once
