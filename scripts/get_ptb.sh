#!/usr/bin/env bash
# Where to get the Penn Treebank language-modelling corpus (Mikolov's preprocessed text).
#
# The text comes from the LDC Penn Treebank (LDC99T42) and has no open license, so this
# project does not ship or download it for you. Get `simple-examples.tgz` from Tomas
# Mikolov's RNNLM page (the same files are in the TensorFlow PTB tutorial and torchtext),
# then:
#
#   mkdir -p data/ptb && tar xzf simple-examples.tgz -C /tmp && \
#     cp /tmp/simple-examples/data/ptb.{train,valid,test}.txt data/ptb/
#
# This script checks a folder holds the expected files (md5 as published by torchtext).
set -euo pipefail
dir="${1:-data/ptb}"
declare -A md5=(
  [ptb.train.txt]=f26c4b92c5fdc7b3f8c7cdcb991d8420
  [ptb.valid.txt]=aa0affc06ff7c36e977d7cd49e3839bf
  [ptb.test.txt]=8b80168b89c18661a38ef683c0dc3721
)
status=0
for f in ptb.train.txt ptb.valid.txt ptb.test.txt; do
  if [[ ! -f "$dir/$f" ]]; then
    echo "missing: $dir/$f (see the comments at the top of $0)" >&2; status=1; continue
  fi
  got=$(md5sum "$dir/$f" | cut -d' ' -f1)
  if [[ "$got" != "${md5[$f]}" ]]; then
    echo "checksum mismatch: $dir/$f ($got, expected ${md5[$f]})" >&2; status=1
  else
    echo "ok: $dir/$f"
  fi
done
exit $status
