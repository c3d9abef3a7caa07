#!/usr/bin/env bash
# Calibrated quantization quality on base: llama-quantize's Q4_K_M (anvil writes the same bytes)
# against --calib (importance-weighted k-quant scales + GPTQ), scored on pkg.val.txt. The
# calibration text is never package descriptions, so the result must generalize. A single
# calibrated file's gain depends on which rounding choices it happened to make (about +-5 points),
# so this runs six calibration sets and reports each, their mean and their range.
# Extra arguments go to every GPTQ `anvil quantize` (e.g. --calib-passes 2, --damp 0.1).
source "$(dirname "$0")/common.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
base=$shared/models/base
fortune=$shared/data/fortune.train.txt
changelog=$shared/data/changelog.train.txt

ppl() { $anvil eval "$1" --data "$shared/data/pkg.val.txt" --json |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["perplexity"])'; }

p_hf=$(ppl "$base")
$anvil quantize "$base" -o "$work/plain.gguf" --type Q4_K_M >/dev/null
p_plain=$(ppl "$work/plain.gguf")
echo "HF bf16: $p_hf; Q4_K_M (llama-quantize's bytes): $p_plain"
echo
echo "| calibration text | tokens | method | perplexity | vs HF | loss vs Q4_K_M's |"
echo "|---|---|---|---|---|---|"
gains=()
for files in "$fortune" "$fortune,$changelog"; do
  label=$(basename "${files%%,*}" .train.txt); [[ $files == *,* ]] && label="$label + changelog"
  for tokens in 65536 131072 262144; do
    for method in imatrix gptq; do
      [ "$method" = imatrix ] && [ "$tokens" != 65536 ] && continue
      extra=(); [ "$method" = gptq ] && extra=("$@")
      $anvil quantize "$base" -o "$work/cal.gguf" --type Q4_K_M --calib "$files" --calib-tokens "$tokens" \
        --calib-method "$method" "${extra[@]}" >/dev/null
      p=$(ppl "$work/cal.gguf")
      read -r vs rel < <(python3 -c "h=$p_hf; q=$p_plain; p=$p; print('%+.2f%%' % (100*(p/h-1)), '%.3f' % ((p-h)/(q-h)))")
      echo "| $label | $tokens | $method | $(printf %.4f "$p") | $vs | ${rel}x |"
      [ "$method" = gptq ] && gains+=("$rel")
    done
  done
done
echo
python3 -c "
g=[float(x) for x in '${gains[*]}'.split()]
print('gptq over %d calibration sets: loss %.3fx of Q4_K_M on average (%.1f%% less), range %.3fx-%.3fx' %
      (len(g), sum(g)/len(g), 100*(1-sum(g)/len(g)), min(g), max(g)))"
