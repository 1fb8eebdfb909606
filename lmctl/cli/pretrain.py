"""`lmctl pretrain CONFIG`: masked LM, causal LM or span corruption, from scratch or continued."""

from __future__ import annotations

from lmctl.cli.common import ConfigArg, OverwriteOpt, ResumeFromOpt, ResumeOpt, SetOpt, guarded


@guarded
def pretrain(config: ConfigArg, set_: SetOpt = None, overwrite: OverwriteOpt = False,
             resume: ResumeOpt = False, resume_from: ResumeFromOpt = None) -> None:
    """Pretrain a language model (task: masked-lm, causal-lm or span-corruption) described by CONFIG."""
    from lmctl import config as config_lib
    from lmctl import run

    cfg = config_lib.load_config(config, set_ or [], overrides_key="--set")
    run.pretrain(cfg, overwrite=overwrite, resume=resume_from or ("latest" if resume else None))
