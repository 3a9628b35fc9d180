#!/bin/sh
# Download the LLM-generated subclass lists released with "Training-Free Semantic Segmentation
# via LLM-Supervision" (Sun, Du, Liu, Kompella, Snoek; CVPR 2024 workshops; arXiv 2404.00701).
#
# Where they come from: the paper's public repository
#     https://github.com/lmsdss/Training-Free-Semantic-Segmentation-via-LLM-Supervision
# holds one JSON file per dataset, label_sets/<dataset>/top5.json, {"class": [5 subclasses]},
# keyed by SimSeg's class names (datasets/classnames/simseg_*.txt). Its seg_evaluation.py
# reads one of them with --subclass_path. They are the paper's data, not this project's, so
# they are downloaded rather than committed:
#     label_sets/pascal_voc/top5.json      -> subclasses/paper_top5_pascal_voc.json
#     label_sets/pascal_context/top5.json  -> subclasses/paper_top5_pascal_context.json
#     label_sets/coco_stuff/top5.json      -> subclasses/paper_top5_coco_stuff.json
# the paths the experiments/ configs name. The files are taken at a fixed commit and checked
# against their SHA-256 (pass --ref to take another commit or branch; the check is then
# skipped).
#
# usage: scripts/fetch_subclass_lists.sh [--print] [--dest DIR] [--ref REF]
#   --print     list "URL DEST SHA256" for each file and download nothing
#   --dest DIR  folder for the files (default: subclasses)
#   --ref REF   commit, tag or branch of the repository (default: the pinned commit)
# Needs curl or wget. Exit codes: 0 ok, 1 download or checksum failure, 2 bad usage.
set -eu

REPO=lmsdss/Training-Free-Semantic-Segmentation-via-LLM-Supervision
PINNED=9d9c0ebdc0e562a2724158d7f78747e77a7d45a3
ref=$PINNED
dest=subclasses
print=0
while [ $# -gt 0 ]; do
    case "$1" in
    --print) print=1 ;;
    --dest) [ $# -ge 2 ] || { echo "$0: --dest needs a folder" >&2; exit 2; }; dest=$2; shift ;;
    --ref) [ $# -ge 2 ] || { echo "$0: --ref needs a value" >&2; exit 2; }; ref=$2; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# dataset and SHA-256 of its top5.json at the pinned commit
lists="pascal_voc 076abcac528923b0550e9363a1845dd1f03503de8da9e2b53274224e3fc8a5ba
pascal_context a8555bc0ab5b9880e0b25f2be909fffce9393b5b8027275e53c565ce1c225452
coco_stuff bd91406c29590dbdfe338a51cc61e9af7215523b9d1d5190fc602fcae9de56be"

if [ "$print" = 0 ]; then
    mkdir -p "$dest"
    if command -v curl >/dev/null 2>&1; then get="curl -fsSL -o"
    elif command -v wget >/dev/null 2>&1; then get="wget -q -O"
    else echo "$0: needs curl or wget" >&2; exit 1
    fi
fi
echo "$lists" | while read -r name sum; do
    url="https://raw.githubusercontent.com/$REPO/$ref/label_sets/$name/top5.json"
    out="$dest/paper_top5_$name.json"
    [ "$ref" = "$PINNED" ] || sum="-"
    if [ "$print" = 1 ]; then
        echo "$url $out $sum"
        continue
    fi
    tmp="$out.part"
    if ! $get "$tmp" "$url"; then
        rm -f "$tmp"
        echo "$0: download failed: $url" >&2
        exit 1
    fi
    if [ "$sum" != "-" ] && [ "$(sha256sum "$tmp" | cut -d' ' -f1)" != "$sum" ]; then
        rm -f "$tmp"
        echo "$0: $url: unexpected SHA-256 (expected $sum)" >&2
        exit 1
    fi
    mv "$tmp" "$out"
    echo "wrote $out" >&2
done
