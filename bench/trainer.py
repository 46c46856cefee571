"""Throughput of pope-env's GRPO trainer vs TRL's GRPOTrainer, measured in the same run on CPU.

Both train the *same* random-weight Llama (hidden 64, 2 layers, character vocabulary, the
same initial weights) on the same prompts (synthetic arithmetic questions) with the same
group size, completion length, sampling (temperature 1), reward, loss (token-level, clip
0.2, no KL, mean-centred advantages), optimiser (AdamW, constant learning rate, clipping
1.0) and number of steps. Each side is timed over its whole training loop (rollouts,
rewards, update, logging); the first step of each is a warm-up and not timed. Rounds
alternate between the two so machine load hits both alike; the median per-step time is
reported.

    python bench/trainer.py [--steps 6] [--rounds 3] [--prompts 4] [--group 8] [--length 32]

Prints tokens/s (completion tokens sampled and trained per second) of each and the ratio,
and writes ``bench/results/trainer.json``. TRL is optional (``pip install trl``); without it
only our figures are written.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def char_reward(completions, **_kw) -> list[float]:
    """Fraction of digits in the completion (dense, so every group has reward variance)."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else str(c)
        out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1))
    return out


class TokenCounter:
    """TRL reward wrapper that counts completion tokens (TRL passes ``completion_ids``)."""

    __name__ = "char_reward"

    def __init__(self) -> None:
        self.tokens = 0

    def __call__(self, completions, **kw) -> list[float]:
        self.tokens += sum(len(ids) for ids in kw["completion_ids"])
        return char_reward(completions)


def prompts(n: int) -> list[str]:
    from pope_env.datasets import arithmetic

    return [p.question for p in arithmetic.generate(n, 4, seed=7)]


def make_learner(kind: str):
    """Our learner over the shared tiny model: the package's HFPolicy (with the char
    tokenizer) when it is installed and ``kind`` allows, else the tests' TinyLearner."""
    from tiny_learner import TinyLearner, hf_char_tokenizer, tiny_llama

    if kind in ("auto", "hf"):
        try:
            from pope_env.agents.hf_policy import HFPolicy
        except ImportError:
            if kind == "hf":
                raise
        else:
            return HFPolicy(tiny_llama(seed=0), tokenizer=hf_char_tokenizer(), name="tiny-llama",
                            batch_size=1024, progress=False)
    return TinyLearner(seed=0)


def run_ours(args, questions: list[str], steps: int) -> dict:
    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.rollout import PromptItem, ShuffledItems
    from pope_env.agents.train import TrainConfig, Trainer

    learner = make_learner(args.learner)
    items = [PromptItem(q, f"q{i}") for i, q in enumerate(questions)]
    cfg = TrainConfig(
        method="grpo", steps=steps, prompts_per_step=args.prompts, group_size=args.group,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=args.length),
        grpo=GRPOConfig(lr=1e-4, micro_batch_size=args.prompts * args.group, max_grad_norm=1.0),
        eval_every=0, save_every=10**6, progress=False, tensorboard=False,
    )
    step_times: list[float] = []
    tokens: list[int] = []
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(learner, ShuffledItems(items, seed=0), lambda cs, its: char_reward(list(cs)), cfg, out)
        # Time each step end to end (rollouts, rewards, update, metrics), like TRL's step;
        # completion tokens (EOS included) as the update counted them.
        last = [time.perf_counter()]
        orig = trainer._rl_step

        def timed(step):
            rec = orig(step)
            now = time.perf_counter()
            step_times.append(now - last[0])
            tokens.append(rec["trained_tokens"])
            last[0] = now
            return rec

        trainer._rl_step = timed
        trainer.train()
    return {"step_s": step_times[1:], "tokens": tokens[1:]}


def run_trl(args, questions: list[str], steps: int) -> dict:
    from datasets import Dataset
    from tiny_learner import hf_char_tokenizer, tiny_llama
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    counter = TokenCounter()
    model = tiny_llama(seed=0)
    model.generation_config.pad_token_id = 2
    tok = hf_char_tokenizer()
    ds = Dataset.from_dict({"prompt": ["<s>" + q for q in questions]})
    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if not marks:
                marks.append((time.perf_counter(), counter.tokens))

        def on_step_end(self, a, state, control, **kw):
            marks.append((time.perf_counter(), counter.tokens))

    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=args.prompts * args.group,
            num_generations=args.group, max_completion_length=args.length, learning_rate=1e-4,
            lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, beta=0.0, loss_type="dapo",
            scale_rewards="none", epsilon=0.2, temperature=1.0, num_iterations=1, steps_per_generation=1,
            gradient_accumulation_steps=1, use_cpu=True, bf16=False, fp16=False, report_to="none",
            logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=counter, args=cfg, train_dataset=ds, processing_class=tok,
                              callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # logs are still computed every step, just not printed
        trainer.train()
    times = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    toks = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return {"step_s": times[1:], "tokens": toks[1:]}


def summarise(runs: list[dict]) -> dict:
    step_s = [t for r in runs for t in r["step_s"]]
    tokens = [k for r in runs for k in r["tokens"]]
    per_step = statistics.median(step_s)
    tok_per_step = statistics.mean(tokens)
    return {"median_step_s": per_step, "completion_tokens_per_step": tok_per_step,
            "tokens_per_s": tok_per_step / per_step, "steps_timed": len(step_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per round (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--learner", choices=("auto", "hf", "tiny"), default="auto",
                    help="our policy: HFPolicy if installed (auto), or the tests' TinyLearner")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "trainer.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    questions = prompts(64)
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    try:
        import trl
    except ImportError:
        trl = None
        print("TRL is not installed (pip install trl): measuring pope-env only")
    ours, theirs = [], []
    for r in range(args.rounds):
        ours.append(run_ours(args, questions, args.steps))
        print(f"round {r + 1}: pope-env {statistics.median(ours[-1]['step_s']):.3f} s/step", flush=True)
        if trl is not None:
            theirs.append(run_trl(args, questions, args.steps))
            print(f"round {r + 1}: TRL      {statistics.median(theirs[-1]['step_s']):.3f} s/step", flush=True)
    result = {
        "bench": "trainer",
        "setup": {"model": "random Llama, hidden 64, 2 layers, char vocab", "prompts_per_step": args.prompts,
                  "group_size": args.group, "max_new_tokens": args.length, "steps_per_round": args.steps,
                  "rounds": args.rounds, "torch_threads": args.threads, "device": "cpu",
                  "our_learner": type(make_learner(args.learner)).__name__,
                  "python": platform.python_version(), "torch": torch.__version__,
                  "trl": getattr(trl, "__version__", None)},
        "pope_env": summarise(ours),
    }
    print(f"pope-env: {result['pope_env']['tokens_per_s']:.1f} tokens/s "
          f"({result['pope_env']['median_step_s']:.3f} s/step)")
    if theirs:
        result["trl"] = summarise(theirs)
        result["ratio_tokens_per_s"] = result["pope_env"]["tokens_per_s"] / result["trl"]["tokens_per_s"]
        print(f"TRL:      {result['trl']['tokens_per_s']:.1f} tokens/s ({result['trl']['median_step_s']:.3f} s/step)")
        print(f"ratio pope-env / TRL: {result['ratio_tokens_per_s']:.2f}x (goal >= 1.5x)")
    from pope_env.io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
