"""Shared by tests/test_training_*.py: compose the tiny training config, read a run's logged losses."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# fast defaults for in-process runs: no progress bar, csv only, no sample grids unless a test asks for them
FAST = [
    "experiment=tiny",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_grid=null",
    "callbacks.lr_monitor=false",
    "loader.num_workers=0",
]


def compose(*overrides: str, fast: bool = True):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return hydra_compose("train", overrides=[*(FAST if fast else []), *overrides])


def losses(run_dir: Path) -> dict[int, str]:
    """{step: logged train/loss as written (full precision string)} from <run_dir>/csv/metrics.csv."""
    rows = csv.DictReader(open(Path(run_dir) / "csv" / "metrics.csv"))
    return {int(r["step"]): r["train/loss"] for r in rows if r.get("train/loss")}


def run_python(args: list[str], timeout: int = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
