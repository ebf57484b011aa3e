"""One OpenAI-compatible HTTP client (llama.cpp's server, vLLM, SGLang, TGI, Ollama, ...) for everything the harness
asks a server: the judge's questions (pipeline.judge) and served models' replies (engine.served).

httpx does the requests and tenacity the retries: connection failures, timeouts, 429 and 5xx answers and answers that
are not JSON are retried with exponential backoff (0.5 s, 1 s, 2 s ... at most 8 s); any other 4xx is the server's
final word (`Rejected`, for the caller to handle). When the tries run out the run stops with one line naming the URL
and what it is for.
"""
from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from quantscreen.records.errors import ScreenInputError

START_HINT = "start the server (e.g. python -m llama_cpp.server --model FILE --port 8080)"


class Rejected(Exception):
    """A 4xx answer other than 429: retrying would not help."""

    def __init__(self, code: int, detail: str):
        super().__init__(f"HTTP {code}")
        self.code, self.detail = code, detail


class _Failing(Exception):
    """A failure worth retrying (connection, timeout, 429, 5xx, an answer that is not JSON); its text says which."""

    def __init__(self, what: str):
        super().__init__(" ".join(what.splitlines()))  # the run stops with one line


class OpenAIClient:
    """A base URL (`http://HOST:PORT/v1`) and how to reach it. `role` names the server in errors ("judge endpoint",
    "served model"); `fix` says which setting points at it."""

    def __init__(self, url: str, role: str, fix: str, api_key_env: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3):
        self.url = url.rstrip("/")
        self.role, self.fix = role, fix
        self.api_key_env, self.timeout_s, self.retries = api_key_env, timeout_s, retries
        self._http: httpx.Client | None = None

    def headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ScreenInputError(f"api_key_env ({self.api_key_env}) of {self.url}", "is not set in the "
                                       "environment", f"export {self.api_key_env}=... or drop api_key_env")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def request(self, path: str, body: dict | None = None) -> dict:
        """GET (no body) or POST `path`'s JSON answer, retried as the module says; `Rejected` for a final 4xx."""
        url = f"{self.url}{path}"
        headers = self.headers()
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), wait=wait_exponential(0.5, max=8.0),
                            retry=retry_if_exception_type(_Failing), reraise=True)
        try:
            return retrying(self._attempt, url, headers, body)
        except _Failing as exc:
            raise ScreenInputError(url, f"({self.role}) is unreachable or failing after {self.retries + 1} tries "
                                   f"({exc})", f"{START_HINT} or fix {self.fix}") from None
        except httpx.InvalidURL as exc:
            raise ScreenInputError(url, f"({self.role}) is not a valid URL ({exc})",
                                   f"fix {self.fix} (e.g. http://127.0.0.1:8080/v1)") from None

    def _attempt(self, url: str, headers: dict, body: dict | None) -> dict:
        if self._http is None:  # one connection pool per client, shared by its threads (httpx.Client is thread-safe)
            self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=True)
        try:
            resp = self._http.request("GET" if body is None else "POST", url, json=body, headers=headers)
        except httpx.RequestError as exc:  # connection refused or reset, timeouts, protocol errors
            raise _Failing(f"{type(exc).__name__}: {exc}") from None
        if not resp.is_success:
            detail = resp.content.decode("utf-8", "replace")[:300].replace("\n", " ")
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Failing(f"HTTP {resp.status_code} {detail}")
            raise Rejected(resp.status_code, detail)
        try:
            return resp.json()
        except ValueError as exc:  # not JSON (or not UTF-8)
            raise _Failing(f"answer is not JSON ({exc})") from None

    def models(self) -> list[dict]:
        """What `/models` lists (an empty list when the server does not answer that path)."""
        try:
            listed = self.request("/models")
        except Rejected:
            return []
        data = listed.get("data", []) if isinstance(listed, dict) else []
        return [m for m in data if isinstance(m, dict) and m.get("id")]

    def served_model(self, wanted: str | None, setting: str) -> str:
        """The model name to send: `wanted`, checked against `/models`, else the first one listed ("" when the
        server lists none). A name the server does not list is one line naming what it lists."""
        ids = [str(m["id"]) for m in self.models()]
        if wanted and ids and wanted not in ids:
            raise ScreenInputError(self.url, f"({self.role}) does not serve model '{wanted}' (it lists {ids[:5]})",
                                   f"set {setting} to one of them")
        return wanted or (ids[0] if ids else "")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


@contextmanager
def running_server(cmd: list[str], url: str, log: Path):
    """Start a local server process (`cmd`, its output to `log`) and wait, with no wall-clock limit, until `url`'s
    /models answers; stop it when the block ends. For tests and benchmarks that screen against a real server."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:  # a loaded machine starts it late; a failed start ends the process
            try:
                httpx.get(f"{url.rstrip('/')}/models", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} did not start: {log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
