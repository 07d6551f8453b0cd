"""Every command, pointed at a folder of the user's own files, refuses in one `error:` line and leaves each file as
it was (the rule of pbe.files: an existing file is replaced only with an explicit overwrite flag, an input never)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pbe.assets import small_model_path

ROOT = Path(__file__).resolve().parents[1]

# The user's folder: files named like the ones each command writes, with the user's own contents.
USERS_FILES = {
    "result.png": lambda p: Image.new("RGB", (64, 64), "red").save(p),
    "result_grid.png": lambda p: Image.new("RGB", (8, 8), "blue").save(p),
    "multirun.yaml": lambda p: p.write_text("my notes on a sweep\n"),
    "table.md": lambda p: p.write_text("| my | table |\n"),
    "results.json": lambda p: p.write_text('{"mine": true}\n'),
    "contact_sheet.png": lambda p: Image.new("RGB", (8, 8), "green").save(p),
    "preview.png": lambda p: Image.new("RGB", (8, 8), "white").save(p),
    "model.ckpt": lambda p: p.write_bytes(b"my own checkpoint, not pbe's"),
    "features.npz": lambda p: np.savez(p, mine=np.arange(3)),
    "config.yaml": lambda p: p.write_text("my: settings\n"),
}


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A photo, its mask, an exemplar and a one-item benchmark manifest (outside the user's folder)."""
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(folder / "photo.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.new("RGB", (32, 32), (200, 30, 160)).save(folder / "exemplar.png")
    row = {"id": "one", "image": "photo.png", "mask": "mask.png", "reference": "exemplar.png"}
    (folder / "bench.jsonl").write_text(json.dumps(row) + "\n")
    return folder


@pytest.fixture
def mine(tmp_path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, make in USERS_FILES.items():
        make(folder / name)
    return folder


def commands(mine: Path, inputs: Path) -> dict[str, list[str]]:
    edit = [
        f"image={inputs / 'photo.png'}",
        f"mask={inputs / 'mask.png'}",
        f"example={inputs / 'exemplar.png'}",
    ]
    return {
        "sample.py": ["sample.py", *edit, f"out={mine / 'result.png'}", "steps=2"],
        "sample.py -m": ["sample.py", "-m", *edit, f"out={mine / 'r.png'}", "steps=2", "seed=1,2"],
        "pbe.convert": [
            "-m",
            "pbe.convert",
            str(small_model_path()),
            str(mine / "model.ckpt"),
            "--to",
            "ldm",
        ],
        "pbe.eval": [
            "-m",
            "pbe.eval",
            f"weights={small_model_path()}",
            f"bench={inputs / 'bench.jsonl'}",
            f"out={mine}",
            "steps=2",
            "metrics.compute=false",
        ],  # fmt: skip
        "pbe.eval.metrics": ["-m", "pbe.eval.metrics", "features", str(inputs), str(mine / "features.npz")],
        "pbe.data.preview": ["-m", "pbe.data.preview", "n=2", f"out={mine / 'preview.png'}"],
        "train.py": ["train.py", "experiment=tiny", f"run_dir={mine}"],
    }


COMMANDS = [
    "sample.py",
    "sample.py -m",
    "pbe.convert",
    "pbe.eval",
    "pbe.eval.metrics",
    "pbe.data.preview",
    "train.py",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_keeps_every_file_of_the_users(mine, inputs, tmp_path, name):
    before = snapshot(mine)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    argv = commands(mine, inputs)[name]
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0, f"{name} succeeded over the user's files:\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert snapshot(mine) == before  # nothing replaced, nothing added
