"""Every product kernel this machine runs exactly writes the same file with every model."""
import hashlib

import pytest

from bbans import api
from bbans.bench import mnist_test, npy_bytes
from models import intnet
from models.zoo import ZOO, is_codec


@pytest.mark.parametrize("model", [m for m in ZOO if is_codec(m)])
def test_every_kernel_writes_the_same_file_and_reads_the_others(data, model, monkeypatch):
    images = mnist_test("mnist-binarized" if ZOO[model]["binarized"] else ZOO[model]["data"], 40)
    original = npy_bytes(images)
    kernels, files = intnet.exact_kernels(), {}
    for k in kernels:
        monkeypatch.setattr(intnet, "kernel", lambda k=k: k)
        api.fingerprint.cache_clear()
        files[k.name] = api.compress(original, model=model, chunk_images=16)[0]
    api.fingerprint.cache_clear()
    assert len(files) >= 2 and len({hashlib.sha256(f).digest() for f in files.values()}) == 1
    for k in kernels:  # and each decodes what another made
        monkeypatch.setattr(intnet, "kernel", lambda k=k: k)
        assert api.decompress(files[kernels[0].name])[0] == original
