"""Compress and decompress whole files: images go to a model of the zoo (a VAE with
bits-back, or a VQ-VAE) chunk by chunk, each chunk to a classical codec instead where
that is smaller (bbans.classical); anything else to xz; what nothing shrinks is stored
as it is."""
import functools
import hashlib
import io
import struct
import time
from collections import Counter

import numpy as np

from bbans import chunks, classical, container, files, formats
from bbans.codecs.vae import BitSwapCodec, VAECodec
from bbans.codecs.vq import VQCodec
from bbans.container import Container
from bbans.errors import BbansError
from bbans.models import zoo

# Up to this size the fallback is tried too and the smaller file kept; beyond it, image
# files go to the model (bits-back has paid its start-up cost long before).
COMPARE_LIMIT = 1 << 20
PROBE_IMAGES = 64  # the default model for a data set is the one that codes these first images smallest
METHODS = {"vae": "bbans-vae", "vqvae": "bbans-vq", "hvae": "bbans-bitswap"}  # the zoo's kinds of model
LATENT_BITS = struct.Struct(">Q")  # ahead of a VQ-VAE message: the bits its codes take


def _blocks(data, images: formats.Images, size: int):
    """The images, `size` at a time; the pages of each block of a memory-mapped file go
    once it has been used."""
    for a, b in chunks.bounds(len(images.pixels), size):
        yield images.pixels[a:b]
        files.release(data, images.offset + a * formats.PIXELS, images.offset + b * formats.PIXELS)


def _scan(data, images: formats.Images):
    """One pass over the images, a chunk at a time: whether every value is 0 or 1, and
    the SHA-256 that decompression checks, of the header bytes and the pixels (for npy,
    idx and PGM the file itself, for PNG its shape and pixels)."""
    sha, binary = hashlib.sha256(images.meta), True
    for block in _blocks(data, images, chunks.CHUNK_IMAGES):
        sha.update(block)
        binary = binary and int(block.max(initial=0)) <= 1
    return binary, sha.digest()


def pick_model(binary: bool, name=None, sample=None) -> str:
    """The model for images whose values are all 0 or 1 (`binary`) or not: `name`, or of
    the default models for such images (one per data set) the one that codes `sample`,
    the first images, smallest."""
    if name is None:
        defaults = zoo.DEFAULTS["binary" if binary else "8bit"]
        return min(defaults, key=lambda d: len(_encode(d, sample))) if len(defaults) > 1 else defaults[0]
    if zoo.ZOO[zoo.known(name)]["binarized"] and not binary:
        raise BbansError(f"model {name} codes binary images, and this input has values above 1")
    return name


def _bytes_box(method: str, data, payload: bytes) -> Container:
    """The container of a file that no model codes: xz or stored."""
    return Container(method, "bytes", len(data), hashlib.sha256(data).digest(), 0, "", b"",
                     container.bytes_fingerprint(method, container.VERSION), b"", payload)


STORED_HEADER = len(_bytes_box("stored", b"", b"").to_bytes())  # bytes a stored file adds


def _xz(data):
    start = time.perf_counter()
    payload = classical.xz(data)
    return _bytes_box("xz", data, payload), time.perf_counter() - start, {}


def _stored(data):
    start = time.perf_counter()
    return _bytes_box("stored", data, bytes(data)), time.perf_counter() - start, {}


def _encode(name: str, pixels: np.ndarray, version: int = container.VERSION, costs: Counter = None) -> bytes:
    """The payload for images (N, 784) coded with model NAME of the zoo, as format
    `version` codes them (earlier ones only to check a file's fingerprint). With `costs`,
    adds to it what the coding cost, as _coder_figures takes it."""
    model, _ = _load(name, version)
    if zoo.kind(name) == "vqvae":
        words, latent_bits = VQCodec(model).encode(pixels)
        if costs is not None:
            costs.update(latent_bits=latent_bits, bits=32 * len(words))
        return LATENT_BITS.pack(latent_bits) + words.astype("<u4").tobytes()
    return _vae_codec(METHODS[zoo.kind(name)], model, version).encode(pixels, costs).astype("<u4").tobytes()


def _coder_figures(name: str, costs: Counter, dims: int) -> dict:
    """The model's figures on the input as the coder found them, at no extra cost: a
    VAE's -ELBO (one sample of z per image, on the coder's grid, with its networks on
    integers; the first images of each chunk left out, which pop nothing), a VQ-VAE's
    cost and its parts (the whole message); and, for comparison, the figures of the
    model's card on its test set."""
    if "latent_bits" in costs:
        out = dict(model_bits_per_dim=costs["bits"] / dims, latent_bits_per_dim=costs["latent_bits"] / dims,
                   pixel_bits_per_dim=(costs["bits"] - costs["latent_bits"]) / dims)
    elif costs["images"]:
        out = dict(neg_elbo_bits_per_dim=costs["bits"] / (costs["images"] * formats.PIXELS), elbo_images=costs["images"])
    else:
        out = {}
    tested = zoo.card(name)
    return dict(out, figures="coder", **{k: tested[k] for k in ("test_neg_elbo_bits_per_dim", "test_model_bits_per_dim",
                                                                "test_nll_bits_per_dim") if k in tested})


def _load(name: str, version: int = container.VERSION):
    """(model NAME's exact form for the codecs, its weights hash) as format `version`
    computes: its MLPs on integers from version 4 on, on float64 grids before."""
    return zoo.load(name, integer=version >= 4)


def _vae_codec(method: str, model, version: int) -> VAECodec:
    return BitSwapCodec(model, version=version) if method == "bbans-bitswap" else VAECodec(model, version=version)


def probe(binary: bool) -> np.ndarray:
    """A fixed input for the fingerprint: four striped grey images with zeros among them,
    made by integer arithmetic alone (binarized for a binary model)."""
    k, i, j = np.ix_(range(4), range(28), range(28))
    x = np.where((i + 2 * j + k) % 4 == 0, 0, ((i * (k + 3) + j * (2 * k + 5)) * 37 + 11 * k) % 256)
    return (x > 127 if binary else x).reshape(4, formats.PIXELS).astype(np.uint8)


@functools.cache
def fingerprint(name: str, version: int = container.VERSION) -> bytes:
    """What this environment's model NAME makes of the probe in format `version`: the
    first half of the SHA-256 of the coder's output (from version 3 on, after the version
    byte, so that a changed version byte is caught even where the coding is the same). It
    differs wherever the probabilities do."""
    prefix = bytes([version]) if version > 2 else b""
    return hashlib.sha256(prefix + _encode(name, probe(zoo.ZOO[name]["binarized"]), version)).digest()[:16]


def _encode_job(job):
    """(codec, payload, costs) of one chunk: the model's message, or a classical codec's
    where that is smaller (bbans.classical)."""
    name, pixels = job
    costs = Counter()
    return *classical.choose(pixels, _encode(name, pixels, costs=costs)), costs


def _model(data, images: formats.Images, sha: bytes, name: str, chunk_images: int, workers: chunks.Workers,
           progress):
    _, weights_hash = _load(name)
    mark, n = fingerprint(name), len(images.pixels)
    workers.ready()
    start = time.perf_counter()
    sent = []  # (images, SHA-256 of the pixels) of each chunk, as it goes to be coded

    def jobs():
        for block in _blocks(data, images, chunk_images):
            pixels = np.array(block)  # a copy, so that the input's pages can go
            sent.append((len(pixels), chunks.pixel_sha(pixels)))
            yield name, pixels

    parts, done, bits, costs, used = [], 0, 0, Counter(), Counter()
    for codec, message, cost in workers.map(_encode_job, jobs()):
        count, pixel_sha = sent[len(parts)]
        parts.append(chunks.Chunk(count, message, pixel_sha, codec))
        done, bits = done + count, bits + 8 * len(message)
        costs.update(cost)
        used[classical.name(codec, name)] += 1
        progress(done, n, bits)
    seconds = time.perf_counter() - start
    return Container(METHODS[zoo.kind(name)], images.layout, len(data), sha, n, name, bytes.fromhex(weights_hash)[:16],
                     mark, images.meta, chunks.pack(parts)), seconds, \
        dict(_coder_figures(name, costs, images.pixels.size), chunk_codecs=dict(used))


def no_progress(done: int, total: int, bits: int):
    pass


def compress(data, model=None, full_figures=False, nll_samples=100, nll_images=None, chunk_images=chunks.CHUNK_IMAGES,
             workers=1, scheduler=None, progress=no_progress):
    """(container bytes, report) for the file `data` (bytes, or a memory map of a large
    file: it is read a chunk at a time). `model` forces a model of the zoo for image
    input. The report gives the model's figures on the input as the coder found them
    (_coder_figures); with `full_figures`, the float model's instead (bbans.models.zoo.figures:
    a VAE's -ELBO on every image and, unless `nll_samples` is 0, its importance-weighted
    NLL bound with that many samples on `nll_images` of them, default all; a VQ-VAE's
    cost and its parts), which takes several times as long as the coding. Images are coded
    in independent chunks of `chunk_images`, by `workers` processes or on the Dask
    `scheduler` (tcp://host:port); the file does not depend on either. After each chunk
    `progress(images done, images, bits so far)` is called."""
    if chunk_images < 1:
        raise BbansError("the chunk size must be at least one image")
    images = formats.parse(data)
    if model and images is None:
        raise BbansError("--model applies to files of 28x28 grey images (npy, idx, pgm, png); this is not one")
    candidates = []
    if images is not None:
        binary, sha = _scan(data, images)
        name = pick_model(binary, model, np.array(images.pixels[:PROBE_IMAGES]))
        count = len(chunks.bounds(len(images.pixels), chunk_images))
        with chunks.Workers(workers, scheduler, count, functools.partial(_load, name)) as pool:
            candidates.append(_model(data, images, sha, name, chunk_images, pool, progress))
    if images is None or (not model and len(data) <= COMPARE_LIMIT):
        candidates.append(_xz(data))
    blob, box, seconds, coded = min(((c.to_bytes(), c, s, f) for c, s, f in candidates), key=lambda e: len(e[0]))
    if not model and len(blob) > len(data) + STORED_HEADER:  # nothing shrinks it: stored as it is
        box, seconds, coded = _stored(data)
        blob = box.to_bytes()
    dims = images.pixels.size if images is not None else len(data)
    report = dict(method=box.method, model=box.model or None, layout=images.layout if images else "bytes",
                  n_images=len(images.pixels) if images else 0, n_dims=dims, original_bytes=len(data),
                  compressed_bytes=len(blob), bits_per_dim=8 * len(blob) / max(dims, 1), seconds=seconds,
                  chunks=len(chunks.bounds(len(images.pixels), chunk_images)) if box.model else 0,
                  chunk_codecs=coded.pop("chunk_codecs", {}))
    if full_figures and box.model:
        start = time.perf_counter()
        report.update(zoo.figures(box.model, images.pixels, nll_samples, nll_images), figures="full",
                      figures_seconds=time.perf_counter() - start)
    else:
        report.update(coded)
    return blob, report


def decompress(blob: bytes, workers: int = 1, scheduler=None, progress=no_progress):
    """(original file bytes, report): decompress_to in memory."""
    out = io.BytesIO()
    report = decompress_to(blob, out, workers, scheduler, progress)
    return out.getvalue(), report


def decompress_to(blob: bytes, out, workers: int = 1, scheduler=None, progress=no_progress) -> dict:
    """Writes the original of `blob` to the binary file `out` and returns a report;
    raises BbansError unless it checks out exactly, in which case what `out` got must be
    thrown away. npy, idx and PGM images are written a chunk at a time. Chunks are decoded
    by `workers` processes, or on the Dask `scheduler`; after each one `progress(images
    done, images, payload bits so far)` is called."""
    box = container.read(blob)
    if not box.model:
        start = time.perf_counter()
        data = classical.unxz(box.payload, box.size) if box.method == "xz" else _unstored(box)
        sha = hashlib.sha256(data).digest()
        out.write(data)
    else:  # the checksum is of the header bytes and the pixels, as compress took it
        parts = _chunks(box)
        with chunks.Workers(workers, scheduler, len(parts), functools.partial(_load, box.model, box.version)) as pool:
            _check_model(box)
            pool.ready()
            start = time.perf_counter()
            sha = _write_images(box, _decoded_chunks(box, parts, pool, progress), out)
    seconds = time.perf_counter() - start
    if sha != box.sha256:
        raise BbansError("checksum mismatch: the file is corrupt; nothing written")
    return dict(method=box.method, model=box.model or None, layout=box.layout, n_images=box.images,
                original_bytes=box.size, seconds=seconds)


def _write_images(box: Container, decoded, out) -> bytes:
    """Writes the file of the decoded chunks' pixels; the SHA-256 of the header bytes and
    the pixels, as compress took it."""
    hashed = hashlib.sha256(box.meta)
    if box.layout == "png":
        pixels = np.concatenate(list(decoded))
        hashed.update(pixels)
        out.write(formats.restore("png", box.meta, pixels))
    else:
        out.write(box.meta)
        for pixels in decoded:
            hashed.update(pixels)
            out.write(pixels)
    return hashed.digest()


def _unstored(box: Container) -> bytes:
    if len(box.payload) != box.size:
        raise BbansError("corrupt payload (the stored file is not of the size the header gives)")
    return box.payload


def _check_model(box: Container):
    """Checks the header of a model's container, and that this environment's model is
    the one that made it."""
    pixels = box.images * formats.PIXELS
    if box.layout == "png":
        consistent = len(box.meta) == 8 and np.prod(struct.unpack(">II", box.meta)) == pixels
    else:
        consistent = pixels + len(box.meta) == box.size
    # No image costs less than 1/64 byte (with a model; a classical chunk takes at least
    # 0.12, xz on blank images), so a count beyond that is a corrupt header (and would
    # otherwise size an allocation).
    if box.images == 0 or not consistent or box.images > 64 * (len(box.payload) + 1):
        raise BbansError("corrupt header (image count does not match the sizes)")
    # A header file is rebuilt as meta + pixels, and must read back as its own layout,
    # whatever the pixels (a PNG is written from the layout's own fields).
    if box.layout != "png" and not formats.header_fits(box.layout, box.meta, pixels):
        raise BbansError("corrupt header (the layout's header bytes do not fit)")
    if box.model in zoo.ZOO and METHODS.get(zoo.kind(box.model)) != box.method:
        raise BbansError(f"corrupt header (method {box.method} with model {box.model!r})")
    _, weights_hash = _load(box.model, box.version)
    if bytes.fromhex(weights_hash)[:16] != box.model_hash:
        raise BbansError(f"this file was made with other weights of model {box.model} "
                         f"({box.model_hash.hex()}…, this bbans has {weights_hash[:32]}…)")
    here = fingerprint(box.model, box.version)
    if box.version > 1 and box.fingerprint != here:  # version 1 files have none
        raise BbansError(f"this file was made in an environment whose model outputs differ: its probe fingerprint "
                         f"is {box.fingerprint.hex()}, here it is {here.hex()}; nothing decoded")


def _chunks(box: Container):
    """A model container's chunks; a version 1 file holds one message and no table (its
    whole-file checksum stands for the chunk's)."""
    if box.version == 1:
        return [chunks.Chunk(box.images, box.payload, b"")]
    parts = chunks.unpack(box.payload, box.images, box.version)
    if any(c.codec and c.codec not in classical.CODECS for c in parts):
        raise BbansError("corrupt chunk table (unknown codec)")
    return parts


def _decoded_chunks(box: Container, parts, workers: chunks.Workers, progress):
    """The pixels of each chunk in order, each checked against its checksum where it
    was decoded."""
    jobs = ((box.method, box.model, c.codec, c.payload, c.images, box.version, c.sha256,
             f"chunk {i + 1} of {len(parts)}") for i, c in enumerate(parts))
    done, bits = 0, 0
    for part, pixels in zip(parts, workers.map(_decode_job, jobs)):
        done, bits = done + part.images, bits + 8 * len(part.payload)
        progress(done, box.images, bits)
        yield pixels


def _decode_job(job) -> np.ndarray:
    """The pixels of one chunk, checked against its checksum (none in version 1 files)."""
    method, name, codec, payload, n, version, sha, where = job
    pixels = classical.decode(codec, payload, n) if codec else _decoded(method, name, payload, n, version)
    if sha and chunks.pixel_sha(pixels) != sha:
        raise BbansError(f"checksum mismatch in {where}: the file is corrupt; nothing written")
    return pixels


def _decoded(method: str, name: str, payload: bytes, n: int, version: int) -> np.ndarray:
    model, _ = _load(name, version)
    if method != "bbans-vq":
        return _decode_words(_vae_codec(method, model, version).decode, payload, n)
    if len(payload) < LATENT_BITS.size:
        raise BbansError("truncated or corrupt payload")
    images, latent_bits = _decode_words(VQCodec(model).decode, payload[LATENT_BITS.size:], n)
    if latent_bits != LATENT_BITS.unpack_from(payload)[0]:
        raise BbansError("corrupt payload (the bit count of the codes does not match)")
    return images


def _decode_words(decode, payload: bytes, n: int):
    if len(payload) % 4:
        raise BbansError("truncated or corrupt payload")
    words = np.frombuffer(payload, "<u4").astype(np.uint32)
    try:
        return decode(words, n)
    except BbansError:
        raise
    except Exception as e:  # a corrupt message can drive the coder anywhere
        raise BbansError(f"corrupt payload ({type(e).__name__})") from None


def info(blob: bytes) -> dict:
    box = container.read(blob)
    dims = box.images * formats.PIXELS if box.images else box.size
    parts = _chunks(box) if box.model else []
    split = {}
    if box.method == "bbans-vq" and all(len(c.payload) >= LATENT_BITS.size and not c.codec for c in parts):
        latent_bits = sum(LATENT_BITS.unpack_from(c.payload)[0] for c in parts)
        pixel_bits = 8 * sum(len(c.payload) - LATENT_BITS.size for c in parts) - latent_bits
        split = dict(latent_bits_per_dim=latent_bits / dims, pixel_bits_per_dim=pixel_bits / dims)
    return dict(method=box.method, model=box.model or None, model_hash=box.model_hash.hex() if box.images else None,
                layout=box.layout, restores="pixel-exact PNG" if box.layout == "png" else "byte-exact",
                n_images=box.images, chunks=len(parts),
                chunk_codecs=dict(Counter(classical.name(c.codec, box.model) for c in parts)),
                original_bytes=box.size, compressed_bytes=len(blob),
                bits_per_dim=8 * len(blob) / max(dims, 1), **split, sha256=box.sha256.hex())
