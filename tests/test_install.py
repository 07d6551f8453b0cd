"""pbe as an installed package: a wheel (not the editable checkout) installed into a folder of its own, its console
scripts run from an unrelated folder, with the configs, the default model and the demo inputs it ships."""

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
    """(install folder, environment whose PYTHONPATH puts it before the editable checkout)."""
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
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return site, env


def run(args, cwd: Path, env: dict) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_package_imports_from_the_install_not_the_checkout(installed, tmp_path):
    site, env = installed
    where = run([sys.executable, "-c", "import pbe; print(pbe.__file__)"], tmp_path, env).strip()
    assert Path(where).is_relative_to(site)
    shipped = run(
        [
            sys.executable,
            "-c",
            "from pbe.assets import default_model_path; from pbe.sample_cli import CONFIG_DIR; "
            "print(default_model_path()); print(CONFIG_DIR / 'train.yaml')",
        ],
        tmp_path,
        env,
    ).split()
    assert all(Path(p).exists() and Path(p).is_relative_to(site) for p in shipped)


def test_the_packaged_configs_equal_the_checkouts(installed):
    site, _ = installed
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
    site, env = installed
    assert expect in run([site / "bin" / script, *args], tmp_path, env)


def test_pbe_edit_edits_with_the_shipped_default_model(installed, tmp_path):
    site, env = installed
    demo = site / "pbe" / "assets" / "demo"
    image = Image.new("RGB", (64, 64), (90, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    image.save(tmp_path / "photo.png")
    mask.save(tmp_path / "mask.png")
    example = next((demo / "objects").glob("*.png"))
    run(
        [
            site / "bin" / "pbe-edit",
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
