"""The config of trial N (evolve.trials.trial_config): the one function promote-config, `serve --challenger` and the
power estimate read, following ``repeat_of`` (issue 19, "Also"). A real Optuna study in SQLite."""

from __future__ import annotations

import optuna
import pytest


@pytest.fixture
def study(tmp_path):
    from evolve.config import apply_overrides, load_config

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    st = optuna.create_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    cfg = apply_overrides(load_config(), ["embedding.dim=64"])
    first = st.ask()
    first.set_user_attr("evolve.config", cfg.to_dict())
    st.tell(first, 0.5)
    repeat = st.ask()  # same params as trial 0: the night reused its value and recorded no config of its own
    repeat.set_user_attr("evolve.repeat_of", 0)
    st.tell(repeat, 0.5)
    failed = st.ask()
    st.tell(failed, state=optuna.trial.TrialState.FAIL)
    return st, cfg


def test_trial_config_follows_repeat_of(study):
    from evolve.trials import trial_config

    st, cfg = study
    frozen = st.get_trials(deepcopy=False)
    assert trial_config(st, 0).to_dict() == cfg.to_dict()
    assert trial_config(st, frozen[1]).to_dict() == cfg.to_dict()  # the trial it repeats
    assert trial_config(st, 2) is None  # failed before recording one
    assert trial_config(st, 99) is None


def test_serve_challenger_says_which_trial_in_one_line(study):
    from conftest import expect_one_line

    from evolve.errors import ConfigError
    from evolve.serve._sources import trial_config

    st, cfg = study
    assert trial_config(st, 1).to_dict() == cfg.to_dict()
    expect_one_line(lambda: trial_config(st, 99), "--challenger 99: no such trial in study 't'", exc=ConfigError)
    expect_one_line(
        lambda: trial_config(st, 2), "--challenger 2: trial 2 recorded no config (state FAIL)", exc=ConfigError
    )
