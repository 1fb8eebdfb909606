"""A run directory is written by one run at a time: a second run aimed at it stops at once with one
line; a lock left by a dead process is taken over with a warning."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import REPO, cli

DATA = REPO / "configs" / "finetune" / "data"


def config(tmp: Path, model: Path, steps: int) -> Path:
    cfg = {
        "task": "text-classification",
        "model": {"name_or_path": str(model)},
        "data": {"train_file": str(DATA / "train.tsv"), "validation_file": str(DATA / "dev.tsv"),
                 "text_column": "sentence"},
        "training": {"max_steps": steps, "batch_size": 16, "max_length": 32, "eval_strategy": "no"},
        "output_dir": str(tmp / "run"),
    }
    path = tmp / f"run-{steps}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_second_run_on_a_directory_in_use_stops_at_once(tiny_models, tmp_path):
    lock = tmp_path / ".run.lmctl.lock"
    first = subprocess.Popen([sys.executable, "-m", "lmctl", "finetune", str(config(tmp_path, tiny_models["bert"], 200))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not lock.exists():
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() - start < 120
        time.sleep(0.02)
    assert lock.read_text().strip() == str(first.pid)

    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "lmctl", "finetune", str(config(tmp_path, tiny_models["bert"], 5)),
                             "--overwrite"], capture_output=True, text=True)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: output_dir {tmp_path / 'run'}: in use by another lmctl run (process {first.pid}, lock {lock}); "
        "wait for it to finish or choose another output_dir"]
    assert first.poll() is None, "the first run was disturbed"
    assert time.monotonic() - started < 30  # at once: no model was loaded, no data read

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert (tmp_path / "run" / "metrics.json").is_file() and not lock.exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tiny_models, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".run.lmctl.lock"
    lock.write_text(f"{dead.pid}\n")
    result = cli("finetune", config(tmp_path, tiny_models["bert"], 3))
    assert (f"warning: output_dir {tmp_path / 'run'}: taking over the lock of process {dead.pid}, which is no "
            "longer running") in result.stderr
    assert (tmp_path / "run" / "metrics.json").is_file() and not lock.exists()
