"""Every product kernel and head kernel this machine runs exactly writes the same file
with every model."""
import hashlib
import itertools

import pytest

from bbans import api, messages
from bbans import cards
from bbans.measure import npy_bytes
from bbans.models import grids, intnet
from bbans.models.zoo import ZOO, is_codec


@pytest.mark.parametrize("model", [m for m in ZOO if is_codec(m)])
def test_every_kernel_writes_the_same_file_and_reads_the_others(data, model, monkeypatch):
    images = cards.test_images(model)[:40]
    original = npy_bytes(images)
    setups, files = list(itertools.product(intnet.exact_kernels(), grids.head_methods())), {}

    def use(setup):
        monkeypatch.setattr(intnet, "kernel", lambda: setup[0])
        monkeypatch.setattr(grids, "head_kernel", lambda: setup[1])
        messages.fingerprint.cache_clear()

    for setup in setups:
        use(setup)
        files[setup] = api.compress(original, model=model, chunk_images=16)[0]
    messages.fingerprint.cache_clear()
    assert len(files) >= 2 and len({hashlib.sha256(f).digest() for f in files.values()}) == 1
    for setup in setups:  # and each decodes what another made
        use(setup)
        assert api.decompress(files[setups[0]])[0] == original
