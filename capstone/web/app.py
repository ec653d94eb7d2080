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
    GET  /healthz           {"status": "ok"}: the model is loaded (for load balancers and orchestrators)

Safety, the tutorials' versions lacked it: one loaded model serves all requests at once without
shared mutable state (FinalModel feeds the LSTM state, its graph is finalized); uploads have a size
limit (413) and a pixel limit, non-images are a 400 with a message, URLs are fetched only from
public addresses (``capstone.web.url_fetch``), and the only files served are the indexed ones.
"""

import base64
import dataclasses

import cv2
import flask
import numpy as np
from werkzeug.exceptions import HTTPException

from capstone.errors import CapstoneError
from capstone.evaluation.attention_plot import attention_png
from capstone.support.run_dir import shapes_warning
from capstone.web.captioner import (DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, HEADER_BYTES, MAX_QUERY_CHARS,
                                    MAX_RESULTS, MEGABYTE, Busy, Captioner, TooManyPixels, all_captions,
                                    check_image_header)
from capstone.web.url_fetch import fetch_url


def attention_data_uri(pixels, result):
    """The attention maps of a result as a PNG data: URI (drawn by us, like the preview), or None."""
    if "attention" not in result:
        return None
    maps = [(entry["word"], np.asarray(entry["weights"])) for entry in result["attention"]]
    return "data:image/png;base64," + base64.b64encode(attention_png(pixels, maps)).decode("ascii")


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


@dataclasses.dataclass
class Service:
    """What the routes share: the captioner, the search index and the request limits."""
    captioner: Captioner
    index: object             # a capstone.web.search_index.SearchIndex, or None
    max_upload_bytes: int
    allow_private_urls: bool
    fetch_timeout: float

    def read_image(self):
        """(bytes, name) of the request's image: multipart ``image``, form ``url`` or JSON {"url"}."""
        request = flask.request
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("url"), str):
                raise CapstoneError('request body: expected JSON {"url": "https://..."}')
            url = body["url"]
        else:
            upload = request.files.get("image")
            data = self.read_upload(upload) if upload is not None else b""
            if data:
                return data, (upload.filename or "image")[:100]
            url = request.form.get("url", "").strip()
            if not url and upload is not None and upload.filename:
                raise CapstoneError(f"{upload.filename[:100]}: the file is empty (0 bytes); choose an image file")
            if not url:
                raise CapstoneError("image: send an image file (form field 'image') or an image URL ('url')")
        data = fetch_url(url, max_bytes=self.max_upload_bytes, timeout=self.fetch_timeout,
                         allow_private=self.allow_private_urls)
        return data, url[:100]

    def read_upload(self, upload):
        """The bytes of an uploaded file; a header that claims too many pixels is refused first,
        from the file's first bytes, before the rest is read or anything is decoded."""
        name = (upload.filename or "image")[:100]
        head = upload.stream.read(HEADER_BYTES)
        if len(head) == HEADER_BYTES:  # the whole file is checked again in Captioner.pixels
            try:
                check_image_header(head, name, self.captioner.max_pixels)
            except TooManyPixels:
                raise
            except CapstoneError:  # e.g. a JPEG whose frame header lies further in: checked whole below
                pass
        return head + upload.stream.read()

    def caption_request(self):
        """-> (result dict, pixels) for the request's image; decoding and captioning hold a slot."""
        buf, name = self.read_image()
        with self.captioner.slot():
            pixels = self.captioner.pixels(buf, name)
            return self.captioner.describe(pixels), pixels

    def require_index(self):
        if self.index is None:
            flask.abort(404, "no image index: start the server with --index IMAGE_DIR")
        return self.index

    @staticmethod
    def top_k():
        text = flask.request.args.get("k", "10")
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_RESULTS:
            raise CapstoneError(f"k: expected a whole number of results from 1 to {MAX_RESULTS}, got {text[:20]!r}")
        return int(text)

    @staticmethod
    def query_text():
        query = flask.request.args.get("q", "")
        if len(query) > MAX_QUERY_CHARS:
            raise CapstoneError(f"q: longer than {MAX_QUERY_CHARS} characters")
        return query

    @staticmethod
    def hits_json(hits):
        return [{"name": h.name, "score": h.score, "matched": list(h.matched), "caption": h.caption,
                 "url": flask.url_for("indexed_image", name=h.name)} for h in hits]

    def search_json(self, searched, **extra):
        """{..extra, "results": [...]} plus "message" (why nothing matched) when there are none."""
        hits = self.index.search(searched, self.top_k())
        return {**extra, "results": self.hits_json(hits),
                **({} if hits else {"message": self.index.no_match_message(searched)})}


def create_app(model, index=None, *, max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES, allow_private_urls=False,
               fetch_timeout=10.0, beam_size=3, max_len=20, top_words=5, max_pixels=DEFAULT_MAX_PIXELS, **limits):
    """The Flask app.

    model: a FinalModel loaded with its encoder, or a Captioner (then the caption settings are its own).
    index: a ``capstone.web.search_index.SearchIndex``, or None (the search routes then answer 404).
    max_upload_bytes: largest request body and largest fetched image.
    allow_private_urls: also fetch URLs on loopback/private addresses (only for a server you alone use).
    """
    captioner = (model if isinstance(model, Captioner)
                 else Captioner(model, beam_size, max_len, top_words, max_pixels, **limits))  # limits: max_in_flight, ...
    service = Service(captioner, index, max_upload_bytes, allow_private_urls, fetch_timeout)
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes  # bigger bodies: 413 before they are read
    app.json.sort_keys = False
    # every page's menu shows search or not; and a shapes model on other images says so
    trained_on = shapes_warning(captioner.model.run) if hasattr(captioner.model, "run") else None
    app.context_processor(lambda: {"has_index": index is not None, "trained_on_note": trained_on})
    add_caption_routes(app, service)
    add_search_routes(app, service)
    add_error_handlers(app, service)

    @app.after_request
    def security_headers(response):
        response.headers.update(SECURITY_HEADERS)
        return response

    return app


def add_caption_routes(app, service):
    """GET / and POST / (the page), POST /api/caption (JSON)."""

    @app.get("/healthz")
    def healthz():
        return flask.jsonify(status="ok")

    @app.get("/")
    def caption_page():
        return flask.render_template("caption.html")

    @app.post("/")
    def caption_page_result():
        result, pixels = service.caption_request()
        return flask.render_template("caption.html", result=result, preview=preview_data_uri(pixels),
                                     attention=attention_data_uri(pixels, result))

    @app.post("/api/caption")
    def api_caption():
        result, _ = service.caption_request()
        return flask.jsonify(result)


def add_search_routes(app, service):
    """Search by words or by image (page and JSON), and the indexed images themselves."""

    @app.get("/search")
    def search_page():
        index = service.require_index()
        query, _ = service.query_text(), service.top_k()  # a bad k is an error even before a query
        found = service.search_json(query) if query.strip() else {"results": None}
        return flask.render_template("search.html", query=query, size=len(index), hits=found["results"],
                                     message=found.get("message"))

    @app.post("/search")
    def search_by_image_page():
        index = service.require_index()
        result, pixels = service.caption_request()
        found = service.search_json(all_captions(result))
        return flask.render_template("search.html", query="", size=len(index), result=result,
                                     preview=preview_data_uri(pixels), hits=found["results"],
                                     message=found.get("message"))

    @app.get("/api/search")
    def api_search():
        service.require_index()
        query = service.query_text()
        return flask.jsonify(service.search_json(query, query=query))

    @app.post("/api/search")
    def api_search_by_image():
        service.require_index()
        result, _ = service.caption_request()
        return flask.jsonify(service.search_json(all_captions(result), caption=result["caption"],
                                                 beam_captions=result["beam_captions"]))

    @app.get("/images/<path:name>")
    def indexed_image(name):
        # a lookup in the index, never a join with the folder
        path = service.index.path_of(name) if service.index is not None else None
        if path is None:
            flask.abort(404, "no such indexed image")
        return flask.send_file(path, max_age=3600)


def add_error_handlers(app, service):
    """Bad input is a 400 (or 413) with one line: JSON under /api/, the page elsewhere."""
    index = service.index

    def is_api():
        return flask.request.path.startswith("/api/")

    def error_page(message, status):
        if is_api():
            return flask.jsonify(error=message), status
        template = "search.html" if flask.request.path.startswith("/search") and index is not None else "caption.html"
        return flask.render_template(template, error=message, query="",
                                     size=len(index) if index is not None else 0), status

    @app.errorhandler(CapstoneError)
    def bad_input(error):
        response = flask.make_response(error_page(str(error), getattr(error, "status", 400)))
        if isinstance(error, Busy):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code == 413:
            return error_page(f"upload: larger than the limit of {service.max_upload_bytes / MEGABYTE:g} MB", 413)
        if error.code == 500:  # Flask has logged the traceback; the visitor gets one line
            return error_page("internal error: the server could not caption this image", 500)
        if is_api() or (index is None and flask.request.path.startswith("/search")):
            return error_page(error.description, error.code)
        return error  # werkzeug's own page, e.g. 404 for /images/../secret
