#!/usr/bin/python3
"""The kernel at real size, side by side with llama.cpp in one run (issue: a kernel at real size).

For a Llama-3.2-1B-shaped synthetic model (bf16 safetensors and its F16, Q8_0 and Q4_K_M GGUFs)
and, with --with-8b, a Llama-3.1-8B-shaped Q4_K_M, on the same files with the same threads:
  - perplexity (ctx 256): `anvil eval` against llama.cpp's llama-perplexity (-c 256 -b 256),
    tokens/s and peak RSS (/usr/bin/time's maximum resident set);
  - prompt processing and generation: `anvil bench -p P -n N` against `llama-bench -p P -n N`.
Ratios are anvil / llama.cpp (above 1: anvil faster). The models are written by
make_synthetic_model.py (python3-numpy) and quantized by anvil (byte-identical to llama-quantize,
tests/test_quant.cpp) into WORK unless present. Run on an otherwise idle machine: llama.cpp's
OpenMP threads collapse when a core is busy.

usage: kernel_speed.py --llama-cpp BIN_DIR [--work DIR] [--threads 2] [--with-8b] [--reps 3]
"""
import argparse, json, os, re, shutil, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
p = argparse.ArgumentParser()
p.add_argument("--llama-cpp", required=True, help="directory with llama-bench and llama-perplexity (built outside the repo)")
p.add_argument("--anvil", default=os.path.join(root, "build", "tools", "anvil"))
p.add_argument("--shared", default=os.environ.get("ANVIL_SHARED", os.path.join(os.path.dirname(root), "shared")))
p.add_argument("--work", default="/tmp/anvil-kernel-bench")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--pp", type=int, default=256)
p.add_argument("--tg", type=int, default=32)
p.add_argument("--with-8b", action="store_true")
a = p.parse_args()
os.makedirs(a.work, exist_ok=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd):
    """(stdout + stderr, peak RSS in bytes) of a command."""
    r = run(["/usr/bin/time", "-f", "maxrss_kb=%M"] + cmd)
    kb = int(re.findall(r"maxrss_kb=(\d+)", r.stderr)[-1])
    return r.stdout + r.stderr, kb * 1024


def synthetic(name, shape):
    d = os.path.join(a.work, name)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        run(["/usr/bin/python3", os.path.join(here, "make_synthetic_model.py"), d, "--shape", shape, "--seed", "7"])
    for f in ("tokenizer.json", "tokenizer_config.json"):  # base's tokenizer: ids < the synthetic vocabulary
        shutil.copy(os.path.join(a.shared, "models", "base", f), d)
    return d


def quantized(src, name, qtype):
    out = os.path.join(a.work, name)
    if not os.path.exists(out):
        run([a.anvil, "quantize", src, "-o", out, "--type", qtype])
    return out


# Calibration-free text: three 256-token windows of pkg.val (base's tokenizer).
text = os.path.join(a.work, "windows.txt")
with open(os.path.join(a.shared, "data", "pkg.val.txt"), encoding="utf-8") as f:
    open(text, "w", encoding="utf-8").write(f.read()[:3200])

one_b = synthetic("syn-1b", "1b")
rows = [("1B bf16 safetensors", one_b, quantized(one_b, "syn-1b-F16.gguf", "F16")),
        ("1B F16 GGUF", quantized(one_b, "syn-1b-F16.gguf", "F16"), None),
        ("1B Q8_0 GGUF", quantized(one_b, "syn-1b-Q8_0.gguf", "Q8_0"), None),
        ("1B Q4_K_M GGUF", quantized(one_b, "syn-1b-Q4_K_M.gguf", "Q4_K_M"), None)]
if a.with_8b:
    eight_b = synthetic("syn-8b", "8b")
    rows.append(("8B Q4_K_M GGUF", quantized(eight_b, "syn-8b-Q4_K_M.gguf", "Q4_K_M"), None))

bin_dir = a.llama_cpp
cpu = "avx512" if "avx512f" in open("/proc/cpuinfo").read() else "avx2"
print(f"machine: {os.cpu_count()} cores, {cpu}; threads {a.threads}; anvil {a.anvil}; llama.cpp {bin_dir}")
print("| model | weights on disk | eval RSS anvil / llama.cpp | eval tok/s anvil / llama.cpp | "
      f"pp{a.pp} anvil / llama.cpp | tg{a.tg} anvil / llama.cpp |")
print("|---|---|---|---|---|---|")
for label, path, peer_file in rows:
    peer = peer_file or path
    size = (os.path.getsize(os.path.join(path, "model.safetensors")) if os.path.isdir(path) else os.path.getsize(path))
    for f in {os.path.join(path, "model.safetensors") if os.path.isdir(path) else path, peer}:
        subprocess.run(["cat", f], stdout=subprocess.DEVNULL, check=True)  # both tools start from a warm page cache
    out, rss = timed([a.anvil, "eval", path, "--data", text, "--threads", str(a.threads), "--json"])
    ev = json.loads(out[out.index("{"):out.rindex("}") + 1])["results"][0]["tokens_per_second"]
    out, peer_rss = timed([os.path.join(bin_dir, "llama-perplexity"), "-m", peer, "-f", text, "-c", "256", "-b", "256",
                           "-t", str(a.threads)])
    per_pass = float(re.findall(r"([\d.]+) seconds per pass", out)[0])
    peer_ev = 256 / per_pass
    out = run([a.anvil, "bench", path, "-p", str(a.pp), "-n", str(a.tg), "-r", str(a.reps), "--threads",
               str(a.threads), "--json"]).stdout
    b = json.loads(out)
    out = run([os.path.join(bin_dir, "llama-bench"), "-m", peer, "-p", str(a.pp), "-n", str(a.tg), "-r", str(a.reps),
               "-t", str(a.threads), "-o", "json"]).stdout
    lb = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in json.loads(out)}
    pp, tg = b["prompt"]["tokens_per_second"], b["generation"]["tokens_per_second"]

    def pair(x, y, fmt="{:.1f}"):
        return f"{fmt.format(x)} / {fmt.format(y)} ({x / y:.2f}x)"

    gb = lambda n: f"{n / 2**30:.2f} GiB"
    print(f"| {label} | {gb(size)} | {gb(rss)} / {gb(peer_rss)} ({rss / size:.2f}x the file) | {pair(ev, peer_ev)} | "
          f"{pair(pp, lb['pp'])} | {pair(tg, lb['tg'])} |", flush=True)
print(f"anvil's kernels: {b['dot_kernel']}; llama.cpp row 'bf16 safetensors' runs the F16 GGUF of the same weights")
