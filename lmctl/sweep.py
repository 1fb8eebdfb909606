"""`lmctl sweep`: hyperparameter and model search with Optuna, each trial an ordinary training run.

    SWEEP_DIR/
      study.journal       the Optuna study (unless --storage names a database): every trial's
                          parameters, reported evaluations and state; what a rerun continues from
      sweep.yaml          the sweep as resolved: base config, space, metric and its direction
      trial-000/ ...      one run directory per trial (config.yaml, train_log.jsonl, metrics.json,
                          the kept model) plus console.log, the trial's console lines
      leaderboard.md      `lmctl compare`'s ranking of the finished trials, with their state
      summary.json        every trial's state, parameters, score and steps; the best
      best.yaml           the best trial's full config, ready for `lmctl finetune`
      best -> trial-NNN   the best trial's run directory: its kept model is the answer
      history.png, importances.png   Optuna's optimisation history and parameter importances

How it is built, and why:
- A trial runs `run.train` in the worker's own process, the path `lmctl finetune` takes, with the
  engine's `on_evaluate` hook: each evaluation is reported to the trial, and a pruned trial stops
  there as early stopping does (its kept model and metrics.json written). In process, torch and the
  libraries load once per worker rather than once per trial (seconds a trial); isolation comes from
  the worker processes of `--workers`, and a failed trial is caught and recorded.
- A trial is scored on the model it keeps: each trial's `training.metric_for_best` is the sweep's
  metric, so its best evaluation is the kept model and the score the study sees.
- Trial numbers are directories (`trial-007` is trial 7). The workers' loop is Optuna's ask/tell
  rather than `study.optimize`, because optimize always asks a new trial, and a rerun must continue
  an interrupted trial itself (the same number, directory and parameters; from its newest checkpoint
  when `training.save_steps` wrote one): a sweep ends with exactly `n_trials` trials and directories.
  A trial is the worker's (host and pid in its user attributes); a RUNNING trial of this host whose
  process is gone is taken over by the next worker that asks. Asking and taking over happen under a
  file lock in the sweep directory, so local workers never overshoot `n_trials` nor take one trial twice.
- Failures (a non-finite loss, out of memory, a sampled value the config refuses, any exception of
  the trial) fail that trial with a one-line reason, as `study.optimize(catch=...)` would; a signal
  stops the sweep with the trial checkpointed, to continue on the next run.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmctl import config as config_lib
from lmctl.console import Console
from lmctl.errors import UserError, first_line
from lmctl.rundir import atomic_write_text, write_json

KEEP = ("best", "all")
STUDY_FILE = "study.journal"
LOCK_FILE = ".sweep.lock"
WORKER_ENV = "LMCTL_SWEEP_WORKER"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
_ACTIVE: set[int] = set()  # trials this process runs now: another RUNNING trial of its pid is orphaned


# ---- the sweep file ----------------------------------------------------------------------------

class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Closed):
    """One searched config key: a range (low, high; `log` scale; a `step`) or a list of `choices`."""

    low: Optional[Union[int, float]] = None
    high: Optional[Union[int, float]] = None
    log: bool = False
    step: Optional[Union[int, float]] = Field(None, gt=0)
    choices: Optional[list[Any]] = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "Param":
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("give either choices or a range (low, high), not both")
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give a range {low: ..., high: ...} or {choices: [...]}")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low above 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        return self

    @property
    def integer(self) -> bool:
        return all(type(v) is int for v in (self.low, self.high, self.step) if v is not None)

    @property
    def encoded(self) -> bool:
        """Choices Optuna cannot store as they are (lists, mappings) travel as JSON text."""
        return any(isinstance(c, (list, dict)) for c in self.choices or ())

    def ends(self) -> list:
        """The values checked against the config schema up front: both ends of a range, every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def grid(self) -> list | None:
        """Every value, for the grid sampler (None: a range without a step)."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step if self.integer else round(self.low + i * self.step, 12) for i in range(n)]

    def contains(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high


class SamplerSpec(BaseModel):
    """`sampler: {name: tpe, seed: 0, ...}`; other keys are the Optuna sampler's own options."""

    model_config = ConfigDict(extra="allow")
    name: Literal["tpe", "random", "grid"] = "tpe"
    seed: Optional[int] = None


class PrunerSpec(BaseModel):
    """`pruner: {name: median, n_startup_trials: 5, ...}`; other keys are the Optuna pruner's options."""

    model_config = ConfigDict(extra="allow")
    name: Literal["median", "hyperband", "none"] = "median"


class SweepSpec(_Closed):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    base: Optional[str] = None
    """A config file (cwd first, then beside the sweep file), or `config:` with one inline."""
    config: Optional[dict[str, Any]] = None
    overrides: dict[str, Any] = Field({}, alias="set")
    """Dotted keys set on the base config for every trial (`data.validation_file: null`)."""
    n_trials: Optional[int] = Field(None, gt=0)
    timeout: Optional[float] = None
    """Seconds, or "90s", "30m", "2h": no trial starts after it (counted from this command's start)."""
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    metric: Optional[str] = None
    """What trials are scored on (eval_ optional); default: the base config's metric_for_best."""
    space: dict[str, Param]
    enqueue: list[dict[str, Any]] = []
    """Trials to run first, {key: value} each (a hand-tuned config, say); keys left out are sampled."""
    output_dir: Optional[str] = None
    study_name: Optional[str] = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _seconds(cls, value):
        if value is None or isinstance(value, (int, float)):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if not m:
            raise ValueError(f"'{value}' is not a duration; give seconds or e.g. 90s, 30m, 2h")
        return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

    @model_validator(mode="after")
    def _checks(self) -> "SweepSpec":
        if (self.base is None) == (self.config is None):
            raise ValueError("give the base config as base: FILE or config: {...} (one of them)")
        if not self.space:
            raise ValueError("space: empty; name at least one key to search, e.g. training.learning_rate")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout: must be above 0")
        for key in ("output_dir", "task"):
            if key in self.space:
                raise ValueError(f"space.{key}: the sweep sets it for every trial; search other keys")
        return self


def _spec_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        fields = Param.model_fields if loc[0] == "space" else {**SweepSpec.model_fields, "set": None}
        return f"{source}: unknown key '{key}'{config_lib.did_you_mean(loc[-1], fields)}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{key}'"
    if err["type"] == "value_error":
        return f"{source}: {key}: {msg}" if loc else f"{source}: {msg}"
    return f"{source}: key '{key}': {msg} (got {err.get('input')!r})"


@dataclass
class Sweep:
    """A checked sweep: the spec, the base config every trial starts from, where it writes."""

    spec: SweepSpec
    source: str
    base: config_lib.Config
    out: Path
    n_trials: Optional[int]
    metric: Optional[str] = None  # as metrics.json names it after eval_; set by check_metric
    greater: Optional[bool] = None
    deadline: Optional[float] = None

    @property
    def space(self) -> dict[str, Param]:
        return self.spec.space

    @property
    def study_name(self) -> str:
        return self.spec.study_name or self.out.name

    def trial_dir(self, number: int) -> Path:
        return self.out / f"trial-{number:03d}"

    def trial_config(self, params: dict, number: int | None, source: str | None = None) -> config_lib.Config:
        """The base config with `params` (dotted keys) set, run in trial `number`'s directory and
        keeping its model by the sweep's metric."""
        raw = self.base.model_dump(mode="json")
        for key, value in params.items():
            config_lib.set_dotted(raw, key.split("."), value, f"{self.source}: space.{key}")
        raw["output_dir"] = str(self.trial_dir(number if number is not None else 0))
        if self.metric:
            raw["training"]["metric_for_best"] = self.metric
        return config_lib.validate(raw, source or f"trial {number}")

    def fingerprint(self) -> dict:
        """What a rerun must share with the run that started the study (n_trials and timeout may change)."""
        base = self.base.model_dump(mode="json")
        base.pop("output_dir")
        return {"base": base, "space": {k: p.model_dump(exclude_none=True) for k, p in self.space.items()},
                "metric": self.metric, "greater_is_better": self.greater,
                "sampler": self.spec.sampler.model_dump(), "pruner": self.spec.pruner.model_dump()}

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec.model_dump(by_alias=True), "source": self.source,
                           "base": self.base.model_dump(mode="json"), "out": str(self.out),
                           "n_trials": self.n_trials, "metric": self.metric, "greater": self.greater,
                           "deadline": self.deadline})

    @classmethod
    def from_json(cls, text: str) -> "Sweep":
        d = json.loads(text)
        return cls(SweepSpec.model_validate(d["spec"]), d["source"], config_lib.Config.model_validate(d["base"]),
                   Path(d["out"]), d["n_trials"], d["metric"], d["greater"], d["deadline"])


# Keys of the sweep file that `--set` reaches; any other (task, model, data, training, ...) sets the base config.
_SWEEP_KEYS = {"base", "config", "set", "n_trials", "timeout", "sampler", "pruner", "metric", "space", "enqueue",
               "output_dir", "study_name"}


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """The sweep file checked against the schema, its base config built and every value of its space
    (both ends of a range, each choice) checked as a config: no data read, no model loaded."""
    source = str(path)
    check_installed()
    raw = config_lib.read_yaml(path)
    base_overrides = []
    for text in overrides or []:
        keys, value = config_lib.parse_override(text, "--set")
        if keys[0] == "space" and len(keys) > 1:
            raw.setdefault("space", {})[".".join(keys[1:])] = value
        elif keys[0] in _SWEEP_KEYS:
            config_lib.set_dotted(raw, keys, value, f"--set '{text}'")
        elif keys[0] in config_lib.Config.model_fields:
            base_overrides.append(text)
        else:
            known = sorted(_SWEEP_KEYS | set(config_lib.Config.model_fields))
            raise UserError(f"--set '{text}': unknown key '{keys[0]}'{config_lib.did_you_mean(keys[0], known)}; "
                            "a sweep file's key (n_trials, sampler.seed, ...) or a config's (training.max_steps, ...)")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_spec_error(exc, source)) from None
    here = Path(path).parent
    if spec.base is not None:
        base_path = Path(spec.base) if Path(spec.base).is_file() or not (here / spec.base).is_file() else here / spec.base
        base_raw, base_dir, base_source = config_lib.read_yaml(base_path), base_path.parent, str(base_path)
    else:
        base_raw, base_dir, base_source = dict(spec.config), here, f"{source}: config"
    for key, value in spec.overrides.items():
        config_lib.set_dotted(base_raw, key.split("."), value, f"{source}: set.{key}")
    config_lib.apply_overrides(base_raw, base_overrides, "--set")
    base = config_lib.validate(base_raw, base_source)
    config_lib.resolve_paths(base, base_dir)
    if base.training.eval_strategy == "no":
        raise UserError(f"{base_source}: training.eval_strategy is 'no'; a sweep scores each trial on its "
                        "evaluations: set it to epoch or steps")
    out = Path(spec.output_dir or Path("runs") / "sweeps" / Path(path).stem)
    sweep = Sweep(spec, source, base, out, spec.n_trials)
    _check_space(sweep)
    _check_optuna_options(sweep)
    return sweep


def check_installed() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError("lmctl sweep needs Optuna: pip install 'lmctl[sweep]' (or pip install optuna)") from None


def _check_space(sweep: Sweep) -> None:
    spec, source = sweep.spec, sweep.source
    for key, param in sweep.space.items():
        for value in param.ends():
            sweep.trial_config({key: value}, None, f"{source}: space.{key}")
    for i, fixed in enumerate(spec.enqueue):
        for key, value in fixed.items():
            if key not in sweep.space:
                raise UserError(f"{source}: enqueue[{i}]: '{key}' is not a key of space"
                                f"{config_lib.did_you_mean(key, sweep.space)}")
            if not sweep.space[key].contains(value):
                raise UserError(f"{source}: enqueue[{i}]: {key}={value!r} is outside space.{key}")
        sweep.trial_config(fixed, None, f"{source}: enqueue[{i}]")
    if spec.sampler.name == "grid":
        if spec.enqueue:
            raise UserError(f"{source}: sampler grid runs every combination of the space; drop enqueue")
        ranges = [k for k, p in sweep.space.items() if p.grid() is None]
        if ranges:
            raise UserError(f"{source}: sampler grid: space.{ranges[0]} is a range without a step; give choices "
                            "or a step")
        size = math.prod(len(p.grid()) for p in sweep.space.values())
        if sweep.n_trials is None:
            sweep.n_trials = size
        elif sweep.n_trials > size:
            raise UserError(f"{source}: n_trials {sweep.n_trials} is more than the grid's {size} combinations")
    if sweep.n_trials is None and spec.timeout is None:
        raise UserError(f"{source}: give n_trials and/or timeout (e.g. n_trials: 20, timeout: 2h)")
    if sweep.n_trials is not None and len(spec.enqueue) > sweep.n_trials:
        raise UserError(f"{source}: enqueue lists {len(spec.enqueue)} trials, more than n_trials {sweep.n_trials}")


def _check_optuna_options(sweep: Sweep) -> None:
    """The sampler's and pruner's extra keys are options of their Optuna classes, with values they take."""
    for what, spec in (("sampler", sweep.spec.sampler), ("pruner", sweep.spec.pruner)):
        try:
            (_sampler if what == "sampler" else _pruner)(sweep, 0)
        except TypeError as exc:
            unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            name = unknown.group(1) if unknown else next(iter(spec.model_extra or {}), "")
            raise UserError(f"{sweep.source}: {what}.{name}: not an option of Optuna's {spec.name} {what}") from None
        except ValueError as exc:
            raise UserError(f"{sweep.source}: {what}: {first_line(exc)}") from None


def check_metric(sweep: Sweep, console: Console) -> None:
    """The metric trials are scored on and its direction, checked against what the task reports on
    the base config's data (read, not trained on): the task's declaration decides the direction."""
    from lmctl import run
    from lmctl.tasks import greater_is_better

    names, default = run.reported_metrics(sweep.base, console)
    asked = sweep.spec.metric
    metric = asked.removeprefix("eval_") if asked and asked.removeprefix("eval_") in names else asked or default
    if metric not in names:
        raise UserError(f"{sweep.source}: metric: '{asked}' is not reported by task '{sweep.base.task}' on this "
                        f"data{config_lib.did_you_mean(metric, names)}; choose one of {', '.join(sorted(names))}")
    kept_by = sweep.base.training.metric_for_best
    if kept_by and kept_by != metric:
        raise UserError(f"{sweep.source}: metric: '{metric}', but the base config keeps its model by "
                        f"training.metric_for_best '{kept_by}'; a trial is scored on the model it keeps, so drop one")
    sweep.metric = metric
    sweep.greater = (sweep.base.training.greater_is_better if sweep.base.training.greater_is_better is not None
                     else greater_is_better(sweep.base.task, metric))


# ---- Optuna: sampler, pruner, storage, study --------------------------------------------------

def _sampler(sweep: Sweep, offset: int):
    """The sampler; `offset` moves a TPE or random seed (each worker process, and each rerun, its own
    stream: one seed in two processes would sample the same values)."""
    import optuna

    s = sweep.spec.sampler
    if s.name == "grid":
        # Not offset: a trial records its point as an index into the grid as this seed shuffles it, so
        # every process must shuffle it alike (it then skips the points others ran or run).
        return optuna.samplers.GridSampler({k: [_encode(p, v) for v in p.grid()] for k, p in sweep.space.items()},
                                           seed=s.seed, **(s.model_extra or {}))
    seed = None if s.seed is None else s.seed + offset
    cls = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}[s.name]
    return cls(seed=seed, **(s.model_extra or {}))


def _pruner(sweep: Sweep, _offset: int = 0):
    import optuna

    p = sweep.spec.pruner
    if p.name == "none":
        return optuna.pruners.NopPruner(**(p.model_extra or {}))
    cls = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner}[p.name]
    return cls(**(p.model_extra or {}))


def _encode(param: Param, value):
    return json.dumps(value) if param.encoded else value


def _decode(param: Param, value):
    return json.loads(value) if param.encoded else value


def open_storage(url: str | None, out: Path):
    """--storage URL (Optuna's RDB storage: PostgreSQL or MySQL shared by machines, or SQLite), else the
    journal file in the sweep directory, which local processes share."""
    import optuna

    if url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
            raise UserError(f"--storage {shown}: cannot open it ({first_line(exc)})") from None
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(out / STUDY_FILE)))


def open_study(sweep: Sweep, storage, offset: int = 0, create: bool = False):
    """The sweep's study: loaded, or (`create`) made with the sweep's fingerprint and enqueued trials.
    A study made by another sweep (other base config, space, metric, sampler or pruner) is refused."""
    import optuna

    direction = "maximize" if sweep.greater else "minimize"
    kwargs = dict(study_name=sweep.study_name, storage=storage, sampler=_sampler(sweep, offset),
                  pruner=_pruner(sweep))
    try:
        study = optuna.load_study(**kwargs)
    except KeyError:
        if not create:
            raise UserError(f"study '{sweep.study_name}' is not in the storage; start it with lmctl sweep") from None
        if any(sweep.out.glob("trial-*")):
            raise UserError(f"output_dir {sweep.out}: holds trial directories but its study '{sweep.study_name}' "
                            "is not in the storage; choose a new output_dir (or the --storage it ran with)")
        try:
            study = optuna.create_study(direction=direction, load_if_exists=False, **kwargs)
        except optuna.exceptions.DuplicatedStudyError:  # another machine made it just now
            study = optuna.load_study(**kwargs)
        else:
            study.set_user_attr("lmctl_sweep", sweep.fingerprint())
            for fixed in sweep.spec.enqueue:
                study.enqueue_trial({k: _encode(sweep.space[k], v) for k, v in fixed.items()})
            return study
    before = study.user_attrs.get("lmctl_sweep")
    if before is not None and before != json.loads(json.dumps(sweep.fingerprint())):
        now = sweep.fingerprint()
        differs = [k for k in now if json.dumps(before.get(k), sort_keys=True) != json.dumps(now[k], sort_keys=True)]
        raise UserError(f"output_dir {sweep.out}: its study was started by another sweep (it differs at "
                        f"{', '.join(differs)}); rerun the same sweep (only n_trials and timeout may change) or "
                        "choose a new output_dir")
    return study


# ---- the workers' loop ---------------------------------------------------------------------

@contextmanager
def _sweep_lock(out: Path):
    """One local worker at a time decides what runs next (ask, or take over an orphaned trial)."""
    import fcntl

    with open(out / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(trial) -> bool:
    """A RUNNING trial of this host whose worker is gone (killed, or stopped by a signal)."""
    owner = trial.user_attrs
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False  # another machine's: its own rerun takes it over
    if owner["pid"] == os.getpid():
        return trial.number not in _ACTIVE
    return not _alive(owner["pid"])


def _next_trial(sweep: Sweep, study):
    """(trial, resumed) to run next: an orphaned trial first, else a new one while the sweep has fewer
    than n_trials; None when there is nothing left for this worker (or the time is up)."""
    import optuna
    from optuna.trial import TrialState

    if sweep.deadline is not None and time.time() >= sweep.deadline:
        return None
    with _sweep_lock(sweep.out):
        trials = study.get_trials(deepcopy=False)
        orphans = [t for t in trials if t.state == TrialState.RUNNING and _orphaned(t)]
        if orphans:
            trial, resumed = optuna.trial.Trial(study, orphans[0]._trial_id), True
        elif (sweep.n_trials is None or len(trials) < sweep.n_trials
              or any(t.state == TrialState.WAITING for t in trials)):
            trial, resumed = study.ask(), False
        else:
            return None
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        _ACTIVE.add(trial.number)
    return trial, resumed


def work(sweep: Sweep, study, display: "Display") -> None:
    """One worker: trials until the sweep has its n_trials (or its time is up)."""
    while (nxt := _next_trial(sweep, study)) is not None:
        _run_trial(sweep, study, *nxt, display)


def _suggest(trial, space: dict[str, Param], grid: bool) -> dict:
    params = {}
    for key, p in space.items():
        if grid or p.choices is not None:
            values = [_encode(p, v) for v in (p.grid() if grid else p.choices)]
            params[key] = _decode(p, trial.suggest_categorical(key, values))
        elif p.integer:
            params[key] = trial.suggest_int(key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            params[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return params


def _run_trial(sweep: Sweep, study, trial, resumed: bool, display: "Display") -> None:
    """Train trial `trial` in its run directory and tell the study how it ended."""
    import traceback
    import warnings

    from optuna.trial import TrialState

    from lmctl import run
    from lmctl.engine.checkpoint import list_checkpoints
    from lmctl.engine.train import Interrupted

    number, run_dir = trial.number, sweep.trial_dir(trial.number)
    log_path = sweep.out / f".trial-{number:03d}.log"  # moved into the run directory once the trial ends
    pruned = False

    def on_evaluate(step: int, metrics: dict) -> bool:
        nonlocal pruned
        if sweep.metric not in metrics:
            return False
        trial.report(float(metrics[sweep.metric]), step)
        display.refresh()
        pruned = trial.should_prune()
        return pruned

    try:
        with open(log_path, "a", encoding="utf-8") as log, warnings.catch_warnings():
            # A restarted trial reports its evaluations again; Optuna keeps the first report of a step.
            warnings.filterwarnings("ignore", message="The reported value is ignored")
            console = _TrialConsole(log)
            try:
                params = _suggest(trial, sweep.space, sweep.spec.sampler.name == "grid")
                display.refresh()
                console.log(f"trial {number}: {_show_params(params)}")
                cfg = sweep.trial_config(params, number)
                resume = "latest" if resumed and list_checkpoints(run_dir) else None
                if resumed:
                    console.log(f"trial {number}: its worker stopped; "
                                + ("resuming from its newest checkpoint" if resume else "restarting it"))
                metrics = run.train(cfg, overwrite=resume is None, console=console, resume=resume,
                                    on_evaluate=on_evaluate)
            except Interrupted:
                raise  # the trial stays RUNNING, checkpointed: the next run takes it over
            except Exception as exc:  # noqa: BLE001 - any failure fails this trial only (Optuna's catch=)
                reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {first_line(exc)}"
                if not isinstance(exc, UserError):
                    log.write(traceback.format_exc())
                console.log(f"trial {number} failed: {reason}")
                trial.set_user_attr("reason", reason[:1000])
                trial.set_user_attr("steps", trial_steps(run_dir))
                _tell(study, trial, state=TrialState.FAIL)
                return
            score = metrics.get(f"eval_{sweep.metric}")
            trial.set_user_attr("steps", metrics.get("completed_steps"))
            if not isinstance(score, (int, float)) or not math.isfinite(score):
                trial.set_user_attr("reason", f"its kept model's {sweep.metric} is {score}")
                _tell(study, trial, state=TrialState.FAIL)
                return
            trial.set_user_attr("score", float(score))
            if pruned:
                _tell(study, trial, state=TrialState.PRUNED)
            else:
                _tell(study, trial, float(score))
    finally:
        _ACTIVE.discard(number)
        run_dir.mkdir(parents=True, exist_ok=True)  # a trial that failed before training has one too
        if log_path.is_file():
            with open(run_dir / "console.log", "a", encoding="utf-8") as f:
                f.write(log_path.read_text(encoding="utf-8"))
            log_path.unlink()
        display.refresh()


def _tell(study, trial, value=None, state=None) -> None:
    """study.tell. The grid sampler asks the study to stop once its grid is covered, which only works
    inside study.optimize (RuntimeError); the trial is recorded before that, and the loop stops by
    itself at n_trials (the grid's size unless given)."""
    try:
        study.tell(trial, value, state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


class _TrialConsole(Console):
    """A trial's console: every line, warnings too, into its log file (the sweep's table owns the screen)."""

    def __init__(self, stream):
        super().__init__(enabled=True, stream=stream)

    def warn(self, message: str) -> None:
        self.log(f"warning: {message}")


def trial_steps(run_dir: Path) -> int:
    """Optimizer steps a trial took: metrics.json's count, else the last logged step (a failed trial)."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        return int(json.loads(metrics.read_text(encoding="utf-8")).get("completed_steps") or 0)
    log = run_dir / "train_log.jsonl"
    steps = [json.loads(line).get("step", 0) for line in log.read_text(encoding="utf-8").splitlines()
             if line.strip()] if log.is_file() else []
    return int(max(steps, default=0))


# ---- what a person sees ---------------------------------------------------------------------

def _show_params(params: dict) -> str:
    return "  ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _score(trial) -> float | None:
    return trial.user_attrs.get("score")


def _best(sweep: Sweep, trials) -> Any:
    """The finished trial (complete, or pruned: its kept model is scored like any) with the best score."""
    scored = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and _score(t) is not None]
    if not scored:
        return None
    return min(scored, key=lambda t: (-_score(t) if sweep.greater else _score(t), t.number))


class Display:
    """The live table of trials on a terminal (state, parameters, metric, steps, best so far), and a
    line per trial that starts or ends; in a --workers parent it is refreshed by polling the study."""

    def __init__(self, sweep: Sweep, study, console: Console, show=lambda rows: None):
        self.sweep, self.study, self.console, self.show = sweep, study, console, show
        self.seen: dict[int, str] = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}

    def header(self) -> list[str]:
        return ["#", "state", *[k.rsplit(".", 1)[-1] for k in self.sweep.space], self.sweep.metric or "metric",
                "steps", "best so far", "note"]

    def rows(self, trials) -> list[list[str]]:
        rows, best = [], None
        for t in sorted(trials, key=lambda t: t.number):
            score = _score(t)
            if score is not None and (best is None or (score > best if self.sweep.greater else score < best)):
                best = score
            live = t.intermediate_values[t.last_step] if t.state.name == "RUNNING" and t.last_step is not None else None
            value = score if score is not None else live
            note = t.user_attrs.get("reason", "")
            if t.state.name == "PRUNED":
                note = f"pruned at step {t.last_step}"
            elif t.state.name == "RUNNING" and t.last_step is not None:
                note = f"step {t.last_step}"
            rows.append([str(t.number), t.state.name.lower(),
                         *[_fmt(_decode(p, t.params[k])) if k in t.params else "" for k, p in self.sweep.space.items()],
                         "" if value is None else f"{value:.4f}", str(t.user_attrs.get("steps", "")),
                         "" if best is None else f"{best:.4f}", note[:80]])
        return rows

    def refresh(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        self.show(self.rows(trials))
        for t in sorted(trials, key=lambda t: t.number):
            state = t.state.name
            if self.seen.get(t.number) == state or state == "WAITING":
                continue
            self.seen[t.number] = state
            self.console.log(self._event(t, trials))

    def _event(self, t, trials) -> str:
        params = _show_params({k: _decode(p, t.params[k]) for k, p in self.sweep.space.items() if k in t.params})
        state = t.state.name.lower()
        if state == "running":
            return f"trial {t.number} running: {params}"
        if state == "fail":
            return f"trial {t.number} failed: {t.user_attrs.get('reason', 'no reason recorded')}"
        best = _best(self.sweep, trials)
        at = f" at step {t.last_step}" if state == "pruned" else ""
        return (f"trial {t.number} {state}{at}: {params} → {self.sweep.metric} {_score(t):.4f} in "
                f"{t.user_attrs.get('steps')} steps (best so far {_score(best):.4f}, trial {best.number})")


# ---- the command ----------------------------------------------------------------------------

class Stopped(Exception):
    """A signal stopped the sweep; running it again continues (the interrupted trial from its checkpoint)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def sweep(sweep: Sweep, workers: int = 1, storage: str | None = None, keep: str = "all",
          console: Console | None = None) -> dict:
    """`lmctl sweep`: check everything that needs no training, open (or continue) the study, run its
    trials here (`workers` 1) or in worker processes, then report. Returns summary.json's content."""
    console = console or Console()
    if keep not in KEEP:
        raise UserError(f"--keep {keep}: use one of {', '.join(KEEP)}")
    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more")
    if sweep.out.exists() and (not sweep.out.is_dir() or (any(sweep.out.iterdir()) and not any(
            (sweep.out / name).is_file() for name in ("sweep.yaml", STUDY_FILE)))):
        raise UserError(f"output_dir {sweep.out}: exists and holds no sweep; choose a new output_dir")
    check_metric(sweep, console)
    if sweep.spec.timeout is not None:
        sweep.deadline = time.time() + sweep.spec.timeout
    sweep.out.mkdir(parents=True, exist_ok=True)
    store = open_storage(storage, sweep.out)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(sweep, store, create=True)
    atomic_write_text(sweep.out / "sweep.yaml", _resolved_yaml(sweep))
    _log_start(sweep, study, console, storage, workers)
    with console.live_table(f"sweep {sweep.out}: {sweep.metric} ({'max' if sweep.greater else 'min'}imize)",
                            Display(sweep, study, console).header()) as show:
        display = Display(sweep, study, console, show)
        if workers == 1:
            if _started(study):  # a rerun: a sampler stream of its own, not the first run's again
                study = display.study = open_study(sweep, store, offset=_started(study))
            try:
                work(sweep, study, display)
            except Exception as exc:
                from lmctl.engine.train import Interrupted

                if not isinstance(exc, Interrupted):
                    raise
                raise Stopped(f"{exc}; run the same lmctl sweep command again to continue", exc.signum) from None
        else:
            _run_workers(sweep, storage, workers, display)
    return report(sweep, study, console, keep)


def _resolved_yaml(sweep: Sweep) -> str:
    import yaml

    spec = sweep.spec.model_dump(by_alias=True, exclude={"config", "base", "overrides"})
    spec.update(metric=sweep.metric, direction="maximize" if sweep.greater else "minimize", n_trials=sweep.n_trials,
                output_dir=str(sweep.out), base_config=sweep.base.model_dump(mode="json"))
    return (f"# lmctl sweep {sweep.source}, as resolved (the base config with its `set` and --set applied).\n"
            + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def _log_start(sweep: Sweep, study, console: Console, storage: str | None, workers: int) -> None:
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state.name in FINISHED for t in trials)
    running = sum(t.state.name == "RUNNING" for t in trials)
    where = "--storage" if storage else str(sweep.out / STUDY_FILE)
    target = f"{sweep.n_trials} trials" if sweep.n_trials else "trials"
    budget = f" within {sweep.spec.timeout:g}s" if sweep.spec.timeout else ""
    console.log(f"sweep {sweep.out}: {target}{budget} of {', '.join(sweep.space)} by {sweep.metric} "
                f"({'higher' if sweep.greater else 'lower'} is better); sampler {sweep.spec.sampler.name}, "
                f"pruner {sweep.spec.pruner.name}; study '{sweep.study_name}' in {where}; {workers} worker(s)")
    if done or running:  # enqueued trials still waiting are not a sweep to continue
        console.log(f"continuing: {done} trial(s) finished, {running} running or interrupted")


def _started(study) -> int:
    """Trials asked so far (enqueued ones still waiting not counted)."""
    return sum(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _run_workers(sweep: Sweep, storage: str | None, n: int, display: Display) -> None:
    """N worker processes on this machine, each `work` against the shared study with its share of the
    cores as torch threads; the parent redraws the table from the study until they end. SIGTERM/SIGINT
    reach the workers, which checkpoint their trials and stop."""
    import signal
    import subprocess

    threads = max(1, _cores() // n)
    procs = []
    for i in range(n):
        job = {"sweep": sweep.to_json(), "storage": storage, "worker": i + 1, "threads": threads}
        env = {**os.environ, WORKER_ENV: json.dumps(job), "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        procs.append(subprocess.Popen([sys.executable, "-c", "from lmctl.sweep import worker_main; worker_main()"],
                                      env=env))
    display.console.log(f"{n} worker processes ({', '.join(str(p.pid) for p in procs)}), {threads} thread(s) each")

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while any(p.poll() is None for p in procs):
            display.refresh()
            time.sleep(1.0)
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: wait for their checkpoints
        for p in procs:
            p.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    display.refresh()
    codes = [p.returncode for p in procs]
    stopped = [c for c in codes if c and (c > 128 or c < 0)]
    if stopped:
        signum = -stopped[0] if stopped[0] < 0 else stopped[0] - 128
        raise Stopped(f"a signal stopped the workers (exit codes {codes}); run the same lmctl sweep command "
                      "again to continue", signum)
    for i, code in enumerate(codes, 1):
        if code:
            display.console.warn(f"worker {i} exited with code {code} (its error is above)")


def worker_main() -> None:
    """A --workers process: its job in WORKER_ENV, its trials until the sweep has its n_trials."""
    job = json.loads(os.environ[WORKER_ENV])
    import torch

    torch.set_num_threads(job["threads"])
    sweep = Sweep.from_json(job["sweep"])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(job["storage"], sweep.out)
    study = open_study(sweep, store, offset=1000 * job["worker"] + _started(open_study(sweep, store)))
    try:
        work(sweep, study, Display(sweep, study, Console(enabled=False)))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from lmctl.engine.train import Interrupted

        if isinstance(exc, Interrupted):
            sys.exit(128 + exc.signum)
        if isinstance(exc, UserError):
            print(f"error: worker {job['worker']}: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


# ---- the report -----------------------------------------------------------------------------

def report(sweep: Sweep, study, console: Console, keep: str = "all") -> dict:
    """After the trials: the leaderboard (stdout, leaderboard.md), best.yaml and the `best` link, the
    plots, summary.json; with keep 'best', the weights of every other trial deleted."""
    from lmctl.plots import write_study_plots

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    display = Display(sweep, study, console)
    if not console.interactive:  # on a terminal the live table stays on screen
        console.table(f"sweep {sweep.out}: {len(trials)} trials", display.rows(trials), header=display.header())
    best = _best(sweep, trials)
    _leaderboard(sweep, trials)
    summary = _summary(sweep, trials, best)
    if best is None:
        write_json(sweep.out / "summary.json", summary)
        reasons = [f"trial {t.number}: {t.user_attrs['reason']}" for t in trials if "reason" in t.user_attrs]
        raise UserError(f"sweep {sweep.out}: no trial finished with a score"
                        + (f"; {reasons[0]}" if reasons else "") + " (see each trial's console.log)")
    best_dir = sweep.trial_dir(best.number)
    _write_best(sweep, best, best_dir)
    plots = write_study_plots(study, sweep.out)
    if keep == "best":
        freed = _delete_weights(sweep, trials, best)
        console.log(f"--keep best: deleted the weights of {freed} other trial(s)")
    summary["plots"] = plots
    write_json(sweep.out / "summary.json", summary)
    console.log(f"best: trial {best.number}, {sweep.metric} {_score(best):.4f} ({_show_params(summary['best']['params'])}); "
                f"its kept model: {best_dir} (linked as {sweep.out / 'best'})")
    console.log(f"best.yaml: {sweep.out / 'best.yaml'} (lmctl finetune {sweep.out / 'best.yaml'} trains it again)")
    console.log(f"total training steps: {summary['total_steps']}; plots: "
                + ", ".join(f"{k} {v if v.startswith('not') else ''}".strip() for k, v in plots.items()))
    return summary


def _summary(sweep: Sweep, trials, best) -> dict:
    rows = [{"number": t.number, "state": t.state.name.lower(), "dir": str(sweep.trial_dir(t.number)),
             "params": {k: _decode(p, t.params[k]) for k, p in sweep.space.items() if k in t.params},
             "score": _score(t), "steps": t.user_attrs.get("steps"), "reason": t.user_attrs.get("reason")}
            for t in trials]
    return {"metric": sweep.metric, "direction": "maximize" if sweep.greater else "minimize",
            "n_trials": sweep.n_trials, "total_steps": sum(r["steps"] or 0 for r in rows),
            "best": None if best is None else rows[[t.number for t in trials].index(best.number)], "trials": rows}


def _leaderboard(sweep: Sweep, trials) -> None:
    """`lmctl compare` over the finished trials' run directories, with each row's trial state."""
    from lmctl import compare as compare_lib

    states = {str(sweep.trial_dir(t.number)): t.state.name.lower() for t in trials}
    dirs = [str(sweep.trial_dir(t.number)) for t in trials if t.state.name in ("COMPLETE", "PRUNED")
            and (sweep.trial_dir(t.number) / "metrics.json").is_file()]
    if not dirs:
        return
    try:
        result = compare_lib.compare(dirs)
    except UserError as exc:
        Console().warn(f"leaderboard: {exc}")
        return
    header, cells = compare_lib.table(result)
    header.insert(2, "state")
    for row, cell in zip(result.rows, cells):
        cell.insert(2, "/".join(sorted({states[str(r.path)] for r in row.runs})))
    Console(stream=sys.stdout).table(f"leaderboard: {result.task}, ranked by {result.metric}", cells, header=header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    atomic_write_text(sweep.out / "leaderboard.md", "\n".join(lines) + "\n")


def _write_best(sweep: Sweep, best, best_dir: Path) -> None:
    """best.yaml (the trial's config, writing where the base config writes) and the `best` link."""
    import yaml

    cfg = config_lib.read_yaml(best_dir / "config.yaml")
    cfg["output_dir"] = sweep.base.output_dir
    header = (f"# The best trial of lmctl sweep {sweep.source}: trial {best.number}, {sweep.metric} "
              f"{_score(best):.4f}.\n# Its kept model is {best_dir} already; this config trains it again:\n"
              f"#   lmctl finetune {sweep.out / 'best.yaml'}\n")
    atomic_write_text(sweep.out / "best.yaml", header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    link, tmp = sweep.out / "best", sweep.out / ".best.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(best_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        Console().warn(f"{link}: cannot link it to {best_dir.name} ({exc.strerror}); the best run is {best_dir}")


def _delete_weights(sweep: Sweep, trials, best) -> int:
    """--keep best: the model weights and checkpoints of every finished trial but the best (logs,
    configs and metrics stay, so the leaderboard still reads them)."""
    import shutil

    freed = 0
    for t in trials:
        run_dir = sweep.trial_dir(t.number)
        if t.state.name not in FINISHED or not run_dir.is_dir():
            continue
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        if t.number == best.number:
            continue
        weights = [f for pattern in ("*.safetensors", "*.bin") for f in run_dir.glob(pattern)]
        for f in weights:
            f.unlink()
        freed += bool(weights)
    return freed
