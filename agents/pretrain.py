"""SFT pretraining of the char model on easy arithmetic chains, cached and resumable.

The base policy of the CPU testbed is made here, from scratch: teacher-forced next-character
training on ``prompt -> oracle solution`` pairs of easy problems (few operations), with the
loss on solution characters only. Because each solution step rewrites the whole remaining
expression, every suffix of a solution is itself the solution of a shorter problem. That alone
does not make a small model continue a *long* partial solution (measured: with easy problems
only, a 5-operation chain guided down to 4 remaining operations was solved 2% of the time
against 86% for a bare 4-operation chain -- the long context above the current line breaks it).
So half of each batch are *continuation* examples: a longer chain with its oracle steps given
until at most ``levels[1]`` operations remain, the easy rest as the target. The model never
writes a line longer than an easy problem's, so long chains stay unsolvable unguided (the hard
split measures this), while a POPE roll-in state is one it knows how to continue.

The result is cached under ``cache_dir("demo", "base-<hash>")`` where the hash covers the whole
:class:`PretrainConfig` (model shape included): a second run with the same config loads it in
well under a second. Training writes a checkpoint (model, optimizer, step, RNG) atomically every
``checkpoint_every`` steps and resumes from it after a crash.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pope_env.agents.charlm import EOS, CharLMConfig, CharLMPolicy, CharTransformer
from pope_env.datasets import arithmetic
from pope_env.errors import ConfigError
from pope_env.io import atomic_write_bytes
from pope_env.paths import cache_dir
from pope_env.problem import Problem


def render_prompt(problem: Problem) -> str:
    """The char model's compact prompt: the expression and a newline (``"7*3+7-8\\n"``)."""
    return problem.meta["expression"] + "\n"


def render_guided_prompt(problem: Problem, prefix_len: int) -> str:
    """The prompt followed by the first ``prefix_len`` oracle steps: the roll-in state.

    In this format a guided state is exactly what the model would have written itself after
    ``prefix_len`` correct steps, so "continue the partial solution" needs no instruction.
    """
    if not 0 <= prefix_len < len(problem.steps):
        raise ConfigError(f"prefix_len must be in [0, {len(problem.steps) - 1}], got {prefix_len}")
    return render_prompt(problem) + "".join(problem.steps[:prefix_len])


def render_solution(problem: Problem, start_step: int = 0, *, revisit: bool = False) -> str:
    """The oracle solution text from step ``start_step`` on (what the model is trained to write).

    With ``revisit`` a continuation (``start_step >= 1``) first *re-checks the last given line*:
    it writes that line again, then goes on from it (``"28-8\n" + "20..."``). This is the
    testbed's version of the self-verification the POPE paper credits for transfer: a guided
    roll-in from ``i`` given steps makes the policy itself write a line as long as the
    unguided solution's ``i``-th, so success under guidance exercises the skill an unguided
    solution needs. A solution from the bare problem (``start_step = 0``) is the same in both
    formats, so the unguided task does not change.
    """
    text = "".join(problem.steps[start_step:])
    if revisit and start_step >= 1:
        return problem.steps[start_step - 1] + text
    return text


@dataclass(frozen=True)
class PretrainConfig:
    """What base model to make.

    Attributes:
        model: Shape of the char transformer.
        levels: Inclusive range of operation counts of the easy training problems.
        steps: Optimizer steps.
        batch_size: Sequences per step.
        lr: Peak AdamW learning rate (linear warm-up over 5% of steps, cosine decay to 10%).
        weight_decay: AdamW weight decay.
        seed: Seeds the initial weights, the data order and dropout.
        max_value: Intermediate values stay in ``[0, max_value]`` (dataset option).
        checkpoint_every: Steps between resumable checkpoints.
        continuation_share: Share of each batch made of *continuation* examples: a longer
            chain (``context_levels`` operations) with its oracle steps given up to the point
            where at most ``levels[1]`` operations remain; the target is only that easy rest.
            The model thus learns to continue a partial solution whatever is above it in the
            context, but never writes a line longer than an easy problem's.
        context_levels: Inclusive range of operation counts of the continuation examples' chains.
        revisit: Continuations first re-check (rewrite) the last given line, then go on (see
            :func:`render_solution`): the knob for guided/unguided state overlap.
        easy_weights: Relative sampling weight of each easy level ``levels[0]..levels[1]``
            (empty: uniform).
        workers: Data-parallel training processes (gradients summed over them each step);
            part of the hash, since it changes the data order and the float reductions.
    """

    model: CharLMConfig = field(default_factory=CharLMConfig)
    levels: tuple[int, int] = (1, 4)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    max_value: int = 99
    checkpoint_every: int = 250
    continuation_share: float = 0.5
    context_levels: tuple[int, int] = (5, 8)
    revisit: bool = False
    easy_weights: tuple[float, ...] = ()
    workers: int = 1

    def __post_init__(self) -> None:
        if self.levels[0] < 1 or self.levels[1] < self.levels[0]:
            raise ConfigError(f"levels must be an increasing range of positive ints, got {self.levels}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be >= 1")
        if not 1 <= self.workers <= self.batch_size:
            raise ConfigError(f"workers must be in [1, batch_size={self.batch_size}], got {self.workers}")
        if not 0.0 <= self.continuation_share <= 1.0:
            raise ConfigError(f"continuation_share must be in [0, 1], got {self.continuation_share}")
        if self.continuation_share > 0 and self.context_levels[0] <= self.levels[1]:
            raise ConfigError(f"context_levels {self.context_levels} must be longer than levels {self.levels}")
        n_levels = self.levels[1] - self.levels[0] + 1
        if self.easy_weights and (len(self.easy_weights) != n_levels or min(self.easy_weights) < 0
                                  or sum(self.easy_weights) <= 0):
            raise ConfigError(
                f"easy_weights must give {n_levels} non-negative weights (one per level "
                f"{self.levels[0]}..{self.levels[1]}), not all 0; got {self.easy_weights}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        """The config ``asdict(config)`` (or its JSON) came from."""
        d = dict(d)
        d["model"] = CharLMConfig(**d["model"]) if isinstance(d.get("model"), dict) else d.get("model", CharLMConfig())
        for key in ("levels", "context_levels", "easy_weights"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def digest(self) -> str:
        """A short hash naming this config's cache folder."""
        d = asdict(self)
        for key, default in (("revisit", False), ("easy_weights", ()), ("workers", 1)):
            if d[key] == default:  # fields added later: bases cached before them keep their names
                d.pop(key)
        blob = json.dumps(d, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_problems(
    cfg: PretrainConfig, n_per_level: int = 20_000, levels: tuple[int, int] | None = None
) -> list[Problem]:
    """Distinct train-split problems for each level in ``levels`` (default ``cfg.levels``;
    fewer where a level has fewer distinct chains)."""
    out: list[Problem] = []
    lo, hi = levels or cfg.levels
    for level in range(lo, hi + 1):
        stream = arithmetic.iter_problems(level, split="train", seed=cfg.seed, max_value=cfg.max_value)
        for _, p in zip(range(n_per_level), stream):
            out.append(p)
    return out


def sft_batch(
    policy: CharLMPolicy, examples: Sequence[tuple[Problem, int]], *, revisit: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, positions, targets and loss mask for teacher-forced training.

    Each example is ``(problem, prefix_len)``: the prompt is the problem with its first
    ``prefix_len`` oracle steps (0: the bare problem) and the target is the rest of the
    solution followed by EOS (in the ``revisit`` format, see :func:`render_solution`); the
    loss covers the target only.
    """
    tok = policy.tokenizer
    seqs, prompt_lens = [], []
    for p, prefix_len in examples:
        prompt = tok.encode(render_guided_prompt(p, prefix_len), bos=True)
        seqs.append(prompt + tok.encode(render_solution(p, prefix_len, revisit=revisit)) + [EOS])
        prompt_lens.append(len(prompt))
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
    for r, (s, pl) in enumerate(zip(seqs, prompt_lens)):
        ids[r, : len(s)] = torch.tensor(s)
        loss_mask[r, pl - 1 : len(s) - 1] = True
    positions = torch.arange(width - 1).expand(len(seqs), -1)
    return ids[:, :-1], positions, ids[:, 1:], loss_mask


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    warm = max(1, cfg.steps // 20)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item()))


def base_dir(cfg: PretrainConfig) -> Path:
    """The cache folder of the base model made by ``cfg``."""
    return cache_dir("demo", f"base-{cfg.digest()}")


def pretrain(
    cfg: PretrainConfig,
    *,
    folder: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> CharLMPolicy:
    """The base policy for ``cfg``: loaded from the cache if present, else trained (resuming
    from a checkpoint if an earlier run was interrupted) and cached.

    Each training process runs on one intra-op thread whatever the caller set: the thread
    count changes the order of floating-point reductions, so over many steps it would change
    the weights cached under the same config hash. ``cfg.workers > 1`` trains data-parallel
    in that many processes (each computes its share of every batch; gradients are summed
    over processes before each step), which the config hash covers too.
    """
    folder = folder or base_dir(cfg)
    if (folder / "model.pt").exists():
        return CharLMPolicy.load(folder)
    if cfg.workers > 1:
        _spawn_workers(cfg, folder, progress=progress)
        log(f"pretrained in {cfg.workers} processes")
        return CharLMPolicy.load(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_base(cfg, folder, progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)


def _spawn_workers(cfg: PretrainConfig, folder: Path, *, progress: bool) -> None:
    """Run ``cfg.workers`` training processes (fresh interpreters, so the caller's script needs
    no ``__main__`` guard) and wait for them; a failed worker stops the others and raises
    with its error output."""
    import subprocess
    import sys
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pope-env-pretrain-") as tmp:
        spec = json.dumps({"config": asdict(cfg), "folder": str(folder), "rendezvous": f"file://{tmp}/rendezvous",
                           "progress": progress})
        logs = [Path(tmp) / f"worker{r}.log" for r in range(cfg.workers)]
        procs = []
        for rank in range(cfg.workers):
            err = None if rank == 0 else logs[rank].open("w")
            procs.append(subprocess.Popen(
                [sys.executable, "-c", "from pope_env.agents.pretrain import _worker_main; _worker_main()",
                 str(rank), spec], stderr=err, stdout=subprocess.DEVNULL if rank else None,
            ))
        try:
            while any(p.poll() is None for p in procs):
                failed = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)]
                if failed:
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        failed = [r for r, p in enumerate(procs) if p.returncode != 0]
        if failed:
            tail = logs[failed[-1]].read_text()[-2000:] if failed[-1] and logs[failed[-1]].exists() else ""
            raise RuntimeError(
                f"pretraining worker(s) {failed} failed (exit codes {[procs[r].returncode for r in failed]}); "
                f"the checkpoint in {folder} is kept, so a re-run resumes. {tail}"
            )


def _worker_main() -> None:
    """Entry point of one data-parallel pretraining process (``_spawn_workers`` starts it)."""
    import sys

    import torch.distributed as dist

    rank, spec = int(sys.argv[1]), json.loads(sys.argv[2])
    cfg = PretrainConfig.from_dict(spec["config"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=spec["rendezvous"], rank=rank, world_size=cfg.workers)
    try:
        _train_base(cfg, Path(spec["folder"]), progress=spec["progress"] and rank == 0,
                    log=print if rank == 0 else (lambda _: None), rank=rank)
    finally:
        dist.destroy_process_group()


def _train_base(cfg: PretrainConfig, folder: Path, *, progress: bool, log: Callable[[str], None],
                rank: int = 0) -> CharLMPolicy:
    world = cfg.workers
    torch.manual_seed(cfg.seed)
    policy = CharLMPolicy(CharTransformer(cfg.model))
    model = policy.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    problems = training_problems(cfg)
    contexts = training_problems(cfg, 5_000, cfg.context_levels) if cfg.continuation_share > 0 else []
    weights = _level_weights(cfg, problems)
    rng = random.Random(cfg.seed) if world == 1 else random.Random(f"{cfg.seed}:{rank}:{world}")
    if world > 1:
        torch.manual_seed(cfg.seed * 1000 + rank)  # dropout masks differ per process
    start = 0
    ckpt = folder / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("config") != cfg.digest():
            raise ConfigError(f"{ckpt} was made by another config; delete it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"] if world == 1 else state["rng"][rank])
        torch.set_rng_state(state["torch_rng"] if world == 1 else state["torch_rng"][rank])
        start = state["step"]
        log(f"resuming pretraining at step {start}/{cfg.steps}")
    model.train()
    bar = tqdm(range(start, cfg.steps), desc="pretrain base", disable=not progress, initial=start, total=cfg.steps)
    t0, ema = time.perf_counter(), None
    share = cfg.batch_size // world + (1 if rank < cfg.batch_size % world else 0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        examples = _sample_examples(cfg, problems, contexts, rng, weights, size=share)
        loss = _sft_step(policy, examples, cfg, world)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        bar.set_postfix(loss=f"{ema:.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _checkpoint(ckpt, cfg, model, opt, rng, step + 1, rank)
    if rank == 0:
        policy.save(folder, meta={"pretrain": asdict(cfg), "seconds": round(time.perf_counter() - t0, 1),
                                  "final_loss": ema})
        ckpt.unlink(missing_ok=True)
    model.eval()
    return policy


def _sft_step(policy: CharLMPolicy, examples: Sequence[tuple[Problem, int]], cfg: PretrainConfig, world: int) -> float:
    """Forward/backward of one (local share of a) batch; returns the batch's mean token loss.

    Bare problems and continuations are run as two length buckets, each padded to its own
    width (a continuation's long context would otherwise pad every short example). The loss
    is the sum over target tokens divided by the target tokens of the whole batch (all
    processes), so the summed gradients are those of the global token mean.
    """
    model = policy.model
    buckets = [[e for e in examples if e[1] == 0], [e for e in examples if e[1] > 0]]
    batches = [sft_batch(policy, b, revisit=cfg.revisit) for b in buckets if b]
    tokens = torch.tensor(float(sum(int(lm.sum()) for *_, lm in batches)))
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(tokens)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for x, pos, y, lm in batches:
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        logits = model(x, pos, causal)
        loss = torch.nn.functional.cross_entropy(logits[lm], y[lm], reduction="sum") / tokens
        loss.backward()
        total += float(loss.detach())
    if world > 1:
        import torch.distributed as dist

        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
        t = torch.tensor(total)
        dist.all_reduce(t)
        total = float(t)
    return total


def _checkpoint(path: Path, cfg: PretrainConfig, model, opt, rng: random.Random, step: int, rank: int) -> None:
    if cfg.workers == 1:
        _save_checkpoint(path, cfg, model, opt, rng.getstate(), torch.get_rng_state(), step)
        return
    import torch.distributed as dist

    states: list[Any] = [None] * cfg.workers
    dist.all_gather_object(states, (rng.getstate(), torch.get_rng_state()))
    if rank == 0:
        _save_checkpoint(path, cfg, model, opt, [s[0] for s in states], [s[1] for s in states], step)
    dist.barrier()


def _level_weights(cfg: PretrainConfig, problems: Sequence[Problem]) -> list[float] | None:
    """Per-problem sampling weights from ``cfg.easy_weights`` (None: uniform)."""
    if not cfg.easy_weights:
        return None
    return [cfg.easy_weights[p.level - cfg.levels[0]] for p in problems]


def _sample_examples(
    cfg: PretrainConfig,
    problems: Sequence[Problem],
    contexts: Sequence[Problem],
    rng: random.Random,
    weights: Sequence[float] | None = None,
    size: int | None = None,
) -> list[tuple[Problem, int]]:
    size = cfg.batch_size if size is None else size
    n_cont = round(size * cfg.continuation_share) if contexts else 0
    k = size - n_cont
    chosen = rng.choices(problems, k=k) if weights is None else rng.choices(problems, weights=weights, k=k)
    examples = [(p, 0) for p in chosen]
    for p in rng.choices(contexts, k=n_cont):
        remaining = rng.randint(cfg.levels[0], cfg.levels[1])  # operations left to do
        examples.append((p, len(p.steps) - remaining))
    return examples


def _save_checkpoint(path: Path, cfg: PretrainConfig, model, opt, rng_state: Any, torch_rng: Any, step: int) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "config": cfg.digest(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": rng_state,
            "torch_rng": torch_rng,
            "step": step,
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "PretrainConfig",
    "base_dir",
    "pretrain",
    "render_guided_prompt",
    "render_prompt",
    "render_solution",
    "sft_batch",
    "training_problems",
]
