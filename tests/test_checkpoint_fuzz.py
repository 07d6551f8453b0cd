"""Files that are not checkpoints end in a clear CheckpointError naming the file (issue 14, item 5).

Never KeyError / IndexError / UnpicklingError / UnicodeDecodeError, and never the "could run code" refusal for
bytes that do not reference code.
"""

import io
import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

from pbe.checkpoints.formats import load_checkpoint
from pbe.checkpoints.tensor_io import CheckpointError, write_safetensors
from pbe.convert import main as convert

SUFFIXES = [".ckpt", ".safetensors", ".pt", ".bin", ".pth"]


def torch_bytes(obj, zip_format: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes/readme.txt", "a zip, but not a torch checkpoint")
    return buf.getvalue()


STATE = {"state_dict": {"model.diffusion_model.w": torch.arange(64.0).reshape(8, 8)}}
NAMED_CASES = {
    "garbage.ckpt": b"\x00\x01garbage that is not a checkpoint",
    "notes.ckpt": b"these are my notes\nnot a model\n",
    "empty.ckpt": b"",
    "empty.safetensors": b"",
    "archive.ckpt": zip_bytes(),
    "list.ckpt": pickle.dumps([1, 2, 3]),  # a plain pickle of a non-dict
    "dict-of-str.pt": pickle.dumps({"a": "b"}, protocol=2),
    "torch-list.ckpt": torch_bytes([torch.zeros(2)]),  # a torch file of a non-dict
    "torch-number.ckpt": torch_bytes(5),
    "state-dict-int.ckpt": torch_bytes({"state_dict": 5}),
    "int-keys.ckpt": torch_bytes({1: torch.zeros(1)}),
    "json-list.safetensors": (2).to_bytes(8, "little") + b"[]",
    "no-offsets.safetensors": (44).to_bytes(8, "little") + b'{"a": {"dtype": "F32", "shape": [2]}}       ',
    "bad-shape.safetensors": (64).to_bytes(8, "little")
    + b'{"a": {"dtype": "F32", "shape": "x", "data_offsets": [0, 8]}}  '
    + bytes(8),
    "real-looking-but-empty.safetensors": (2).to_bytes(8, "little") + b"{}",
}


def assert_not_a_checkpoint(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "could run code" not in message, message
    assert "not a checkpoint" in message or "not a Paint-by-Example checkpoint" in message, message
    return message


@pytest.mark.parametrize("name", NAMED_CASES)
def test_named_non_checkpoints(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(NAMED_CASES[name])
    assert_not_a_checkpoint(path)


def test_random_and_truncated_bytes_end_in_checkpoint_error(tmp_path):
    rng = random.Random(int(os.environ.get("PBE_FUZZ_SEED", "1234")))
    real = {
        ".ckpt": torch_bytes(STATE),
        ".pt": torch_bytes(STATE, zip_format=False),  # the legacy (non-zip) torch format
        ".safetensors": b"",
    }
    write_safetensors(tmp_path / "real.safetensors", STATE["state_dict"])
    real[".safetensors"] = (tmp_path / "real.safetensors").read_bytes()
    for i in range(300):
        kind = rng.random()
        if kind < 0.5:  # random bytes, sometimes with a plausible start
            data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 8, 9, 40, 300])))
            data = rng.choice([b"", b"\x80\x02", b"PK\x03\x04", (len(data)).to_bytes(8, "little")]) + data
            suffix = rng.choice(SUFFIXES)
        else:  # a real checkpoint cut short, or with a byte flipped in its header
            suffix = rng.choice(list(real))
            data = bytearray(real[suffix][: rng.randrange(len(real[suffix]))])
            if data and rng.random() < 0.3:
                j = rng.randrange(min(len(data), 200))
                data[j] ^= 1 << rng.randrange(8)
            data = bytes(data)
        path = tmp_path / f"case{i}{suffix}"
        path.write_bytes(data)
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e) and "could run code" not in str(e), (i, str(e))
        else:
            pytest.fail(f"case {i} ({len(data)} bytes, {suffix}) loaded as a checkpoint")
        path.unlink()


def test_convert_says_not_a_checkpoint_in_one_line(tmp_path, capsys):
    src = tmp_path / "model.ckpt"
    src.write_text("definitely not weights")
    assert convert([str(src), str(tmp_path / "out"), "--to", "native", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: ") and "not a checkpoint" in err[0] and str(src) in err[0]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
