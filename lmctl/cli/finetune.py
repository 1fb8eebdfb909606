"""`lmctl finetune CONFIG`: train a model on a labelled task."""

from __future__ import annotations

from lmctl.cli.common import ConfigArg, OverwriteOpt, ResumeFromOpt, ResumeOpt, SetOpt, guarded


@guarded
def finetune(config: ConfigArg, set_: SetOpt = None, overwrite: OverwriteOpt = False,
             resume: ResumeOpt = False, resume_from: ResumeFromOpt = None) -> None:
    """Finetune a model (hub id or local directory) on a task described by CONFIG."""
    from lmctl import config as config_lib
    from lmctl import run

    cfg = config_lib.load_config(config, set_ or [], overrides_key="--set")
    run.finetune(cfg, overwrite=overwrite, resume=resume_from or ("latest" if resume else None))
