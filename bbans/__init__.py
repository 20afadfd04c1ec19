"""bbans: lossless compression of images with bits-back coding and trained VAEs.

    import bbans
    blob = bbans.compress(images)        # uint8 numpy images (N, 28, 28) -> .bbans bytes
    images = bbans.decompress(blob)
    report = bbans.compress_file("digits.npy")   # writes digits.npy.bbans

The API (bbans.public) is loaded when first used, so that `import bbans.codecs` (numpy
only) does not load torch and the zoo.
"""
import importlib

__all__ = ["Report", "compress", "compress_with_report", "decompress", "compress_file", "decompress_file", "info",
           "list_models"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("bbans.public"), name)
    raise AttributeError(f"module 'bbans' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
