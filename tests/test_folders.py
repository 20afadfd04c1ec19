"""Folders: one .bbans file of a folder's files, restored with their paths, whole or not
at all."""
import hashlib
import io
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import bbans
from bbans import container, folders
from bbans.cli import main
from bbans.container import Container
from bbans.errors import BbansError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    np.save(root / "colour.npy", (np.indices((4, 9, 7, 3)).sum(0) * 5 % 256).astype(np.uint8))
    Image.fromarray((np.arange(40 * 30) % 251).astype(np.uint8).reshape(40, 30)).save(root / "sub" / "grey.png")
    (root / "sub" / "deeper" / "notes.txt").write_text("not an image " * 40)
    (root / "empty.bin").write_bytes(b"")
    return root


def same_tree(a, b) -> bool:
    files = lambda root: {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    left, right = files(a), files(b)
    if left.keys() != right.keys():
        return False
    for name, path in left.items():
        if path.suffix == ".png":
            if not np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(right[name]))):
                return False
        elif path.read_bytes() != right[name].read_bytes():
            return False
    return True


def test_a_folder_comes_back_with_its_paths(folder, tmp_path):
    report = bbans.compress_file(folder)
    assert report.method == "folder" and report.details["n_files"] == 4
    assert report.original_bytes == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    blob = (tmp_path / "photos.bbans").read_bytes()
    listed = bbans.info(blob)
    assert [f["name"] for f in listed["files"]] == ["colour.npy", "empty.bin", "sub/deeper/notes.txt", "sub/grey.png"]
    assert [f["method"] for f in listed["files"]][1:] == ["stored", "xz", "pixels"]
    restored = tmp_path / "back"
    bbans.decompress_file(tmp_path / "photos.bbans", restored)
    assert same_tree(folder, restored)
    with pytest.raises(BbansError, match="holds a folder"):
        bbans.decompress(blob)


def test_the_command_line_compresses_verifies_and_restores_a_folder(folder, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(folder)])
    assert result.exit_code == 0 and ": folder," in result.output
    packed = str(folder) + ".bbans"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert runner.invoke(main, ["verify", packed]).output.endswith(f"OK, restores {size} bytes exactly (folder)\n")
    os.rename(folder, tmp_path / "original")
    assert runner.invoke(main, ["decompress", packed]).exit_code == 0
    assert same_tree(tmp_path / "original", folder)
    result = runner.invoke(main, ["decompress", packed])
    assert result.exit_code == 1 and "exists" in result.output
    (folder / "stray.txt").write_text("gone after --force")
    assert runner.invoke(main, ["decompress", "--force", packed]).exit_code == 0
    assert same_tree(tmp_path / "original", folder)
    info = json.loads(runner.invoke(main, ["info", "--json", packed]).output)
    assert info["n_files"] == 4


def test_an_error_names_the_file_it_comes_from(folder):
    with pytest.raises(BbansError, match="colour.npy: model vae-8bit codes images of 28x28 grey"):  # of 9x7 colour images
        bbans.compress_file(folder, model="vae-8bit")


def test_links_and_empty_folders_are_refused(folder, tmp_path):
    (folder / "link").symlink_to(folder / "colour.npy")
    with pytest.raises(BbansError, match="link"):
        bbans.compress_file(folder)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(BbansError, match="no files"):
        bbans.compress_file(tmp_path / "nothing")
    (folder / "link").unlink()
    with open(os.path.join(os.fsencode(folder), b"\xff.bin"), "wb") as f:  # a name that is not UTF-8
        f.write(b"x")
    with pytest.raises(BbansError, match="not UTF-8"):
        bbans.compress_file(folder, force=True)


def rebuilt(blob: bytes, members) -> bytes:
    """The folder container of `members` (path, container), with a checksum that fits."""
    box = container.read(blob)
    payload = folders._pack(members)
    return Container(**{**box.__dict__, "payload": payload, "sha256": hashlib.sha256(payload).digest()}).to_bytes()


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "", "a\\..\\b", "./a"])
def test_a_path_that_would_lead_out_of_the_folder_is_refused(folder, tmp_path, name):
    blob, _ = folders.compress(folder)
    members = folders.members(container.read(blob))
    bad = rebuilt(blob, [(name, members[0][1])] + members[1:])
    with pytest.raises(BbansError, match="lead out of the folder"):
        folders.restore(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_a_corrupt_folder_is_refused_and_leaves_nothing(folder, tmp_path):
    blob, _ = folders.compress(folder)
    members = folders.members(container.read(blob))
    flipped = blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:]
    bad_member = members[0][1][:-1] + bytes([members[0][1][-1] ^ 1])
    nested = rebuilt(blob, members[:1] + [("inner", blob)])
    for bad, message in [(flipped, "checksum"), (blob[:-1], "checksum"),
                         (rebuilt(blob, members + [members[0]]), "twice"),
                         (rebuilt(blob, members[1:]), "do not add up"),
                         (nested, "do not add up, or one is a folder"),
                         (rebuilt(blob, [(members[0][0], bad_member)] + members[1:]), "corrupt|checksum")]:
        with pytest.raises(BbansError, match=message):
            folders.restore(bad, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # no temporary folder left
    size = container.read(blob).size
    with pytest.raises(BbansError, match="do not add up"):
        folders.restore(Container(**{**container.read(blob).__dict__, "size": size + 1}).to_bytes(), None)
