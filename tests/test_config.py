"""The config schema, YAML loading, `--set` overrides and `lmctl config show`.

Config is the first thing a run touches: these tests pin that a typo or a wrong type
stops a run with one line naming the key, before anything heavy loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import REPO
from lmctl import config as config_lib
from lmctl.cli import app
from lmctl.errors import UserError

# A typical first config (SST-2 on MiniLM) that sets the common data and training keys
# explicitly: every key it names must validate.
MINILM_EXAMPLE = """\
task: text-classification
model:
  name_or_path: sentence-transformers/all-MiniLM-L6-v2
data:
  train_file: data/train.csv
  validation_file: data/dev.csv
  text_column: sentence
  text_pair_column: null
  label_column: label
  max_train_samples: null
training:
  num_epochs: 3
  batch_size: 32
  learning_rate: 5.0e-5
  max_length: 128
  seed: 42
output_dir: runs/sst2-minilm
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def user_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---- loading and validation ---------------------------------------------------------


def test_minilm_example_validates(tmp_path):
    cfg = config_lib.load_config(write(tmp_path, MINILM_EXAMPLE))
    assert cfg.task == "text-classification"
    assert cfg.model.name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.data.train_file == "data/train.csv"
    assert cfg.data.validation_file == "data/dev.csv"
    assert cfg.data.text_column == "sentence"
    assert cfg.data.text_pair_column is None
    assert cfg.data.label_column == "label"
    assert cfg.data.max_train_samples is None
    assert cfg.training.num_epochs == 3
    assert cfg.training.batch_size == 32
    assert isinstance(cfg.training.learning_rate, float) and cfg.training.learning_rate == 5e-5
    assert cfg.training.max_length == 128
    assert cfg.training.seed == 42
    assert cfg.output_dir == "runs/sst2-minilm"


def test_defaults_fill_unset_keys(tmp_path):
    cfg = config_lib.load_config(write(tmp_path, "task: text-classification\n"))
    # Defaults live in the schema; a minimal config is complete after validation.
    assert cfg.training.batch_size > 0 and cfg.training.learning_rate > 0
    assert cfg.data.text_column == "text" and cfg.data.label_column == "label"


def test_yaml11_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML reads `5e-5` as the string "5e-5" (YAML 1.1); the schema must still give a float.
    path = write(tmp_path, "task: text-classification\ntraining:\n  learning_rate: 5e-5\n  adam_epsilon: 1e-6\n")
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "5e-5"  # the trap is real
    cfg = config_lib.load_config(path)
    assert isinstance(cfg.training.learning_rate, float) and cfg.training.learning_rate == 5e-5
    assert isinstance(cfg.training.adam_epsilon, float) and cfg.training.adam_epsilon == 1e-6


def test_set_exponent_is_a_float(tmp_path):
    path = write(tmp_path, "task: text-classification\n")
    cfg = config_lib.load_config(path, ["training.learning_rate=3e-5"])
    assert isinstance(cfg.training.learning_rate, float) and cfg.training.learning_rate == 3e-5


def test_dump_round_trips(tmp_path):
    cfg = config_lib.load_config(write(tmp_path, MINILM_EXAMPLE), ["training.learning_rate=5e-5"])
    again = config_lib.validate(yaml.safe_load(config_lib.dump(cfg)))
    assert again == cfg
    # The dumped value is a YAML float, so the resolved config in a run dir reads back exactly.
    assert isinstance(yaml.safe_load(config_lib.dump(cfg))["training"]["learning_rate"], float)


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = write(tmp_path, "task: text-classification\ntraining:\n  learning_rat: 0.1\n")
    msg = user_error(config_lib.load_config, path)
    assert "training.learning_rat" in msg and "did you mean 'learning_rate'" in msg
    assert str(path) in msg


def test_unknown_key_in_an_optional_section_suggests_the_close_one(tmp_path):
    path = write(tmp_path, "task: text-classification\ndistill:\n  teacher: t\n  temprature: 3\n")
    msg = user_error(config_lib.load_config, path)
    assert "unknown key 'distill.temprature' (did you mean 'temperature'?)" in msg


def test_a_sections_own_check_names_its_key_once(tmp_path):
    path = write(tmp_path, "task: text-classification\ntraining:\n  eval_strategy: steps\n")
    msg = user_error(config_lib.load_config, path)
    assert msg == f"{path}: training.eval_strategy is 'steps': set training.eval_steps too"


def test_unknown_top_level_key(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, "task: text-classification\noutput_dri: x\n"))
    assert "output_dri" in msg and "did you mean 'output_dir'" in msg


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("training", "batch_size", "many"),
        ("training", "num_epochs", "[1, 2]"),
        ("training", "learning_rate", "fast"),
        ("training", "group_by_length", "sometimes"),
        ("data", "max_train_samples", "lots"),
    ],
)
def test_wrong_type_names_the_key(tmp_path, section, key, value):
    path = write(tmp_path, f"task: text-classification\n{section}:\n  {key}: {value}\n")
    msg = user_error(config_lib.load_config, path)
    assert f"{section}.{key}" in msg and str(path) in msg


@pytest.mark.parametrize("value", [0, -4])
def test_batch_size_must_be_positive(tmp_path, value):
    path = write(tmp_path, f"task: text-classification\ntraining:\n  batch_size: {value}\n")
    msg = user_error(config_lib.load_config, path)
    assert "training.batch_size" in msg and "greater than 0" in msg


def test_missing_task(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, "model:\n  name_or_path: x\n"))
    assert "missing required key 'task'" in msg


def test_unknown_task_suggests(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, "task: text-clasification\n"))
    assert "unknown task 'text-clasification'" in msg and "did you mean 'text-classification'" in msg


def test_eval_strategy_steps_needs_eval_steps(tmp_path):
    path = write(tmp_path, "task: text-classification\ntraining:\n  eval_strategy: steps\n")
    assert "eval_steps" in user_error(config_lib.load_config, path)
    cfg = config_lib.load_config(path, ["training.eval_steps=10"])
    assert cfg.training.eval_steps == 10


def test_span_corruption_needs_three_tokens(tmp_path):
    path = write(tmp_path, "task: span-corruption\ntraining:\n  max_length: 2\n")
    message = user_error(config_lib.load_config, path)
    assert "training.max_length" in message and "at least 3" in message
    assert config_lib.load_config(path, ["training.max_length=3"]).training.max_length == 3


def test_pooling_is_for_gpt2_text_classification(tmp_path):
    lm = write(tmp_path, "task: causal-lm\nmodel:\n  pooling: mean\n")
    assert "only text-classification, multi-label-classification chooses a pooling, not causal-lm" in user_error(config_lib.load_config, lm)
    scratch = write(tmp_path, "task: text-classification\nmodel:\n  from_scratch: {family: bert}\n  pooling: mean\n")
    assert "bert pools its own way" in user_error(config_lib.load_config, scratch)
    cfg = config_lib.load_config(scratch, ["model.from_scratch.family=gpt2"])
    assert cfg.model.pooling == "mean"
    assert "model.pooling" in user_error(config_lib.load_config, scratch, ["model.pooling=max"])


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "task: text-classification\ntraining:\n  batch_size: [8\n  seed: 1\n")
    msg = user_error(config_lib.load_config, path)
    assert str(path) in msg and "malformed YAML" in msg and "line" in msg


def test_top_level_must_be_a_mapping(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, "- task\n- model\n"))
    assert "mapping" in msg


def test_missing_config_file(tmp_path):
    msg = user_error(config_lib.load_config, tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "not found" in msg


# ---- --set overrides --------------------------------------------------------------------


def test_set_is_repeatable_and_later_wins(tmp_path):
    path = write(tmp_path, MINILM_EXAMPLE)
    cfg = config_lib.load_config(
        path, ["training.batch_size=8", "training.seed=7", "data.text_column=text", "training.batch_size=16"]
    )
    assert (cfg.training.batch_size, cfg.training.seed, cfg.data.text_column) == (16, 7, "text")


def test_set_creates_missing_sections(tmp_path):
    # The file has no model/data/training sections at all: --set must create them.
    path = write(tmp_path, "task: text-classification\n")
    cfg = config_lib.load_config(
        path, ["model.name_or_path=/models/x", "data.label_names=[neg, pos]", "training.max_steps=5"]
    )
    assert cfg.model.name_or_path == "/models/x"
    assert cfg.data.label_names == ["neg", "pos"]
    assert cfg.training.max_steps == 5


def test_set_null_and_strings(tmp_path):
    path = write(tmp_path, MINILM_EXAMPLE)
    cfg = config_lib.load_config(path, ["data.validation_file=null", "output_dir=runs/a=b"])
    assert cfg.data.validation_file is None
    assert cfg.output_dir == "runs/a=b"  # only the first '=' splits key from value


@pytest.mark.parametrize("bad", ["foo", "=3", "training..seed=1", ".seed=1"])
def test_set_bad_syntax(tmp_path, bad):
    # The commands name their flag (overrides_key="--set"); from Python the overrides are "override".
    msg = user_error(config_lib.load_config, write(tmp_path, MINILM_EXAMPLE), [bad], overrides_key="--set")
    assert f"--set '{bad}'" in msg and "KEY=VALUE" in msg and "e.g. --set training.learning_rate=3e-5" in msg
    msg = user_error(config_lib.load_config, write(tmp_path, MINILM_EXAMPLE), [bad])
    assert msg.startswith(f"override '{bad}': expected KEY=VALUE") and "--" not in msg


def test_set_into_a_value_is_an_error(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, MINILM_EXAMPLE), ["output_dir.x=1"])
    assert "output_dir" in msg and "not a section" in msg


def test_set_unknown_key_is_validated(tmp_path):
    msg = user_error(config_lib.load_config, write(tmp_path, MINILM_EXAMPLE), ["training.epochs=2"])
    assert "training.epochs" in msg


# ---- lmctl config show -----------------------------------------------------------------


def test_config_show_prints_the_resolved_config(tmp_path):
    path = write(tmp_path, MINILM_EXAMPLE.replace("5.0e-5", "5e-5"))
    args = ["config", "show", str(path), "--set", "training.batch_size=4", "-s", "training.seed=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["training"]["batch_size"] == 4 and shown["training"]["seed"] == 3
    assert shown["training"]["learning_rate"] == 5e-5 and isinstance(shown["training"]["learning_rate"], float)
    # Resolved: keys the file never mentions are printed with their defaults.
    expected = config_lib.load_config(path, ["training.batch_size=4", "training.seed=3"]).model_dump(mode="json")
    assert shown == expected
    assert "logging_steps" in shown["training"]


def test_config_show_bad_key_is_one_line(tmp_path):
    path = write(tmp_path, "task: text-classification\ntraining:\n  bach_size: 2\n")
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "did you mean 'batch_size'" in lines[0]


# ---- shipped configs ---------------------------------------------------------------------

CONFIGS = REPO / "configs"
ALL_YAML = sorted(CONFIGS.glob("**/*.yaml"))
# configs/accelerate/ holds `accelerate launch --config_file` files, not lmctl configs; configs/sweeps/
# holds `lmctl sweep` files (tests/test_sweep.py loads them).
ACCELERATE = [p for p in ALL_YAML if p.relative_to(CONFIGS).parts[0] == "accelerate"]
SHIPPED = [p for p in ALL_YAML if p not in ACCELERATE and p.relative_to(CONFIGS).parts[0] != "sweeps"]


def test_configs_are_shipped():
    assert any(p.parent.name == "finetune" for p in SHIPPED), SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates(path):
    cfg = config_lib.load_config(path)
    assert cfg.task
    # Each shipped YAML says what it does and how to run it, in a header comment.
    assert path.read_text(encoding="utf-8").startswith("#"), f"{path} has no header comment"
    # And the CLI accepts it the same way.
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_accelerate_config_loads(path):
    # Accelerate's own loader: it rejects unknown keys, as lmctl's schema does.
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(path)).num_processes >= 1
    assert path.read_text(encoding="utf-8").startswith("#"), f"{path} has no header comment"
