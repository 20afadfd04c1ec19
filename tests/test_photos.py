"""benchmarks/photos.py: a folder of photos against JPEG-XL, WebP and PNG, per photo and in total."""
import json

import imagecodecs
import numpy as np

from benchmarks import photos


def test_every_photo_and_the_total_are_measured_against_each_codec(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, shape in (("a.png", (40, 50, 3)), ("b.png", (30, 20, 4))):
        image = np.clip(rng.integers(0, 256, (1, 1, shape[2])) + rng.integers(-5, 6, shape).cumsum(1), 0, 255)
        (tmp_path / name).write_bytes(imagecodecs.png_encode(image.astype(np.uint8)))
    (tmp_path / "notes.txt").write_text("not a photo")
    status = photos.main([str(tmp_path), "--json", str(tmp_path / "rows.json")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["photo"] for r in rows] == ["a.png", "b.png"] and rows[1]["shape"] == [30, 20, 4]
    assert all(r[c] > 0 for r in rows for c in photos.CODECS)
    assert rows[0]["model alone"] > 0 and rows[1]["model alone"] is None  # vae-cifar codes RGB, not RGBA
    assert status == (1 if any(r["bbans_bytes"] > r["jpeg-xl e9"] for r in rows) else 0)
    assert "| total (2) |" in capsys.readouterr().out
