"""pbe.eval runner: determinism whatever the world size, resuming after a kill, and clear errors on bad input."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pbe.eval import metrics as M
from pbe.eval.bench import item_seed, load_bench
from pbe.eval.make_synthetic_bench import make_bench
from pbe.eval.runner import run_eval

ROOT = Path(__file__).resolve().parents[1]
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
}
ITEMS = 6


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for the whole module, for two reasons. Results are compared exactly across runs, and
    float sums depend on the thread count. And forking a process whose OpenMP pool ran multi-threaded work hangs
    the child in its next parallel region (libgomp is not fork-safe); the ddp_fork and killed-run tests fork."""
    yield


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny random pbe model (native layout), a 32-px synthetic bench, tiny CLIP weights and a fitted mixture."""
    from pbe.checkpoints.formats import Checkpoint, save_checkpoint
    from pbe.demo import tiny_config
    from pbe.models import PaintByExample

    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = PaintByExample(tiny_config())
    save_checkpoint(
        Checkpoint(tiny_config(), dict(model.state_dict())), root / "model", "native", progress=False
    )
    make_bench(root / "bench", items=ITEMS, real=8, size=32, reference_size=32, progress=False)
    (root / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    M.random_clip_weights(root / "clip.safetensors", arch=str(root / "tiny-clip.json"), seed=1)
    clip = M.ClipConfig(
        weights=str(root / "clip.safetensors"), arch=str(root / "tiny-clip.json"), device="cpu"
    )
    real = M.ClipFeatures(clip).images(M.image_files(root / "bench" / "real"))
    M.save_gmm(M.fit_gmm(real, n_components=2, seed=0), root / "gmm.npz")
    return root


def overrides(assets: Path, out: Path) -> dict:
    return {
        "weights": str(assets / "model"),
        "bench": str(assets / "bench"),
        "out": str(out),
        "steps": 3,
        "trainer": {"accelerator": "cpu", "devices": 1},
        "metrics": {
            "clip": {
                "weights": str(assets / "clip.safetensors"),
                "arch": str(assets / "tiny-clip.json"),
                "device": "cpu",
            },
            "real": str(assets / "bench" / "real"),
            "gmm": str(assets / "gmm.npz"),
        },
        "contact_sheet": 2,
        "progress": False,
    }


def cli_args(cfg: dict) -> list[str]:
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}={str(v).lower() if isinstance(v, bool) else v}"

    return [sys.executable, "-m", "pbe.eval", *flat(cfg)]


def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """One uninterrupted single-process run, configured through configs/eval.yaml as `python -m pbe.eval` is."""
    from hydra import compose, initialize_config_dir

    out = tmp_path_factory.mktemp("reference") / "run"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=cli_args(overrides(assets, out))[3:])
    assert cfg.guidance == 5.0 and cfg.seed == 42 and cfg.eta == 0.0  # the authors' protocol by default
    results = run_eval(cfg)
    return out, results


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def assert_same_results(out: Path, reference_out: Path) -> None:
    names = sorted(p.name for p in (reference_out / "results").glob("*.png"))
    assert names == sorted(p.name for p in (out / "results").glob("*.png")) and len(names) == ITEMS
    for name in names:
        np.testing.assert_array_equal(
            pixels(out / "results" / name), pixels(reference_out / "results" / name)
        )
    ours, theirs = (json.loads((o / "results.json").read_text()) for o in (out, reference_out))
    assert ours["metrics"] == theirs["metrics"]  # exactly, not approximately
    assert json.loads((out / "per_item.json").read_text()) == json.loads(
        (reference_out / "per_item.json").read_text()
    )


def test_reference_run_writes_every_metric_and_report(reference):
    out, results = reference
    assert all(isinstance(results["metrics"][k], float) for k in ("fid", "qs", "clip_score"))
    assert results["counts"] == {"items": ITEMS, "already_done": 0, "edited_this_run": ITEMS}
    assert results["pbe_version"] and len(results["model"]["sha256"]) == 64
    assert results["inputs"]["clip"]["random_init"] == "seed=1"
    table = (out / "table.md").read_text()
    assert (
        "| Paint by Example (paper, Table 1) | 3.18 | 77.80 | 84.97 |" in table and "not comparable" in table
    )
    assert Image.open(out / "contact_sheet.png").size[0] > 0


def test_each_result_equals_a_pipeline_call_seeded_with_its_item_seed(assets, reference):
    from pbe.eval.runner import authors_exemplar
    from pbe.pipeline import PaintByExamplePipeline

    out, _ = reference
    item = load_bench(assets / "bench")[2]
    pipe = PaintByExamplePipeline.from_pretrained(assets / "model")
    image = pipe(
        Image.open(item.image).convert("RGB"),
        Image.open(item.mask).convert("L"),
        authors_exemplar(item.reference, 32),
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(item_seed(42, item.id)),
        progress=False,
    ).images[0]
    np.testing.assert_array_equal(np.asarray(image), pixels(out / "results" / f"{item.id}.png"))


def test_two_gloo_processes_give_identical_images_and_metrics(assets, reference, tmp_path):
    # ddp_fork: the same DDP strategy (gloo on CPU) as trainer.strategy=ddp, without re-importing everything
    cfg = overrides(assets, tmp_path / "ddp")
    cfg["trainer"] = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_fork"}
    results = run_eval(cfg)
    assert results["timing"]["world_size"] == 2
    metas = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "meta").glob("*.json")]
    assert len({m["pid"] for m in metas}) == 2  # both processes edited
    assert_same_results(tmp_path / "ddp", reference[0])


@pytest.mark.slow
def test_two_processes_from_the_command_line(assets, reference, tmp_path):
    cfg = overrides(assets, tmp_path / "ddp")
    cfg["trainer"] = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    done = subprocess.run(
        cli_args(cfg), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    assert_same_results(tmp_path / "ddp", reference[0])


def test_a_killed_run_resumes_to_the_same_results_without_redoing_finished_items(assets, reference, tmp_path):
    import multiprocessing

    out = tmp_path / "killed"
    # a forked copy of this process runs the evaluation (no re-import) and gets SIGKILL once a result exists
    proc = multiprocessing.get_context("fork").Process(target=run_eval, args=(overrides(assets, out),))
    proc.start()
    deadline = time.monotonic() + 240

    def results():  # not a writer's temporary sibling (.{name}.XXXX.tmp.png), which a kill may leave behind
        return sorted(p for p in (out / "results").glob("*.png") if not p.name.startswith("."))

    while time.monotonic() < deadline and proc.is_alive() and not results():
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.join()
    finished = results()
    assert 1 <= len(finished) < ITEMS, f"the kill came too late or too early: {len(finished)} of {ITEMS} done"
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished}

    results = run_eval(overrides(assets, out))
    assert results["counts"] == {
        "items": ITEMS,
        "already_done": len(finished),
        "edited_this_run": ITEMS - len(finished),
    }
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == stamps  # not rewritten
    assert_same_results(out, reference[0])
    again = run_eval(overrides(assets, out))  # nothing left to edit
    assert again["counts"]["edited_this_run"] == 0 and again["metrics"] == results["metrics"]


def test_other_settings_in_the_same_out_are_refused(assets, reference):
    cfg = overrides(assets, reference[0])
    cfg["seed"] = 7
    with pytest.raises(ValueError, match="seed differ"):
        run_eval(cfg)


def broken_bench(assets: Path, tmp_path: Path, damage) -> Path:
    bench = tmp_path / "bench"
    shutil.copytree(assets / "bench", bench)
    damage(bench, str(np.load(bench / "id_list.npy")[1]).zfill(12))
    return bench


@pytest.mark.parametrize(
    "damage, error, match",
    [
        (lambda b, i: shutil.rmtree(b / "GT_3500"), FileNotFoundError, "exactly one GT_"),
        (lambda b, i: (b / "Mask_bbox_3500" / f"{i}_mask.png").unlink(), FileNotFoundError, "has no mask"),
        (lambda b, i: (b / "Ref_3500" / f"{i}_ref.png").unlink(), FileNotFoundError, "has no reference"),
        (
            lambda b, i: Image.new("L", (32, 32), 200).save(b / "Mask_bbox_3500" / f"{i}_mask.png"),
            ValueError,
            "no white",
        ),
    ],
    ids=["no GT folder", "no mask", "no reference", "no white pixel"],
)
def test_bad_benchmarks_are_errors_before_any_editing(assets, tmp_path, monkeypatch, damage, error, match):
    import pbe.eval.runner as runner

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(runner, "EditModule", never)
    cfg = overrides(assets, tmp_path / "out")
    cfg["bench"] = str(broken_bench(assets, tmp_path, damage))
    with pytest.raises(error, match=match):
        run_eval(cfg)
    assert not (tmp_path / "out" / "results").exists()


def test_missing_bench_and_missing_clip_weights_are_errors(assets, tmp_path):
    cfg = overrides(assets, tmp_path / "out")
    cfg["bench"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere not found"):
        run_eval(cfg)
    cfg = overrides(assets, tmp_path / "out")
    cfg["metrics"]["clip"]["weights"] = None
    with pytest.raises(ValueError, match="metrics.clip.weights is required"):
        run_eval(cfg)


def test_synthetic_bench_masks_are_the_object_boxes_and_ids_are_held_out(assets):
    info = json.loads((assets / "bench" / "bench_info.json").read_text())
    assert info["seed"] != 0 and info["real_seed"] != 0  # training scenes use seed 0
    for item in load_bench(assets / "bench"):
        mask = np.asarray(Image.open(item.mask))
        ys, xs = np.nonzero(mask == 255)
        assert set(np.unique(mask)) == {0, 255}
        assert (mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] == 255).all()  # one box
    assert len(list((assets / "bench" / "real").glob("*.png"))) == 8


def test_feature_files_of_another_width_are_errors_before_any_editing(assets, tmp_path, monkeypatch):
    import pbe.eval.runner as runner

    monkeypatch.setattr(runner, "EditModule", None)  # calling it would fail: nothing may be edited
    np.savez(tmp_path / "real.npz", features=np.zeros((4, 10)))
    M.save_gmm(M.Mixture(np.ones(1), np.zeros((1, 10)), np.eye(10)[None]), tmp_path / "gmm.npz")
    cfg = overrides(assets, tmp_path / "out")
    cfg["metrics"]["real"] = str(tmp_path / "real.npz")
    with pytest.raises(ValueError, match="10-d but the CLIP model's output is 16-d"):
        run_eval(cfg)
    cfg = overrides(assets, tmp_path / "out")
    cfg["metrics"]["gmm"] = str(tmp_path / "gmm.npz")
    with pytest.raises(ValueError, match="10-d mixture"):
        run_eval(cfg)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"guidance": -1.0}, "guidance must be >= 0"),
        ({"exemplar": "crop"}, "exemplar='crop'"),
        ({"dtype": "fp8"}, "dtype='fp8'"),
        ({"weights": None}, "weights is required"),
        ({"limit": 0}, "limit must be a positive integer"),
    ],
)
def test_bad_settings_are_errors(assets, tmp_path, change, match):
    cfg = {**overrides(assets, tmp_path / "out"), **change}
    with pytest.raises(ValueError, match=match):
        run_eval(cfg)


# ----------------------------------------------------------------------------------------------- before the model


@pytest.fixture
def no_model(monkeypatch):
    """Building the model fails the test: every check must come before it."""
    import pbe.eval.runner as runner

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the input was checked")

    monkeypatch.setattr(runner, "EditModule", never)


def write_manifest(folder: Path, image: Image.Image, mask: Image.Image, reference: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / "image.png")
    mask.save(folder / "mask.png")
    row = {"id": "tiny", "image": "image.png", "mask": "mask.png", "reference": str(reference)}
    (folder / "bench.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "bench.jsonl"


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda path: path.write_bytes(b""), "is empty \\(0 bytes\\)"),
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "is damaged or truncated"),
        (lambda path: path.write_text("not a picture"), "is not an image PIL can read"),
    ],
    ids=["zero bytes", "truncated", "text"],
)
@pytest.mark.parametrize(
    "what, folder, suffix", [("image", "GT_3500", "GT"), ("reference", "Ref_3500", "ref")]
)
def test_unreadable_bench_files_are_errors_naming_item_and_file(
    assets, tmp_path, no_model, damage, match, what, folder, suffix
):
    def damage_file(bench, item):
        damage(bench / folder / f"{item}_{suffix}.png")

    cfg = overrides(assets, tmp_path / "out")
    cfg["bench"] = str(broken_bench(assets, tmp_path, damage_file))
    item = str(np.load(assets / "bench" / "id_list.npy")[1]).zfill(12)
    with pytest.raises(ValueError, match=f"item {item}: {what} .*{folder}/{item}_{suffix}.png {match}"):
        run_eval(cfg)
    assert not (tmp_path / "out").exists()


def test_images_smaller_than_the_model_needs_are_errors_before_it_is_built(assets, tmp_path, no_model):
    from pbe.checkpoints.formats import Checkpoint, save_checkpoint
    from pbe.demo import tiny_config
    from pbe.models import PaintByExample
    from pbe.models.vae import VAEConfig

    config = tiny_config()
    config.vae = VAEConfig(channels=(32, 32, 64))  # one latent pixel is 4x4 image pixels
    save_checkpoint(
        Checkpoint(config, dict(PaintByExample(config).state_dict())),
        tmp_path / "model4",
        "native",
        progress=False,
    )
    reference = next((assets / "bench" / "Ref_3500").iterdir())
    cfg = overrides(assets, tmp_path / "out")
    cfg["weights"] = str(tmp_path / "model4")
    cfg["bench"] = str(
        write_manifest(tmp_path / "b3", Image.new("RGB", (3, 3)), Image.new("L", (3, 3), 255), reference)
    )
    with pytest.raises(
        ValueError, match="item tiny: image .*image.png is 3x3 pixels; the model needs at least 4x4"
    ):
        run_eval(cfg)
    cfg = overrides(assets, tmp_path / "out")  # a 1x1 image: the size, not its mask, is what is wrong
    cfg["bench"] = str(
        write_manifest(tmp_path / "b1", Image.new("RGB", (1, 1)), Image.new("L", (1, 1), 255), reference)
    )
    with pytest.raises(ValueError, match="is 1x1 pixels; the model needs at least 2x2"):
        run_eval(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"steps": 1000}, "steps=1000 does not work for sampler pndm .* Allowed steps here: 1..999"),
        ({"steps": 100000}, "steps must be an integer in \\[1, 1000\\]"),
        ({"steps": 1000, "sampler": "ddim"}, "steps=1000 does not work for sampler ddim"),
        ({"sampler": "heun"}, "sampler='heun'; valid: ddim, pndm"),
    ],
)
def test_steps_and_sampler_are_checked_before_the_model_is_built(assets, tmp_path, no_model, change, match):
    cfg = {**overrides(assets, tmp_path / "out"), **change}
    with pytest.raises(ValueError, match=match):
        run_eval(cfg)
    assert not (tmp_path / "out").exists()  # no run_config.json: a rerun with other settings is not refused


# ----------------------------------------------------------------------------------------------- the out folder


def users_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text("my own table\n")
    (folder / "results.json").write_text('{"mine": true}\n')
    Image.new("RGB", (4, 4), "red").save(folder / "contact_sheet.png")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_folder_with_the_users_own_reports_is_refused_unless_overwrite(assets, tmp_path, monkeypatch):
    out = tmp_path / "mine"
    before = users_files(out)
    with monkeypatch.context() as m:
        m.setattr("pbe.eval.runner.EditModule", None)  # calling it would fail: refused before the model
        with pytest.raises(
            FileExistsError, match="holds results.json, table.md, contact_sheet.png, which no pbe"
        ):
            run_eval(overrides(assets, out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    cfg = {**overrides(assets, out), "overwrite": True, "limit": 2}
    results = run_eval(cfg)
    assert json.loads((out / "results.json").read_text())["metrics"] == results["metrics"]
    assert (out / "table.md").read_text().startswith("| Method") and (out / "run_config.json").is_file()
    again = run_eval({**cfg, "overwrite": False})  # now a pbe run folder: resumed as any other
    assert again["counts"]["edited_this_run"] == 0


def test_result_files_no_run_recorded_are_refused_even_with_overwrite(assets, tmp_path, no_model):
    item = load_bench(assets / "bench")[0]
    (tmp_path / "out" / "results").mkdir(parents=True)
    shutil.copy(item.image, tmp_path / "out" / "results" / f"{item.id}.png")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="result files that no pbe.eval run recorded"):
            run_eval({**overrides(assets, tmp_path / "out"), "overwrite": overwrite})


def test_an_output_that_is_an_input_is_refused(assets, tmp_path, no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text(
        '{"model_sha256": "0"}'
    )  # a run folder: its reports would be replaced
    reference = out / "contact_sheet.png"
    shutil.copy(next((assets / "bench" / "Ref_3500").iterdir()), reference)
    image = Image.open(next((assets / "bench" / "GT_3500").iterdir()))
    mask = Image.open(next((assets / "bench" / "Mask_bbox_3500").iterdir()))
    cfg = overrides(assets, out)
    cfg["bench"] = str(write_manifest(tmp_path / "bench", image, mask, reference))
    with pytest.raises(ValueError, match="contact_sheet.png is an input"):
        run_eval(cfg)


def test_a_run_config_json_pbe_did_not_write_is_refused(assets, tmp_path, no_model):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run_config.json").write_text('{"learning_rate": 0.1}\n')
    with pytest.raises(ValueError, match="run_config.json is not a pbe.eval run record"):
        run_eval({**overrides(assets, tmp_path / "out"), "overwrite": True})
    assert (tmp_path / "out" / "run_config.json").read_text() == '{"learning_rate": 0.1}\n'


def test_a_record_without_results_does_not_block_a_rerun_with_other_settings(assets, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text(
        json.dumps({"model_sha256": "0" * 64, "steps": 1000})
    )  # a failed run's
    results = run_eval({**overrides(assets, out), "limit": 1})
    assert results["counts"]["edited_this_run"] == 1
    assert json.loads((out / "run_config.json").read_text())["steps"] == 3


def test_command_line_refuses_the_users_files_in_one_error_line(assets, tmp_path):
    out = tmp_path / "mine"
    before = users_files(out)
    done = subprocess.run(
        cli_args(overrides(assets, out)),
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: out: {out} holds results.json, table.md, contact_sheet.png, which no pbe.eval run wrote (no "
        "run_config.json); pass overwrite=true to replace them, or choose another out="
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
