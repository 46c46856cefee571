"""The demo's statistics, claims table and figure.

Runs are grouped by *label* (a method on a base variant, e.g. ``pope`` or ``pope+revisit``);
every number is a mean over seeds with its standard error (s.e. = sd / sqrt(seeds)).

Differences between two labels (``POPE - GRPO``) come with a 95% bootstrap interval that
resamples both sources of noise: the seeds of each label (with replacement, independently)
and the held-out problems (with replacement; paired when both labels were evaluated on the
same problems, i.e. the same base variant). The statistic is the difference of final
unguided pass@k (or pass@1) averaged over resampled seeds and problems.

Claims (the POPE paper's, each tested by one comparison; "inconclusive" when the interval
holds 0):

================================ ===========================================================
claim                            measured as
================================ ===========================================================
token-level exploration fails    entropy - grpo and clip-higher - grpo (final pass@k): the
                                 claim holds unless an interval lies above 0
easy+hard mixing interferes      mix-easy - grpo below 0
pass@k does not help             passk - grpo not above 0
POPE expands the solvable set    pope - grpo above 0 (and the solved sets)
transfer needs overlap           (pope+revisit - grpo+revisit) - (pope - grpo) above 0, with the
                                 own-state S_good overlap of both
SFT on oracle collapses entropy  token entropy of sft-oracle's first RL steps (after SFT)
                                 below grpo's (the base's) on every seed
================================ ===========================================================
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BOOTSTRAP = 2000


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (0 for one value)."""
    xs = [float(x) for x in xs]
    if not xs:
        return float("nan"), float("nan")
    if len(xs) == 1:
        return xs[0], 0.0
    return statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def by_label(results: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Run records grouped by label, seeds in order."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in sorted(results.values(), key=lambda r: (r["label"], r["seed"])):
        out.setdefault(r["label"], []).append(r)
    return out


def _window_mean(series: Sequence[Sequence[float]], first: bool, n: int = 5) -> float:
    vals = [v for _, v in series]
    vals = vals[:n] if first else vals[-n:]
    return statistics.fmean(vals) if vals else float("nan")


def label_row(runs: Sequence[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """Mean and s.e. over seeds of one label's table columns."""
    def ms(xs: Sequence[float]) -> list[float]:
        return list(mean_se(xs))

    ever = []
    for r in runs:
        solved = {i for e in r["evals"][1:] for i, c in enumerate(e.get("per_problem", [])) if c}
        ever.append(len(solved))
    row = {
        "seeds": [r["seed"] for r in runs],
        "pass@1_before": ms([r["evals"][0]["pass@1"] for r in runs]),
        "pass@1_after": ms([r["evals"][-1]["pass@1"] for r in runs]),
        f"pass@{k}_before": ms([r["evals"][0][f"pass@{k}"] for r in runs]),
        f"pass@{k}_after": ms([r["evals"][-1][f"pass@{k}"] for r in runs]),
        "guided_pass@1_after": ms([r["guided_pass@1_after"] for r in runs]),
        "solved_set": ms([r["solved_set"] for r in runs]),
        "eval_ever_solved": ms(ever),
        "entropy_start": ms([_window_mean(r["entropy"], True) for r in runs]),
        "entropy_end": ms([_window_mean(r["entropy"], False) for r in runs]),
    }
    if all("s_good_overlap" in r["evals"][0] for r in runs):
        row["s_good_overlap_before"] = ms([r["evals"][0]["s_good_overlap"] for r in runs])
        row["s_good_overlap_after"] = ms([r["evals"][-1]["s_good_overlap"] for r in runs])
        row["s_good_overlap_mean"] = ms([statistics.fmean(e["s_good_overlap"] for e in r["evals"][1:] or r["evals"])
                                         for r in runs])
    if all(r.get("sft_loss") for r in runs):
        row["sft_loss_first"] = ms([r["sft_loss"][0][1] for r in runs])
        row["sft_loss_last"] = ms([r["sft_loss"][-1][1] for r in runs])
    return row


def _final_matrix(runs: Sequence[Mapping[str, Any]], k: int, metric: str) -> list[list[float]]:
    """[seed][problem] of the final evaluation: 1[success] for pass@k, successes/k for pass@1."""
    rows = []
    for r in runs:
        counts = r["evals"][-1].get("per_problem") or []
        rows.append([float(c > 0) if metric == "pass@k" else c / k for c in counts])
    return rows


def bootstrap_diff(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], k: int, *, metric: str = "pass@k",
                   paired: bool = True, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` (final unguided ``metric``) with a 95% bootstrap interval over seeds
    and problems (see the module docstring)."""
    import numpy as np

    ma, mb = np.array(_final_matrix(a, k, metric)), np.array(_final_matrix(b, k, metric))
    if ma.size == 0 or mb.size == 0:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    diff = float(ma.mean() - mb.mean())
    stats = np.empty(BOOTSTRAP)
    na, nb, pa, pb = ma.shape[0], mb.shape[0], ma.shape[1], mb.shape[1]
    paired = paired and pa == pb
    for i in range(BOOTSTRAP):
        sa, sb = rng.integers(0, na, na), rng.integers(0, nb, nb)
        qa = rng.integers(0, pa, pa)
        qb = qa if paired else rng.integers(0, pb, pb)
        stats[i] = ma[np.ix_(sa, qa)].mean() - mb[np.ix_(sb, qb)].mean()
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "paired": paired, "stats": stats}


def _verdict(d: Mapping[str, float], claim_holds_if: str) -> str:
    """``reproduced`` / ``not reproduced`` / ``inconclusive`` for a difference interval."""
    lo, hi = d["lo"], d["hi"]
    if math.isnan(lo):
        return "not measured"
    above, below = lo > 0, hi < 0
    if claim_holds_if == "above":
        return "reproduced" if above else ("not reproduced" if below else "inconclusive (interval holds 0)")
    if claim_holds_if == "below":
        return "reproduced" if below else ("not reproduced" if above else "inconclusive (interval holds 0)")
    # "not above": a method does not help
    return "not reproduced" if above else "reproduced"


def _fmt_diff(d: Mapping[str, float]) -> str:
    return f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def claims(groups: Mapping[str, Sequence[Mapping[str, Any]]], k: int) -> list[dict[str, str]]:
    """The claims the finished runs can test, each with its measurement and outcome."""
    rows: list[dict[str, str]] = []
    g = groups
    strip = lambda d: {key: v for key, v in d.items() if key != "stats"}  # noqa: E731

    def diff(a: str, b: str) -> dict[str, Any]:
        return bootstrap_diff(g[a], g[b], k)

    if "grpo" in g:
        for name in ("entropy", "clip-higher"):
            if name in g:
                d = diff(name, "grpo")
                es, ee = label_row(g[name], k)["entropy_start"][0], label_row(g[name], k)["entropy_end"][0]
                rows.append({"claim": f"token-level exploration ({name}) fails on hard problems",
                             "measured": f"{name} - grpo pass@{k} {_fmt_diff(d)}; token entropy {es:.3f} -> {ee:.3f}",
                             "outcome": _verdict(d, "not above"), "detail": strip(d)})
        if "mix-easy" in g:
            d = diff("mix-easy", "grpo")
            rows.append({"claim": "easy+hard mixing interferes", "measured": f"mix-easy - grpo pass@{k} {_fmt_diff(d)}",
                         "outcome": _verdict(d, "below"), "detail": strip(d)})
        if "passk" in g:
            d = diff("passk", "grpo")
            rows.append({"claim": "pass@k does not help", "measured": f"passk - grpo pass@{k} {_fmt_diff(d)}",
                         "outcome": _verdict(d, "not above"), "detail": strip(d)})
        if "pope" in g:
            d = diff("pope", "grpo")
            sp, sg = label_row(g["pope"], k)["solved_set"][0], label_row(g["grpo"], k)["solved_set"][0]
            rows.append({"claim": "POPE expands the solvable set",
                         "measured": f"pope - grpo pass@{k} {_fmt_diff(d)}; solved set {sp:.1f} vs {sg:.1f}",
                         "outcome": _verdict(d, "above"), "detail": strip(d)})
            if "pope+revisit" in g and "grpo+revisit" in g:
                import numpy as np

                d1 = bootstrap_diff(g["pope+revisit"], g["grpo+revisit"], k, seed=1)
                dd = d1["stats"] - d["stats"]
                lo, hi = (float(x) for x in np.percentile(dd, [2.5, 97.5]))
                both = {"diff": d1["diff"] - d["diff"], "lo": lo, "hi": hi}
                ov = lambda lab: label_row(g[lab], k).get("s_good_overlap_mean", [float("nan")])[0]  # noqa: E731
                rows.append({"claim": "transfer needs overlap (revisiting traces)",
                             "measured": f"POPE gain with revisit {_fmt_diff(d1)} vs without {_fmt_diff(d)}: "
                                         f"difference {_fmt_diff(both)}; own-state S_good overlap "
                                         f"{ov('pope+revisit'):.3f} (revisit) vs {ov('pope'):.3f}",
                             "outcome": _verdict(both, "above"), "detail": both})
        if "sft-oracle" in g:
            sft = [_window_mean(r["entropy"], True) for r in g["sft-oracle"]]
            base = [_window_mean(r["entropy"], True) for r in g["grpo"]]
            d = diff("sft-oracle", "grpo")
            collapsed = max(sft) < min(base)
            rows.append({"claim": "SFT on oracle solutions collapses entropy",
                         "measured": f"entropy at RL start {statistics.fmean(sft):.3f} after SFT vs "
                                     f"{statistics.fmean(base):.3f} (base); sft-oracle - grpo pass@{k} {_fmt_diff(d)}",
                         "outcome": "reproduced" if collapsed else "not reproduced", "detail": strip(d)})
    return rows


def summarize(results: Mapping[str, Mapping[str, Any]], k: int) -> dict[str, Any]:
    """Per-label rows and the claims."""
    groups = by_label(results)
    return {"k": k, "labels": {lab: label_row(rs, k) for lab, rs in groups.items()}, "claims": claims(groups, k)}


def format_tables(summary: Mapping[str, Any], n_eval: Mapping[str, int]) -> str:
    """The results table and the claims table as fixed-width text."""
    k = summary["k"]
    pm = lambda v, f=".3f": f"{v[0]:{f}}±{v[1]:{f}}"  # noqa: E731
    head = (f"{'method':<17} {'seeds':>5} {f'pass@{k} before':>14} {f'pass@{k} after':>14} {'pass@1 after':>15} "
            f"{'guided after':>13} {'solved set':>11} {'entropy start->end':>19} {'own in S_good':>14}")
    lines = [f"unguided = held-out hard problems (pass@64 = 0 for the base; {', '.join(f'{v}: {n}' for v, n in n_eval.items())}); "
             "mean±s.e. over seeds", head, "-" * len(head)]
    for lab, r in summary["labels"].items():
        ov = pm(r["s_good_overlap_mean"]) if "s_good_overlap_mean" in r else "-"
        lines.append(
            f"{lab:<17} {len(r['seeds']):>5} {pm(r[f'pass@{k}_before']):>14} {pm(r[f'pass@{k}_after']):>14} "
            f"{pm(r['pass@1_after'], '.4f'):>15} {pm(r['guided_pass@1_after'], '.2f'):>13} "
            f"{pm(r['solved_set'], '.1f'):>11} {r['entropy_start'][0]:>9.3f}->{r['entropy_end'][0]:<8.3f} {ov:>14}"
        )
    if summary["claims"]:
        lines += ["", "claims (95% bootstrap intervals over seeds and problems):"]
        for c in summary["claims"]:
            lines.append(f"  {c['claim']}: {c['outcome']}\n      {c['measured']}")
    return "\n".join(lines)


def plot(summary: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]],
         regimes: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> Path:
    """PNG, 2 x 3 panels: unguided pass@1 and pass@k over steps (mean ± s.e. bands), token
    entropy, own-state S_good overlap, the base's guided pass@1 against operations left after
    the prefix, and the i* distribution."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k = summary["k"]
    groups = by_label(results)
    colors = dict(zip(sorted(groups), plt.get_cmap("tab10").colors))
    for name, c in (("grpo", "tab:blue"), ("pope", "tab:red")):
        if name in colors:
            colors[name] = c
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), dpi=110)

    def band(ax: Any, label: str, xs_ys: list[tuple[list[float], list[float]]]) -> None:
        xs = sorted({x for run_xs, _ in xs_ys for x in run_xs})
        mat = np.array([np.interp(xs, rx, ry) for rx, ry in xs_ys])
        m = mat.mean(0)
        se = mat.std(0, ddof=1) / np.sqrt(len(mat)) if len(mat) > 1 else np.zeros_like(m)
        ls = "--" if "+" in label else "-"
        ax.plot(xs, m, ls, color=colors[label], label=f"{label} ({len(mat)} seeds)")
        ax.fill_between(xs, m - se, m + se, color=colors[label], alpha=0.2)

    for ax, metric in ((axes[0, 0], "pass@1"), (axes[0, 1], f"pass@{k}")):
        for lab, runs in groups.items():
            band(ax, lab, [([e["step"] for e in r["evals"]], [e[metric] for e in r["evals"]]) for r in runs])
        ax.set(xlabel="training step", ylabel=f"unguided {metric} (held-out hard)", title=f"held-out unguided {metric}")
        ax.set_ylim(bottom=0)
    ax = axes[0, 2]
    for lab, runs in groups.items():
        series = []
        for r in runs:
            if len(r["entropy"]) >= 2:
                xs, ys = zip(*r["entropy"])
                w = max(1, len(ys) // 20)
                smooth = np.convolve(ys, np.ones(w) / w, mode="valid")
                series.append((list(xs[w - 1:]), list(smooth)))
        if series:
            band(ax, lab, series)
    ax.set(xlabel="training step", ylabel="token entropy (nats, rollouts)", title="token entropy")
    ax = axes[1, 0]
    for lab, runs in groups.items():
        if all("s_good_overlap" in e for r in runs for e in r["evals"]):
            band(ax, lab, [([e["step"] for e in r["evals"]], [e["s_good_overlap"] for e in r["evals"]]) for r in runs])
    ax.set(xlabel="training step", ylabel="share of own states in S_good", title="own unguided states in S_good")
    ax = axes[1, 1]
    for variant, reg in regimes.items():
        for level, row in sorted(reg["guided_pass1"].items()):
            lefts = sorted((int(a) for a in row), reverse=True)
            ax.plot(lefts, [row[str(a)] if str(a) in row else row[a] for a in lefts], marker="o",
                    linestyle="--" if variant != "plain" else "-", label=f"{variant} base, {level}-op chains")
    ax.invert_xaxis()
    ax.set(xlabel="operations left after the oracle prefix", ylabel="guided pass@1 (base)",
           title="base: guided success against prefix length")
    ax = axes[1, 2]
    width = 0.8 / max(1, len(regimes))
    for j, (variant, reg) in enumerate(regimes.items()):
        hist = {int(a): b for a, b in reg["istar_hist"].items()}
        ax.bar([i + j * width for i in hist], list(hist.values()), width=width, label=f"{variant} base")
    ax.set(xlabel="i* (oracle steps in the roll-in)", ylabel="hard problems", title="i* distribution")
    for a in axes.flat:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


__all__ = ["bootstrap_diff", "by_label", "claims", "format_tables", "label_row", "mean_se", "plot", "summarize"]
