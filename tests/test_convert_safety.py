"""`convert --overwrite` (and every checkpoint writer) replaces only what pbe itself wrote (issue 14, item 1)."""

from pathlib import Path

import pytest
import torch

from pbe.checkpoints.formats import Checkpoint, load_checkpoint, save_checkpoint
from pbe.convert import main as convert
from pbe.models import PaintByExample, PaintByExampleConfig, VisionConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig


def tiny_checkpoint() -> Checkpoint:
    config = PaintByExampleConfig(
        unet=UNetConfig(channels=(32, 64), attention_levels=(False, True), num_heads=2, context_dim=32),
        vae=VAEConfig(channels=(32, 64)),
        encoder=ExemplarEncoderConfig(
            vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=4, heads=2, mlp_dim=37),
            mapper_depth=1,
            context_dim=32,
        ),
    )
    torch.manual_seed(0)
    return Checkpoint(config, PaintByExample(config).state_dict())


@pytest.fixture(scope="module")
def native_src(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "pbe-native"
    save_checkpoint(tiny_checkpoint(), path, "native", progress=False)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name -> bytes), hidden ones included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_refused(argv: list[str], capsys) -> str:
    """Run the converter, expect exit 1 with exactly one `error:` line and no traceback; return that line."""
    assert convert([*argv, "--no-progress"]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_dst_containing_src_is_refused_and_nothing_is_deleted(native_src, tmp_path, capsys):
    parent = tmp_path / "parent"
    src = parent / "src"
    save_checkpoint(load_checkpoint(native_src), src, "native", progress=False)
    (parent / "sibling.txt").write_text("keep me")
    before = snapshot(tmp_path)
    line = run_refused([str(src), str(parent), "--to", "native", "--overwrite"], capsys)
    assert "contains the source" in line and str(parent) in line
    assert snapshot(tmp_path) == before  # nothing deleted, no temporary file left


def test_dst_equal_to_src_is_refused(native_src, capsys):
    before = snapshot(native_src)
    line = run_refused([str(native_src), str(native_src), "--to", "native", "--overwrite"], capsys)
    assert "is the source" in line
    assert snapshot(native_src) == before


@pytest.mark.parametrize("dst", [".", "..", "work/.."])
def test_working_directory_and_its_parents_are_refused(native_src, tmp_path, monkeypatch, capsys, dst):
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine")
    monkeypatch.chdir(cwd if dst != "work/.." else tmp_path)
    before = snapshot(tmp_path)
    line = run_refused([str(native_src), dst, "--to", "native", "--overwrite"], capsys)
    assert "working directory" in line
    assert snapshot(tmp_path) == before


def test_folder_with_files_pbe_did_not_write_is_kept(native_src, tmp_path, capsys):
    dst = tmp_path / "photos"
    dst.mkdir()
    (dst / "holiday.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (dst / "sub").mkdir()
    (dst / "sub" / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    line = run_refused([str(native_src), str(dst), "--to", "native", "--overwrite"], capsys)
    assert "files pbe did not write" in line and "holiday.jpg" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("extra", ["README.md", "unet/notes.txt", "tokenizer/vocab.json"])
def test_pbe_layout_folder_with_anything_extra_is_kept(native_src, tmp_path, capsys, extra):
    dst = tmp_path / "out"
    to = "native" if extra == "README.md" else "diffusers"
    save_checkpoint(load_checkpoint(native_src), dst, to, progress=False)
    (dst / extra).parent.mkdir(exist_ok=True)
    (dst / extra).write_text("user's file")
    before = snapshot(tmp_path)
    line = run_refused([str(native_src), str(dst), "--to", to, "--overwrite"], capsys)
    assert extra.split("/")[0] in line  # the foreign entry (or the folder holding it) is named
    assert snapshot(tmp_path) == before


def test_file_that_is_not_a_checkpoint_is_kept(native_src, tmp_path, capsys):
    dst = tmp_path / "thesis"  # a folder name for --to native, but an existing file of the user's
    dst.write_text("three years of work")
    line = run_refused([str(native_src), str(dst), "--to", "native", "--overwrite"], capsys)
    assert "not a" in line
    assert dst.read_text() == "three years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_symlink_dst_is_refused(native_src, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(native_src, target_is_directory=True)
    before = snapshot(native_src)
    line = run_refused([str(native_src), str(link), "--to", "native", "--overwrite"], capsys)
    assert "source" in line or "symbolic link" in line
    assert snapshot(native_src) == before and link.is_symlink()


@pytest.mark.parametrize(
    ("to", "name", "first"),
    [("native", "out", "native"), ("diffusers", "out", "diffusers"), ("ldm", "out.ckpt", "ldm")],
)
def test_what_pbe_wrote_is_replaced_with_overwrite(native_src, tmp_path, capsys, to, name, first):
    dst = tmp_path / name
    save_checkpoint(load_checkpoint(native_src), dst, first, progress=False)
    marker = {"native": "pbe_config.json", "diffusers": "model_index.json", "ldm": ""}[first]
    assert (dst / marker).exists()
    assert convert([str(native_src), str(dst), "--to", to, "--overwrite", "--no-progress"]) == 0
    assert load_checkpoint(dst).format == to
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary or backup left


def test_empty_folder_may_be_replaced(native_src, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (
        convert([str(native_src), str(tmp_path / "empty"), "--to", "native", "--overwrite", "--no-progress"])
        == 0
    )
    assert (tmp_path / "empty" / "model.safetensors").is_file()


def test_api_writers_share_the_rule(native_src, tmp_path):
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="files pbe did not write"):
        save_checkpoint(load_checkpoint(native_src), dst, "native", overwrite=True, progress=False)
    with pytest.raises(ValueError, match="contains the source"):
        save_checkpoint(
            load_checkpoint(native_src), native_src.parent, "native", overwrite=True, src=native_src
        )
    assert (dst / "data.csv").read_text() == "a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_check_replaceable_for_other_outputs(tmp_path):
    from pbe.checkpoints.tensor_io import atomic_path, check_replaceable

    image = tmp_path / "photo.png"
    image.write_bytes(b"png")
    with pytest.raises(ValueError, match="out .* is the source"):
        check_replaceable(image, src=[tmp_path / "mask.png", image], label="out", file_suffixes=(".png",))
    old = tmp_path / "result.png"
    old.write_bytes(b"old result")
    check_replaceable(old, src=image, label="out", file_suffixes=(".png",), folders=False)  # allowed
    (tmp_path / "grid").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        check_replaceable(tmp_path / "grid", label="out", folders=False, src=image)
    (tmp_path / "grid").rmdir()
    with atomic_path(old, overwrite=True, src=image, file_suffixes=(".png",)) as tmp:
        tmp.write_bytes(b"new result")
    assert old.read_bytes() == b"new result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "result.png"]
