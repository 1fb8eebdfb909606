"""Knowledge distillation for text classification (single- and multi-label): a student learns a
teacher's outputs.

The teacher runs once, before training, over every training row and every row of
distill.unlabelled_file; its logits become a column of the training data, and each step's
loss is alpha × the soft-target loss + (1 − alpha) × the label loss (rows without a label:
the soft-target loss only). No teacher forward pass per step: its outputs do not change
between epochs (it runs in eval mode, without dropout).

Soft-target loss, by what the task's logits are (`soft_targets`): T²·KL(softmax(teacher/T) ‖
softmax(student/T)) for classes (Hinton et al.; the T² keeps its gradients the size of the label
loss's); for multi-label, each label's own: T²·KL between the Bernoullis sigmoid(teacher/T) and
sigmoid(student/T) (binary cross-entropy less the teacher's entropy), beside the label loss's
binary cross-entropy; MSE to the teacher's value for regression. The teacher reads each row
with its own tokenizer, so any student works; a student built with `model.from_teacher` shares
the teacher's. After training, the teacher's scores on the evaluation sets and its agreement
with the kept student go in metrics.json.
"""

from __future__ import annotations

from lmctl import families
from lmctl.errors import UserError

TEACHER_LOGITS = "teacher_logits"
KEY = "distill.teacher"


def check(cfg) -> str:
    """The teacher's path, checked before any data is read; `model.from_teacher.layers` against its depth."""
    from lmctl import models

    path = models.resolve(cfg.distill.teacher, key=KEY)
    if cfg.model.from_teacher:
        config = models.load_config(path, cfg.model.trust_remote_code, KEY)
        family = families.for_model_type(config.model_type)
        if not family.depth_fields:
            cuttable = ", ".join(f.name for f in families.FAMILIES.values() if f.depth_fields)
            raise UserError(f"model.from_teacher: the teacher is a '{config.model_type}' model; a student is built "
                            f"from the layers of {cuttable} teachers only (give another checkpoint as "
                            "model.name_or_path instead)")
        depth = min(getattr(config, f) or getattr(config, family.depth_fields[0]) for f in family.depth_fields)
        layers = cfg.model.from_teacher.layers
        if layers[-1] >= depth:
            raise UserError(f"model.from_teacher.layers: the teacher {path} has {depth} layers (0 to {depth - 1}); "
                            f"{layers[-1]} is out of range")
    return path


class Teacher:
    """The teacher model with its own task instance (its labels) and tokenizer."""

    def __init__(self, cfg, path: str, make_task, console):
        from lmctl import models

        self.path, self.console = path, console
        task = make_task(cfg, console)
        self.tokenizer = models.load_tokenizer(path, cfg.model.trust_remote_code, key=KEY)
        self.model = task.load_model(path, self.tokenizer, KEY)  # the teacher's labels, before binding
        self.task = task.bind(self.tokenizer)
        self.batch_size = cfg.training.eval_batch

    def check_labels(self, task) -> None:
        """The student's labels (from the train data or data.label_names) must be the teacher's, in its order."""
        if self.task.soft_targets != task.soft_targets:
            kinds = {"score": "a score (regression)", "classes": "classes", "labels": "labels"}
            raise UserError(f"{KEY}: {self.path} predicts {kinds[self.task.soft_targets]} but the train data has "
                            f"{kinds[task.soft_targets]} labels; distil from a teacher trained on this task")
        if self.task.label_names != task.label_names:
            raise UserError(f"{KEY}: {self.path} has labels {self.task.label_names} but the train data has "
                            f"{task.label_names}; distil from a teacher of the same labels (data.label_names "
                            "fixes their order)")

    def logits(self, accelerator, ds, source: str, with_labels: bool = False):
        """(encoded rows, outputs) of the teacher on raw rows `ds`, in input order."""
        from lmctl.engine.infer import run_inference

        encoded = self.task.encode(ds, "eval" if with_labels else "predict", source)
        self.model.to(accelerator.device)  # not prepare(): checkpoints must not save the teacher
        with self.console.progress(len(encoded), "teacher") as bar:
            return encoded, run_inference(accelerator, self.model, self.task, encoded, self.batch_size, progress=bar)


def add_teacher_targets(cfg, task, tokenizer, teacher: Teacher, train_rows, train_enc, accelerator, console):
    """Training features with the teacher's logits as a column, plus distill.unlabelled_file's rows
    (label: ignored) when set. Returns (features, row count of the unlabelled file)."""
    import time

    import numpy as np
    from datasets import concatenate_datasets

    from lmctl import data

    start = time.perf_counter()
    _, outputs = teacher.logits(accelerator, train_rows, data.source_name(cfg, "train"))
    logits = outputs["logits"]
    unlabelled = 0
    if cfg.distill.unlabelled_file:
        path = cfg.distill.unlabelled_file
        rows = data.read_table(path, "distill.unlabelled_file", task.text_columns(with_labels=False))
        data.check_columns(rows, task.columns(with_labels=False), f"distill.unlabelled_file ({path})")
        unlabelled = len(rows)
        extra = task.encode(rows, "predict", path)
        extra = extra.remove_columns([c for c in extra.column_names if c not in train_enc.column_names])  # `truncated`
        # Unlabelled rows: -100 is ignored by cross-entropy, NaN marks a missing score (or label set).
        missing = {"score": float("nan"), "classes": -100, "labels": [float("nan")] * len(task.label_names)}
        extra = extra.add_column("labels", [missing[task.soft_targets]] * len(extra))
        extra = extra.cast(train_enc.features)
        train_enc = concatenate_datasets([train_enc, extra])
        logits = np.concatenate([logits, teacher.logits(accelerator, rows, path)[1]["logits"]])
    console.log(f"distill: teacher {teacher.path} scored {len(logits)} training rows "
                f"({unlabelled} unlabelled) in {time.perf_counter() - start:.1f}s; reused every epoch")
    return train_enc.add_column(TEACHER_LOGITS, [row.tolist() for row in logits]), unlabelled


def loss_fn(temperature: float, alpha: float, targets: str):
    """The training loss of a distillation run: (model, batch with labels and teacher logits) → loss.
    `targets`: what the logits are (the task's `soft_targets`: classes, labels or score)."""
    import torch
    import torch.nn.functional as F

    def loss(model, batch):
        teacher = batch.pop(TEACHER_LOGITS).float()
        labels = batch.pop("labels")
        student = model(**batch).logits.float()
        if targets == "score":
            student, teacher = student.view(-1), teacher.view(-1)
            soft = F.mse_loss(student, teacher)
            known = ~torch.isnan(labels)
            hard = F.mse_loss(student[known], labels[known].float()) if known.any() else student.sum() * 0
        elif targets == "labels":
            t = temperature
            p = torch.sigmoid(teacher / t)
            # Cross-entropy to the teacher's soft labels less their own entropy: the KL of the two
            # Bernoullis per label, 0 where the student matches (same gradient, a readable loss).
            soft = (F.binary_cross_entropy_with_logits(student / t, p)
                    - F.binary_cross_entropy_with_logits(teacher / t, p)) * t * t
            known = ~torch.isnan(labels).any(-1)
            hard = (F.binary_cross_entropy_with_logits(student[known], labels[known].float()) if known.any()
                    else student.sum() * 0)
        else:
            t = temperature
            soft = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                            reduction="batchmean") * t * t
            known = labels != -100
            hard = F.cross_entropy(student[known], labels[known]) if known.any() else student.sum() * 0
        return alpha * soft + (1 - alpha) * hard

    return loss


def report(accelerator, teacher: Teacher, task, eval_rows: dict, eval_sets: dict, student) -> dict:
    """The teacher's scores on each evaluation set, and its agreement with `student` (the kept model):
    the share of rows with the same label (classes) or the same label set (multi-label, each model with
    its own thresholds), the Pearson correlation of their outputs (scores)."""
    import numpy as np

    from lmctl.config import metric_key
    from lmctl.engine.infer import run_inference

    student = accelerator.prepare(student)
    out = {}
    for eval_set, rows in eval_rows.items():
        teacher_enc, teacher_out = teacher.logits(accelerator, rows, "validation data", with_labels=True)
        for k, v in teacher.task.compute_metrics(teacher_out, teacher_enc).items():
            out[f"teacher_eval_{metric_key(eval_set, k)}"] = float(v)
        student_out = run_inference(accelerator, student, task, eval_sets[eval_set], teacher.batch_size)
        s, t = np.asarray(student_out["logits"]), np.asarray(teacher_out["logits"])
        if task.soft_targets == "score":
            agreement = float(np.corrcoef(s.reshape(-1), t.reshape(-1))[0, 1])
        elif task.soft_targets == "labels":
            agreement = float((task.label_sets(s) == teacher.task.label_sets(t)).all(-1).mean())
        else:
            agreement = float((s.argmax(-1) == t.argmax(-1)).mean())
        out[f"eval_{metric_key(eval_set, 'teacher_agreement')}"] = agreement
    return out


def unlabelled_fingerprint(cfg) -> dict:
    from lmctl.data import fingerprint

    path = cfg.distill.unlabelled_file
    return {"unlabelled_file": fingerprint(path, "distill.unlabelled_file")} if path else {}


def describe(cfg, student_name: str | None) -> str:
    d = cfg.distill
    student = (f"layers {cfg.model.from_teacher.layers} of the teacher" if cfg.model.from_teacher
               else student_name or "a model from scratch")
    return (f"distill: teacher {d.teacher}, student {student}, temperature {d.temperature:g}, "
            f"alpha {d.alpha:g} (soft-target weight)")


class Distillation:
    """Distillation as one training plugin (run.TrainingPlugin): the recipe calls each hook at its
    step, and this is everything a distilling run does beyond a plain one."""

    def __init__(self, cfg, make_task, console):
        self.cfg, self.make_task, self.console = cfg, make_task, console

    def check(self) -> None:
        """Before any data is read: the teacher exists, and model.from_teacher's layers fit its depth."""
        self.teacher_path = check(self.cfg)

    def fit(self, task, fingerprints: dict) -> None:
        """After the task learnt the train data's labels: load the teacher and check that its labels are
        the student's; fingerprint distill.unlabelled_file for data.json."""
        fingerprints.update(unlabelled_fingerprint(self.cfg))
        self.teacher = Teacher(self.cfg, self.teacher_path, self.make_task, self.console)
        self.teacher.check_labels(task)

    def prepare(self, task, train_rows, train_enc, accelerator):
        """The training features with the teacher's outputs as a column (and the unlabelled rows); then
        the teacher leaves the device to the student."""
        # alpha 0 is the labels-only baseline of a from-teacher student: the teacher's outputs would
        # weigh nothing, so they are not computed (minutes on a large train set).
        if self.cfg.distill.alpha > 0:
            train_enc, _ = add_teacher_targets(self.cfg, task, task.tokenizer, self.teacher, train_rows, train_enc,
                                               accelerator, self.console)
        self.teacher.model.to("cpu")  # its outputs are a column now; keep the device for the student
        return train_enc

    def describe(self, model_name: str | None) -> str:
        return describe(self.cfg, model_name)

    def build_model(self, task, tokenizer):
        """The student built from the teacher's layers (model.from_teacher); None: the task builds it."""
        from lmctl.models import student_from_teacher

        from_teacher = self.cfg.model.from_teacher
        return student_from_teacher(self.teacher.model, from_teacher.layers) if from_teacher else None

    def loss_fn(self, task):
        """The soft-target loss mixed with the label loss; None (the model's own loss) at alpha 0."""
        d = self.cfg.distill
        return loss_fn(d.temperature, d.alpha, task.soft_targets) if d.alpha > 0 else None

    def report(self, task, tokenizer, eval_rows: dict, eval_sets: dict, out, accelerator) -> dict:
        """After training: the teacher's scores and its agreement with the kept student (in `out`)."""
        student = task.load_model(str(out), tokenizer, "output_dir")
        extra = report(accelerator, self.teacher, task, eval_rows, eval_sets, student)
        self.console.log("distill: " + "  ".join(f"{k} {v:.4f}" for k, v in extra.items()))
        return extra
