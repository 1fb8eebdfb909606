"""Resumable checkpoints: Accelerate's state plus the loop's counters, written atomically.

    output_dir/checkpoints/step-000120/
      model.safetensors, optimizer.bin, scheduler.bin, random_states_*.pkl   (accelerator.save_state)
      trainer_state.json     completed steps, position in the epoch, counters, best-model tracking
      manifest.json          sha256 of every file, written last

A checkpoint is assembled in `.tmp-step-N` and renamed into place only when complete,
and `manifest.json` lets a resume verify it: a crash mid-save leaves at most a `.tmp-`
folder, never a corrupt "latest".
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from lmctl.errors import UserError
from lmctl.rundir import file_fingerprint, write_json

_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(accelerator, output_dir: Path, step: int, state: dict, limit: int | None) -> Path:
    """Save everything needed to resume at `step`; keeps the newest `limit` checkpoints."""
    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # collective: every rank writes its own RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", state)
        manifest = {f.name: file_fingerprint(f)["sha256"] for f in sorted(tmp.iterdir()) if f.is_file()}
        write_json(tmp / "manifest.json", manifest)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if limit:
            for old in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def verify(path: Path) -> str | None:
    """None if the checkpoint is whole, else what is wrong with it."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return "no manifest.json (incomplete save)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError:
        return "manifest.json is not valid JSON"
    for name, digest in manifest.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if file_fingerprint(f)["sha256"] != digest:
            return f"{name} does not match its checksum"
    return None


def find_resume_checkpoint(output_dir: Path, requested: str | None, console) -> Path:
    """The checkpoint to resume from: `requested`, or the newest whole one (falling back past broken ones)."""
    if requested:
        path = Path(requested)
        if not path.is_dir():
            raise UserError(f"{path}: no such checkpoint folder; see {checkpoints_dir(output_dir)}")
        problem = verify(path)
        if problem:
            raise UserError(f"{path}: damaged checkpoint ({problem}); pick an older one")
        return path
    candidates = list_checkpoints(output_dir)
    if not candidates:
        raise UserError(f"no checkpoint in {checkpoints_dir(output_dir)}; set training.save_steps to write "
                        "checkpoints, or start the run afresh")
    for path in reversed(candidates):
        problem = verify(path)
        if problem is None:
            return path
        console.warn(f"checkpoint {path.name} is damaged ({problem}); falling back to the previous one")
    raise UserError(f"every checkpoint in {checkpoints_dir(output_dir)} is damaged; start the run afresh")


def load_trainer_state(path: Path) -> dict:
    return json.loads((path / "trainer_state.json").read_text())
