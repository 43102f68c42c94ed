#!/usr/bin/env bash
# Installs what Kiln needs to build, test and run its demo on a fresh Debian 12 machine, and
# prepares the text corpus for the character-level model. Idempotent: installs only what is
# missing, regenerates the corpus only when it is absent. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  g++ cmake ninja-build make pkg-config       # toolchain
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and micro-benchmarks
  libdnnl-dev                                 # oneDNN: the GEMM/conv reference the benchmarks beat
  libopenblas-dev                             # OpenBLAS: the other GEMM reference in bench/
  zlib1g-dev                                  # gzip'd IDX files
  libtomlplusplus-dev                         # TOML configs
  nlohmann-json3-dev                          # JSON: safetensors headers, metrics, CLI output
  libonnx-dev libprotobuf-dev                 # ONNX import/export: onnx.proto, checker, shape inference
  libonnx-testdata                            # the ONNX backend node tests (conformance)
  clang libclang-rt-14-dev                    # libFuzzer for the fuzz targets (fuzz/)
  libcli11-dev                                # command-line parsing
  libopenmpi-dev openmpi-bin                  # distributed training: MPI processes under mpirun
  iproute2                                    # ip netns: the multi-host test harness
  dataset-fashion-mnist                       # the real data set
  bible-kjv                                   # King James Bible: the corpus for gpt_char
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The corpus: the whole King James Bible as plain text (about 4.3 MB), chapter headings kept,
# verse numbers stripped. Written atomically so an interrupted setup never leaves half a corpus.
root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/data/kjv.txt"
if [[ ! -s "$corpus" ]]; then
  mkdir -p "$root/data"
  bible -l0 "Ge1:1-Re22:21" | sed -E 's/^ +[0-9]+ //' > "$corpus.tmp"
  [[ $(wc -c < "$corpus.tmp") -gt 4000000 ]] || { echo "setup: corpus too small, bible-kjv output changed?" >&2; exit 1; }
  mv "$corpus.tmp" "$corpus"
fi
