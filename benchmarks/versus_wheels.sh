#!/usr/bin/env bash
# The wheel sets versus.py's device call installs, in three folders under $1 (default /work/main/.gpu/speed/w):
#   common  bitsandbytes (only libbitsandbytes_cuda130.so kept), liger-kernel, datasets, dill, multiprocess
#   trl     trl 1.16.0
#   uns     unsloth (without studio/) and unsloth_zoo 2026.10.9, trl 1.15.0 (Unsloth caps trl there), their extras
# About 19 MB in all: the tree the device tool carries must stay under 64 MiB. Then copy src/ and benchmarks/ beside
# w/ and run benchmarks/versus_device.sh there (see benchmarks/README.md, fourth session).
set -euo pipefail
W=${1:-/work/main/.gpu/speed/w}
tmp=$(mktemp -d)
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$@"; }
mkdir -p "$W/common" "$W/trl" "$W/uns" "$tmp/raw"
dl "$W/common" liger-kernel==0.8.5 datasets==4.7.0 dill==0.4.0 multiprocess==0.70.18
dl "$W/trl" trl==1.16.0
dl "$W/uns" unsloth_zoo==2026.10.9 trl==1.15.0 msgspec tyro docstring-parser typeguard shtab torchao cut_cross_entropy \
  hf_transfer
dl "$tmp/raw" bitsandbytes==0.50.2 unsloth==2026.10.9
trim() {  # trim SRC DST REGEX: copy a wheel without the members matching REGEX (and their RECORD lines)
  python3 - "$@" <<'PY'
import re, sys, zipfile
src, dst, drop = sys.argv[1:]
keep = lambda n: not re.search(drop, n)
with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
    for i in zi.infolist():
        if not keep(i.filename):
            continue
        data = zi.read(i.filename)
        if i.filename.endswith(".dist-info/RECORD"):  # no blank lines: pip's RECORD reader fails on them
            data = b"".join(l + b"\n" for l in data.split(b"\n") if l.strip() and keep(l.split(b",")[0].decode()))
        zo.writestr(i, data)
PY
}
trim "$tmp"/raw/bitsandbytes-*.whl "$W/common/$(basename "$tmp"/raw/bitsandbytes-*.whl)" 'libbitsandbytes_(?!cuda130)'
trim "$tmp"/raw/unsloth-2026*.whl "$W/uns/$(basename "$tmp"/raw/unsloth-2026*.whl)" '^studio/'
rm -rf "$tmp"
du -sh "$W"/*
