"""Hydra ``-m`` sweeps, expanded before any job runs, so that every entry point can check all its jobs first."""

from __future__ import annotations

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
    """Every job of a command line's sweep, as override lists, expanded exactly as Hydra's basic sweeper does."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return BasicSweeper.split_arguments(parsed, None)[0]
