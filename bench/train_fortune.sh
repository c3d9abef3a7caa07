#!/usr/bin/env bash
# recipes/fortune-lora.yaml against PEFT's run of the same recipe (../shared/refs/peft_lora_fortune.json):
# final fortune.val perplexity (goal: within 5% of PEFT's 80.1, scored with `anvil eval --adapter`
# under the protocol of refs/perplexity_val.json), the loss curve at PEFT's logged steps, and
# training tokens/s (PEFT: 60,042 tok/s on one H100; here on this machine's CPU cores).
# Extra arguments go to `anvil train` (e.g. --set precision=fp32, --device cuda).
source "$(dirname "$0")/common.sh"
out=${OUT:-/tmp/anvil-bench/fortune-lora}
rm -rf "$out"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
start=$(date +%s.%N)
$anvil train recipes/fortune-lora.yaml --set output_dir="$out" "$@"
end=$(date +%s.%N)
ppl=$($anvil eval "$shared/models/base" --adapter "$out" --data "$shared/data/fortune.val.txt" --json |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["perplexity"])')

/usr/bin/python3 - "$shared/refs/peft_lora_fortune.json" "$out/log.jsonl" "$ppl" "$start" "$end" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
log = {e["step"]: e for e in map(json.loads, open(sys.argv[2]))}
ppl, seconds = float(sys.argv[3]), float(sys.argv[5]) - float(sys.argv[4])
print("\nstep  PEFT loss  anvil loss   (PEFT logs 0-based steps; anvil's step s+1 is the same update)")
for step, loss in ref["loss_curve"]:
    ours = log.get(step + 1)
    print(f"{step:4d}  {loss:9.4f}  {ours['loss'] if ours else float('nan'):10.4f}")
tps = sum(e["tokens_per_second"] for e in log.values()) / len(log)
print(f"\nfortune.val perplexity: base {ref['val_ppl_before']:.1f}, PEFT {ref['val_ppl_after']:.2f}, "
      f"anvil {ppl:.2f} ({(ppl / ref['val_ppl_after'] - 1) * 100:+.1f}%)")
print(f"training: {tps:,.0f} tok/s mean over steps; whole command {seconds:.0f} s")
PY
