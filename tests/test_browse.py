"""`strongaudio browse`: queries, the HTTP API on a live server (range requests, errors that
must not stop it, no file outside the shards), and the page in a real headless browser."""

import http.client
import io
import json
import os
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("flask", reason="the browser needs flask (pip install 'strongaudio_jax[browse]')")

from strongaudio_jax.browse import catalog as catalog_lib, server  # noqa: E402
from strongaudio_jax.data import audio, schema, tfrecord  # noqa: E402

SR = 16000
KINDS = {  # kind: (domain, caption words, tags)
    "tone": ("music", "a steady sine tone hums", ["tone", "sine", "music"]),
    "noise": ("sound", "white noise hisses like static", ["noise", "hiss", "static"]),
    "click": ("sound", "sharp clicks tick in a rhythm", ["click", "rhythm", "percussive"]),
}


def _clip(kind: str, i: int, recaptioned: bool = False) -> schema.Clip:
    rng = np.random.default_rng(i)
    seconds = 1.0 + 0.25 * (i % 4)  # 1.0 .. 1.75 s
    n = int(SR * seconds)
    t = np.arange(n) / SR
    if kind == "tone":
        wave = 0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t)
    elif kind == "noise":
        wave = 0.1 * rng.standard_normal(n)
    else:
        wave = np.zeros(n)
        wave[::SR // 8] = 0.9
    domain, words, tags = KINDS[kind]
    caption = (f"Re-captioned: {words}." if recaptioned else
               f"Clip {i}: {words}. It lasts {seconds:g} seconds.")
    scores = [0.9, 0.6 if i % 2 else 0.3, 0.5]
    if recaptioned:  # the new captioner also says it is synthetic
        tags, scores = [*tags, "synthetic"], [*scores, 0.8]
    return schema.Clip(id=f"{kind}-{i:02d}", audio=audio.encode(wave, SR), format="flac",
                       sample_rate=SR, num_samples=n, caption=caption,
                       summary=f"{kind} {i}", tags=tags,
                       tag_scores=scores, source=f"synthetic-{kind}",
                       caption_model="captioner-v2" if recaptioned else "captioner-v1",
                       tags_model="tagger-v1", labels={"domain": domain})


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """The metadata cache (and GZIP copies) of these tests go to a folder of their own."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("STRONGAUDIO_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Corpus a: 24 clips + one with undecodable audio + one whose bytes fail their CRC;
    corpus b: the clips with even numbers re-captioned; a scores file for a."""
    root = tmp_path_factory.mktemp("browse")
    (root / "a").mkdir()
    (root / "b").mkdir()
    clips = [_clip(kind, i) for i in range(8) for kind in KINDS]
    bad_audio = schema.Clip(id="bad-audio", audio=b"fLaC not really", format="flac",
                            sample_rate=SR, num_samples=SR, caption="this audio is broken",
                            tags=["broken"], labels={"domain": "sound"})
    crc_victim = _clip("tone", 99)
    with tfrecord.TFRecordWriter(str(root / "a" / "a-00000-of-00001.tfrecord")) as w:
        for c in [*clips, bad_audio, crc_victim]:
            w.write(schema.clip_to_example(c))
    shard = root / "a" / "a-00000-of-00001.tfrecord"
    rows = tfrecord.index_records(str(shard))
    data = bytearray(shard.read_bytes())
    offset, length = rows[-1]
    data[offset + length // 2] ^= 0xFF  # the last record's bytes no longer match their CRC
    shard.write_bytes(bytes(data))
    with tfrecord.TFRecordWriter(str(root / "b" / "b-00000-of-00001.tfrecord")) as w:
        for i in range(0, 8, 2):
            for kind in KINDS:
                w.write(schema.clip_to_example(_clip(kind, i, recaptioned=True)))
    scores = root / "consistency.jsonl"
    scores.write_text("".join(json.dumps({"id": c.id, "clap": i / len(clips), "note": "x"}) + "\n"
                              for i, c in enumerate(clips)))
    a = catalog_lib.Catalog("a", [str(shard)], [str(scores)])
    b = catalog_lib.Catalog("b", [str(root / "b" / "b-00000-of-00001.tfrecord")])
    return root, a, b


@pytest.fixture(scope="module")
def live(corpora):
    """The app on a real server (port chosen by the OS), stopped after the module."""
    _, a, b = corpora
    httpd = server.serve([a, b], "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def get(httpd, path: str, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=60)
    conn.request("GET", path, headers=headers or {})  # the path goes out exactly as written
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), body


def get_json(httpd, path: str):
    status, _, body = get(httpd, path)
    return status, json.loads(body)


# --- queries ------------------------------------------------------------------------------
def test_catalog_reads_metadata_and_flags_damage(corpora):
    _, a, b = corpora
    assert len(a) == 26 and a.info()["clips"] == 25 and len(b) == 12
    crc_row = 25
    assert "CRC" in a.errors[crc_row] or "crc" in a.errors[crc_row].lower()
    assert a.info()["damaged"] == 1 and a.info()["scores"] == ["clap"]
    assert a.duration[0] == pytest.approx(1.0) and a.domain_names[a.domain_codes[0]] == "music"


def test_metadata_cache_serves_the_next_start(tmp_path, own_cache):
    shard = tmp_path / "d-00000-of-00001.tfrecord"

    def write(kind):
        with tfrecord.TFRecordWriter(str(shard)) as w:
            for i in range(3):
                w.write(schema.clip_to_example(_clip(kind, i)))

    write("tone")
    first = catalog_lib.Catalog("d", [str(shard)])
    again = catalog_lib.Catalog("d", [str(shard)])
    assert (first.cached_files, again.cached_files) == (0, 1)
    for column in ("ids", "text", "snippet", "summary", "tags", "tag_scores"):
        assert getattr(again, column) == getattr(first, column)
    np.testing.assert_array_equal(again.duration, first.duration)
    assert catalog_lib.Catalog("d", [str(shard)], cache=False).cached_files == 0
    for cached in (own_cache / "browse").glob("*.json"):  # a damaged cache file is not used
        cached.write_text('[["only", "two"]]')
    assert catalog_lib.Catalog("d", [str(shard)]).cached_files == 0
    write("noise")  # the shard changed: its metadata is read again
    changed = catalog_lib.Catalog("d", [str(shard)])
    assert changed.cached_files == 0 and changed.ids[0] == "noise-00"
    assert list((own_cache / "browse").glob("*.json"))


def test_search_filters_and_pages(corpora):
    _, a, _ = corpora
    numeric = a.numeric

    def rows(**args):
        return a.search(catalog_lib.parse_query({k: [v] if isinstance(v, str) else v
                                                 for k, v in args.items()}, numeric))

    everything = rows()
    assert len(everything) == 25
    assert [a.ids[r] for r in rows(q="HISSES static")] == [f"noise-{i:02d}" for i in range(8)]
    assert len(rows(q="hisses rhythm")) == 0  # every word must match
    assert len(rows(tag="click")) == 8
    assert len(rows(tag=["click", "rhythm"], tag_score_min="0.5")) == 4  # odd i: rhythm 0.6
    assert {a.ids[r].split("-")[0] for r in rows(domain="sound")} == {"noise", "click", "bad"}
    assert len(rows(**{"min.duration": "1.5"})) == 12  # i % 4 in (2, 3): 1.5 s and 1.75 s
    assert len(rows(**{"min.duration": "1.2", "max.duration": "1.6"})) == 12
    assert len(rows(**{"min.clap": "0.5"})) == 12
    assert len(rows(source="synthetic-tone")) == 8 and len(rows(source="nowhere")) == 0
    by_clap = rows(sort="clap")  # the score file's order; the clip without a score comes last
    assert [a.ids[r] for r in by_clap[:24]] == [a.ids[r] for r in range(24)]
    assert a.ids[by_clap[24]] == "bad-audio"
    longest_first = rows(sort="-duration", domain="music")
    assert np.all(np.diff(a.duration[longest_first]) <= 0) and len(longest_first) == 8
    # Pages of one result concatenate to the whole result.
    q = catalog_lib.parse_query({"per_page": ["7"]}, numeric)
    pages = [a.page(catalog_lib.Query(page=p, per_page=7)) for p in range(4)]
    assert pages[0]["total"] == 25 and pages[0]["pages"] == 4 and q.per_page == 7
    assert [r["row"] for p in pages for r in p["results"]] == everything.tolist()


@pytest.mark.parametrize("args, message", [
    ({"page": ["x"]}, "not a whole number"),
    ({"per_page": ["0"]}, "out of range"),
    ({"min.nope": ["1"]}, "cannot filter on 'nope'"),
    ({"min.duration": ["abc"]}, "not a number"),
    ({"min.duration": ["nan"]}, "finite"),
    ({"q": ["a", "b"]}, "given 2 times"),
    ({"colour": ["red"]}, "unknown parameter 'colour'"),
    ({"sort": ["-colour"]}, "cannot sort by '-colour'"),
])
def test_malformed_queries_are_named(args, message):
    with pytest.raises(catalog_lib.QueryError, match=message):
        catalog_lib.parse_query(args, ["duration"])


def test_scores_file_errors(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"id": "x", "clap": 1}\nnot json\n')
    with pytest.raises(catalog_lib.ScoresFileError, match="line 2: not JSON"):
        catalog_lib.read_scores_file(str(bad))
    csv = tmp_path / "s.csv"
    csv.write_text("id,clap,label\nx,0.5,dog\n")
    assert catalog_lib.read_scores_file(str(csv)) == {"x": {"clap": 0.5}}
    with pytest.raises(catalog_lib.ScoresFileError, match=".jsonl or .csv"):
        catalog_lib.read_scores_file(str(tmp_path / "s.txt"))


# --- the HTTP API on a live server --------------------------------------------------------
def test_api_search_clip_compare_and_tags(live):
    status, page = get_json(live, "/api/search?q=hum&tag=sine&per_page=5")
    assert status == 200 and page["total"] == 8 and len(page["results"]) == 5
    assert page["results"][0]["tags"][0] == ["tone", 0.9]
    row = page["results"][0]["row"]
    status, clip = get_json(live, f"/api/clip/0/{row}")
    assert status == 200 and clip["caption"].startswith("Clip 0:")
    assert clip["caption_model"] == "captioner-v1" and clip["scores"] == {"clap": 0.0}
    assert clip["same_id"] == [{"corpus": 1, "name": "b", "row": 0}]
    status, other = get_json(live, "/api/clip/1/0")
    assert other["id"] == clip["id"] and other["caption"].startswith("Re-captioned")
    status, tags = get_json(live, "/api/tags?corpus=0")
    assert status == 200 and dict(tags["tags"])["tone"] == 8 and tags["clips"] == 25
    status, tag = get_json(live, "/api/tag/0/rhythm")
    assert status == 200 and tag["df"] == 8 and tag["co_occurring"][0][1] == 8
    assert get_json(live, "/api/tag/0/absent")[0] == 404


def test_audio_is_wav_with_byte_ranges(live):
    status, headers, whole = get(live, "/audio/0/0.wav")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert headers.get("Accept-Ranges") == "bytes"
    wave, rate = audio.decode(whole)
    assert rate == SR and len(wave) == SR  # clip 0 lasts 1 s
    status, headers, part = get(live, "/audio/0/0.wav", {"Range": "bytes=100-199"})
    assert status == 206 and part == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, _, tail = get(live, "/audio/0/0.wav", {"Range": f"bytes={len(whole) - 10}-"})
    assert status == 206 and tail == whole[-10:]
    assert get(live, "/audio/0/0.wav", {"Range": f"bytes={len(whole) + 5}-"})[0] == 416


def test_spectrogram_png(live, corpora):
    from PIL import Image

    status, headers, body = get(live, "/spectrogram/0/4.png")  # noise-01, 1.25 s
    assert status == 200 and headers["Content-Type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    assert img.shape == (64, 1 + int(1.25 * SR) // 160, 3)  # mel bins x frames (mel_db preset)
    assert img.std() > 5  # not one flat colour


def test_errors_are_answered_and_the_server_keeps_serving(live, corpora):
    root, a, _ = corpora
    # A record whose bytes fail their CRC, and one whose audio does not decode: 422, named.
    status, body = get_json(live, "/api/clip/0/25")
    assert status == 422 and "damaged record" in body["error"] and "record 25" in body["error"]
    for path in ("/audio/0/24.wav", "/spectrogram/0/24.png"):
        status, body = get_json(live, path)
        assert status == 422 and "cannot be decoded" in body["error"] and "record 24" in body["error"]
    # Malformed queries: 400 with the reason.
    status, body = get_json(live, "/api/search?per_page=100000")
    assert status == 400 and "per_page=100000 is out of range" in body["error"]
    status, body = get_json(live, "/api/search?corpus=x")
    assert status == 400 and "corpus='x'" in body["error"]
    assert get_json(live, "/api/search?corpus=7")[0] == 404
    assert get_json(live, "/api/clip/0/999")[0] == 404
    assert get(live, "/api/search?q=hum")[0] == 200  # still serving


def test_only_loopback_host_names_are_answered(live):
    """DNS rebinding: a page from elsewhere that resolves its own name to 127.0.0.1 sends
    that name as Host, and is refused."""
    status, _, body = get(live, "/api/corpora", {"Host": "attacker.example:%d" % live.port})
    assert status == 400 and b"clips" not in body
    assert get(live, "/api/corpora", {"Host": "localhost:%d" % live.port})[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../../setup.cfg", "/static/%2e%2e/%2e%2e/setup.cfg", "/static/..%2f..%2fcli.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/../../../etc/passwd",
    "/audio/0/..%2f..%2fa-00000-of-00001.tfrecord", "/a/a-00000-of-00001.tfrecord",
    "/api/clip/0/-1", "/api/tag/0/../../etc/passwd",
])
def test_no_file_outside_the_shards_is_served(live, path):
    status, headers, body = get(live, path)
    for _ in range(3):  # werkzeug redirects '//' to '/': follow it to the end
        if status not in (301, 302, 307, 308):
            break
        location = headers["Location"].split(f":{live.port}", 1)[-1]
        status, headers, body = get(live, location)
    assert status in (400, 404), (path, status)
    assert b"[metadata]" not in body and b"root:" not in body
    assert get(live, "/static/app.js")[0] == 200  # the page's own files are served


def test_damage_after_start_and_bucket_paths(tmp_path):
    """A shard changed under a running server answers 422 for the damaged record and serves
    the rest; a corpus in an object store (fsspec memory://) reads like a local one."""
    import fsspec

    shard = tmp_path / "c-00000-of-00001.tfrecord"
    with tfrecord.TFRecordWriter(str(shard)) as w:
        for i in range(3):
            w.write(schema.clip_to_example(_clip("tone", i)))
    remote = "memory://browse-test/c-00000-of-00001.tfrecord"
    fsspec.filesystem("memory").pipe_file(remote, shard.read_bytes())
    local, bucket = catalog_lib.Catalog("c", [str(shard)]), catalog_lib.Catalog("m", [remote])
    client = server.create_app([local, bucket]).test_client()
    assert bucket.ids == local.ids and client.get("/api/clip/1/2").json["id"] == "tone-02"
    assert client.get("/audio/1/2.wav").status_code == 200

    offset, length = tfrecord.index_records(str(shard))[1]
    data = bytearray(shard.read_bytes())
    data[offset + 10] ^= 0xFF
    shard.write_bytes(bytes(data))
    r = client.get("/api/clip/0/1")
    assert r.status_code == 422 and "record 1" in r.json["error"]
    assert client.get("/api/clip/0/2").status_code == 200


def test_cli_names_a_missing_corpus(capsys, tmp_path):
    from strongaudio_jax import cli

    assert cli.main(["browse", str(tmp_path / "nothing-*.tfrecord")]) == 2
    assert "no TFRecord files match" in capsys.readouterr().err


def test_cli_serves_until_stopped(tiny_corpus):
    """The command itself: indexes the corpus, says where it listens (port 0: one the OS
    picks), answers, and stops on SIGINT."""
    import signal
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "strongaudio_jax.cli", "browse",
                             str(tiny_corpus / "train-*.tfrecord"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # waits for each line the command prints
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert lines and lines[-1].startswith("serving on http://127.0.0.1:"), lines
        assert "36 clips in 1 file(s)" in "".join(lines)
        port = int(lines[-1].rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/corpora")
        assert json.loads(conn.getresponse().read())[0]["clips"] == 36
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the page in a real browser -----------------------------------------------------------
def test_page_in_headless_chromium(live, tmp_path):
    """Loads the page, narrows by a caption search, opens a clip: its spectrogram loads and its
    audio plays (duration known, time advances); a screenshot has real content."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from PIL import Image

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--autoplay-policy=no-user-gesture-required",
                                          "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{live.port}/")
            page.wait_for_selector("#count")
            assert page.inner_text("#count").startswith("25 clips")
            assert page.locator(".result").count() == 20

            page.fill("#q", "hisses")
            page.click("#go")
            page.wait_for_function("document.querySelector('#count')?.textContent.startsWith('8 clips')")
            assert page.locator(".result").count() == 8
            assert set(page.locator(".result .clip-link").all_inner_texts()) == {
                f"noise-{i:02d}" for i in range(8)}

            page.fill("#q", "")  # a filter from the lists the page fills in: domain
            page.select_option("#domain", "music")
            page.click("#go")  # (8 clips again: wait for the new ones, not the count)
            page.wait_for_function("(() => { const ids = [...document.querySelectorAll("
                                   "'.result .clip-link')].map((a) => a.textContent);"
                                   " return ids.length == 8 && ids.every((i) => i.startsWith('tone-')); })()")
            assert set(page.locator(".result .clip-link").all_inner_texts()) == {
                f"tone-{i:02d}" for i in range(8)}
            assert page.locator("input[name='min.clap']").count() == 1  # the curation score
            page.select_option("#sort", "-duration")  # longest first: 1.75 s (i = 3, 7)
            page.click("#go")
            page.wait_for_function("document.querySelector('.result .clip-link')?.textContent == 'tone-03'")
            assert page.locator(".result .clip-link").all_inner_texts()[:2] == ["tone-03", "tone-07"]

            page.goto(f"http://127.0.0.1:{live.port}/#/tag/0/rhythm")
            page.wait_for_selector("#tag-df")
            assert page.inner_text("#tag-df").startswith("document frequency 8 of 25 clips")
            assert page.locator("#co-occurring a.tag").all_inner_texts()[:2] == ["click", "percussive"]

            page.click("#damaged-link")  # the header counts the damaged record; its list
            page.wait_for_selector("#problems li")
            assert "record 25" in page.inner_text("#problems")

            page.goto(f"http://127.0.0.1:{live.port}/#/?q=hisses")
            page.wait_for_function("document.querySelector('#count')?.textContent.startsWith('8 clips')")
            page.click("text=noise-03")
            page.wait_for_selector("#clip-id")
            assert page.inner_text("#clip-id") == "noise-03"
            assert page.locator(".column").count() == 1  # b holds only even numbers
            page.wait_for_function("(() => { const i = document.querySelector('img.spec');"
                                   " return i.complete && i.naturalWidth > 0; })()")
            page.evaluate("document.querySelector('audio').play()")
            page.wait_for_function("(() => { const a = document.querySelector('audio');"
                                   " return isFinite(a.duration) && a.duration > 0"
                                   " && a.currentTime > 0.2; })()", timeout=60000)
            duration = page.evaluate("document.querySelector('audio').duration")
            assert duration == pytest.approx(1.75, abs=0.01)

            page.goto(f"http://127.0.0.1:{live.port}/#/clip/0/0")  # in both corpora
            page.wait_for_function("document.querySelectorAll('.column').length == 2")
            assert "Re-captioned" in page.inner_text(".column[data-corpus='1'] .caption")
            # The tag only the re-captioned corpus gives is marked.
            assert page.locator(".column[data-corpus='1'] tr.only").all_inner_texts() == ["synthetic\t0.800"]
            assert page.locator(".column[data-corpus='0'] tr.only").count() == 0
            page.wait_for_function("[...document.querySelectorAll('img.spec')].every("
                                   "(i) => i.complete && i.naturalWidth > 0)")

            shot = tmp_path / "clip.png"  # (STRONGAUDIO_BROWSE_SHOT=path keeps a copy)
            page.screenshot(path=str(shot), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    if os.environ.get("STRONGAUDIO_BROWSE_SHOT"):
        shutil.copyfile(shot, os.environ["STRONGAUDIO_BROWSE_SHOT"])
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
    assert img.shape[0] >= 900 and img.std() > 20  # text, images, players: not a blank page
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100
