#!/usr/bin/env bash
# Merge quality: merges ft-fortune and ft-changelog with every config in configs/ and scores
# each result (and the inputs) on the three val sets. Prints a markdown table for the README.
source "$(dirname "$0")/common.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=("$shared/data/fortune.val.txt" "$shared/data/changelog.val.txt" "$shared/data/pkg.val.txt")

score() {  # model dir -> "fortune | changelog | pkg"
  $anvil eval "$1" --data "${data[@]}" --json |
    python3 -c 'import json,sys; print(" | ".join("%.1f" % r["perplexity"] for r in json.load(sys.stdin)["results"]))'
}

echo "| model | fortune.val | changelog.val | pkg.val |"
echo "|---|---|---|---|"
for m in base ft-fortune ft-changelog; do echo "| $m (input) | $(score "$shared/models/$m") |"; done
for cfg in configs/*.yaml; do
  name=$(basename "$cfg" .yaml)
  [ "$name" = passthrough ] && continue
  # Shipped configs name models relative to configs/; point them at $shared instead.
  sed "s#\.\./\.\./shared#$shared#g" "$cfg" > "$work/$name.yaml"
  $anvil merge "$work/$name.yaml" -o "$work/$name" >/dev/null
  echo "| $name | $(score "$work/$name") |"
done
