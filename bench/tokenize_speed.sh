#!/usr/bin/env bash
# Tokenize throughput (MB/s of text, one thread): anvil against the Hugging Face tokenizers
# library (the Rust library, through PyPI's `tokenizers`, in the peers' virtual environment that
# bench/interop.sh installs) in the same run, on the same texts: fortune.train and changelog.train
# split into paragraphs (one text per blank-line-separated paragraph), without special tokens.
# Both sides count the same tokens (checked), and loading is timed separately. Run idle.
#   ANVIL_PEERS_VENV   default ~/.cache/anvil/peers-venv
#   RUNS               best of (default 3)
source "$(dirname "$0")/common.sh"
peers=${ANVIL_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/anvil/peers-venv}
runs=${RUNS:-3}
"$peers/bin/python" -c 'import tokenizers' 2>/dev/null || { echo "tokenize_speed: run bench/interop.sh once (it installs tokenizers into $peers)"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ' | cut -c1-60)"
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$peers/bin/python" - "$anvil" "$shared" "$work" "$runs" <<'PY'
import json, os, subprocess, sys, time
from importlib.metadata import version
from tokenizers import Tokenizer
anvil, shared, work, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sets = {}
for name in ("fortune", "changelog"):
    text = open(os.path.join(shared, "data", name + ".train.txt"), encoding="utf-8").read()
    docs = [d for d in text.split("\n\n") if d.strip()]
    path = os.path.join(work, name + ".jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    sets[name] = (path, docs, sum(len(d.encode()) for d in docs))
print("tokenizers %s (Rust, encode_batch with RAYON_NUM_THREADS=1) vs anvil tokenize --count" % version("tokenizers"))
print("%-11s %-10s %8s %12s %12s %7s %14s" % ("tokenizer", "text", "MB", "anvil MB/s", "HF MB/s", "ratio", "load anvil/HF"))
for tok_name in ("gemma-3", "llama-3", "mistral-7b", "qwen3"):
    d = os.path.join(shared, "tokenizers", tok_name)
    t0 = time.perf_counter()
    lib = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    hf_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([anvil, "tokenize", d, "--text", "x"], check=True, capture_output=True)
    anvil_load = time.perf_counter() - t0  # the whole process: start, load, one encode
    for name, (path, docs, nbytes) in sets.items():
        best_anvil, best_hf, tokens_anvil, tokens_hf = 0, 0, None, None
        for _ in range(runs):
            r = json.loads(subprocess.run([anvil, "tokenize", d, "--jsonl", path, "--count", "--json"], check=True,
                                          capture_output=True, text=True).stdout)
            best_anvil, tokens_anvil = max(best_anvil, r["mb_per_s"]), r["tokens"]
            t0 = time.perf_counter()
            enc = lib.encode_batch(docs, add_special_tokens=False)
            best_hf = max(best_hf, nbytes / 1e6 / (time.perf_counter() - t0))
            tokens_hf = sum(len(e.ids) for e in enc)
        if tokens_anvil != tokens_hf:
            sys.exit("%s/%s: anvil counts %d tokens, the tokenizers library %d" % (tok_name, name, tokens_anvil, tokens_hf))
        print("%-11s %-10s %8.1f %12.1f %12.1f %6.1fx %6.2f/%.2f s" % (tok_name, name, nbytes / 1e6, best_anvil, best_hf,
                                                                     best_anvil / best_hf, anvil_load, hf_load))
PY
