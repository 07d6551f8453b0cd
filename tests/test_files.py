"""pbe.files: the one writer every pbe output goes through (nothing a user made is replaced or lost)."""

import os

import pytest
from PIL import Image

from pbe.files import check_new_file, write_file, write_files, write_json


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    path = tmp_path / "table.md"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="table.md already exists; pass overwrite=true"):
        write_file(path, "new")
    assert path.read_text() == "mine"
    write_file(path, "new", overwrite=True)
    assert path.read_text() == "new"


def test_an_input_is_never_replaced_even_with_overwrite(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (4, 4), "red").save(photo)
    with pytest.raises(ValueError, match="photo.png is the input .*never replaces an input"):
        write_file(tmp_path / "." / "photo.png", Image.new("RGB", (4, 4)), overwrite=True, inputs=[photo])
    assert Image.open(photo).getpixel((0, 0)) == (255, 0, 0)


def test_overwrite_replaces_only_the_suffixes_named(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(ValueError, match="is not a .png file"):
        check_new_file(notes, overwrite=True, suffixes=(".png",))


def test_a_folder_or_a_link_is_never_an_output(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        write_file(tmp_path / "dir", "x", overwrite=True)
    os.symlink(tmp_path / "elsewhere.txt", tmp_path / "link.txt")
    with pytest.raises(ValueError, match="symbolic link"):
        write_file(tmp_path / "link.txt", "x", overwrite=True)


def test_a_group_is_written_all_or_none(tmp_path):
    def broken(path):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    (tmp_path / "keep.json").write_text("old")
    with pytest.raises(OSError, match="cannot write .*no output was written"):
        write_files(
            [
                (tmp_path / "new" / "a.txt", "a"),
                (tmp_path / "keep.json", "{}"),
                (tmp_path / "new" / "b.bin", broken),
            ],
            overwrite=True,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]  # no a.txt, no temporary, no new/
    assert (tmp_path / "keep.json").read_text() == "old"


def test_each_kind_of_content_is_written(tmp_path):
    write_files(
        [
            (tmp_path / "a.png", Image.new("RGB", (3, 2), "blue")),
            (tmp_path / "b.txt", "text"),
            (tmp_path / "c.bin", b"\x00\x01"),
            (tmp_path / "d.npy", lambda p: p.write_bytes(b"by a function")),
        ]
    )
    write_json(tmp_path / "e.json", {"k": 1})
    assert Image.open(tmp_path / "a.png").size == (3, 2) and Image.open(tmp_path / "a.png").format == "PNG"
    assert (tmp_path / "b.txt").read_text() == "text" and (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "d.npy").read_bytes() == b"by a function"
    assert (tmp_path / "e.json").read_text() == '{\n  "k": 1\n}\n'
    assert oct((tmp_path / "b.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
