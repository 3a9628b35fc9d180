#!/bin/sh
# Installs the Debian packages the harness needs, only those that are missing.
#   scripts/install-deps.sh           build + test dependencies (the tests of the dataset
#                                     preparation scripts use NumPy, Pillow and SciPy)
#   scripts/install-deps.sh --python  also PyTorch, h5py and OpenCV (reference generators,
#                                     training and benchmarks under scripts/)
set -eu
pkgs="gcc make pkg-config libopenblas-dev libhdf5-dev libstb-dev libcjson-dev
      libcurl4-openssl-dev check libutf8proc-dev zlib1g-dev python3 python3-numpy
      python3-pil python3-scipy"
quiet=0
for a in "$@"; do
    case "$a" in
    --python) pkgs="$pkgs python3-torch python3-h5py python3-opencv" ;;
    --quiet) quiet=1 ;;
    *) echo "usage: $0 [--python] [--quiet]" >&2; exit 2 ;;
    esac
done

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    [ "$quiet" = 1 ] || echo "all dependencies are installed"
    exit 0
fi

echo "installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "error: missing Debian packages:$missing; run as root: apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
