"""Benchmark: env steps per second of the token env vs trivial Gymnasium envs, same run.

The token env (``POPE-Token-Hard-v0`` dynamics, unwrapped) is the inner loop of classic RL,
so its ``step`` must cost about what a do-nothing env costs. Measured, one Python thread:

* ``token``: ``step`` with the oracle's tokens (a full correct episode each time, so the
  terminal reward is computed), ``reset`` included in the time;
* ``token+masks``: the same plus ``action_masks()`` before every step, as MaskablePPO does;
* ``trivial``: a Gymnasium env whose ``step`` only counts to 16 and returns a constant;
* ``cartpole``: Gymnasium's ``CartPole-v1`` (unwrapped), a familiar reference.

Actions are precomputed, so no agent time is counted. Each rate is the best of ``--repeats``
runs of ``--steps`` steps. Goal: token env > 20,000 steps/s.

Run: ``python bench/token_env.py [--steps N] [--repeats R]``; writes
``bench/results/token_env.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from pope_env.envs.token import TokenEnv
from pope_env.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "token_env.json"
GOAL = 20_000


class TrivialEnv(gym.Env):
    """The cheapest possible episodic env: 16 steps, constant observation, no reward."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return 0, 0.0, self.t >= 16, False, {}


def run_token(env: TokenEnv, steps: int, masks: bool) -> float:
    episodes = [(tp.problem.id, tp.oracle.tolist()) for tp in env.problems]
    env.reset(seed=0)
    done_steps, k = 0, 0
    start = time.perf_counter()
    while done_steps < steps:
        pid, tokens = episodes[k % len(episodes)]
        k += 1
        env.reset(options={"problem_id": pid, "guided": False})
        for token in tokens:
            if masks:
                env.action_masks()
            env.step(token)
        done_steps += len(tokens)
    return done_steps / (time.perf_counter() - start)


def run_plain(env: gym.Env, steps: int) -> float:
    actions = np.random.default_rng(0).integers(0, 2, size=steps).tolist()
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    token_env = TokenEnv("hard")
    rates = {
        "token": best_of(args.repeats, lambda: run_token(token_env, args.steps, masks=False)),
        "token+masks": best_of(args.repeats, lambda: run_token(token_env, args.steps, masks=True)),
        "trivial": best_of(args.repeats, lambda: run_plain(TrivialEnv(), args.steps)),
        "cartpole": best_of(args.repeats, lambda: run_plain(gym.make("CartPole-v1").unwrapped, args.steps)),
    }
    ratios = {
        "token_vs_trivial": rates["token"] / rates["trivial"],
        "token+masks_vs_trivial": rates["token+masks"] / rates["trivial"],
        "token_vs_cartpole": rates["token"] / rates["cartpole"],
    }
    print(f"{'env':<14}{'steps/s':>12}")
    for name, rate in rates.items():
        print(f"{name:<14}{rate:>12,.0f}")
    for name, ratio in ratios.items():
        print(f"{name:<24}{ratio:6.2f}x")
    print(f"goal > {GOAL:,} steps/s: {'met' if rates['token'] > GOAL else 'NOT met'} "
          f"({rates['token+masks']:,.0f} with masks)")
    atomic_write_json(RESULTS, {
        "benchmark": "token_env",
        "steps": args.steps,
        "repeats": args.repeats,
        "steps_per_s": {k: round(v) for k, v in rates.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "goal_steps_per_s": GOAL,
        "goal_met": rates["token"] > GOAL,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
    })
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
