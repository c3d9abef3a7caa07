#!/usr/bin/env bash
# Inference speed on this machine: `anvil eval` on base over pkg.val.txt (2 threads, the protocol
# of refs/perplexity_val.json) and `anvil generate` decode tokens/s. The peer is llama.cpp's
# perplexity tool on the same model in F32 on this machine kind (-c 256 -b 256 -t 2), which
# ../shared/README.md reports at about 6,600 tokens/s. Run on an otherwise idle machine.
source "$(dirname "$0")/common.sh"
runs=${RUNS:-3}
llama_cpp_tps=6600

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
$anvil env --threads 2 | sed -n '2,4p'

best=0
for i in $(seq "$runs"); do
  tps=$($anvil eval "$shared/models/base" --data "$shared/data/pkg.val.txt" --threads 2 --json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["results"][0]["tokens_per_second"]))')
  echo "eval run $i: $tps tok/s"
  [ "$tps" -gt "$best" ] && best=$tps
done
echo "eval base/pkg.val (2 threads): best $best tok/s = $(python3 -c "print(f'{$best/$llama_cpp_tps:.2f}')")x llama.cpp perplexity (F32, ~$llama_cpp_tps tok/s)"

for i in $(seq "$runs"); do
  $anvil generate "$shared/models/base" --prompt "This package provides" -n 200 --ignore-eos --threads 2 2>&1 >/dev/null |
    sed -n 's/.*new tokens, \([0-9.]*\) tok\/s.*/generate decode (batch 1, 2 threads): \1 tok\/s/p'
done
