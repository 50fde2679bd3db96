"""The OpenAI-compatible HTTP extractor against a local server that misbehaves on purpose:
timeouts, 5xx, 429, bodies that are not JSON, malformed replies, an interruption and a resume.
The API key must reach the server and appear nowhere else."""

import io
import json
import logging
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from strongaudio_jax import cli
from strongaudio_jax.uts import http_tagger, normalize, tagging

KEY = "sk-test-5EcReT-do-not-leak"
GOOD = '{"tags": ["dog", "bark", "outdoor", "park", "distant", "loud"]}'


class Server:
    """Replies by the first word of the caption; the attempt number picks the behaviour."""

    BEHAVIOUR = {  # caption word -> replies for attempts 1, 2, ... (the last one repeats)
        "canned": [GOOD],
        "flaky": [503, GOOD],
        "slow": ["SLEEP", GOOD],
        "ratelimited": [429, GOOD],
        "badbody": ["NOTJSON", GOOD],
        "prose": ["Sure! Tags: dog, bark, outdoor, park, distant"],
        "wrongkey": ['{"labels": ["dog", "bark", "outdoor", "park", "distant"]}'],
        "multiword": ['{"tags": ["dog", "dog barking", "bark", "outdoor", "park", "distant", "loud"]}'],
        "down": [500],
    }

    def __init__(self, delay=0.0):
        self.requests = []  # (caption, phase, authorization header)
        self.phase = 1
        self.delay = delay
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                caption = body["messages"][1]["content"].rsplit("Caption:\n", 1)[1]
                with server.lock:
                    attempt = 1 + sum(c == caption for c, _, _ in server.requests)
                    server.requests.append((caption, server.phase, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, b'{"error": "bad key"}')
                time.sleep(server.delay)
                plan = server.BEHAVIOUR[caption.split()[0]]
                reply = plan[min(attempt, len(plan)) - 1]
                if isinstance(reply, int):
                    headers = {"Retry-After": "0"} if reply == 429 else {}
                    return self._send(reply, b'{"error": "busy"}', headers)
                if reply == "SLEEP":
                    time.sleep(1.0)
                    return self._send(200, b"{}")
                if reply == "NOTJSON":
                    return self._send(200, b"<html>gateway error</html>")
                out = {"choices": [{"message": {"role": "assistant", "content": reply}}]}
                self._send(200, json.dumps(out).encode())

            def _send(self, code, data, headers=None):
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def count(self, word, phase=None):
        return sum(c.split()[0] == word and (phase is None or p == phase) for c, p, _ in self.requests)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def tagger(server, **kw):
    opts = dict(concurrency=4, timeout=0.3, max_retries=3, backoff=0.01, max_backoff=0.05)
    opts.update(kw)
    return http_tagger.HTTPTagger(server.url, "test-model", normalize.Normalizer(), **opts)


def test_survives_timeouts_5xx_429_bad_bodies_and_malformed_replies(server, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("STRONGAUDIO_LLM_API_KEY", KEY)
    items = [tagging.CaptionItem(f"{w}-{i}", f"{w} clip {i}") for w in Server.BEHAVIOUR for i in range(2)]
    out = tmp_path / "tags.jsonl"
    caplog.set_level(logging.DEBUG)
    t = tagger(server)
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        stats = tagging.tag_corpus(items, t, str(out))
    rows = tagging.read_tag_file(str(out))
    status = {k: r["status"] for k, r in rows.items()}
    for w in ("canned", "flaky", "slow", "ratelimited", "badbody"):
        for i in range(2):
            row = rows[f"{w}-{i}"]
            assert row["status"] == "ok", row
            assert row["tags"] == ["dog", "bark", "outdoor", "park", "distant", "loud"]
            assert row["problems"] == ([] if w == "canned" else ["answered after 1 retries"])
    assert status["multiword-0"] == "repaired" and "not one word" in " ".join(rows["multiword-0"]["problems"])
    assert status["prose-0"] == "failed" and "no JSON" in rows["prose-0"]["problems"][0]
    assert status["wrongkey-0"] == "failed" and "no 'tags' key" in rows["wrongkey-0"]["problems"][0]
    assert status["down-0"] == "failed" and "gave up after 4 attempts: HTTP 500" in rows["down-0"]["problems"][0]
    assert (stats.ok, stats.repaired, stats.failed) == (10, 2, 6)
    # Malformed *content* is judged, not retried; transport failures are retried.
    assert server.count("prose") == 2 and server.count("wrongkey") == 2
    assert server.count("flaky") == 4 and server.count("down") == 8
    assert t.retries == 4 * 2 + 3 * 2  # one each for flaky/slow/ratelimited/badbody, three for down
    assert "retry 1/3" in caplog.text
    # The key reached the server on every request, and nowhere else.
    assert {auth for _, _, auth in server.requests} == {f"Bearer {KEY}"}
    for text in (caplog.text, stdout.getvalue(), stderr.getvalue(), out.read_text(), repr(t)):
        assert KEY not in text


def test_interrupted_run_resumes_without_rerequesting_finished_clips(server, monkeypatch, tmp_path):
    monkeypatch.setenv("STRONGAUDIO_LLM_API_KEY", KEY)
    server.delay = 0.02
    items = [tagging.CaptionItem(f"c{i:02d}", f"canned clip {i}") for i in range(40)]
    out = tmp_path / "tags.jsonl"

    def interrupt_after_8(stats):
        if stats.ok == 8:
            raise KeyboardInterrupt  # what Ctrl-C does in the main thread

    with pytest.raises(KeyboardInterrupt):
        tagging.tag_corpus(items, tagger(server, concurrency=2), str(out), progress=interrupt_after_8)
    done_first = set(tagging.usable_tags(str(out)))
    assert len(done_first) == 8
    time.sleep(0.1)  # let requests that were in flight at the interruption finish
    requested_first = server.count("canned", phase=1)
    assert requested_first < 40  # the rest were never sent
    server.phase = 2
    stats = tagging.tag_corpus(items, tagger(server, concurrency=2), str(out))
    assert stats.skipped_done == 8 and stats.ok == 32
    second = {c for c, p, _ in server.requests if p == 2}
    assert len(second) == 32 and not second & {f"canned clip {int(k[1:])}" for k in done_first}
    assert set(tagging.usable_tags(str(out))) == {it.id for it in items}


def test_rate_limit_spaces_requests(server, monkeypatch, tmp_path):
    monkeypatch.setenv("STRONGAUDIO_LLM_API_KEY", KEY)
    items = [tagging.CaptionItem(f"c{i}", f"canned {i}") for i in range(6)]
    start = time.monotonic()
    results = dict(tagger(server, concurrency=6, rate=20).tag_many(items))
    assert time.monotonic() - start >= 0.25  # 6 starts at 20/s span >= 5/20 s
    assert all(r.status == "ok" for r in results.values())


def test_wrong_key_stops_with_a_clear_message(server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("STRONGAUDIO_LLM_API_KEY", "sk-wrong-secret")
    captions = tmp_path / "c.jsonl"
    captions.write_text(json.dumps({"id": "a", "caption": "canned 1"}) + "\n")
    code = cli.main(["uts", "tag", "--captions", str(captions), "--out", str(tmp_path / "t.jsonl"),
                     "--extractor", "http", "--url", server.url, "--model", "m"])
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 401" in err and "STRONGAUDIO_LLM_API_KEY" in err
    assert "sk-wrong-secret" not in err and "Traceback" not in err


def test_ctrl_c_on_the_command_line_then_the_same_command_resumes(server, tmp_path):
    """A real SIGINT to `strongaudio uts tag --extractor http`; the rerun sends only unfinished clips."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    server.delay = 0.03
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"id": f"c{i:02d}", "caption": f"canned clip {i}"}) + "\n"
                                for i in range(30)))
    out = tmp_path / "tags.jsonl"
    cmd = [sys.executable, "-m", "strongaudio_jax.cli", "uts", "tag", "--captions", str(captions),
           "--out", str(out), "--extractor", "http", "--url", server.url, "--model", "m",
           "--concurrency", "2"]
    env = dict(os.environ, STRONGAUDIO_LLM_API_KEY=KEY, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while (not out.exists() or len(out.read_text().splitlines()) < 6) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    done_first = set(tagging.usable_tags(str(out)))
    assert 6 <= len(done_first) < 30
    server.phase = 2
    rerun = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"30 clips: {len(done_first)} already tagged, {30 - len(done_first)} ok" in rerun.stdout
    second = {c for c, p, _ in server.requests if p == 2}
    assert not second & {f"canned clip {int(k[1:])}" for k in done_first}
    assert set(tagging.usable_tags(str(out))) == {f"c{i:02d}" for i in range(30)}
    for text in (stdout, stderr, rerun.stdout, rerun.stderr, out.read_text()):
        assert KEY not in text
