"""A tiny causal character-level transformer and its tokenizer: the CPU testbed's policy.

:class:`CharTokenizer` maps printable ASCII plus newline to ids, with ``PAD``/``BOS``/``EOS``.
:class:`CharTransformer` is a pre-LayerNorm GPT with rotary position embeddings (relative
positions, so a state deep into a long solution looks like the same state at the start of a
short one) and a key/value cache for generation. :class:`CharLMPolicy` wraps both in the
:class:`~pope_env.agents.policy.Policy` contract (sampling side) and the learner interface
the GRPO trainer consumes (:class:`~pope_env.agents.policy.LearnerPolicy`: ``.model`` and
:meth:`CharLMPolicy.token_logprobs`).

Prompts are plain text; a prompt is encoded as ``BOS + chars`` and a completion ends with
``EOS``. Chat-message prompts are refused: a character model has no chat template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pope_env.agents.policy import TokenLogprobs
from pope_env.agents.policy import Generation, Prompt, SamplingParams
from pope_env.errors import ConfigError, DataFormatError
from pope_env.io import atomic_write_bytes, atomic_write_json

PAD, BOS, EOS = 0, 1, 2
_CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))


class CharTokenizer:
    """Characters of printable ASCII and ``"\\n"`` to ids ``3..``; ids 0/1/2 are PAD/BOS/EOS."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, charset: str = _CHARSET) -> None:
        if len(set(charset)) != len(charset):
            raise ConfigError("charset has repeated characters")
        self.charset = charset
        self._to_id = {c: i + 3 for i, c in enumerate(charset)}

    @property
    def vocab_size(self) -> int:
        return len(self.charset) + 3

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text``; raises :class:`DataFormatError` naming a character outside the charset."""
        try:
            ids = [self._to_id[c] for c in text]
        except KeyError as exc:
            raise DataFormatError(
                f"character {exc.args[0]!r} is not in the char model's charset (printable ASCII "
                f"and newline); rewrite the prompt without it"
            ) from None
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids are dropped."""
        return "".join(self.charset[i - 3] for i in ids if i >= 3)


@dataclass(frozen=True)
class CharLMConfig:
    """Shape of a :class:`CharTransformer`.

    Attributes:
        vocab_size: Number of token ids (tokenizer's ``vocab_size``).
        d_model: Residual width.
        n_layers: Transformer blocks.
        n_heads: Attention heads per block (``d_model`` must divide by it).
        max_len: Longest sequence (prompt + completion) in tokens the cache is sized for.
        dropout: Dropout in attention and MLP during training.
    """

    vocab_size: int = len(_CHARSET) + 3
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    max_len: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"d_model={self.d_model} must split into {self.n_heads} heads of even size"
            )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _rope_tables(head_dim: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # [T, head_dim/2]
    return angles.cos(), angles.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of ``x`` [B, H, T, D] by per-position angles ``cos``/``sin`` [B, 1, T, D/2]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class _Block(nn.Module):
    def __init__(self, cfg: CharLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache_pos: int = 0,
    ) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        if cache is not None:  # write this chunk's keys/values, attend over everything so far
            cache[0][:, :, cache_pos : cache_pos + t] = k
            cache[1][:, :, cache_pos : cache_pos + t] = v
            k, v = cache[0][:, :, : cache_pos + t], cache[1][:, :, : cache_pos + t]
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(b, t, d)), p, self.training)
        return x + F.dropout(self.mlp(self.ln2(x)), p, self.training)


class CharTransformer(nn.Module):
    """Decoder-only transformer over characters: ``forward(ids, positions, mask) -> logits``."""

    def __init__(self, cfg: CharLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = _rope_tables(cfg.d_model // cfg.n_heads, cfg.max_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        cache_pos: int = 0,
    ) -> torch.Tensor:
        """Logits [B, T, V] for ``ids`` [B, T] at rotary ``positions`` [B, T].

        ``mask`` is a boolean attention mask broadcastable to [B, 1, T, T_keys] (True =
        attend). With ``caches`` (one (k, v) pair per block, [B, H, T_max, D]) the keys and
        values of this chunk are stored at ``cache_pos`` and attention covers the cache.
        """
        if int(positions.max()) >= self.cfg.max_len:
            raise ConfigError(
                f"sequence position {int(positions.max())} exceeds max_len={self.cfg.max_len}; "
                "shorten the prompt or lower max_new_tokens"
            )
        cos = self.rope_cos[positions].unsqueeze(1)
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.embed(ids)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, None if caches is None else caches[i], cache_pos)
        return self.head(self.ln_f(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _right_padded(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[r, : len(s)] = True
    return ids, mask


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


class CharLMPolicy:
    """A :class:`CharTransformer` as a policy (sampling) and as a learner (log-probs with grads).

    Args:
        model: The network (its ``cfg.max_len`` bounds prompt + completion length).
        tokenizer: Character tokenizer; defaults to :class:`CharTokenizer`.
        name: Shown in logs.
        batch_size: Sequences decoded together in :meth:`generate` (memory/speed trade-off).
    """

    def __init__(
        self,
        model: CharTransformer,
        tokenizer: CharTokenizer | None = None,
        *,
        name: str = "charlm",
        batch_size: int = 256,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer or CharTokenizer()
        self.name = name
        self.batch_size = batch_size
        if self.tokenizer.vocab_size != model.cfg.vocab_size:
            raise ConfigError(
                f"tokenizer has {self.tokenizer.vocab_size} ids but the model expects "
                f"{model.cfg.vocab_size}"
            )

    # --- sampling side ------------------------------------------------------------------
    def encode_prompt(self, prompt: Prompt) -> list[int]:
        if not isinstance(prompt, str):
            raise ConfigError(
                "the char model has no chat template; pass plain-text prompts (render the "
                "messages to text first)"
            )
        return self.tokenizer.encode(prompt, bos=True)

    def tokenize(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of (prompt, completion) pairs as the policy samples them: ``BOS + prompt``
        and ``completion + EOS`` (the SFT side of :func:`pope_env.agents.sft.tokenize_pairs`)."""
        if len(prompts) != len(completions):
            raise ConfigError(f"{len(prompts)} prompts but {len(completions)} completions")
        return ([self.encode_prompt(p) for p in prompts],
                [self.tokenizer.encode(c, eos=True) for c in completions])

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams()
    ) -> list[list[Generation]]:
        """``n`` sampled completions per prompt (KV-cached, batched, deterministic for a seed).

        ``Generation.logprobs`` are temperature-1 log-probs of the sampled tokens (the
        learner's ratio denominator), whatever ``sampling.temperature`` was.
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if sampling.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {sampling.temperature}")
        encoded = [self.encode_prompt(p) for p in prompts]
        flat = [ids for ids in encoded for _ in range(n)]
        gen = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None

        def draw(probs: torch.Tensor, rows: slice, t: int) -> torch.Tensor:
            return torch.multinomial(probs, 1, generator=gen).squeeze(-1)

        return self._generate_rows(flat, n, sampling, draw, per_row_room=False)

    @torch.no_grad()
    def generate_seeded(
        self, prompts: Sequence[Prompt], *, n: int = 1, sampling: SamplingParams = SamplingParams(),
        seeds: Sequence[int],
    ) -> list[list[Generation]]:
        """``n`` completions per prompt, prompt ``j``'s drawn from its own generator seeded
        ``seeds[j]`` (``sampling.seed`` is ignored): the optional
        :class:`~pope_env.agents.policy.Policy` capability that lets a caller batch prompts
        whose samples must not depend on each other.

        Sampling is by inverse CDF: prompt ``j``'s generator draws an ``[n, max_new_tokens]``
        block of uniforms up front (a fixed count, whatever rows finish early), and sample
        ``r`` takes the token where ``u[r, t]`` falls in step ``t``'s cumulative
        distribution. So prompt ``j``'s completions depend only on its prompt, ``n``,
        ``seeds[j]`` and ``sampling``, not on the other prompts of the call (up to
        floating-point differences of batched arithmetic, which can flip a token only when a
        uniform falls within rounding error of a boundary); each row's token budget is
        ``min(max_new_tokens, max_len - its prompt length)``, not the longest prompt's.

        Raises:
            ConfigError: ``len(seeds) != len(prompts)``, ``n < 1``, a negative temperature,
                or a prompt too long for ``max_len``.
        """
        if len(seeds) != len(prompts):
            raise ConfigError(f"generate_seeded needs one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        encoded = [self.encode_prompt(p) for p in prompts]
        flat = [ids for ids in encoded for _ in range(n)]
        width = max(1, sampling.max_new_tokens)
        uniforms = torch.cat([torch.rand(n, width, generator=torch.Generator().manual_seed(int(s)))
                              for s in seeds]) if seeds else torch.zeros(0, width)

        def draw(probs: torch.Tensor, rows: slice, t: int) -> torch.Tensor:
            cdf = probs.cumsum(-1)
            u = uniforms[rows, t : t + 1] * cdf[:, -1:]
            # right=True: the first token whose cumulative mass exceeds u (never a zero-mass one)
            return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)

        return self._generate_rows(flat, n, sampling, draw, per_row_room=True)

    def _generate_rows(
        self, flat: list[list[int]], n: int, sampling: SamplingParams,
        draw: Callable[[torch.Tensor, slice, int], torch.Tensor], *, per_row_room: bool,
    ) -> list[list[Generation]]:
        """Decode every row of ``flat`` (``n`` consecutive rows per prompt) in batches of
        :attr:`batch_size`; ``draw(probs, rows, t)`` picks step ``t``'s tokens of the flat
        ``rows``."""
        if sampling.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {sampling.temperature}")
        was_training = self.model.training
        self.model.eval()
        try:
            outs: list[Generation] = []
            for start in range(0, len(flat), self.batch_size):
                rows = slice(start, min(start + self.batch_size, len(flat)))
                outs.extend(self._generate_batch(
                    flat[rows], sampling, lambda probs, t, rows=rows: draw(probs, rows, t), per_row_room))
        finally:
            self.model.train(was_training)
        return [outs[i * n : (i + 1) * n] for i in range(len(flat) // n)]

    def _generate_batch(
        self, prompts: list[list[int]], sp: SamplingParams,
        draw: Callable[[torch.Tensor, int], torch.Tensor], per_row_room: bool = False,
    ) -> list[Generation]:
        m, cfg = self.model, self.model.cfg
        b = len(prompts)
        plen = max(len(p) for p in prompts)
        lengths = torch.tensor([len(p) for p in prompts])
        # Each row's token budget: the longest prompt's room (generate), or its own (generate_seeded).
        room = cfg.max_len - (lengths if per_row_room else torch.full((b,), plen))
        limits = room.clamp(max=sp.max_new_tokens)
        max_new = int(limits.max())
        if int(limits.min()) < 1:
            raise ConfigError(f"prompt of {int(lengths.max())} tokens leaves no room in max_len={cfg.max_len}")
        total = plen + max_new
        # Left-pad prompts so every row's next token is at the same cache slot.
        ids = torch.full((b, plen), PAD, dtype=torch.long)
        key_ok = torch.zeros((b, total), dtype=torch.bool)
        for r, p in enumerate(prompts):
            ids[r, plen - len(p) :] = torch.tensor(p)
            key_ok[r, plen - len(p) :] = True
        positions = (torch.arange(plen).unsqueeze(0) - (plen - lengths).unsqueeze(1)).clamp(min=0)
        hd = cfg.d_model // cfg.n_heads
        caches = [
            (torch.zeros(b, cfg.n_heads, total, hd), torch.zeros(b, cfg.n_heads, total, hd))
            for _ in range(cfg.n_layers)
        ]
        causal = torch.ones(plen, plen, dtype=torch.bool).tril()
        mask = (causal.unsqueeze(0) & key_ok[:, None, :plen]).unsqueeze(1)
        mask |= torch.eye(plen, dtype=torch.bool)  # pad rows attend to themselves (no NaNs)
        logits = m(ids, positions, mask, caches, 0)[:, -1]
        tokens = torch.zeros((b, max_new), dtype=torch.long)
        logps = torch.zeros((b, max_new))
        done = torch.zeros(b, dtype=torch.bool)
        stopped = torch.zeros(b, dtype=torch.bool)  # ended by EOS or a stop string (not the budget)
        n_out = limits.clone()
        pos = lengths.clone()
        stops = [s for s in sp.stop if s]
        texts = [""] * b
        for t in range(max_new):
            logp_all = logits.float().log_softmax(-1)
            if sp.temperature == 0:
                nxt = logp_all.argmax(-1)
            else:
                probs = _top_p_filter(logits / sp.temperature, sp.top_p).softmax(-1)
                nxt = draw(probs, t)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            tokens[:, t] = nxt
            logps[:, t] = logp_all.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            finished_now = (~done) & (nxt == EOS)
            if stops:
                for r in torch.nonzero(~done & ~finished_now).flatten().tolist():
                    texts[r] += self.tokenizer.decode([int(nxt[r])])
                    if any(texts[r].endswith(s) for s in stops):
                        finished_now[r] = True
            n_out = torch.where(finished_now, torch.full_like(n_out, t + 1), n_out)
            stopped |= finished_now
            done |= finished_now | (limits <= t + 1)
            if bool(done.all()) or t == max_new - 1:
                break
            key_ok[:, plen + t] = True
            step_mask = key_ok[:, None, None, : plen + t + 1]
            logits = m(nxt.unsqueeze(1), pos.unsqueeze(1), step_mask, caches, plen + t)[:, -1]
            pos = (pos + 1).clamp(max=cfg.max_len - 1)  # a row past its budget is finished; keep it in range
        out: list[Generation] = []
        for r in range(b):
            k = int(n_out[r])
            toks = tokens[r, :k].tolist()
            finished = bool(stopped[r])
            text = self.tokenizer.decode(toks)
            for s in stops:
                if text.endswith(s):
                    text = text[: -len(s)]
                    break
            out.append(
                Generation(
                    text=text,
                    prompt_ids=tuple(prompts[r]),
                    token_ids=tuple(toks),
                    logprobs=tuple(logps[r, :k].tolist()),
                    finish_reason="stop" if finished else "length",
                )
            )
        return out

    # --- learner side -------------------------------------------------------------------
    def token_logprobs(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                       with_entropy: bool = False, temperature: float = 1.0,
                       model: torch.nn.Module | None = None) -> TokenLogprobs:
        """Per-token log-probs of each completion given its prompt, differentiable.

        Returns :class:`~pope_env.agents.policy.TokenLogprobs`: ``logprobs`` and ``entropy``
        (nats; only ``with_entropy``) are [B, T_completion_max] right-padded with zeros,
        ``mask`` is 1.0 on real completion tokens. The logits are divided by
        ``temperature`` (> 0) before the log-softmax, no top-p: at temperature 1 exactly what
        :meth:`generate` reports in ``Generation.logprobs``; at the sampling temperature the
        distribution the tokens were drawn from (what the GRPO trainer asks for). ``model``
        (default ``self.model``) is the module to compute with: the trainer passes its
        ``accelerate``-wrapped one.
        """
        if not temperature > 0:
            raise ConfigError(f"token_logprobs needs a temperature > 0, got {temperature}")
        if len(prompt_ids) != len(completion_ids):
            raise ConfigError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
        seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        ids, key_ok = _right_padded(seqs)
        t = ids.shape[1]
        positions = torch.arange(t).expand_as(ids)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        net = model if model is not None else self.model
        logits = net(ids[:, :-1], positions[:, :-1], causal[: t - 1, : t - 1], None)
        logp_all = (logits.float() / temperature).log_softmax(-1)
        targets = ids[:, 1:]
        logp_tok = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, T-1]
        width = max(1, max(len(c) for c in completion_ids))
        rows = torch.arange(len(seqs)).unsqueeze(1)
        starts = torch.tensor([len(p) - 1 for p in prompt_ids]).unsqueeze(1)
        cols = (starts + torch.arange(width).unsqueeze(0)).clamp(max=t - 2)
        mask = torch.arange(width).unsqueeze(0) < torch.tensor([len(c) for c in completion_ids]).unsqueeze(1)
        lp = logp_tok[rows, cols].masked_fill(~mask, 0.0)
        ent = None
        if with_entropy:
            ent_all = -(logp_all.exp() * logp_all).sum(-1)
            ent = ent_all[rows, cols].masked_fill(~mask, 0.0)
        return TokenLogprobs(lp, mask.float(), ent)

    # --- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write ``model.pt`` and ``config.json`` (atomically) to ``folder``."""
        import io

        folder = Path(folder)
        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        atomic_write_bytes(folder / "model.pt", buf.getvalue())
        atomic_write_json(folder / "config.json", {"config": asdict(self.model.cfg), "meta": meta or {}})

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> "CharLMPolicy":
        """Inverse of :meth:`save`."""
        folder = Path(folder)
        try:
            cfg = CharLMConfig(**json.loads((folder / "config.json").read_text())["config"])
            state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise DataFormatError(f"{folder}: not a saved char model ({exc}); delete it to rebuild") from exc
        model = CharTransformer(cfg)
        model.load_state_dict(state)
        return cls(model, **kwargs)


def make_policy(cfg: CharLMConfig | None = None, *, seed: int = 0, **kwargs: Any) -> CharLMPolicy:
    """A freshly initialised policy, deterministic for ``seed``."""
    torch.manual_seed(seed)
    cfg = cfg or CharLMConfig()
    return CharLMPolicy(CharTransformer(cfg), **kwargs)


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "CharLMConfig",
    "CharLMPolicy",
    "CharTokenizer",
    "CharTransformer",
    "make_policy",
]
