#!/usr/bin/env bash
# Copies a bundle written by scripts/convert.py into the app's assets, replacing the one there:
# model_meta.json, the .tflite and the vocabulary it names.
#
#   bash android_demo/copy_bundle.sh BUNDLE_DIR [ASSETS_DIR]
#
# BUNDLE_DIR is the folder convert.py wrote (e.g. runs/ptb_small/tflite_int8); ASSETS_DIR
# defaults to android_demo/app/src/main/assets. The assets folder holds the bundle only: every
# other file in it (but dot files) is removed first, so no stale model is packaged. The app checks
# the files again when it loads them (lmcore's Bundle and SignatureCheck).
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 1
}

[[ $# -ge 1 && $# -le 2 ]] || die "usage: copy_bundle.sh BUNDLE_DIR [ASSETS_DIR]"
bundle_dir=$1
assets_dir=${2:-"$(dirname "$0")/app/src/main/assets"}
meta="$bundle_dir/model_meta.json"

[[ -d $bundle_dir ]] || die "bundle folder not found: $bundle_dir"
[[ -f $meta ]] || die "$bundle_dir has no model_meta.json; pass the folder scripts/convert.py wrote"

# The value of a top-level string key of the (flat, json.dumps-written) meta file.
meta_string() {
  local value
  value=$(tr -d '\n' < "$meta" \
    | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"\\\\]*\)\".*/\1/p")
  [[ -n $value ]] || die "$meta has no string '$1'; export the bundle again with scripts/convert.py"
  [[ $value != */* && $value != . && $value != .. ]] || die "$meta: '$1' is not a file name: $value"
  echo "$value"
}

model_file=$(meta_string model_file)
vocab_file=$(meta_string vocab_file)
quantization=$(meta_string quantization)
for name in "$model_file" "$vocab_file"; do
  [[ -f $bundle_dir/$name ]] || die "$bundle_dir has no $name (named in model_meta.json)"
done

mkdir -p "$assets_dir"
find "$assets_dir" -mindepth 1 -maxdepth 1 -type f ! -name '.*' -delete
cp "$meta" "$bundle_dir/$model_file" "$bundle_dir/$vocab_file" "$assets_dir/"

model_bytes=$(wc -c < "$assets_dir/$model_file")
vocab_words=$(grep -c . "$assets_dir/$vocab_file" || true)
echo "copied $model_file ($model_bytes bytes, quantization $quantization), $vocab_file" \
  "($vocab_words words) and model_meta.json to $assets_dir"
