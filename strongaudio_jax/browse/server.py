"""The browser's web app (Flask): the page, a JSON API over the catalogs, audio and spectrograms.

Nothing here takes a file path from a request: clips are named by (corpus number, record
number) or clip id, and the page's own files come from the package's static folder, so no
request can reach a file outside the given shards. Errors a request can cause answer with a
status and a JSON `{"error": message}`: 400 a malformed query, 404 no such corpus/record/tag,
422 a record or its audio that is damaged; the server keeps serving.

Routes:
  GET /                                 the page (static/index.html)
  GET /api/corpora                      the corpora: sizes, domains, sources, score columns, damage
  GET /api/search?corpus=C&q=&tag=&domain=&source=&min.duration=&max.<score>=&tag_score_min=
                  &sort=&page=&per_page=  one page of matching clips (see catalog.parse_query)
  GET /api/clip/C/ROW                   one record in full, with the rows holding the same id in
                                        the other corpora (side-by-side view)
  GET /api/tags?corpus=C                every tag with its document frequency
  GET /api/tag/C/TAG                    one tag: df, share, idf, mean score, co-occurring tags
  GET /audio/C/ROW.wav                  the decoded clip (HTTP Range supported)
  GET /spectrogram/C/ROW.png            its log-mel spectrogram
"""

from __future__ import annotations

import collections
import io
import os
import threading
import time
from typing import Sequence

from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from strongaudio_jax.browse import catalog as catalog_lib, media
from strongaudio_jax.data import audio, schema, tfrecord

STATIC = os.path.join(os.path.dirname(__file__), "static")
MEDIA_CACHE = 16  # decoded clips kept (a player asks for several byte ranges of one clip)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# Damage found when a record is opened: answered with 422 and the reader's message.
DAMAGE = (tfrecord.CorruptRecordError, schema.SchemaError, audio.AudioDecodeError, OSError)


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]


def create_app(catalogs: Sequence[catalog_lib.Catalog], preset: str = "mel_db",
               trusted_hosts: Sequence[str] | None = None) -> Flask:
    """The app; with `trusted_hosts`, a request naming any other Host gets 400 (a web page
    elsewhere cannot read the API through DNS rebinding to 127.0.0.1)."""
    app = Flask(__name__, static_folder=STATIC, static_url_path="/static")
    app.json.sort_keys = False
    app.config["TRUSTED_HOSTS"] = list(trusted_hosts) if trusted_hosts else None
    catalogs = list(catalogs)
    cache: collections.OrderedDict = collections.OrderedDict()
    cache_lock = threading.Lock()

    def corpus(c) -> catalog_lib.Catalog:
        try:
            c = int(c)
        except (TypeError, ValueError):
            raise ApiError(400, f"corpus={c!r} is not a whole number") from None
        if not 0 <= c < len(catalogs):
            raise ApiError(404, f"no corpus {c}: there are {len(catalogs)} (0..{len(catalogs) - 1})")
        return catalogs[c]

    def record(c: int, row: int) -> tuple[catalog_lib.Catalog, schema.Clip]:
        cat = corpus(c)
        try:
            cat.check_row(row)
        except IndexError as e:
            raise ApiError(404, str(e)) from None
        if row in cat.errors:
            raise ApiError(422, f"damaged record: {cat.errors[row]}")
        try:
            return cat, cat.read_clip(row)
        except DAMAGE as e:
            raise ApiError(422, f"damaged record: {e}") from None

    def derived(kind: str, c: int, row: int, make) -> bytes:
        """WAV or PNG bytes of a clip, made once and kept for the next few requests."""
        key = (kind, c, row)
        with cache_lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        cat, clip = record(c, row)
        try:
            data = make(clip.audio, cat.where(row))
        except audio.AudioDecodeError as e:
            raise ApiError(422, f"damaged audio: {e}") from None
        with cache_lock:
            cache[key] = data
            while len(cache) > MEDIA_CACHE:
                cache.popitem(last=False)
        return data

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return jsonify(error=f"{e.name}: {e.description}"), e.code

    @app.get("/")
    def index():
        return send_file(os.path.join(STATIC, "index.html"), mimetype="text/html")

    @app.get("/api/corpora")
    def corpora():
        return jsonify([dict(c.info(), index=i) for i, c in enumerate(catalogs)])

    @app.get("/api/search")
    def search():
        cat = corpus(request.args.get("corpus", "0"))
        try:
            query = catalog_lib.parse_query(request.args.to_dict(flat=False), cat.numeric)
        except catalog_lib.QueryError as e:
            raise ApiError(400, str(e)) from None
        start = time.perf_counter()
        out = cat.page(query)
        out["ms"] = round(1000 * (time.perf_counter() - start), 3)
        return jsonify(out)

    @app.get("/api/clip/<int:c>/<int:row>")
    def clip(c: int, row: int):
        cat, clip = record(c, row)
        out = cat.summary_of(row)
        out.update(caption=clip.caption, format=clip.format, sample_rate=clip.sample_rate,
                   num_samples=clip.num_samples, caption_model=clip.caption_model,
                   tags_model=clip.tags_model, labels=dict(clip.labels),
                   record=cat.where(row), corpus=c, corpus_name=cat.name,
                   audio_bytes=len(clip.audio))
        out["same_id"] = [{"corpus": i, "name": other.name, "row": other.id_rows[clip.id]}
                          for i, other in enumerate(catalogs)
                          if i != c and clip.id in other.id_rows]
        return jsonify(out)

    @app.get("/api/tags")
    def tags():
        cat = corpus(request.args.get("corpus", "0"))
        return jsonify(clips=int(cat.ok.sum()), tags=cat.tag_df)

    @app.get("/api/tag/<int:c>/<path:tag>")
    def tag(c: int, tag: str):
        cat = corpus(c)
        if tag not in cat.tag_rows:
            raise ApiError(404, f"no clip in corpus {cat.name!r} has the tag {tag!r}")
        return jsonify(cat.tag_info(tag))

    @app.get("/audio/<int:c>/<int:row>.wav")
    def wav(c: int, row: int):
        data = derived("wav", c, row, media.wav_bytes)
        return send_file(io.BytesIO(data), mimetype="audio/wav", conditional=True,
                         etag=f"wav-{c}-{row}-{len(data)}", max_age=3600)

    @app.get("/spectrogram/<int:c>/<int:row>.png")
    def spectrogram(c: int, row: int):
        data = derived("png", c, row, lambda a, w: media.spectrogram_png(a, w, preset))
        return send_file(io.BytesIO(data), mimetype="image/png", etag=f"png-{c}-{row}",
                         max_age=3600)

    return app


def serve(catalogs: Sequence[catalog_lib.Catalog], host: str = "127.0.0.1", port: int = 8080,
          preset: str = "mel_db"):
    """A threaded server for the app (werkzeug's), not yet started: call serve_forever().
    On a loopback address only requests for a loopback name are answered."""
    from werkzeug.serving import make_server

    trusted = LOOPBACK_NAMES if host in LOOPBACK_NAMES else None
    return make_server(host, port, create_app(catalogs, preset, trusted), threaded=True)
