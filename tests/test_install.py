"""pbe as an installed package: a wheel (not the editable checkout) installed into a fresh virtual environment, its
console scripts run from an unrelated folder, with the configs, the default model and the demo inputs it ships.
The environment reaches the dependencies already installed here (torch etc.) through a .pth line, not pbe: the
checkout's editable install is a .pth hook that only its own environment runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(virtual environment with the wheel installed, environment variables to run it with)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy, so that building leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pbe", source / "pbe", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"), str(source)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp / "wheel").glob("pbe-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = site_packages(venv)
    deps = Path(np.__file__).parents[1]  # this environment's site-packages (torch, hydra, ...)
    (site / "dependencies.pth").write_text(f"{deps}\n")
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return venv, env


def run(args, cwd: Path, env: dict) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_the_package_imports_from_the_install_not_the_checkout(installed, tmp_path):
    venv, env = installed
    site = site_packages(venv)
    python = venv / "bin" / "python"
    where = run([python, "-c", "import pbe; print(pbe.__file__)"], tmp_path, env).strip()
    assert Path(where).is_relative_to(site)
    shipped = run(
        [
            python,
            "-c",
            "from pbe.assets import default_model_path; from pbe.sample_cli import CONFIG_DIR; "
            "print(default_model_path()); print(CONFIG_DIR / 'train.yaml')",
        ],
        tmp_path,
        env,
    ).split()
    assert all(Path(p).exists() and Path(p).is_relative_to(site) for p in shipped)


def test_the_packaged_configs_equal_the_checkouts(installed):
    site = site_packages(installed[0])
    mine = sorted(p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml"))
    shipped = sorted(
        p.relative_to(site / "pbe" / "configs") for p in (site / "pbe" / "configs").rglob("*.yaml")
    )
    assert mine == shipped and mine
    assert all(
        (ROOT / "configs" / p).read_bytes() == (site / "pbe" / "configs" / p).read_bytes() for p in mine
    )


@pytest.mark.parametrize(
    "script, args, expect",
    [
        ("pbe-edit", ["--help"], "weights=PATH"),
        ("pbe-convert", ["--help"], "usage"),
        ("pbe-app", ["--help"], "app"),
        ("pbe-train", ["--cfg", "job", "experiment=tiny"], "max_steps"),
        ("pbe-eval", ["--cfg", "job", "weights=w", "bench=b"], "bench: b"),
    ],
)
def test_each_console_script_runs_from_another_folder(installed, tmp_path, script, args, expect):
    venv, env = installed
    assert expect in run([venv / "bin" / script, *args], tmp_path, env)


def test_pbe_edit_edits_with_the_shipped_default_model(installed, tmp_path):
    venv, env = installed
    demo = site_packages(venv) / "pbe" / "assets" / "demo"
    image = Image.new("RGB", (64, 64), (90, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    image.save(tmp_path / "photo.png")
    mask.save(tmp_path / "mask.png")
    example = next((demo / "objects").glob("*.png"))
    run(
        [
            venv / "bin" / "pbe-edit",
            "image=photo.png",
            "mask=mask.png",
            f"example={example}",
            "steps=2",
            "out=result.png",
        ],
        tmp_path,
        env,
    )
    result = np.asarray(Image.open(tmp_path / "result.png"))
    assert result.shape == (64, 64, 3) and (tmp_path / "result_grid.png").is_file()
