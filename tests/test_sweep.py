"""`lmctl sweep`: Optuna trials as run directories, pruned through the engine's `on_evaluate` hook,
failures recorded, resumed after SIGKILL between and inside trials, two worker processes sharing one
study, the report (leaderboard, best.yaml, link, plots, --keep best), bad sweep files refused up front,
and the shipped sweep files loaded. Tiny BERT, generated sentiment rows, a few steps a trial."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, cli, explain, sentiment_rows, write_config, write_rows

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: see conftest.py

GOOD, TOO_HIGH, DIVERGES, ALSO_GOOD = 3.0e-3, 0.3, 1.0e30, 1.0e-3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-data")
    return write_rows(root / "train.tsv", sentiment_rows(120, 0)), write_rows(root / "dev.tsv", sentiment_rows(40, 1))


def write_sweep(tmp: Path, tiny_models, data, training: dict, **sweep) -> Path:
    """A sweep over a tiny-BERT text-classification base config; `training` updates the base's training
    section, `sweep` the sweep file's keys."""
    base = write_config(tmp / "base.yaml", tiny_models["bert"], *data, tmp / "unused",
                        training={"eval_strategy": "steps", "logging_steps": 6, **training})
    spec = {"base": "base.yaml", "sampler": {"name": "random", "seed": 0}, "output_dir": str(tmp / "sweep"),
            "space": {"training.learning_rate": {"choices": [GOOD, TOO_HIGH, DIVERGES, ALSO_GOOD]}}, **sweep}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    assert base.parent == path.parent
    return path


def load_study(out: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=out.name, storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))))


def trial_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("trial-*"))


# ---- one sweep: pruned, failed, complete; the report --------------------------------------------

def test_sweep_prunes_records_failures_and_reports_the_best(tmp_path, tiny_models, data):
    # Four enqueued trials, scored on the eval loss (lower is better): a good rate, one so high that its
    # loss jumps (pruned at its first evaluation against the first trial), one that diverges to NaN
    # (failed with the engine's reason), and another good one after it.
    path = write_sweep(tmp_path, tiny_models, data, {"max_steps": 24, "eval_steps": 6}, n_trials=4, metric="loss",
                       pruner={"name": "median", "n_startup_trials": 1},
                       enqueue=[{"training.learning_rate": lr} for lr in (GOOD, TOO_HIGH, DIVERGES, ALSO_GOOD)])
    result = cli("sweep", path, "--keep", "best", code=None)
    assert result.exit_code == 0, explain(result)
    assert "continuing" not in result.stderr  # enqueued trials still waiting are no sweep to continue
    out = tmp_path / "sweep"
    study = load_study(out)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.params["training.learning_rate"] for t in trials] == [GOOD, TOO_HIGH, DIVERGES, ALSO_GOOD]
    states = [t.state.name for t in trials]
    assert states[:3] == ["COMPLETE", "PRUNED", "FAIL"] and states[3] in ("COMPLETE", "PRUNED"), states
    assert trial_dirs(out) == ["trial-000", "trial-001", "trial-002", "trial-003"]

    # The pruned trial stopped cleanly at its first evaluation: its kept model scored, its log kept.
    pruned = out / "trial-001"
    metrics = json.loads((pruned / "metrics.json").read_text())
    assert metrics["completed_steps"] == 6 and metrics["best_step"] == 6
    assert trials[1].user_attrs["score"] == pytest.approx(metrics["eval_loss"])
    assert "stopped at step 6: on_evaluate asked to" in (pruned / "console.log").read_text()
    assert (pruned / "train_log.jsonl").is_file()
    # The diverged trial: failed with the engine's one-line reason; the sweep went on to trial 3.
    assert trials[2].user_attrs["reason"].startswith("training diverged: loss is nan")
    assert "failed: training diverged" in result.stderr
    # A complete trial is scored on the model it kept (its best evaluation, by the sweep's metric).
    complete = json.loads((out / "trial-000" / "metrics.json").read_text())
    assert complete["best_metric"] == "loss" and trials[0].value == pytest.approx(complete["eval_loss"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["direction"] == "minimize" and summary["metric"] == "loss"
    scored = [t for t in trials if "score" in t.user_attrs]
    best = min(scored, key=lambda t: t.user_attrs["score"])
    assert summary["best"]["number"] == best.number
    assert summary["total_steps"] == sum(t["steps"] for t in summary["trials"]) < 4 * 24
    # best.yaml is the best trial's config, ready for finetune; `best` links its run directory.
    from lmctl import config as config_lib

    best_cfg = config_lib.load_config(out / "best.yaml")
    assert best_cfg.training.learning_rate == best.params["training.learning_rate"]
    assert (out / "best").resolve() == (out / f"trial-{best.number:03d}").resolve()
    assert (out / "history.png").stat().st_size > 0 and (out / "importances.png").is_file()
    # The leaderboard (lmctl compare of the finished trials) marks the pruned one; stdout carries it.
    board = (out / "leaderboard.md").read_text()
    assert "| pruned |" in board and "trial-001" in board and "trial-002" not in board
    assert "leaderboard: text-classification" in result.stdout
    # --keep best: only the best trial keeps its weights.
    for t in trials:
        weights = list((out / f"trial-{t.number:03d}").glob("*.safetensors"))
        assert bool(weights) == (t.number == best.number), (t.number, weights)

    # Run again: nothing to do, the same report (no trial rerun or added).
    again = cli("sweep", path)
    assert len(load_study(out).trials) == 4 and trial_dirs(out) == trial_dirs(out)
    assert "continuing: 4 trial(s) finished" in again.stderr


# ---- bad sweep files: one line, exit 2, nothing trained -----------------------------------------

BAD = [
    ({"space": {"training.learnin_rate": {"low": 1.0e-5, "high": 1.0e-3}}},
     "unknown key 'training.learnin_rate' (did you mean 'learning_rate'?)"),
    ({"space": {"training.learning_rate": {"low": 1.0e-3, "high": 1.0e-5}}}, "low 0.001 is above high 1e-05"),
    ({"space": {"training.learning_rate": {"low": -1.0, "high": 1.0e-5}}}, "greater than 0"),
    ({"space": {"training.num_epochs": {"choices": []}}}, "choices is empty"),
    ({"sampler": {"name": "cmaes"}}, "sampler.name"),
    ({"pruner": {"name": "sometimes"}}, "pruner.name"),
    ({"sampler": {"name": "tpe", "n_startup_trial": 3}}, "sampler.n_startup_trial: not an option"),
    ({"metric": "eval_spearmanr"}, "metric: 'eval_spearmanr' is not reported by task 'text-classification'"),
    ({"n_trials": None}, "give n_trials and/or timeout"),
    ({"sampler": {"name": "grid"}, "space": {"training.learning_rate": {"low": 1.0e-5, "high": 1.0e-3}}},
     "sampler grid: space.training.learning_rate is a range without a step"),
    ({"enqueue": [{"training.seed": 3}]}, "enqueue[0]: 'training.seed' is not a key of space"),
    ({"enqueue": [{"training.learning_rate": 0.5}]}, "enqueue[0]: training.learning_rate=0.5 is outside space"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(":")[0][:30] for _, m in BAD])
def test_bad_sweep_files_fail_before_any_training(tmp_path, tiny_models, data, change, message):
    path = write_sweep(tmp_path, tiny_models, data, {"max_steps": 4, "eval_steps": 2}, n_trials=2)
    spec = yaml.safe_load(path.read_text())
    spec.update(change)
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = cli("sweep", path, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "sweep").exists()


def test_set_reaches_the_sweep_and_the_base_config(tmp_path, tiny_models, data):
    path = write_sweep(tmp_path, tiny_models, data, {"max_steps": 4, "eval_steps": 2}, n_trials=5)
    from lmctl.sweep import load_sweep

    sweep = load_sweep(path, ["n_trials=1", "sampler.seed=7", "training.max_steps=3",
                              "space.training.warmup_ratio={choices: [0.0, 0.1]}"])
    assert sweep.n_trials == 1 and sweep.spec.sampler.seed == 7 and sweep.base.training.max_steps == 3
    assert sweep.space["training.warmup_ratio"].choices == [0.0, 0.1]


# ---- resume after SIGKILL ---------------------------------------------------------------------

def _start(path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "lmctl", "sweep", str(path)], cwd=path.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep exited ({proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout:.0f}s")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def test_a_sweep_killed_between_and_inside_trials_ends_with_exactly_n_trials(tmp_path, tiny_models, data):
    # 100 steps a trial with a checkpoint every 10: long enough to be killed inside one.
    path = write_sweep(tmp_path, tiny_models, data, {"max_steps": 100, "eval_steps": 50, "save_steps": 10},
                       n_trials=3, pruner={"name": "none"},
                       space={"training.learning_rate": {"choices": [GOOD, ALSO_GOOD]}})
    out = tmp_path / "sweep"

    # 1. Between trials: hold the sweep's lock while trial 0 runs; once it has ended, the sweep waits on
    #    the lock to ask for trial 1, and is killed there.
    first = _start(path)
    _wait_for(lambda: (out / "trial-000" / "train_log.jsonl").is_file(), first, "trial 0 training")
    with open(out / ".sweep.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _wait_for(lambda: (out / "trial-000" / "console.log").is_file(), first, "trial 0 ending")
        time.sleep(0.5)
        _kill(first)
    assert [(t.number, t.state.name) for t in load_study(out).trials] == [(0, "COMPLETE")]
    assert trial_dirs(out) == ["trial-000"]

    # 2. Inside a trial: killed once trial 1 has written a checkpoint.
    second = _start(path)
    _wait_for(lambda: any((out / "trial-001" / "checkpoints").glob("step-*")), second, "a checkpoint of trial 1")
    _kill(second)
    assert [(t.number, t.state.name) for t in load_study(out).trials] == [(0, "COMPLETE"), (1, "RUNNING")]

    # 3. Run again: trial 1 resumes from its checkpoint in its own directory, trial 2 follows.
    result = cli("sweep", path, code=None)
    assert result.exit_code == 0, explain(result)
    study = load_study(out)
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert trial_dirs(out) == ["trial-000", "trial-001", "trial-002"]
    log = (out / "trial-001" / "console.log").read_text()
    assert "resuming from its newest checkpoint" in log and "resumed from" in log
    steps = [json.loads(line)["step"] for line in (out / "trial-001" / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set((s, i) for i, s in enumerate(steps)))
    for t in study.trials:
        assert json.loads((out / f"trial-{t.number:03d}" / "metrics.json").read_text())["completed_steps"] == 100
    summary = json.loads((out / "summary.json").read_text())
    assert [r["state"] for r in summary["trials"]] == ["complete"] * 3


# ---- two workers share one study ------------------------------------------------------------

def test_two_worker_processes_share_one_study(tmp_path, tiny_models, data):
    # A grid of a stepped range, n_trials left to the grid's size (4): each point once, though two
    # processes ask at once.
    path = write_sweep(tmp_path, tiny_models, data, {"max_steps": 60, "eval_steps": 30}, pruner={"name": "none"},
                       sampler={"name": "grid", "seed": 0},
                       space={"training.learning_rate": {"low": 1.0e-3, "high": 4.0e-3, "step": 1.0e-3}})
    result = cli("sweep", path, "--workers", "2", code=None)
    assert result.exit_code == 0, explain(result)
    out = tmp_path / "sweep"
    study = load_study(out)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert trial_dirs(out) == ["trial-000", "trial-001", "trial-002", "trial-003"]
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids, pids
    assert sorted(t.params["training.learning_rate"] for t in study.trials) == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3])
    assert "2 worker processes" in result.stderr and "1 thread(s) each" in result.stderr


# ---- shipped sweep files --------------------------------------------------------------------

SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


def test_sweeps_are_shipped():
    assert {p.stem for p in SWEEPS} >= {"mrpc-minilm", "stsb-minilm", "sst2-minilm"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweep_files_load_and_select_on_a_split_of_train(path, monkeypatch):
    from lmctl.sweep import load_sweep

    monkeypatch.chdir(REPO)
    sweep = load_sweep(path)
    assert path.read_text(encoding="utf-8").startswith("#"), f"{path} has no header comment"
    # Trials are chosen on rows carved from the training file, not on the GLUE dev file they are reported on.
    assert sweep.base.data.validation_file is None and sweep.base.data.train_file
    assert sweep.n_trials and sweep.spec.sampler.seed is not None
