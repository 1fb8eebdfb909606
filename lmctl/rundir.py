"""The run directory: a self-describing record of one run.

    output_dir/
      config.yaml        the resolved config (every default filled in)
      environment.json   package versions, device, process count, command line
      data.json          data fingerprints: file, size, sha256, rows per split
      train_log.jsonl    one line per logging interval / evaluation
      metrics.json       final metrics plus train seconds, samples/s, tokens/s
      curves.png         the logged series drawn (lmctl/plots.py)
      model + tokenizer  Hugging Face format: `from_pretrained(output_dir)` reloads it
                         (a LoRA run: the adapter and config.json; see lmctl/adapters.py)

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file where a reader expects a whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from lmctl.errors import UserError


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_lines(path, (text,))


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write `lines` as they come (e.g. predictions, chunk by chunk) to a temporary file beside
    `path`, renamed to `path` once the last is written: a failure on the way leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # checked up front by check_output_file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def prepare_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Create the run directory; refuse to mix a new run into an old one's files."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out}: exists and is a file; choose another output_dir")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(
                f"output_dir {out}: not empty; pass --overwrite to replace it or set output_dir to a new path"
            )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output_dir {out}: cannot write there ({exc.strerror}); choose a writable path") from None
    return out


def check_output_dir(path: str | Path, overwrite: bool, key: str = "output_dir") -> None:
    """The checks of `prepare_output_dir` without touching anything (run before loading); `key`
    names the setting or flag the path came from."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{key} {out}: exists and is a file; choose another {key}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{key} {out}: not empty; pass --overwrite to replace it or set {key} to a new path")
    _check_ancestor(out, key)


def check_output_file(path: str | Path, key: str) -> None:
    """A file a command will write at the end (predictions, metrics, a plot or a page), checked
    before any model loads: a folder, or a path under a file, would otherwise fail after all the work."""
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{key} {out}: is a directory; give a file path, e.g. {out / 'out'}")
    _check_ancestor(out, key)


def _check_ancestor(out: Path, key: str) -> None:
    # The nearest part of the path that exists must be a writable folder (missing ones are created).
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if parent == out and not out.is_dir():
        parent = out.parent  # a file to replace: its folder must take the new one
    if not parent.is_dir():
        raise UserError(f"{key} {out}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{key} {out}: {parent} is not writable; choose a writable path")


def file_fingerprint(path: str | Path) -> dict:
    p = Path(path)
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": digest.hexdigest()}


def environment(accelerator=None) -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("lmctl", "torch", "transformers", "tokenizers", "datasets", "accelerate", "evaluate", "safetensors"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "argv": sys.argv,
    }
    if accelerator is not None:
        import torch

        env.update(
            device=str(accelerator.device),
            num_processes=accelerator.num_processes,
            distributed_type=str(accelerator.distributed_type),
            mixed_precision=accelerator.mixed_precision,
            torch_threads=torch.get_num_threads(),
        )
    return env


class RunLog:
    """Appends one JSON object per line; each line is flushed so a crash keeps what was logged."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Drop the log lines written after `step` (a resumed run writes them again)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def lock_path(output_dir: Path) -> Path:
    """Beside the run directory, not in it: --overwrite empties the directory, never the lock."""
    out = Path(output_dir)
    return out.parent / f".{out.name}.lmctl.lock"


def _running(pid: int) -> bool:
    if pid == os.getpid():  # our own earlier run in this process (tests run lmctl in process): it ended
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@contextmanager
def run_lock(output_dir: str | Path, console):
    """One run at a time per run directory: a lock file holding the pid, created atomically; a lock
    whose process is gone is taken over with a warning."""
    out = Path(output_dir)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _running(pid):
                raise UserError(f"output_dir {out}: in use by another lmctl run (process {pid}, lock {path}); "
                                "wait for it to finish or choose another output_dir") from None
            console.warn(f"output_dir {out}: taking over the lock of process {pid or '?'}, which is no longer running")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
