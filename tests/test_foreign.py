"""benchmarks/foreign.py on a few small inputs: the round trip, the allowance check, and
the comparison of restored files."""
import imagecodecs
import numpy as np

from benchmarks import foreign


def test_small_foreign_inputs_round_trip_and_stay_within_the_allowance(data):
    files = {item.name: item for item in foreign.byte_files(200)}
    mixture = next(foreign.mixtures(200))  # 100 digits then 100 clothes, a chunk each
    for item in (mixture, files["random bytes"], files["text (README + docs)"]):
        r = foreign.row(item, None, foreign.best_classical(item))  # asserts the round trip
        assert r["within"] and r["bbans_bytes"] <= r["allowance"], r
        assert sum(r["chunk_codecs"].values()) == (2 if item is mixture else 0), r


def test_a_file_larger_than_the_allowance_is_not_within():
    text = next(item for item in foreign.byte_files(2) if item.name.startswith("text"))
    r = foreign.row(text, None, ("a classical codec of 100 bytes", 100))
    assert not r["within"] and r["bbans_bytes"] > r["allowance"]


def test_a_png_counts_as_restored_when_its_pixels_are_the_same():
    image = np.arange(28 * 56, dtype=np.uint8).reshape(56, 28)
    original, other_stream = foreign.png(image), imagecodecs.png_encode(image, level=1)
    assert other_stream != original and foreign.same_file(original, other_stream)
    assert not foreign.same_file(original, foreign.png(image[::-1].copy()))
    assert not foreign.same_file(b"npy bytes", b"npy bytez")


def test_only_runs_the_inputs_it_names(data, capsys):
    assert foreign.main(["--images", "2", "--only", "random bytes"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| random bytes"]
