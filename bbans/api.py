"""Compress and decompress whole files: 28x28 grey and 32x32 RGB images go to a model of
the zoo (a VAE with bits-back, or a VQ-VAE) chunk by chunk, each chunk to a classical codec instead
where that is smaller (bbans.classical); grey and RGB images of other sizes the same way, in
the model's tiles (bbans.tiles), large ones in bands of rows (bbans.chunks); images with
alpha to the classical codecs, chunk by chunk; anything else to xz; what nothing shrinks
is stored as it is."""
import functools
import hashlib
import io
import struct
import time
from collections import Counter

import numpy as np

from bbans import chunks, classical, container, files, formats, messages
from bbans.container import Container
from bbans.errors import BbansError
from bbans.models import zoo

# Up to this size the fallback is tried too and the smaller file kept; beyond it, image
# files go to the model (bits-back has paid its start-up cost long before).
COMPARE_LIMIT = 1 << 20
PROBE_IMAGES = 64  # the default model for a data set is the one that codes these images smallest, evenly spaced
FAR = 1.5  # a model's rate on an input this many times its test-set rate is warned of
MODEL_ONLY = "applies to files of images (npy, idx, PGM, PNG, PPM)"
PROBE_SIDE = 112  # of the top-left crop of an image of another size that the defaults are tried on
SIZE = struct.Struct(">Q")  # of a PNG file, where its checksum covers it


def _blocks(data, images: formats.Images, size: int):
    """The images, `size` at a time; the pages of each block of a memory-mapped file go
    once it has been used."""
    image_bytes = images.pixels.shape[1]
    for a, b in chunks.bounds(len(images.pixels), size):
        yield images.pixels[a:b]
        files.release(data, images.offset + a * image_bytes, images.offset + b * image_bytes)


def _image_hash(layout: str, size: int, meta: bytes, version: int = container.VERSION):
    """The SHA-256 of a file of images, to be fed its pixels: of its header bytes, and for
    PNG from format version 7 on also of the file's size (a PNG is rebuilt, not restored
    byte for byte, so nothing else checks that field)."""
    return hashlib.sha256((SIZE.pack(size) if layout == "png" and version >= 7 else b"") + meta)


def _scan(data, images: formats.Images):
    """One pass over the images, a chunk at a time: whether every value is 0 or 1, and
    the SHA-256 that decompression checks, of the header bytes and the pixels (for npy,
    idx, PGM and PPM the file itself, for PNG its shape and pixels)."""
    sha, binary = _image_hash(images.layout, len(data), images.meta), True
    for block in _blocks(data, images, chunks.chunk_images(None, images.pixels.shape[1])):
        sha.update(block)
        binary = binary and int(block.max(initial=0)) <= 1
    return binary, sha.digest()


def pick_model(binary: bool, name=None, sample=None, shape=formats.MODEL_SHAPE):
    """The model for images of `shape` whose values are all 0 or 1 (`binary`) or not:
    `name`, or of the default models for such images (one per data set; None where there
    are none) the one that codes `sample()`, (images (n, dims), their shape) from the
    file, smallest."""
    if name is None:
        defaults = zoo.defaults(shape, binary)
        if len(defaults) < 2:
            return defaults[0] if defaults else None
        pixels, sample_shape = sample()
        return min(defaults, key=lambda d: len(messages.encode(d, pixels, shape=sample_shape)))
    if not zoo.codes(zoo.known(name), shape):
        tiled = " (or of any size with its channels)" if zoo.kind(name) in zoo.TILED else ""
        raise BbansError(f"model {name} codes images of {zoo.shape_text(zoo.shape(name))}{tiled}, and these are "
                         f"{zoo.shape_text(shape)}")
    if zoo.recipe(name)["binarized"] and not binary:
        raise BbansError(f"model {name} codes binary images, and this input has values above 1")
    return name


def _probe(images: formats.Images):
    """(pixels, shape) of a sample of the images that the default models are tried on:
    PROBE_IMAGES of them, evenly spaced, or of another size than the models' the top-left
    crop of the first, up to PROBE_SIDE square."""
    n = len(images.pixels)
    if images.shape in zoo.MODEL_SHAPES:
        return images.pixels[np.linspace(0, n - 1, min(n, PROBE_IMAGES)).astype(int)], images.shape
    height, width, channels = images.shape
    crop = (min(height, PROBE_SIDE), min(width, PROBE_SIDE), channels)
    first = np.asarray(images.pixels[0]).reshape(images.shape)[:crop[0], :crop[1]]
    return first.reshape(1, -1), crop


def _bytes_box(method: str, data, payload: bytes) -> Container:
    """The container of a file that is not images: xz, stored or a recoded JPEG."""
    return Container(method, "bytes", len(data), hashlib.sha256(data).digest(), 0, "", b"",
                     container.method_fingerprint(method, container.VERSION), b"", payload)


STORED_HEADER = len(_bytes_box("stored", b"", b"").to_bytes())  # bytes a stored file adds


def _unstored(payload: bytes, size: int) -> bytes:
    if len(payload) != size:
        raise BbansError("corrupt payload (the stored file is not of the size the header gives)")
    return payload


# The methods for files that are not images: (the payload of a file's bytes, None where
# the method does not take them; the file of a payload and the file's size)
BYTE_CODERS = {"xz": (classical.xz, classical.unxz), "jpeg-recoded": (classical.recode_jpeg, classical.restore_jpeg),
               "stored": (bytes, _unstored)}


def _as_bytes(method: str, data):
    """(container, seconds, figures) of the file's bytes coded with a method of
    BYTE_CODERS; None where it does not take them."""
    start = time.perf_counter()
    payload = BYTE_CODERS[method][0](data)
    return None if payload is None else (_bytes_box(method, data, payload), time.perf_counter() - start, {})


def _encode_job(job):
    """(codec, payload, costs) of one chunk: the model's message (where there is a model),
    or a classical codec's where that is smaller (bbans.classical) and not `model_only`."""
    name, pixels, shape, model_only = job
    costs = Counter()
    message = messages.encode(name, pixels, costs=costs, shape=shape) if name else None
    return *((0, message) if model_only and name else classical.choose(pixels, shape, message)), costs


def _header(name):
    """(method, fingerprint, model hash) of a container of images coded by model `name`,
    or by the classical codecs alone (None)."""
    if name is None:
        return "pixels", container.method_fingerprint("pixels", container.VERSION), b""
    return messages.METHODS[zoo.kind(name)], messages.fingerprint(name), bytes.fromhex(messages.load(name)[1])[:16]


def _chunked(data, images: formats.Images, sha: bytes, name, pieces, workers: chunks.Workers, progress,
             model_only: bool = False):
    """The container of images coded chunk by chunk (chunks.Piece each) with model `name`
    (None: with the classical codecs alone; `model_only`: with the model even where a
    classical codec is smaller), its coding time and figures."""
    n, image_bytes = len(images.pixels), images.pixels.shape[1]
    workers.ready()
    start = time.perf_counter()
    sent = []  # (images, SHA-256 of the pixels, their bytes) of each chunk, as it goes to be coded

    def jobs():
        for piece in pieces:
            pixels = np.array(piece.pixels(images.pixels, images.shape))  # a copy, so that the input's pages can go
            offset = images.offset + piece.offset(images.shape)
            files.release(data, offset, offset + pixels.size)
            sent.append((len(pixels), chunks.pixel_sha(pixels), pixels.size))
            yield name, pixels, piece.shape(images.shape), model_only

    parts, done, bits, costs, used = [], 0, 0, Counter(), Counter()
    for codec, message, cost in workers.map(_encode_job, jobs()):
        count, pixel_sha, size = sent[len(parts)]
        parts.append(chunks.Chunk(count, message, pixel_sha, codec))
        done, bits = done + size, bits + 8 * len(message)
        costs.update(cost)
        used[classical.name(codec, name)] += 1
        progress(done // image_bytes, n, bits, done)
    seconds = time.perf_counter() - start
    if name and images.shape not in zoo.MODEL_SHAPES and all(c.codec for c in parts):
        name = None  # the classical codecs took every chunk: a file that decodes without the model
    method, mark, model_hash = _header(name)
    figures = messages.coder_figures(name, costs, images.pixels.size) if name else {}
    return Container(method, images.layout, len(data), sha, n, zoo.recorded(name) if name else "", model_hash, mark,
                     images.meta,
                     chunks.pack(parts)), seconds, dict(figures, chunk_codecs=dict(used),
                                                        warnings=_warnings(name, used, figures, model_only) if name else [])


def _warnings(name: str, used: Counter, figures: dict, model_only: bool) -> list:
    """What a user of model `name` should know: chunks it coded larger than a classical
    codec (they went to that codec), and a rate far above its rate on its test set."""
    out, elsewhere = [], {codec: count for codec, count in used.items() if codec != name}
    if elsewhere:
        out.append(f"model {name} coded {sum(elsewhere.values())} of {sum(used.values())} chunks larger than a "
                   f"classical codec, which took them instead ({', '.join(f'{k} to {c}' for c, k in elsewhere.items())})")
    rate, tested = (next((figures[p + k] for k in ("neg_elbo_bits_per_dim", "model_bits_per_dim", "nll_bits_per_dim")
                          if p + k in figures), None) for p in ("", "test_"))
    if rate and tested and rate > FAR * tested:
        out.append(f"model {name} codes this input at {rate:.3f} bits/dim, {rate / tested:.1f} times its rate on its "
                   f"test set ({tested:.3f}): the input is probably not what it was trained on"
                   + ("" if elsewhere or model_only else "; it still coded every chunk smaller than the classical codecs"))
    return out


def no_progress(done: int, total: int, bits: int, dims: int):
    pass


def compress(data, model=None, full_figures=False, nll_samples=100, nll_images=None, chunk_images=None,
             workers=1, scheduler=None, progress=no_progress, model_only=False):
    """(container bytes, report) for the file `data` (bytes, or a memory map of a large
    file: it is read a chunk at a time). `model` forces a model of the zoo for image
    input. The report gives the model's figures on the input as the coder found them
    (bbans.messages.coder_figures); with `full_figures`, the float model's instead (bbans.models.zoo.figures:
    a VAE's -ELBO on every image and, unless `nll_samples` is 0, its importance-weighted
    NLL bound with that many samples on `nll_images` of them, default all; a VQ-VAE's
    cost and its parts), which takes several times as long as the coding. Images are coded
    in independent chunks of `chunk_images`, by `workers` processes or on the Dask
    `scheduler` (tcp://host:port); the file does not depend on either. Grey and RGB images
    of other sizes go to the models in their tiles, images with alpha to the classical
    codecs alone. `chunk_images` None: chunks of 7.8 MB of pixels (10,000 28x28 images),
    an image larger than that in bands of rows. After each chunk `progress(images done,
    images, bits so far, pixels done)` is called. `model_only`: every chunk in the model's
    message, however large, to set what the model codes beside its figures."""
    if chunk_images is not None and chunk_images < 1:
        raise BbansError("the chunk size must be at least one image")
    model = zoo.model_name(model) if model else None
    images = formats.parse(data)
    if (model or model_only) and images is None:
        raise BbansError(f"--model{'-only' if model_only else ''} {MODEL_ONLY}; this is not one")
    candidates, name, count = [], None, 0
    if images is not None:
        binary, sha = _scan(data, images)
        name = pick_model(binary, model, lambda: _probe(images), images.shape)
        if model_only and name is None:
            raise BbansError(f"--model-only: no model of the zoo codes images of {'x'.join(map(str, images.shape))} "
                             "(height x width x channels)")
        pieces = chunks.plan(len(images.pixels), images.shape, chunk_images)
        count = len(pieces)
        with chunks.Workers(workers, scheduler, count, functools.partial(messages.load, name) if name else None) as pool:
            candidates.append(_chunked(data, images, sha, name, pieces, pool, progress, model_only))
    if images is None or (not (model or model_only) and len(data) <= COMPARE_LIMIT):
        candidates += filter(None, (_as_bytes(method, data) for method in ("xz", "jpeg-recoded")))
    blob, box, seconds, coded = min(((c.to_bytes(), c, s, f) for c, s, f in candidates), key=lambda e: len(e[0]))
    if not (model or model_only) and len(blob) > len(data) + STORED_HEADER:  # nothing shrinks it: stored as it is
        box, seconds, coded = _as_bytes("stored", data)
        blob = box.to_bytes()
    warnings = coded.pop("warnings", [])
    if name and not box.images:
        warnings.append(f"the whole file went to {box.method}, smaller than model {name}'s chunks")
    dims = images.pixels.size if images is not None else len(data)
    report = dict(method=box.method, model=box.model or None, layout=images.layout if images else "bytes",
                  n_images=len(images.pixels) if images else 0, n_dims=dims, original_bytes=len(data),
                  compressed_bytes=len(blob), bits_per_dim=8 * len(blob) / max(dims, 1), seconds=seconds,
                  chunks=count if box.images else 0,
                  chunk_codecs=coded.pop("chunk_codecs", {}), warnings=warnings)
    if box.images:
        report["image_shape"] = list(images.shape)
    if full_figures and box.model:
        start = time.perf_counter()
        report.update(zoo.figures(name, images.pixels, nll_samples, nll_images), figures="full",
                      figures_seconds=time.perf_counter() - start)
    else:
        report.update(coded)
    return blob, report


def decompress(blob: bytes, workers: int = 1, scheduler=None, progress=no_progress, model=None):
    """(original file bytes, report): decompress_to in memory."""
    out = io.BytesIO()
    report = decompress_to(blob, out, workers, scheduler, progress, model)
    return out.getvalue(), report


def decompress_to(blob: bytes, out, workers: int = 1, scheduler=None, progress=no_progress, model=None) -> dict:
    """Writes the original of `blob` to the binary file `out` and returns a report;
    raises BbansError unless it checks out exactly, in which case what `out` got must be
    thrown away. npy, idx, PGM and PPM images are written a chunk at a time. Chunks are
    decoded by `workers` processes, or on the Dask `scheduler`; after each one
    `progress(images done, images, payload bits so far, pixels done)` is called. A file
    made with a model file (`bbans train --data`) needs that file, `model`."""
    box = container.read(blob)
    if zoo.is_file(box.model):
        if model is None:
            raise BbansError(f"this file was made with the model file {box.model[len(zoo.FILE_PREFIX):]}; "
                             f"give it with --model FILE")
        box.model = zoo.from_file(model)  # its weights are checked against the file's (messages.check)
    if box.method == "folder":
        raise BbansError("this .bbans file holds a folder; restore it with bbans decompress (decompress_file)")
    if box.method in BYTE_CODERS:
        start = time.perf_counter()
        data = BYTE_CODERS[box.method][1](box.payload, box.size)
        sha = hashlib.sha256(data).digest()
        out.write(data)
    else:  # the checksum is of the header bytes and the pixels, as compress took it
        shape = _check_images(box)
        parts = _chunks(box, shape)
        warm = functools.partial(messages.load, box.model, box.version) if box.model else None
        with chunks.Workers(workers, scheduler, len(parts), warm) as pool:
            messages.check(box)
            pool.ready()
            start = time.perf_counter()
            sha = _write_images(box, _decoded_chunks(box, parts, shape, pool, progress), out)
    seconds = time.perf_counter() - start
    if sha != box.sha256:
        raise BbansError("checksum mismatch: the file is corrupt; nothing written")
    return dict(method=box.method, model=box.model or None, layout=box.layout, n_images=box.images,
                n_dims=_dims(box), original_bytes=box.size, seconds=seconds)


def _write_images(box: Container, decoded, out) -> bytes:
    """Writes the file of the decoded chunks' pixels; the SHA-256 of the header bytes and
    the pixels, as compress took it."""
    hashed = _image_hash(box.layout, box.size, box.meta, box.version)
    if box.layout == "png":  # the chunks' pixels are whole images, or bands of them
        pixels = np.concatenate([p.reshape(-1) for p in decoded]).reshape(box.images, -1)
        hashed.update(pixels)
        out.write(formats.restore("png", box.meta, pixels))
    else:
        out.write(box.meta)
        for pixels in decoded:
            hashed.update(pixels)
            out.write(pixels)
    return hashed.digest()


def _check_images(box: Container, resolved: bool = True):
    """Checks the header of a container of images; the shape of one image. A header file
    is rebuilt as meta + pixels, and must read back as its own layout, whatever the
    pixels (a PNG is written from the layout's own fields). Unless `resolved` (a model
    file not at hand), the images are checked to be of the model's shape."""
    framed = formats.frame(box.layout, box.meta)
    if framed is None:
        raise BbansError("corrupt header (the layout's header bytes do not fit)")
    count, shape = framed
    image_bytes = int(np.prod(shape))
    # No 28x28 image costs less than 1/64 byte (with a model; a classical chunk takes at
    # least 0.12, xz on blank images), so a count beyond that is a corrupt header (and
    # would otherwise size an allocation); no chunk of larger images holds more than
    # CHUNK_BYTES of them (bbans.chunks.chunk_images).
    if count != box.images or (box.layout != "png" and len(box.meta) + count * image_bytes != box.size) \
            or (shape == formats.MODEL_SHAPE and box.images > 64 * (len(box.payload) + 1)):
        raise BbansError("corrupt header (image count does not match the sizes)")
    # Every model codes the shape of its data set, and from format version 8 on those of
    # TILED kinds any size with its channels; "pixels" has no model, and never took 28x28 grey
    # images (32x32 RGB ones it took before vae-cifar).
    fits = not box.model or not resolved or (zoo.codes(zoo.known(box.model), shape) if box.version >= 8
                                             else tuple(zoo.shape(zoo.known(box.model))) == shape)
    if (box.method == "pixels" and (box.model or shape == formats.MODEL_SHAPE)) \
            or (box.method != "pixels" and (not box.model or not fits)):
        raise BbansError(f"corrupt header (method {box.method} with images of {'x'.join(map(str, shape))})")
    return shape


def _chunks(box: Container, shape):
    """[(chunk, its chunks.Piece)] of a container of images of `shape`; a version 1 file
    holds one message and no table (its whole-file checksum stands for the chunk's)."""
    if box.version == 1:
        return [(chunks.Chunk(box.images, box.payload, b""), chunks.Piece(0, box.images, 0, shape[0]))]
    parts = chunks.unpack(box.payload, box.images, box.version)
    if any(c.codec and c.codec not in classical.CODECS for c in parts):
        raise BbansError("corrupt chunk table (unknown codec)")
    most = chunks.chunk_images(None, int(np.prod(shape)))
    if not box.model and any(c.codec == 0 or c.images > most for c in parts):
        raise BbansError("corrupt chunk table (a chunk of no codec, or too large)")
    pieces = chunks.pieces_of(parts, box.images, shape, box.version, shape != formats.MODEL_SHAPE)
    return list(zip(parts, pieces))


def _dims(box: Container) -> int:
    """The pixels of the images in a container, or the bytes of the file it holds."""
    return box.images * int(np.prod(formats.frame(box.layout, box.meta)[1])) if box.images else box.size


def _decoded_chunks(box: Container, parts, shape, workers: chunks.Workers, progress):
    """The pixels of each chunk in order, each checked against its checksum where it
    was decoded."""
    jobs = ((box.method, box.model, c.codec, c.payload, c.images, piece.shape(shape), box.version, c.sha256,
             f"chunk {i + 1} of {len(parts)}") for i, (c, piece) in enumerate(parts))
    done, bits, image_bytes = 0, 0, int(np.prod(shape))
    for (part, _), pixels in zip(parts, workers.map(_decode_job, jobs)):
        done, bits = done + pixels.size, bits + 8 * len(part.payload)
        progress(done // image_bytes, box.images, bits, done)
        yield pixels


def _decode_job(job) -> np.ndarray:
    """The pixels of one chunk, checked against its checksum (none in version 1 files)."""
    method, name, codec, payload, n, shape, version, sha, where = job
    pixels = classical.decode(codec, payload, n, shape) if codec else messages.decode(method, name, payload, n, version,
                                                                                     shape)
    if sha and chunks.pixel_sha(pixels) != sha:
        raise BbansError(f"checksum mismatch in {where}: the file is corrupt; nothing written")
    return pixels


def info(blob: bytes) -> dict:
    box = container.read(blob)
    shape = None if box.method in container.BYTE_METHODS else _check_images(box, not zoo.is_file(box.model))
    dims = _dims(box)
    parts = [c for c, _ in _chunks(box, shape)] if shape else []
    split = {}
    if box.method == "bbans-vq" and all(len(c.payload) >= messages.LATENT_BITS.size and not c.codec for c in parts):
        latent_bits = sum(messages.LATENT_BITS.unpack_from(c.payload)[0] for c in parts)
        pixel_bits = 8 * sum(len(c.payload) - messages.LATENT_BITS.size for c in parts) - latent_bits
        split = dict(latent_bits_per_dim=latent_bits / dims, pixel_bits_per_dim=pixel_bits / dims)
    return dict(method=box.method, model=box.model or None, model_hash=box.model_hash.hex() if box.model else None,
                layout=box.layout, restores="pixel-exact PNG" if box.layout == "png" else "byte-exact",
                n_images=box.images, image_shape=list(shape) if shape else None, chunks=len(parts),
                chunk_codecs=dict(Counter(classical.name(c.codec, box.model) for c in parts)),
                original_bytes=box.size, compressed_bytes=len(blob),
                bits_per_dim=8 * len(blob) / max(dims, 1), **split, sha256=box.sha256.hex())
