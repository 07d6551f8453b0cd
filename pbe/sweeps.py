"""Hydra ``-m`` sweeps, expanded before any job runs, so that every entry point can check all its jobs first."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def swept_keys(argv: Sequence[str]) -> list[str]:
    """Keys a command line sweeps (``seed=1,2,3``, ``sampler=ddim,plms``, ``range(...)``), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    keys = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue  # flags (-m, --config-name, ...) and their values
        try:
            override = parser.parse_override(arg)
        except Exception:  # not an override Hydra would accept: not ours to judge here
            continue
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """Every job of a command line's sweep, as override lists, expanded as Hydra's basic sweeper does: each key once
    (its last value), in the order of its first appearance; every combination, the last key varying fastest."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:  # interval(...): for an optimizing sweeper, not a list of jobs (Hydra's own message)
            raise HydraException(f"BasicSweeper does not support sweep type : {override.value_type.name}")
    return [list(job) for job in itertools.product(*choices.values())]
