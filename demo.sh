#!/usr/bin/env bash
# Sets up .venv, then the main job: compress and restore the MNIST test set (binarized
# and 8-bit) and the Fashion-MNIST test set with the default models and the 8-bit MNIST
# set with the VQ-VAE, and the benchmark
# against the classical codecs on all three data sets.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
export BBANS_DATA="${BBANS_DATA:-../shared/data}"
out=$(mktemp -d)
.venv/bin/python -c "
import numpy as np, sys
from bbans.measure import mnist_test
np.save(sys.argv[1] + '/binarized.npy', mnist_test('mnist-binarized', 10000))
np.save(sys.argv[1] + '/digits.npy', mnist_test('mnist', 10000))
np.save(sys.argv[1] + '/clothes.npy', mnist_test('fashion-mnist', 10000))" "$out"
for job in "binarized" "digits" "clothes" "digits --model vqvae-8bit"; do
  f=${job%% *}
  options=${job#"$f"}
  cp "$out/$f.npy" "$out/$f.orig.npy"
  .venv/bin/bbans compress "$out/$f.npy" $options | sed "s|$out/||g"
  rm "$out/$f.npy"
  .venv/bin/bbans decompress "$out/$f.npy.bbans" | sed "s|$out/||g"
  cmp "$out/$f.npy" "$out/$f.orig.npy" && echo "$f.npy restored byte for byte"
  rm "$out/$f.npy.bbans" "$out/$f.orig.npy"
done
rm -r "$out"
.venv/bin/bbans bench
