"""Reliability: exact resume after SIGKILL, SIGTERM checkpoints, damaged checkpoints, NaN stops, 2-rank DDP.

Every run is a real `lmctl finetune` subprocess on a tiny BERT, so signals, exit codes and
files are what a user gets.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "configs" / "finetune" / "data"
MAX_STEPS = 60


def _config(tmp: Path, model: Path, out: Path, **training) -> Path:
    cfg = {
        "task": "text-classification",
        "model": {"name_or_path": str(model)},
        "data": {"train_file": str(DATA / "train.tsv"), "validation_file": str(DATA / "dev.tsv"),
                 "text_column": "sentence", "max_eval_samples": 64},
        "training": {"max_steps": MAX_STEPS, "batch_size": 16, "learning_rate": 1.0e-3, "max_length": 32,
                     "logging_steps": 1, "eval_strategy": "steps", "eval_steps": 20, "seed": 7,
                     **training},
        "output_dir": str(out),
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _lmctl(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmctl", *args], capture_output=True, text=True, **kw)


def _popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmctl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _final(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k.startswith("eval_") or k in ("train_loss", "completed_steps", "best_step")}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float):
            assert b[k] == pytest.approx(a[k], abs=1e-6), k
        else:
            assert a[k] == b[k], k


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    start = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"run ended before the test could interrupt it: {proc.stderr.read()}"
        assert time.monotonic() - start < timeout, "timed out waiting for the run"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, tmp_path_factory):
    """The reference: the same run, start to finish, checkpoints every 10 steps (all kept)."""
    tmp = tmp_path_factory.mktemp("reliability")
    out = tmp / "reference"
    cfg = _config(tmp, tiny_models["bert"], out, save_steps=10, save_total_limit=None)
    r = _lmctl("finetune", str(cfg))
    assert r.returncode == 0, r.stderr
    return tmp, out, _final(out)


def test_checkpoints_are_whole_and_listed(uninterrupted):
    from lmctl.engine.checkpoint import list_checkpoints, verify

    _, out, _ = uninterrupted
    names = [p.name for p in list_checkpoints(out)]
    assert names == [f"step-{s:06d}" for s in (10, 20, 30, 40, 50)]
    for path in list_checkpoints(out):
        assert verify(path) is None
        state = json.loads((path / "trainer_state.json").read_text())
        assert state["completed_steps"] == int(path.name.split("-")[1])


def test_save_total_limit_keeps_newest(tiny_models, tmp_path):
    out = tmp_path / "limited"
    cfg = _config(tmp_path, tiny_models["bert"], out, save_steps=10, save_total_limit=2, max_steps=30,
                  eval_strategy="no")
    assert _lmctl("finetune", str(cfg)).returncode == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000010", "step-000020"]


def test_sigkill_mid_epoch_then_resume_matches(uninterrupted, tiny_models):
    tmp, _, reference = uninterrupted
    out = tmp / "killed"
    cfg = _config(tmp, tiny_models["bert"], out, save_steps=10, save_total_limit=None)
    proc = _popen("finetune", str(cfg))
    _wait_for(lambda: (out / "checkpoints" / "step-000010" / "manifest.json").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()  # it really died mid-run
    r = _lmctl("finetune", str(cfg), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    _assert_same(reference, _final(out))
    # The log holds each step once: lines written after the checkpoint by the killed run are replaced.
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, MAX_STEPS + 1))


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(uninterrupted, tiny_models):
    tmp, _, reference = uninterrupted
    out = tmp / "terminated"
    cfg = _config(tmp, tiny_models["bert"], out)  # no save_steps: the signal alone must save
    proc = _popen("finetune", str(cfg))
    log = out / "train_log.jsonl"
    _wait_for(lambda: log.exists() and log.read_text().count('"loss"') >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "--resume" in stderr and "Traceback" not in stderr
    checkpoints = list((out / "checkpoints").iterdir())
    assert len(checkpoints) == 1
    r = _lmctl("finetune", str(cfg), "--resume")
    assert r.returncode == 0, r.stderr
    _assert_same(reference, _final(out))


def test_damaged_latest_checkpoint_falls_back(uninterrupted, tmp_path):
    _, reference_dir, reference = uninterrupted
    out = tmp_path / "reference"  # same name: the copied config.yaml's output_dir is rewritten below
    shutil.copytree(reference_dir, out)
    cfg_path = tmp_path / "cfg.yaml"
    cfg = yaml.safe_load((reference_dir / "config.yaml").read_text())
    cfg["output_dir"] = str(out)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # A crash mid-save: the newest checkpoint's weights are cut short, and a half-written folder is left.
    weights = out / "checkpoints" / "step-000050" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (out / "checkpoints" / ".tmp-step-000060").mkdir()
    r = _lmctl("finetune", str(cfg_path), "--resume")
    assert r.returncode == 0, r.stderr
    assert "step-000050 is damaged" in r.stderr
    assert "resumed from" in r.stderr and "step-000040" in r.stderr
    _assert_same(reference, _final(out))


def test_resume_refuses_a_different_config(uninterrupted, tiny_models, tmp_path):
    tmp, out, _ = uninterrupted
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    cfg = _config(tmp_path, tiny_models["bert"], out, save_steps=10, save_total_limit=None, learning_rate=0.5)
    r = _lmctl("finetune", str(cfg), "--resume")
    assert r.returncode == 2
    assert "training.learning_rate" in r.stderr and "Traceback" not in r.stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_resume_reads_a_run_saved_before_newer_keys(uninterrupted, tmp_path):
    # A run directory written by an older lmctl: its config.yaml lacks the keys added since (here
    # training.layer_lr_decay and the whole tagging section). They took today's defaults, so --resume
    # with today's config must go on, not refuse the run as a different one.
    _, reference_dir, reference = uninterrupted
    out = tmp_path / "reference"
    shutil.copytree(reference_dir, out)
    for late in sorted((out / "checkpoints").iterdir())[2:]:
        shutil.rmtree(late)  # killed after step 20
    (out / "metrics.json").unlink()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["output_dir"] = str(out)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert "layer_lr_decay" in cfg["training"] and "tagging" in cfg
    del cfg["training"]["layer_lr_decay"], cfg["tagging"]
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = _lmctl("finetune", str(tmp_path / "cfg.yaml"), "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "step-000020" in r.stderr
    _assert_same(reference, _final(out))


def test_nan_loss_stops_with_the_step(tiny_models, tmp_path):
    out = tmp_path / "nan"
    cfg = _config(tmp_path, tiny_models["bert"], out, learning_rate=1.0e30, max_grad_norm=None,
                  eval_strategy="no")
    r = _lmctl("finetune", str(cfg))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "diverged" in lines[0] and "at step" in lines[0]
    assert "Traceback" not in r.stderr


def _launch_2_processes(*args: str) -> subprocess.CompletedProcess:
    """`accelerate launch` with 2 CPU ranks (DDP over gloo), as configs/accelerate/cpu-ddp-2proc.yaml."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "lmctl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tiny_models, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = dict(max_steps=20, eval_steps=10, batch_size=16)
    assert _lmctl("finetune", str(_config(tmp_path, tiny_models["bert"], single, **common))).returncode == 0
    r = _launch_2_processes("finetune", str(_config(tmp_path, tiny_models["bert"], ddp, **common)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((ddp / "environment.json").read_text())["num_processes"] == 2
    # Same files, one writer: rank 1 wrote nothing extra and printed nothing.
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in ddp.iterdir())
    assert r.stderr.count("run directory:") == 1
    a, b = _final(single), _final(ddp)
    assert a["completed_steps"] == b["completed_steps"] == 20
    # Per-rank batch halves change float summation order only: the curves agree closely.
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=5e-3)
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=5e-3)
    assert b["eval_accuracy"] == pytest.approx(a["eval_accuracy"], abs=0.05)
    m = json.loads((ddp / "metrics.json").read_text())
    assert m["train_samples"] == 20 * 16  # the global batch is the config's, not 2 x 16


@pytest.mark.slow
def test_two_process_pretraining_from_scratch_shares_one_tokenizer(tmp_path):
    """Only rank 0 trains the tokenizer and sends it to the others (two trainings need not number
    the vocabulary alike, and DDP needs the same embedding matrix on every rank): the broadcast
    works over gloo and the run reloads."""
    out = tmp_path / "ddp"
    r = _launch_2_processes("pretrain", str(REPO / "configs" / "pretrain" / "tiny-bert.yaml"),
                            "--set", "training.max_steps=6", "--set", "training.max_length=32",
                            "--set", "training.eval_strategy=no", "--set", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "environment.json").read_text())["num_processes"] == 2
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForMaskedLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == model.config.vocab_size >= len(tok)
    assert json.loads((out / "metrics.json").read_text())["completed_steps"] == 6
