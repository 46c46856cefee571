"""Classic exploration fixes vs POPE roll-ins, with MaskablePPO on the token-level MDP.

Three runs with the same seed, network and step budget on ``POPE-Token-Hard-v0``'s problems
(3-operation chains, one token per action, reward only for the right boxed answer):

1. ``plain``:   MaskablePPO on unguided starts;
2. ``entropy``: the same with a large entropy coefficient (``--ent-coef``, default 0.05);
3. ``pope``:    MaskablePPO on POPE starts: guided (after the oracle prefix of ``i*``
   lines) and unguided resets mixed 1:1. ``i*`` per problem comes from the prefix search
   (``run_prefix_search``) run with the untrained MaskablePPO policy itself as the policy
   (:class:`pope_env.agents.sb3.MaskablePolicy`); problems where no prefix works get the
   fallback (all lines before the answer).

Every ``--eval-every`` steps each run is evaluated on *unguided* held-out hard problems
(``POPE-Token-Hard-Eval-v0``). Writes ``curves.json``, ``token_maskable_ppo.png`` (unguided
hard success over env steps) and the guidance file to ``--out``, and prints a table::

    python examples/token_maskable_ppo.py                 # about 3-5 minutes on 2 CPU cores
    python examples/token_maskable_ppo.py --steps 100000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=24_000, help="env steps per run")
    ap.add_argument("--eval-every", type=int, default=3_000)
    ap.add_argument("--eval-episodes", type=int, default=300)
    ap.add_argument("--problems", type=int, default=500, help="hard training problems")
    ap.add_argument("--ent-coef", type=float, default=0.05, help="entropy coefficient of run 2")
    ap.add_argument("--k", type=int, default=8, help="samples per state in the prefix search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="runs/token_maskable_ppo")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from pope_env.agents.policy import SamplingParams
    from pope_env.agents.sb3 import MaskablePolicy, SuccessCurve, exact_scorer, make_maskable_ppo, success_rate
    from pope_env.envs.token import TokenEnv
    from pope_env.io import atomic_write_json
    from pope_env.prefix_search import run_prefix_search

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_kwargs = {"level": "hard", "n_problems": args.problems}
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {"plain": {}, "entropy": {}, "pope": {}}
    search_stats: dict[int, dict[str, float]] = {}
    guided_final: dict[str, dict[int, float]] = {name: {} for name in curves}

    for seed in args.seeds:
        # i* with the base (untrained) classic agent as the policy, as POPE does with its base model
        base_env = TokenEnv(**train_kwargs)
        base = make_maskable_ppo(base_env, seed=seed)
        guidance = out / f"guidance_seed{seed}.jsonl"
        found = run_prefix_search(
            [tp.problem for tp in base_env.problems], MaskablePolicy(base, base_env, name=f"maskable-ppo-init-s{seed}"),
            dataset=base_env.dataset, out=guidance, k=args.k, seed=seed, scorer=exact_scorer,
            prompt_format="text", sampling=SamplingParams(temperature=1.0, max_new_tokens=64),
        )
        records = list(found.records.values())
        search_stats[seed] = {
            "problems": len(records),
            "fallback": sum(r.fallback for r in records) / len(records),
            "mean_i_star": sum(r.i_star for r in records if r.i_star) / max(1, sum(not r.fallback for r in records)),
        }
        runs = {
            "plain": (dict(train_kwargs, mode="unguided"), {}),
            "entropy": (dict(train_kwargs, mode="unguided"), {"ent_coef": args.ent_coef}),
            "pope": (dict(train_kwargs, mode="pope", guidance_file=str(guidance)), {}),
        }
        for name, (env_kwargs, ppo_kwargs) in runs.items():
            model = make_maskable_ppo(TokenEnv(**env_kwargs), seed=seed, **ppo_kwargs)
            bar = tqdm(total=args.steps, desc=f"{name} seed {seed}", unit="step")

            def progress(t: int, rate: float, bar=bar) -> None:
                bar.update(t - bar.n)
                bar.set_postfix(unguided=f"{rate:.3f}")

            eval_env = TokenEnv("hard", split="test", n_problems=args.eval_episodes)
            curve = SuccessCurve(eval_env, every=args.eval_every, episodes=args.eval_episodes,
                                 progress=progress)
            model.learn(args.steps, callback=curve)
            bar.close()
            curves[name][seed] = curve.points
            # the same held-out problems, started after all lines but the answer's
            guided_final[name][seed] = success_rate(model, eval_env, episodes=args.eval_episodes,
                                                    options={"guided": True})
            atomic_write_json(out / "curves.json", {"args": vars(args), "prefix_search": search_stats,
                                                    "curves": curves, "guided_final": guided_final})

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, color in (("plain", "tab:gray"), ("entropy", "tab:blue"), ("pope", "tab:red")):
        for k, (seed, points) in enumerate(curves[name].items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=color, alpha=0.9, label=name if k == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("unguided success, held-out hard problems")
    ax.set_title("MaskablePPO on POPE-Token-Hard (3-op chains)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "token_maskable_ppo.png", dpi=120)

    print(f"\nprefix search with the untrained policy: {search_stats}")
    print("\nunguided success on held-out hard problems (start / final / best / mean over the"
          " curve);\nguided = final success when started after all lines but the answer's")
    print(f"{'run':<10}{'seed':>5}{'start':>9}{'final':>9}{'best':>9}{'mean':>9}{'guided':>9}")
    for name, per_seed in curves.items():
        for seed, points in per_seed.items():
            ys = [y for _, y in points]
            print(f"{name:<10}{seed:>5}{ys[0]:>9.3f}{ys[-1]:>9.3f}{max(ys):>9.3f}"
                  f"{sum(ys) / len(ys):>9.3f}{guided_final[name][seed]:>9.3f}")
    print(f"\nwrote {out / 'token_maskable_ppo.png'} and {out / 'curves.json'}")


if __name__ == "__main__":
    main()
