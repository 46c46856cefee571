"""A policy served over HTTP by any OpenAI-compatible server (``vllm serve``, SGLang, TGI, OpenAI).

Plain-text prompts go to ``POST /v1/completions``, chat-message prompts to
``POST /v1/chat/completions`` (the server applies its chat template); ``endpoint=`` forces
one of them. Each prompt is one request asking for ``n`` choices with the sampled tokens'
log-probs; requests run concurrently in a thread pool. Only the standard library is used.

Token ids: vLLM returns them when asked (``return_token_ids``, sent by default); servers that
do not fill ``Generation.prompt_ids``/``token_ids`` with ``()``. Log-probs are what the server
reports for the sampled tokens; ``vllm serve`` reports temperature-1 (raw) log-probs by default
(``--logprobs-mode raw_logprobs``), matching the policy contract.

Transient failures (connection refused or reset, timeouts, HTTP 408/409/429/5xx) are retried
with exponential backoff; other HTTP errors raise :class:`ServerError` at once with the
server's message.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm.auto import tqdm

from pope_env.agents.policy import Generation, Prompt, SamplingParams
from pope_env.errors import ConfigError, PopeEnvError

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(PopeEnvError, RuntimeError):
    """The server could not be reached, kept failing, or rejected a request.

    Attributes:
        status: The HTTP status of the last answer (``None`` if none came).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenAIPolicy:
    """Samples from a model behind an OpenAI-compatible HTTP API.

    Args:
        base_url: Server root, with or without ``/v1`` (e.g. ``"http://127.0.0.1:8000"``).
        model: Served model name; ``None`` asks ``GET /v1/models`` and takes the first.
        api_key: Bearer token; default ``$OPENAI_API_KEY`` (none sent if unset).
        endpoint: ``"auto"`` (text -> completions, messages -> chat), ``"completions"``
            (text prompts only) or ``"chat"`` (a text prompt becomes one user message).
        timeout: Seconds to wait for one HTTP answer.
        max_retries: Retries of a transient failure before :class:`ServerError`.
        backoff: First retry delay in seconds; doubles each retry (with jitter), capped at 30 s.
        concurrency: Requests in flight at once.
        return_token_ids: Ask the server for token ids (a vLLM extension; others ignore it).
        extra_body: Extra JSON fields sent with every request (e.g. ``{"top_k": 20}``).
        name: Policy id for logs and caches (default ``"openai:<model>"``).
        progress: Show a progress bar for calls with more than one prompt.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        endpoint: str = "auto",
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        concurrency: int = 8,
        return_token_ids: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        name: str | None = None,
        progress: bool = True,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if endpoint not in ("auto", "completions", "chat"):
            raise ConfigError(f"endpoint must be 'auto', 'completions' or 'chat', got {endpoint!r}")
        if timeout <= 0 or max_retries < 0 or backoff < 0 or concurrency < 1:
            raise ConfigError("need timeout > 0, max_retries >= 0, backoff >= 0 and concurrency >= 1")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.return_token_ids = return_token_ids
        self.extra_body = dict(extra_body or {})
        self.progress = progress
        self.model = model if model is not None else self.served_models()[0]
        self.name = name or f"openai:{self.model}"

    # ------------------------------------------------------------------ API
    def served_models(self) -> list[str]:
        """Model names the server lists at ``GET /v1/models``."""
        answer = self._request("GET", "/models", None)
        names = [m.get("id") for m in answer.get("data", []) if isinstance(m, dict) and m.get("id")]
        if not names:
            raise ServerError(f"{self.base_url}/models lists no models; pass model= explicitly")
        return names

    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]:
        """Sample ``n`` completions per prompt; see :class:`~pope_env.agents.policy.Policy`."""
        _check(prompts, n, sampling)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._generate_one, p, n, sampling) for p in prompts]
            bar = tqdm(futures, desc=f"requests to {self.model}", unit="prompt", disable=not self.progress or len(prompts) < 2)
            return [f.result() for f in bar]

    # ------------------------------------------------------------------ one prompt
    def _generate_one(self, prompt: Prompt, n: int, sampling: SamplingParams) -> list[Generation]:
        chat = self.endpoint == "chat" or (self.endpoint == "auto" and not isinstance(prompt, str))
        if not chat and not isinstance(prompt, str):
            raise ConfigError("endpoint='completions' takes text prompts; use endpoint='auto' or 'chat' for messages")
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if self.return_token_ids:
            body["return_token_ids"] = True
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            if body["messages"][-1].get("role") == "assistant":  # continue a partial answer (vLLM extension)
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            body["logprobs"] = True
            body["top_logprobs"] = 0
        else:
            body["prompt"] = prompt
            body["logprobs"] = 0
        body.update(self.extra_body)
        answer = self._request("POST", "/chat/completions" if chat else "/completions", body)
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise ServerError(f"asked {self.base_url} for n={n} choices, got {len(choices)}: {_excerpt(answer)}")
        prompt_ids = tuple(answer.get("prompt_token_ids") or choices[0].get("prompt_token_ids") or ())
        return [_chat_generation(c, prompt_ids) if chat else _text_generation(c, prompt_ids) for c in choices]

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        status: int | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                status, detail = exc.code, _error_detail(exc)
                if exc.code not in _RETRY_STATUS:
                    raise ServerError(f"{method} {url} was rejected with HTTP {exc.code}: {detail}", exc.code) from exc
                last = f"HTTP {exc.code}: {detail}"
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}"
                continue
            try:
                answer = json.loads(raw)
            except ValueError as exc:
                raise ServerError(f"{method} {url} answered with non-JSON: {raw[:200]!r}") from exc
            if not isinstance(answer, dict):
                raise ServerError(f"{method} {url} answered with {type(answer).__name__}, expected a JSON object")
            return answer
        raise ServerError(
            f"{method} {url} failed {self.max_retries + 1} times (last: {last}); is the server up and "
            f"reachable, and is timeout={self.timeout}s enough?",
            status,
        )

    def __repr__(self) -> str:
        return f"OpenAIPolicy(base_url={self.base_url!r}, model={self.model!r})"


def _text_generation(choice: Mapping[str, Any], prompt_ids: tuple[int, ...]) -> Generation:
    logprobs = choice.get("logprobs") or {}
    values = tuple(_finite(x) for x in (logprobs.get("token_logprobs") or ()))
    return Generation(
        text=choice.get("text") or "",
        prompt_ids=tuple(choice.get("prompt_token_ids") or prompt_ids),
        token_ids=tuple(choice.get("token_ids") or ()),
        logprobs=values,
        finish_reason=choice.get("finish_reason") or "stop",
        extra={"tokens": tuple(logprobs.get("tokens") or ()), "stop_reason": choice.get("stop_reason")},
    )


def _chat_generation(choice: Mapping[str, Any], prompt_ids: tuple[int, ...]) -> Generation:
    content = (choice.get("logprobs") or {}).get("content") or ()
    message = choice.get("message") or {}
    return Generation(
        text=message.get("content") or "",
        prompt_ids=prompt_ids,
        token_ids=tuple(choice.get("token_ids") or ()),
        logprobs=tuple(_finite(t.get("logprob")) for t in content),
        finish_reason=choice.get("finish_reason") or "stop",
        extra={"tokens": tuple(t.get("token") for t in content), "stop_reason": choice.get("stop_reason")},
    )


def _finite(x: Any) -> float:
    value = float(x) if x is not None else -math.inf
    return value if value == value else -math.inf  # NaN -> -inf


def _check(prompts: Sequence[Prompt], n: int, sampling: SamplingParams) -> None:
    if isinstance(prompts, (str, dict)):
        raise ConfigError("generate takes a sequence of prompts; wrap a single prompt in a list")
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    if not sampling.temperature >= 0 or not 0 < sampling.top_p <= 1 or sampling.max_new_tokens < 1:
        raise ConfigError(f"need temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1; got {sampling}")
    if isinstance(sampling.stop, str) or any(not isinstance(s, str) or not s for s in sampling.stop):
        raise ConfigError(f"stop must be a tuple of non-empty strings, got {sampling.stop!r}")
    for i, p in enumerate(prompts):
        if not isinstance(p, (str, list)):
            raise ConfigError(f"prompt {i} is a {type(p).__name__}; a prompt is a str or a list of chat messages")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", errors="replace")
    except Exception:  # the body is a courtesy; the status says enough
        return exc.reason if isinstance(exc.reason, str) else ""
    try:
        parsed = json.loads(body)
        message = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        if isinstance(message, dict):
            message = message.get("message", message)
        return str(message)[:500]
    except ValueError:
        return body[:500]


def _excerpt(obj: Any) -> str:
    return json.dumps(obj)[:300]
