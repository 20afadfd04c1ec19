#!/usr/bin/env bash
# Runs a command as on a CPU with AVX2 and nothing newer (no AVX-512, no VNNI), on one
# that has more: torch's kernels, oneDNN (torch's int8 GEMM), MKL and numpy are held to
# AVX2. Under it oneDNN's int8 GEMM saturates, so IntNet's exactness check turns it
# down, as on a real AVX2 CPU, where torch runs it as a plain loop that the timing turns
# down. Example: bash benchmarks/as_avx2.sh bbans bench --json
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
export NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR AVX512FP16"
exec "$@"
