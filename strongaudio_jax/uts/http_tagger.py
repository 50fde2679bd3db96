"""Extractor over an OpenAI-compatible chat endpoint (vLLM, SGLang, or a hosted API).

Standard library only: `urllib` requests on a thread pool. Requests are queued in a bounded
sliding window, with at most `concurrency` in flight and at most `rate` starts per second; timeouts,
connection errors, HTTP 429 and 5xx, and bodies that are not the API's JSON are retried with
exponential backoff (Retry-After is honoured up to `max_backoff`). A reply whose *content* is
malformed is not retried: it is parsed, repaired where safe or counted as failed, like any LLM
reply.

The API key is read from the environment ($STRONGAUDIO_LLM_API_KEY, else $OPENAI_API_KEY) and
only ever goes into the Authorization header: never into messages, logs or output files.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator, Sequence

from strongaudio_jax.uts import llm_reply
from strongaudio_jax.uts.normalize import Normalizer
from strongaudio_jax.uts.tagging import CaptionItem

log = logging.getLogger(__name__)

KEY_ENV_VARS = ("STRONGAUDIO_LLM_API_KEY", "OPENAI_API_KEY")


class EndpointError(RuntimeError):
    """The endpoint refuses every request (bad URL, key or model): stop instead of retrying."""


class _Transient(Exception):
    """A failure worth retrying; `wait` is the server's Retry-After, if it gave one."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class RateLimiter:
    """At most `rate` request starts per second across threads (0: unlimited)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_time = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_time)
            self.next_time = start + self.interval
        time.sleep(max(0.0, start - now))


def api_key_from_env() -> str:
    for var in KEY_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return ""


class HTTPTagger:
    """Tags captions through `POST {base_url}/chat/completions`."""

    def __init__(self, base_url: str, model: str, normalize: Normalizer | None = None, *,
                 concurrency: int = 8, rate: float = 0.0, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 max_tokens: int = 200, temperature: float = 0.0, api_key: str | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.normalize = normalize or Normalizer()
        self.concurrency = max(1, concurrency)
        self.limiter = RateLimiter(rate)
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.max_tokens, self.temperature = max_tokens, temperature
        self._key = api_key if api_key is not None else api_key_from_env()
        self.name = f"http:{model}"
        self.retries = 0  # total retried attempts, for the run summary
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        key = "set" if self._key else "unset"
        return f"HTTPTagger({self.url!r}, model={self.model!r}, key={key})"

    # ------------------------------------------------------------------ one request

    def _post(self, caption: str) -> str:
        body = json.dumps({"model": self.model, "messages": llm_reply.chat_messages(caption),
                           "temperature": self.temperature, "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            wait = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            if e.code == 429 or e.code >= 500:
                raise _Transient(f"HTTP {e.code}", wait) from None
            if e.code in (401, 403):
                raise EndpointError(f"{self.url} answered HTTP {e.code}: check the API key in "
                                    f"${KEY_ENV_VARS[0]} (or ${KEY_ENV_VARS[1]})") from None
            raise EndpointError(f"{self.url} answered HTTP {e.code} ({e.reason}); check the URL "
                                f"and the model name {self.model!r}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise _Transient(f"{type(e).__name__}: {reason}") from None
        try:
            return json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient("response body is not a chat completion") from None

    def _tag_one(self, item: CaptionItem) -> llm_reply.TagResult:
        attempt = 0
        while True:
            self.limiter.wait()
            try:
                content = self._post(item.caption)
            except _Transient as e:
                attempt += 1
                if attempt > self.max_retries:
                    return llm_reply.TagResult.failed(f"gave up after {attempt} attempts: {e}")
                delay = min(self.max_backoff, e.wait if e.wait is not None else
                            self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
                log.warning("clip %s: %s; retry %d/%d in %.1f s", item.id, e, attempt,
                            self.max_retries, delay)
                with self._lock:
                    self.retries += 1
                time.sleep(delay)
                continue
            result = llm_reply.parse_reply(content, self.normalize)
            if attempt:
                result.problems.insert(0, f"answered after {attempt} retries")
            return result

    # ------------------------------------------------------------------ many

    def tag_many(self, items: Sequence[CaptionItem]) -> Iterator[tuple[str, llm_reply.TagResult]]:
        """Yields results as they finish. A sliding window of 4 x concurrency submitted requests
        keeps memory flat for big corpora without waiting on the slowest request of a batch."""
        window = self.concurrency * 4
        pool = cf.ThreadPoolExecutor(self.concurrency, thread_name_prefix="uts-http")
        todo = iter(items)
        running: dict[cf.Future, str] = {}
        try:
            while True:
                for it in itertools.islice(todo, window - len(running)):
                    running[pool.submit(self._tag_one, it)] = it.id
                if not running:
                    return
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    yield running.pop(fut), fut.result()
        finally:  # interrupted (Ctrl-C, error): drop what has not started, keep what is written
            pool.shutdown(wait=False, cancel_futures=True)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
