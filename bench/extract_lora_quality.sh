#!/usr/bin/env bash
# LoRA extraction quality: ft-fortune's difference from base extracted at several ranks
# (anvil extract-lora), each adapter applied to base and scored on fortune.val
# beside base and ft-fortune themselves. Prints a markdown table for the README.
source "$(dirname "$0")/common.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=("$shared/data/fortune.val.txt")

score() {  # model dir [adapter dir] -> fortune.val perplexity
  $anvil eval "$1" ${2:+--adapter "$2"} --data "${data[@]}" --json |
    python3 -c 'import json,sys; print(" | ".join("%.2f" % r["perplexity"] for r in json.load(sys.stdin)["results"]))'
}

echo "| model | adapter size | mean kept energy | fortune.val |"
echo "|---|---|---|---|"
echo "| base | | | $(score "$shared/models/base") |"
for r in ${RANKS:-4 16 64 256}; do
  line=$($anvil extract-lora --base "$shared/models/base" --model "$shared/models/ft-fortune" -o "$work/r$r" --rank "$r")
  size=$(echo "$line" | sed -n 's/.*energy \([0-9.]*%\), \([0-9.]* MB\).*/\2/p')
  kept=$(echo "$line" | sed -n 's/.*energy \([0-9.]*%\).*/\1/p')
  echo "| base + rank-$r adapter | $size | $kept | $(score "$shared/models/base" "$work/r$r") |"
done
echo "| ft-fortune (the fine-tune) | | | $(score "$shared/models/ft-fortune") |"
