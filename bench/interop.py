#!/usr/bin/env python3
"""anvil's outputs in the real peers (issue #19): run by bench/interop.sh inside a virtual
environment that holds them. Each check makes an output with anvil from ../shared's fixtures,
hands it to the peer, and compares what both compute; one table row per check.

    python3 bench/interop.py --anvil build/tools/anvil --shared ../shared [--mergekit-yaml PATH] [--only SUBSTRING]

Perplexities are compared on the same text and windows as `anvil eval` (windows of 256 tokens,
positions 1..255 scored); the peers compute in fp32 (a bf16 checkpoint is loaded as bf16 and then
cast, so rotary frequencies are rounded as transformers rounds them). A relative difference under
1e-4 is a pass: both sides sum the same fp32 products in different orders (measured ~1e-6).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback

PPL_TOLERANCE = 1e-4
WINDOW = 256


def versions():
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("torch", "transformers", "peft", "safetensors", "gguf", "compressed-tensors", "tokenizers"):
        try:
            out[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


class Runner:
    def __init__(self, anvil, shared, work):
        self.anvil, self.shared, self.work = anvil, shared, work
        self.models = os.path.join(shared, "models")
        # A few windows of package descriptions: the same file for anvil and the peer.
        self.text = os.path.join(work, "text.txt")
        with open(os.path.join(shared, "data", "pkg.val.txt"), encoding="utf-8") as f:
            open(self.text, "w", encoding="utf-8").write(f.read()[:40_000])

    def anvil_run(self, *args):
        r = subprocess.run([self.anvil, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, ANVIL_NO_PROGRESS="1"))
        if r.returncode != 0:
            raise RuntimeError("anvil %s failed: %s" % (" ".join(args), r.stdout.strip()[-400:]))
        return r.stdout

    def anvil_ppl(self, model, adapter=None):
        args = ["eval", model, "--data", self.text, "--json"] + (["--adapter", adapter] if adapter else [])
        return json.loads(self.anvil_run(*args))["results"][0]["perplexity"]

    def path(self, name):
        return os.path.join(self.work, name)


def tokens_of(tokenizer_dir, text_file):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    return tok.encode(open(text_file, encoding="utf-8").read(), add_special_tokens=False).ids


def peer_ppl(model, ids):
    """Perplexity by anvil eval's protocol, computed by a transformers/PEFT model."""
    import torch
    n = len(ids) // WINDOW
    x = torch.tensor(ids[: n * WINDOW]).view(n, WINDOW)
    nll = 0.0
    with torch.no_grad():
        for i in range(n):
            logits = model(input_ids=x[i : i + 1]).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
            nll -= logp.gather(1, x[i, 1:].unsqueeze(1)).sum().item()
    return math.exp(nll / (n * (WINDOW - 1)))


def load_hf(path):
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype="auto").to(torch.float32).eval()


def compare_ppl(anvil_value, peer_value):
    rel = abs(anvil_value - peer_value) / peer_value
    ok = rel <= PPL_TOLERANCE
    return ok, "perplexity %.5f vs %.5f, relative %.1e" % (anvil_value, peer_value, rel)


# --- checks: each returns (status, detail); status is "pass", "FAIL" or "explained" -------------

def transformers_loads(r, made_by, make):
    def check():
        out = r.path(made_by.replace(" ", "_").replace("/", "_"))
        make(out)
        model = load_hf(out)
        return compare_ppl(r.anvil_ppl(out), peer_ppl(model, tokens_of(out, r.text)))
    return check


def check_int_format(r, fmt):
    def check():
        out = r.path("int-" + fmt)
        r.anvil_run("quantize", os.path.join(r.models, "base"), "-o", out, "--format", fmt, "--bits", "8")
        try:
            model = load_hf(out)
        except Exception as e:  # noqa: BLE001 - the peer's own refusal is the finding
            return None, "transformers cannot load it on CPU here: %s" % str(e).splitlines()[0][:160]
        return compare_ppl(r.anvil_ppl(out), peer_ppl(model, tokens_of(out, r.text)))
    return check


def check_peft_loads_anvil_adapter(r):
    import torch
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict
    out = r.path("trained")
    recipe = r.path("recipe.yaml")
    open(recipe, "w").write(
        "base_model: %s/base\noutput_dir: %s\ndatasets: [{path: %s/data/fortune.train.txt, type: raw}]\n"
        "sequence_len: 64\nmicro_batch_size: 4\nmax_steps: 4\nthreads: 2\n"
        "optimizer: {lr: 5.0e-3}\nlora: {r: 8, alpha: 16, target_modules: all-linear}\n" % (r.models, out, r.shared))
    r.anvil_run("train", recipe)
    base = load_hf(os.path.join(r.models, "base"))
    model = PeftModel.from_pretrained(base, out).eval()
    # The same load, asked for the keys it could not place.
    result = set_peft_model_state_dict(model, load_peft_weights(out))
    unexpected = list(getattr(result, "unexpected_keys", []))
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if unexpected or missing:
        return False, "PEFT: %d unexpected, %d missing LoRA keys (%s)" % (len(unexpected), len(missing),
                                                                        (unexpected + missing)[:2])
    ok, detail = compare_ppl(r.anvil_ppl(os.path.join(r.models, "base"), adapter=out),
                             peer_ppl(model, tokens_of(os.path.join(r.models, "base"), r.text)))
    return ok, "no missing or unexpected keys; " + detail


def check_anvil_loads_peft_adapter(r, family):
    def check():
        import torch
        from peft import LoraConfig, get_peft_model
        base_dir = os.path.join(r.models, family)
        torch.manual_seed(0)
        base = load_hf(base_dir)
        # Mixtral: the attention projections only. With transformers 5, PEFT adapts its experts as
        # fused 3-D parameters (target_parameters), a layout anvil's adapter loader refuses by name.
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if "mixtral" in family else "all-linear"
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
        model = get_peft_model(base, cfg).eval()
        out = r.path("peft-" + family)
        model.save_pretrained(out)
        return compare_ppl(r.anvil_ppl(base_dir, adapter=out), peer_ppl(model, tokens_of(base_dir, r.text)))
    return check


def gguf_outputs(r):
    base = os.path.join(r.models, "base")
    outs = []
    for t in ("f32", "f16", "bf16", "q8_0"):
        outs.append((r.path("base-%s.gguf" % t), ["convert", base, "-o", r.path("base-%s.gguf" % t), "--type", t]))
    for t in ("Q4_0", "Q4_K_M", "Q6_K", "Q2_K", "IQ4_NL"):
        outs.append((r.path("base-%s.gguf" % t), ["quantize", base, "-o", r.path("base-%s.gguf" % t), "--type", t]))
    mix = r.path("tiny-mixtral.gguf")
    outs.append((mix, ["convert", os.path.join(r.models, "tiny-mixtral"), "-o", mix, "--type", "f32"]))
    return outs


def check_gguf_py(r):
    from gguf import GGUFReader
    n = 0
    for path, cmd in gguf_outputs(r):
        r.anvil_run(*cmd)
        ours = json.loads(r.anvil_run("inspect", path, "--json"))
        reader = GGUFReader(path)
        keys = {f.name for f in reader.fields.values()} - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
        if keys != set(ours["metadata"]):
            return False, "%s: keys differ: %s" % (os.path.basename(path), sorted(keys ^ set(ours["metadata"]))[:4])
        theirs = {t.name: (t.tensor_type.name, [int(d) for d in t.shape]) for t in reader.tensors}
        mine = {t["name"]: (t["type"], t["dims"]) for t in ours["tensors"]}
        if theirs != mine:
            bad = [k for k in mine if theirs.get(k) != mine[k]][:3]
            return False, "%s: tensors differ: %s" % (os.path.basename(path), bad)
        n += 1
    return True, "%d files (F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q6_K, Q2_K, IQ4_NL, Mixtral): same keys, tensor names, types and dims" % n


def dir_tensors(d):
    """Every tensor of a model directory's safetensors files, by name."""
    from safetensors.torch import load_file
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, f)))
    return out


def ties_in_fp32(r, mergekit_yaml, config, detail_bf16):
    """TIES again with dtype float32 (no bf16 rounding on either side): every element where the two
    still differ must sit exactly at the density threshold of one task vector, where both keep k
    entries of equal magnitude but choose different ones (mergekit: torch.argsort's unstable
    order; anvil: index order). Anything else would be a real disagreement."""
    import torch
    text = open(config).read().replace("dtype: bfloat16", "dtype: float32")
    text = text.replace("../../shared", r.shared)
    cfg = r.path("ties-fp32.yaml")
    open(cfg, "w").write(text)
    ours, theirs = r.path("anvil-ties-fp32"), r.path("mergekit-ties-fp32")
    r.anvil_run("merge", cfg, "-o", ours)
    subprocess.run([mergekit_yaml, cfg, theirs, "--allow-crimes", "--lazy-unpickle"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)

    a, b = dir_tensors(ours), dir_tensors(theirs)
    base = dir_tensors(os.path.join(r.models, "base"))
    inputs = [dir_tensors(os.path.join(r.models, m)) for m in ("ft-fortune", "ft-changelog")]
    differ = at_threshold = 0
    for k in a:
        d = a[k] != b[k]
        if not d.any():
            continue
        differ += int(d.sum())
        at = torch.zeros_like(d)
        for ft in inputs:
            delta = (ft[k].float() - base[k].float()).abs().reshape(-1)
            kept = max(1, int(0.7 * delta.numel()))  # the configs' density
            at |= (delta == torch.topk(delta, kept).values.min()).reshape(d.shape)
        at_threshold += int((d & at).sum())
    ok = at_threshold == differ
    return ok, detail_bf16 + ("; mergekit rounds each step to bf16; in fp32 %d elements differ, %d of them exactly at a "
                              "task vector's density threshold (equal magnitudes: mergekit keeps torch.argsort's "
                              "choice of k, anvil the first k in index order)" % (differ, at_threshold))


def check_mergekit(r, mergekit_yaml, config):
    def check():
        import torch
        if not mergekit_yaml:
            return None, "mergekit not installed (bench/interop.sh installs it in its own environment)"
        name = os.path.splitext(os.path.basename(config))[0]
        ours, theirs = r.path("anvil-" + name), r.path("mergekit-" + name)
        r.anvil_run("merge", config, "-o", ours)
        res = subprocess.run([mergekit_yaml, config, theirs, "--copy-tokenizer", "--allow-crimes", "--lazy-unpickle"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=os.path.dirname(config))
        if res.returncode != 0:
            return False, "mergekit failed: " + res.stdout.strip().splitlines()[-1][:200]

        a, b = dir_tensors(ours), dir_tensors(theirs)
        if set(a) != set(b):
            return False, "tensor names differ: %s" % sorted(set(a) ^ set(b))[:3]
        same = sum(1 for k in a if a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        scale = max(b[k].float().abs().max().item() for k in b)
        differ = sum(int((a[k].float() != b[k].float()).sum()) for k in a)
        total = sum(a[k].numel() for k in a)
        detail = "%d/%d tensors bit-identical, %.2f%% of elements differ, largest difference %.3g (largest weight %.3g)" % (
            same, len(a), 100.0 * differ / total, worst, scale)
        method = name.split("_")[0] if name.startswith("dare") else name
        if method in ("linear", "passthrough"):
            return same == len(a), detail
        if method in ("slerp", "task_arithmetic"):
            # mergekit computes in the config's dtype (bf16: every delta, product and sum rounded),
            # anvil in fp32 with one rounding at the end: up to a couple of bf16 ulps apart.
            return worst <= 2 ** -7 * scale, detail + "; mergekit rounds each step to bf16, anvil once"
        if method == "ties":
            return ties_in_fp32(r, mergekit_yaml, config, detail)
        return None, detail + "; DARE's random drops: anvil's seeded generator, not torch's"
    return check


def sample_texts(r):
    """A few kilobytes of each fixture text: prose, changelogs, package descriptions."""
    out = []
    for name in ("fortune.val.txt", "changelog.val.txt", "pkg.val.txt"):
        with open(os.path.join(r.shared, "data", name), encoding="utf-8") as f:
            text = f.read()[:3000]
        path = r.path("sample-" + name)
        open(path, "w", encoding="utf-8").write(text)
        out.append((path, text))
    return out


def check_tokenizer_ids(r, name):
    def check():
        from tokenizers import Tokenizer
        d = os.path.join(r.shared, "tokenizers", name)
        lib = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        n = 0
        for path, text in sample_texts(r):
            for special in (False, True):
                args = ["tokenize", d, "--file", path, "--json"] + (["--special"] if special else [])
                try:
                    ours = json.loads(r.anvil_run(*args))["ids"]
                except RuntimeError as e:
                    if "byte_fallback" in str(e):
                        return None, "anvil refuses SentencePiece-style BPE (byte_fallback) until issue #17"
                    raise
                theirs = lib.encode(text, add_special_tokens=special).ids
                if ours != theirs:
                    first = next(i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]) \
                        if any(a != b for a, b in zip(ours, theirs)) else min(len(ours), len(theirs))
                    return False, "%s: ids differ from position %d" % (os.path.basename(path), first)
                n += len(ours)
        return True, "identical ids on 3 texts x with/without special tokens (%d ids)" % n
    return check


def llama_bin(llama_cpp, tool):
    return os.path.join(llama_cpp, "llama-" + tool)


def llama_perplexity(llama_cpp, gguf, text):
    """llama-perplexity's final estimate. Its log thread sometimes loses the last lines at exit (on a
    pipe always, on a loaded machine also with a file): then the running estimate after the last
    chunk, which is the same number, is read instead, and a run missing chunks is repeated."""
    import re
    log = gguf + ".perplexity.log"
    for _ in range(3):
        with open(log, "w") as out:
            subprocess.run([llama_bin(llama_cpp, "perplexity"), "-m", gguf, "-f", text, "-c", "256", "-b", "256",
                            "-t", "2", "--no-warmup"], stdout=out, stderr=subprocess.STDOUT)
        output = open(log).read()
        m = re.search(r"Final estimate: PPL = ([0-9.]+)", output)
        if m:
            return float(m.group(1))
        chunks = re.search(r"calculating perplexity over (\d+) chunks", output)
        running = re.findall(r"\[(\d+)\]([0-9.]+),", output)
        if chunks and running and int(running[-1][0]) == int(chunks.group(1)):
            return float(running[-1][1])
    raise RuntimeError("llama-perplexity failed on %s: %s" % (gguf, output.strip().splitlines()[-1:]))


def check_llama_cpp_scores(r, llama_cpp):
    """Each GGUF type anvil writes, scored by llama.cpp, against llama-quantize's file of that type made
    from anvil's F32 GGUF (so that both carry the same metadata: the fixtures' refs/gguf files were
    written by an older converter that set tokenizer.ggml.add_bos_token false for base, whose
    tokenizer.json prepends BOS; llama-perplexity then scores other windows)."""
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR (llama.cpp's bin/, built outside the repo)"
    base = os.path.join(r.models, "base")
    text = r.path("ppl.txt")
    with open(os.path.join(r.shared, "data", "pkg.val.txt"), encoding="utf-8") as f:
        open(text, "w", encoding="utf-8").write(f.read()[:60_000])
    f32 = r.path("ll-base-F32.gguf")
    r.anvil_run("convert", base, "-o", f32, "--type", "f32")
    rows = []
    for t, cmd in (("F16", "convert"), ("Q8_0", "convert"), ("Q6_K", "quantize"), ("Q4_K_M", "quantize"), ("Q4_0", "quantize")):
        ours, theirs = r.path("ll-base-%s.gguf" % t), r.path("lq-base-%s.gguf" % t)
        r.anvil_run(cmd, base, "-o", ours, "--type", t.lower() if cmd == "convert" else t)
        res = subprocess.run([llama_bin(llama_cpp, "quantize"), f32, theirs, t], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            return False, "llama-quantize %s failed: %s" % (t, res.stdout.strip().splitlines()[-1:])
        a, b = llama_perplexity(llama_cpp, ours, text), llama_perplexity(llama_cpp, theirs, text)
        if a != b:
            return False, "%s: anvil's file %.4f vs llama-quantize's %.4f" % (t, a, b)
        rows.append("%s %.4f" % (t, a))
    return True, "same perplexity as llama-quantize's file of each type, to the printed digit: " + ", ".join(rows)


def check_llama_cpp_tokenizes(r, llama_cpp):
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR"
    from tokenizers import Tokenizer
    base = os.path.join(r.models, "base")
    gguf = r.path("tok-base.gguf")
    r.anvil_run("convert", base, "-o", gguf, "--type", "f16")
    lib = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    n = 0
    for path, text in sample_texts(r):
        res = subprocess.run([llama_bin(llama_cpp, "tokenize"), "-m", gguf, "-f", path, "--ids", "--log-disable",
                              "--no-bos"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ids = json.loads(res.stdout.strip().splitlines()[-1])
        if ids != lib.encode(text, add_special_tokens=False).ids:
            return False, "%s: llama.cpp's ids differ from the tokenizers library's" % os.path.basename(path)
        n += len(ids)
    return True, "llama-tokenize on anvil's GGUF = tokenizers library's ids on 3 texts (%d ids)" % n


def check_llama_quantize_input(r, llama_cpp):
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR"
    base = os.path.join(r.models, "base")
    done = []
    for t in ("f32", "f16", "bf16"):
        src, dst = r.path("lq-%s.gguf" % t), r.path("lq-%s-Q4_K_M.gguf" % t)
        r.anvil_run("convert", base, "-o", src, "--type", t)
        res = subprocess.run([llama_bin(llama_cpp, "quantize"), src, dst, "Q4_K_M"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            return False, "llama-quantize refused anvil's %s GGUF: %s" % (t, res.stdout.strip().splitlines()[-1:])
        done.append(t.upper())
    return True, "llama-quantize takes anvil's %s GGUFs to Q4_K_M" % "/".join(done)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--anvil", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--mergekit-yaml", help="mergekit's mergekit-yaml, from its own environment")
    ap.add_argument("--only", help="run only checks whose name contains this")
    ap.add_argument("--llama-cpp", help="llama.cpp's bin/ directory (llama-perplexity, llama-quantize, llama-tokenize)")
    args = ap.parse_args()
    anvil = os.path.abspath(args.anvil)
    shared = os.path.abspath(os.environ.get("ANVIL_SHARED") or args.shared)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="anvil-interop-")
    r = Runner(anvil, shared, work)
    v = versions()
    tf, pf = "transformers %s" % v["transformers"], "peft %s" % v["peft"]
    base = os.path.join(r.models, "base")
    checks = [
        ("convert GGUF -> HF (llama.cpp's base-F16.gguf)", tf,
         transformers_loads(r, "gguf_to_hf", lambda out: r.anvil_run(
             "convert", os.path.join(shared, "refs", "gguf", "base-F16.gguf"), "-o", out))),
        ("convert GGUF -> HF (anvil's tiny-mixtral GGUF)", tf,
         transformers_loads(r, "mixtral_gguf_to_hf", lambda out: (r.anvil_run(
             "convert", os.path.join(r.models, "tiny-mixtral"), "-o", out + ".gguf", "--type", "f32"),
             r.anvil_run("convert", out + ".gguf", "-o", out)))),
        ("merge configs/linear.yaml", tf,
         transformers_loads(r, "merge_linear", lambda out: r.anvil_run("merge", os.path.join(repo, "configs", "linear.yaml"), "-o", out))),
        ("merge configs/ties.yaml", tf,
         transformers_loads(r, "merge_ties", lambda out: r.anvil_run("merge", os.path.join(repo, "configs", "ties.yaml"), "-o", out))),
        ("convert --merge-adapter (base + lora-random)", tf,
         transformers_loads(r, "merged_adapter", lambda out: r.anvil_run(
             "convert", base, "--merge-adapter", os.path.join(r.models, "lora-random"), "-o", out))),
        ("quantize --format compressed-tensors --bits 8", tf + ", compressed-tensors %s" % v["compressed_tensors"],
         check_int_format(r, "compressed-tensors")),
        ("quantize --format gptq --bits 8", tf, check_int_format(r, "gptq")),
        ("PEFT loads an adapter anvil trained", pf, lambda: check_peft_loads_anvil_adapter(r)),
    ]
    for family in ("tiny-llama", "tiny-qwen2", "tiny-mixtral"):
        what = "(attention)" if "mixtral" in family else "(all linear layers)"
        checks.append(("anvil loads a PEFT adapter of %s %s" % (family, what), pf, check_anvil_loads_peft_adapter(r, family)))
    checks.append(("gguf-py reads every GGUF anvil writes", "gguf %s" % v["gguf"], lambda: check_gguf_py(r)))
    for cfg in sorted(os.listdir(os.path.join(repo, "configs"))):
        checks.append(("mergekit: configs/%s" % cfg, "mergekit", check_mergekit(r, args.mergekit_yaml, os.path.join(repo, "configs", cfg))))
    lc = args.llama_cpp and os.path.abspath(args.llama_cpp)
    checks.append(("llama.cpp scores every GGUF type anvil writes as llama-quantize's file of that type", "llama.cpp",
                   lambda: check_llama_cpp_scores(r, lc)))
    checks.append(("llama.cpp tokenizes with anvil's GGUF vocabulary as the tokenizers library does", "llama.cpp",
                   lambda: check_llama_cpp_tokenizes(r, lc)))
    checks.append(("llama-quantize accepts anvil's F32/F16/BF16 GGUFs", "llama.cpp", lambda: check_llama_quantize_input(r, lc)))
    for name in sorted(os.listdir(os.path.join(shared, "tokenizers"))):
        checks.append(("anvil tokenize = tokenizers library: %s" % name, "tokenizers %s" % v["tokenizers"],
                       check_tokenizer_ids(r, name)))

    print("peers: " + ", ".join("%s %s" % (k, v[k]) for k in v if v[k]))
    rows, failed = [], 0
    for name, peer, fn in checks:
        if args.only and args.only not in name:
            continue
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a check that breaks is a failure, shown
            ok, detail = False, "error: %s" % (str(e).splitlines() or [type(e).__name__])[0][:200]
            if os.environ.get("ANVIL_INTEROP_DEBUG"):
                traceback.print_exc()
        status = "pass" if ok else ("explained" if ok is None else "FAIL")
        failed += status == "FAIL"
        rows.append((name, peer, status, detail))
        print("%-9s %s: %s" % (status, name, detail), flush=True)
    print()
    print("| check | peer | result | measured |")
    print("|---|---|---|---|")
    for row in rows:
        print("| %s | %s | %s | %s |" % row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
