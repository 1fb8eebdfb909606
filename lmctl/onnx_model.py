"""ONNX export and the model evaluate/predict run from an export through ONNX Runtime.

Export is torch's exporter (`torch.onnx.export(..., dynamo=True)`, batch and sequence
dimensions dynamic); int8 is ONNX Runtime's dynamic quantization (int8 weights, activations
quantized on the fly), the maintained path (torch.ao's quantized tensors are deprecated).
Every export checks itself: the exported model's outputs are compared with PyTorch's on
the same batches before the directory is written, and the figures go in its manifest.

An export directory holds model.onnx (fp32: with its weights in model.onnx.data), the
tokenizer, the transformers config (labels) and the run's config.yaml, plus onnx.json, the
manifest this module reads back: `OnnxModel` takes the place of the PyTorch model in the
engine's inference loop, with the same inputs and the same outputs. Callers tell the two apart
with `is_onnx(model)`.

No torch at module level: loading and checking an export (`is_onnx_dir`, `load`, `is_onnx`)
and running it on numpy arrays (`OnnxModel.run`, what lmctl.engine.light calls) import neither
torch nor transformers; only exporting and running the session's outputs as tensors do. Messages
name no command-line flag: the command layer (lmctl.run) adds the flag a value came from.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lmctl import families
from lmctl.errors import UserError, first_line

MANIFEST = "onnx.json"
MODEL_FILE = "model.onnx"
SCHEMES = ("int8",)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_onnx_dir(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def is_onnx(model) -> bool:
    """Whether `model` is an ONNX Runtime session (no parameters, no gradients, nothing to place
    on a device) rather than a PyTorch model."""
    return isinstance(model, OnnxModel)


def check_installed() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if find_spec(m) is None]
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}; pip install 'lmctl[onnx]'")


def check_scheme(quantize: str | None) -> None:
    if quantize is not None and quantize not in SCHEMES:
        raise UserError(f"unknown scheme '{quantize}'; lmctl quantizes to: {', '.join(SCHEMES)}")


def check_exportable(task, model_config, exportable: tuple[str, ...]) -> None:
    """`task` (its `onnx_outputs`: the outputs an export carries) on a model of `model_config`;
    `exportable` names the tasks that declare outputs, for the message."""
    if not task.onnx_outputs:
        raise UserError(f"task '{task.name}' cannot be exported to ONNX (generation and pretraining "
                        f"loops stay in PyTorch); exportable tasks: {', '.join(exportable)}")
    refusal = families.for_model_type(model_config.model_type).onnx_refusal
    if refusal is not None:
        raise UserError(f"a '{model_config.model_type}' model cannot be exported here ({refusal}); "
                        f"exportable families: {', '.join(families.onnx_exportable())}")


def export(model, task, batches: list[dict], out: Path, quantize: str | None, console) -> dict:
    """Write `model` to out/model.onnx (quantized when `quantize`), check it against PyTorch on
    `batches` (collated model inputs), and return the manifest (also written to out/onnx.json).
    The graph's outputs are the task's `onnx_outputs`."""
    import logging
    import tempfile
    import time
    import warnings

    import torch

    outputs = task.onnx_outputs
    # The graph's inputs in forward()'s order below (input_ids and attention_mask always come).
    inputs = [name for name in INPUTS if name in batches[0]]

    class Exported(torch.nn.Module):
        """Named tensors in, the task's outputs out: the graph's signature."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            named = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            result = self.inner(**{name: named[name] for name in inputs})
            return tuple(getattr(result, name) for name in outputs)

    model = model.eval()
    # The plain attention graph, not torch's SDPA: ONNX Runtime runs it faster (the int8 SST-2
    # teacher on 2 threads: 1.10-1.16x the rows/s; docs/benchmarks.md), with the same outputs.
    model.set_attn_implementation("eager")
    example = tuple(batches[0][name] for name in inputs)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
        fp32 = Path(tmp) / MODEL_FILE
        try:
            with torch.no_grad():
                torch.onnx.export(Exported(model), example, str(fp32), dynamo=True, input_names=inputs,
                                  output_names=list(outputs), verbose=False,
                                  dynamic_shapes=tuple({0: batch, 1: sequence} for _ in inputs))
        except Exception as exc:  # the exporter's own error classes, several layers deep
            raise UserError(f"torch's exporter failed on {type(model).__name__} ({first_line(exc)})") from None
        if quantize:
            _quantize_int8(fp32, out / MODEL_FILE)
        else:
            for f in Path(tmp).iterdir():
                f.replace(out / f.name)
    seconds = time.perf_counter() - start
    files = sorted(f.name for f in out.iterdir() if f.name.startswith(MODEL_FILE))
    manifest = {"task": task.name, "format": "onnx", "quantize": quantize, "inputs": inputs, "outputs": list(outputs),
                "files": files, "export_seconds": round(seconds, 1)}
    manifest["check"] = _check(model, OnnxModel(out, model.config, manifest, "the new export"), batches, outputs,
                               quantize)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _quantize_int8(fp32: Path, target: Path) -> None:
    """ONNX Runtime's dynamic quantization: int8 weights, activations quantized on the fly."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # "consider pre-processing" (shape inference)
    try:
        # One scale per output channel: per-tensor scales cost MiniLM 1.4 points of SST-2
        # accuracy (88.9 → 87.5), per-channel 0.3 (docs/benchmarks.md).
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def _check(model, exported, batches: list[dict], outputs, quantize: str | None) -> dict:
    """The exported model against PyTorch on the same batches. fp32: every output within 1e-3 of
    PyTorch's (relative to the outputs' scale); int8 moves outputs by design, so the check is the
    label (argmax) agreement, at least 90%, with the largest difference reported beside it."""
    import numpy as np
    import torch

    diffs, agree, scale = [], [], 1.0
    with torch.no_grad():
        for batch in batches:
            ref, got = model(**batch), exported(**batch)
            for name in outputs:
                r, g = getattr(ref, name).float().numpy(), getattr(got, name).float().numpy()
                scale = max(scale, float(np.abs(r).max()))
                diffs.append(float(np.abs(r - g).max()))
                if r.shape[-1] > 1:
                    agree.extend((r.argmax(-1) == g.argmax(-1)).reshape(-1).tolist())
    result = {"rows": sum(len(b["input_ids"]) for b in batches), "max_abs_diff": max(diffs),
              "label_agreement": float(np.mean(agree)) if agree else None}
    if quantize is None and result["max_abs_diff"] > 1e-3 * scale:
        raise UserError(f"the exported model's outputs differ from PyTorch's by "
                        f"{result['max_abs_diff']:.3g} on {result['rows']} rows (allowed {1e-3 * scale:.3g}); "
                        "the export was not written")
    if quantize and agree and result["label_agreement"] < 0.9:
        raise UserError(f"the {quantize} model agrees with PyTorch on only "
                        f"{100 * result['label_agreement']:.0f}% of {len(agree)} predictions (needs 90%); "
                        "the export was not written; export it unquantized")
    return result


class PlainConfig:
    """An export's config.json as attributes, as much of transformers' config as reading an export
    needs (`model_type`, `problem_type`, `num_labels`, `id2label` with int keys, lmctl's own keys
    such as `ranking_max_grade`), without importing transformers."""

    problem_type = None

    def __init__(self, values: dict):
        self.__dict__.update(values)
        if "id2label" in values:
            self.id2label = {int(i): name for i, name in values["id2label"].items()}
            self.label2id = {name: i for i, name in self.id2label.items()}
            self.num_labels = len(self.id2label)


def read_config(path, key: str) -> PlainConfig:
    config = Path(path) / "config.json"
    try:
        return PlainConfig(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise UserError(f"{key}: {config} cannot be read ({first_line(exc)}); export the model again") from None


def load(path: str, key: str):
    """The model of an export directory, after checking that its files are all there. Called by
    lmctl.models.load_model, which is what dispatches an export directory here; `key` names where
    the path came from. Its config (labels) is the export's config.json, read without transformers."""
    check_installed()
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        files = list(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{key}: {root / MANIFEST} is damaged ({exc}); export the model again") from None
    for name in files:
        if not (root / name).is_file():
            raise UserError(f"{key}: {root / name} is missing from the ONNX export; copy the whole directory or "
                            "export the model again")
    return OnnxModel(root, read_config(root, key), manifest, key)


def threads() -> int:
    """The threads PyTorch would use: its own setting once torch is loaded (torch.set_num_threads),
    else OMP_NUM_THREADS, else the cores this process may run on. ONNX Runtime otherwise takes
    every core whatever the user set, e.g. beside a training run."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Outputs(dict):
    """Outputs by attribute, as transformers' ModelOutput (`out.logits`)."""

    __getattr__ = dict.__getitem__


class OnnxModel:
    """An ONNX Runtime session behind the PyTorch model's call: named input tensors in, an object
    with the task's outputs (as tensors) out. No parameters: nothing to train or explain.

    Not a torch.nn.Module, so that this module loads without torch; it has what the engine's
    inference loop calls on a model (`training`, `eval()`, `train(mode)`, `to(device)`)."""

    training = False

    def __init__(self, root: Path, config, manifest: dict, key: str):
        import onnxruntime as ort

        self.config, self.manifest = config, manifest
        self.outputs = list(manifest["outputs"])
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads()
        try:
            self.session = ort.InferenceSession(str(root / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception classes for unreadable graphs
            raise UserError(f"{key}: {root / MODEL_FILE} cannot be read ({first_line(exc)}); export the model "
                            "again") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    # A session has no dropout to switch off and runs where ONNX Runtime runs (the CPU): these
    # are the no-ops the PyTorch model's methods of the same names would be here.
    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        return self

    def to(self, *args, **kwargs) -> "OnnxModel":
        return self

    def run(self, feed: dict) -> dict:
        """Numpy arrays of the graph's inputs (int64) → numpy arrays of its outputs, by name."""
        return dict(zip(self.outputs, self.session.run(self.outputs, {name: feed[name] for name in self.inputs})))

    def __call__(self, **batch):
        import torch

        values = self.run({name: batch[name].cpu().numpy() for name in self.inputs})
        device = batch["input_ids"].device
        return _Outputs({name: torch.from_numpy(v).to(device) for name, v in values.items()})
