#!/usr/bin/env python3
"""anvil's outputs in the real peers (issue #19): run by bench/interop.sh inside a virtual
environment that holds them. Each check makes an output with anvil from ../shared's fixtures,
hands it to the peer, and compares what both compute; one table row per check.

    python3 bench/interop.py --anvil build/tools/anvil --shared ../shared [--mergekit-yaml PATH] [--only SUBSTRING]
                             [--llama-cpp TREE/build/bin]

Perplexities are compared on the same text and windows as `anvil eval` (windows of 256 tokens,
positions 1..255 scored); the peers compute in fp32 (a bf16 checkpoint is loaded as bf16 and then
cast, so rotary frequencies are rounded as transformers rounds them). A relative difference under
1e-4 is a pass: both sides sum the same fp32 products in different orders (measured ~1e-6).

Tokenizer rows compare ids with the tokenizers library's refs/tokenizer_real_cases.json, llama.cpp's
llama-tokenize and converter (convert_hf_to_gguf.py of the tree whose build/bin is --llama-cpp, run on
tiny random models made here that carry the real tokenizers), sentencepiece, and transformers'
apply_chat_template; transformers reads a bare tokenizer.model only with protobuf installed.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import traceback

PPL_TOLERANCE = 1e-4
WINDOW = 256


def versions():
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("torch", "transformers", "peft", "safetensors", "gguf", "compressed-tensors", "tokenizers", "sentencepiece"):
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


def peft_scores_adapter(r, base_dir, adapter_dir):
    """PEFT loads the adapter onto the base with no key left over either way, and scores the text
    as anvil eval --adapter does."""
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict
    model = PeftModel.from_pretrained(load_hf(base_dir), adapter_dir).eval()
    # The same load, asked for the keys it could not place.
    result = set_peft_model_state_dict(model, load_peft_weights(adapter_dir))
    unexpected = list(getattr(result, "unexpected_keys", []))
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if unexpected or missing:
        return False, "PEFT: %d unexpected, %d missing LoRA keys (%s)" % (len(unexpected), len(missing),
                                                                        (unexpected + missing)[:2])
    ok, detail = compare_ppl(r.anvil_ppl(base_dir, adapter=adapter_dir), peer_ppl(model, tokens_of(base_dir, r.text)))
    return ok, "no missing or unexpected keys; " + detail


def check_peft_loads_anvil_adapter(r, family="base"):
    import torch
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict
    out = r.path("trained-" + family)
    recipe = r.path("recipe-%s.yaml" % family)
    open(recipe, "w").write(
        "base_model: %s/%s\noutput_dir: %s\ndatasets: [{path: %s/data/fortune.train.txt, type: raw}]\n"
        "sequence_len: 64\nmicro_batch_size: 4\nmax_steps: 4\nthreads: 2\n"
        "optimizer: {lr: 5.0e-3}\nlora: {r: 8, alpha: 16, target_modules: all-linear}\n" % (r.models, family, out, r.shared))
    r.anvil_run("train", recipe)
    return peft_scores_adapter(r, os.path.join(r.models, family), out)


def check_moe_in_transformers(r, repo):
    """transformers loads anvil moe's Mixtral layout: a MoE whose only expert is ft-fortune gives
    ft-fortune's logits, and the shipped two-expert MoE scores in transformers as in anvil."""
    import torch
    one_cfg, one = r.path("moe-one.yaml"), r.path("moe-one")
    ft = os.path.join(r.models, "ft-fortune")
    open(one_cfg, "w").write("base_model: %s\ngate_mode: random\nexperts_per_token: 1\ndtype: float32\n"
                             "experts:\n  - source_model: %s\n" % (ft, ft))
    r.anvil_run("moe", one_cfg, "-o", one)
    ids = torch.tensor([tokens_of(ft, r.text)[:256]])
    with torch.no_grad():
        diff = (load_hf(one)(ids).logits - load_hf(ft)(ids).logits).abs().max().item()
    cfg = r.path("moe-pair.yaml")
    text = open(os.path.join(repo, "configs", "moe", "fortune_changelog.yaml")).read().replace("../../../shared", r.shared)
    open(cfg, "w").write(text)
    pair = r.path("moe-pair")
    r.anvil_run("moe", cfg, "-o", pair)
    ok, detail = compare_ppl(r.anvil_ppl(pair), peer_ppl(load_hf(pair), tokens_of(pair, r.text)))
    return ok and diff <= 1e-5, "one-expert MoE vs ft-fortune in transformers: largest logit difference %.2g; " \
                                "configs/moe/fortune_changelog.yaml: %s" % (diff, detail)


def check_qwen_moe_in_transformers(r):
    """transformers loads anvil moe's Qwen2-MoE layout (experts ft-fortune and ft-changelog, the
    shared expert base, cheap_embed gates) with no missing or unexpected weights, and scores it as
    anvil does. Written in fp32: transformers 5.24 keeps a bf16 model's rotary inv_freq in fp32,
    where anvil rounds it to bf16 as the fixtures' transformers did (../shared/README.md, "a quirk
    to know"); in bf16 the two differ by ~2e-4 in perplexity for that reason alone."""
    import torch
    from transformers import AutoModelForCausalLM
    cfg, out = r.path("moe-qwen.yaml"), r.path("moe-qwen")
    m = r.models
    open(cfg, "w").write(
        "base_model: %s/base\ngate_mode: cheap_embed\nexperts_per_token: 1\ndtype: float32\nexperts:\n"
        "  - source_model: %s/ft-fortune\n    positive_prompts: [\"If you can't be good, be careful.\"]\n"
        "  - source_model: %s/ft-changelog\n    positive_prompts: [\"  * New upstream release\"]\n"
        "shared_experts:\n  - source_model: %s/base\n    positive_prompts: [\"Package: hello\"]\n" % (m, m, m, m))
    r.anvil_run("moe", cfg, "-o", out)
    model, info = AutoModelForCausalLM.from_pretrained(out, dtype="auto", output_loading_info=True)
    missing, unexpected = list(info.get("missing_keys", [])), list(info.get("unexpected_keys", []))
    if missing or unexpected:
        return False, "transformers: %d missing, %d unexpected weights (%s)" % (len(missing), len(unexpected),
                                                                             (missing + unexpected)[:2])
    ok, detail = compare_ppl(r.anvil_ppl(out), peer_ppl(model.to(torch.float32).eval(), tokens_of(out, r.text)))
    return ok, "no missing or unexpected weights; " + detail


def check_peft_loads_extracted_adapter(r):
    out = r.path("extracted-r16")
    base_dir = os.path.join(r.models, "base")
    r.anvil_run("extract-lora", "--base", base_dir, "--model", os.path.join(r.models, "ft-fortune"), "-o", out,
                "--rank", "16", "--energy", "0.6")
    ok, detail = peft_scores_adapter(r, base_dir, out)
    return ok, "rank 16 with --energy 0.6 (rank_pattern, lora_embedding_A/B): " + detail


def check_anvil_loads_peft_adapter(r, family):
    def check():
        import torch
        from peft import LoraConfig, get_peft_model
        base_dir = os.path.join(r.models, family)
        torch.manual_seed(0)
        base = load_hf(base_dir)
        # Mixtral: the attention projections only. With transformers 5, PEFT adapts its experts as
        # fused 3-D parameters (target_parameters), a layout anvil's adapter loader refuses by name.
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if "mixtral" in family or "moe" in family else "all-linear"
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


def merged_in_fp32(r, mergekit_yaml, config):
    """Runs CONFIG again with dtype float32 through anvil and mergekit (no bf16 rounding in either's
    steps) and returns both outputs' tensors (anvil's, mergekit's)."""
    name = os.path.splitext(os.path.basename(config))[0]
    text = open(config).read().replace("dtype: bfloat16", "dtype: float32").replace("../../shared", r.shared)
    cfg = r.path(name + "-fp32.yaml")
    open(cfg, "w").write(text)
    ours, theirs = r.path("anvil-%s-fp32" % name), r.path("mergekit-%s-fp32" % name)
    r.anvil_run("merge", cfg, "-o", ours)
    subprocess.run([mergekit_yaml, cfg, theirs, "--allow-crimes", "--lazy-unpickle"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return dir_tensors(ours), dir_tensors(theirs)


def selection_in_fp32(r, mergekit_yaml, config, detail_bf16, kept_counts):
    """A magnitude-selecting method (TIES, breadcrumbs) again with dtype float32 (no bf16 rounding
    on either side): every element where the two still differ must sit exactly at one of a task
    vector's selection thresholds (the k-th largest |delta| for each k in kept_counts(numel)),
    where both keep k entries of equal magnitude but choose different ones (mergekit:
    torch.argsort's unstable order; anvil: index order). Anything else would be a real
    disagreement."""
    import torch
    a, b = merged_in_fp32(r, mergekit_yaml, config)
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
            ordered = torch.sort(delta, descending=True).values
            for kept in kept_counts(delta.numel()):
                if 0 < kept <= delta.numel():
                    at |= (delta == ordered[kept - 1]).reshape(d.shape)
        at_threshold += int((d & at).sum())
    ok = at_threshold == differ
    return ok, detail_bf16 + ("; mergekit rounds each step to bf16; in fp32 %d elements differ, %d of them exactly at a "
                              "task vector's selection threshold (equal magnitudes: mergekit keeps torch.argsort's "
                              "choice, anvil the first in index order)" % (differ, at_threshold))


def sce_in_fp32(r, mergekit_yaml, config, detail_bf16):
    """SCE in fp32 on both sides: where the two differ by more than float rounding (1e-5 of the
    largest weight), the element's variance across the task vectors must equal the selection
    threshold (the k-th largest), where both keep k of several equal variances but choose
    different ones; the mean-square weights then differ slightly everywhere, which the rounding
    bound covers."""
    import torch
    a, b = merged_in_fp32(r, mergekit_yaml, config)
    base = dir_tensors(os.path.join(r.models, "base"))
    inputs = [dir_tensors(os.path.join(r.models, m)) for m in ("ft-fortune", "ft-changelog")]
    topk = config_density(config, "select_topk", 1.0)
    scale = max(b[k].abs().max().item() for k in b)
    differ = at_threshold = 0
    elsewhere = 0.0
    for k in a:
        d = (a[k] - b[k]).abs() > 1e-5 * scale
        if not d.any():
            continue
        differ += int(d.sum())
        tvs = torch.stack([ft[k].float() - base[k].float() for ft in inputs])
        var = torch.var(tvs, dim=0, unbiased=False)
        kept = int(int(torch.count_nonzero(var)) * topk)
        threshold = torch.sort(var.reshape(-1), descending=True).values[kept - 1]
        at = var == threshold
        at_threshold += int((d & at).sum())
        elsewhere = max(elsewhere, ((a[k] - b[k]).abs() * (~at)).max().item())
    # Elsewhere only the weights move: a different choice among equal variances changes a model's
    # mean square by a few of its ~10^5 entries, so the weighted averages shift by ~1e-4.
    ok = elsewhere <= 1e-3 * scale
    return ok, detail_bf16 + ("; in fp32 %d elements differ by more than 1e-5 of the largest weight, %d of them at the "
                              "variance threshold (equal variances: torch.topk's choice vs anvil's index order); "
                              "elsewhere the largest difference is %.2g (%.1e of the largest weight: the mean-square "
                              "weights follow the choice)" % (differ, at_threshold, elsewhere, elsewhere / scale))


def config_density(config, key, default):
    """The (single) per-model value of `key` in a shipped config, e.g. density: 0.7."""
    m = re.search(r"^\s*%s:\s*([0-9.]+)" % key, open(config).read(), re.M)
    return float(m.group(1)) if m else default


def breadcrumbs_counts(density, gamma):
    """mergekit's magnitude_outliers: the ranks it keeps are the top (target + n_top) minus the top n_top."""
    def counts(n):
        target, top = int(density * n), int(gamma * n)
        bottom = n - target - top
        if bottom < 0:
            top += bottom
        return [target + top, top]
    return counts


def in_fp32(r, mergekit_yaml, config, detail_bf16, tolerance):
    """The config again with dtype float32 on both sides (no bf16 rounding in mergekit's steps):
    the largest difference, relative to the largest weight, must be under `tolerance`."""
    a, b = merged_in_fp32(r, mergekit_yaml, config)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    scale = max(b[k].float().abs().max().item() for k in b)
    return worst <= tolerance * scale, detail_bf16 + "; in fp32 the largest difference is %.3g (%.1e of the largest weight)" % (
        worst, worst / scale)


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
        method = name.split("_")[0] if name.startswith("dare") or name.startswith("slerp_") else name
        if method in ("linear", "passthrough"):
            return same == len(a), detail
        if method in ("nearswap", "model_stock", "karcher", "multislerp", "nuslerp"):
            # mergekit computes these in the config's dtype, every step rounded to bf16: compare in fp32.
            return in_fp32(r, mergekit_yaml, config, detail, 1e-5)
        if method in ("slerp", "task_arithmetic"):
            # mergekit computes in the config's dtype (bf16: every delta, product and sum rounded),
            # anvil in fp32 with one rounding at the end: up to a couple of bf16 ulps apart.
            ok = worst <= 2 ** -7 * scale
            if "gradient" in name:  # the tensors outside the layers: the gradient at t = 0 (mergekit's plan_module)
                tail = ("model.norm.weight", "lm_head.weight")
                ok = ok and all(torch.equal(a[k], b[k]) for k in tail if k in a)
                detail += "; final norm and LM head bit-identical (t = 0, both)"
            return ok, detail + "; mergekit rounds each step to bf16, anvil once"
        if method == "ties":
            density = config_density(config, "density", 1.0)
            return selection_in_fp32(r, mergekit_yaml, config, detail, lambda n: [int(density * n)])
        if method in ("breadcrumbs", "breadcrumbs_ties"):
            counts = breadcrumbs_counts(config_density(config, "density", 1.0), config_density(config, "gamma", 0.01))
            return selection_in_fp32(r, mergekit_yaml, config, detail, counts)
        if method == "sce":
            return sce_in_fp32(r, mergekit_yaml, config, detail)
        return None, detail + "; random drops (DARE, DELLA): anvil's seeded generator, not torch's"
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
                ours = json.loads(r.anvil_run(*args))["ids"]
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
                              "--no-bos", "--no-escape"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ids = json.loads(res.stdout.strip().splitlines()[-1])
        if ids != lib.encode(text, add_special_tokens=False).ids:
            return False, "%s: llama.cpp's ids differ from the tokenizers library's" % os.path.basename(path)
        n += len(ids)
    return True, "llama-tokenize on anvil's GGUF = tokenizers library's ids on 3 texts (%d ids)" % n


def tiny_llama(r, name, tokenizer_files, vocab=None, bos=None, eos=None):
    """A random tiny LlamaForCausalLM (hidden 64, 2 layers, 4 heads, 2 KV heads, FFN 128, tied, float16)
    made by transformers in the work dir, with the given tokenizer files (paths, or (path, name) pairs)
    copied beside it. With a tokenizer.json among them, the vocabulary is its size (added tokens
    included) and config.json's bos/eos_token_id are tokenizer_config.json's bos_token/eos_token, as
    in the real models."""
    import shutil
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    out = r.path(name)
    if os.path.isdir(out):
        return out
    tokenizer_files = [f if isinstance(f, tuple) else (f, os.path.basename(f)) for f in tokenizer_files]
    by_name = {n: f for f, n in tokenizer_files}
    if "tokenizer.json" in by_name:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(by_name["tokenizer.json"])
        vocab = tok.get_vocab_size(with_added_tokens=True)
        with open(by_name["tokenizer_config.json"], encoding="utf-8") as f:
            tc = json.load(f)
        def token_id(key):
            t = tc.get(key)
            t = t.get("content") if isinstance(t, dict) else t
            return tok.token_to_id(t) if t else None
        bos, eos = token_id("bos_token"), token_id("eos_token")
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=vocab, tie_word_embeddings=True, bos_token_id=bos,
                      eos_token_id=eos, pad_token_id=None)
    LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(out)
    for f, n in tokenizer_files:
        shutil.copy(f, os.path.join(out, n))
    return out


def real_cases(r, name):
    """The tokenizers library's cases for one of shared/tokenizers: the first 60 texts (package
    descriptions, fortunes) and the hand-written edge cases at the end (spaces, tabs, scripts, emoji,
    special-token look-alikes, the empty text)."""
    with open(os.path.join(r.shared, "refs", "tokenizer_real_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["tokenizers"][name]
    return cases[:60] + cases[180:]


def first_difference(a, b):
    return next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))


def show_difference(text, ours, theirs, who=("got", "expected")):
    i = first_difference(ours, theirs)
    return "text %r: from position %d, %s %s vs %s %s" % (text[:60], i, who[0], ours[max(0, i - 2):i + 4], who[1],
                                                           theirs[max(0, i - 2):i + 4])


def llama_tokenize(llama_cpp, gguf, text, path):
    """llama-tokenize's ids of one text, read from a file verbatim (--no-escape: backslashes stay), no
    BOS; llama-tokenize parses special tokens in the text by default, as the tokenizers library does."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    res = subprocess.run([llama_bin(llama_cpp, "tokenize"), "-m", gguf, "-f", path, "--ids", "--log-disable",
                          "--no-bos", "--no-escape"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise RuntimeError("llama-tokenize failed: %s" % res.stderr.strip().splitlines()[-1:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def with_metaspace_first(tokenizer_json, out):
    """Mistral-7B's tokenizer.json with the non-legacy spelling of its dummy prefix (transformers'
    legacy=False conversion, Mistral-7B-v0.3's file): no Prepend normalizer, a Metaspace pre-tokenizer
    with prepend_scheme "first", which puts the prefix before the text's first piece only, and not
    before a text that already begins with a space."""
    with open(tokenizer_json, encoding="utf-8") as f:
        j = json.load(f)
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return out


def check_llama_cpp_tokenizes_spm(r, llama_cpp, name, first=False):
    def check():
        if not llama_cpp:
            return None, "not run: pass --llama-cpp DIR"
        from tokenizers import Tokenizer
        d = os.path.join(r.shared, "tokenizers", name)
        files = [os.path.join(d, f) for f in ("tokenizer.json", "tokenizer_config.json")]
        tag = name + ("-first" if first else "")
        if first:
            files[0] = with_metaspace_first(files[0], r.path("tokenizer-%s/tokenizer.json" % tag))
        lib = Tokenizer.from_file(files[0])
        model = tiny_llama(r, "spm-" + tag, files)
        gguf = r.path("spm-%s.gguf" % tag)
        r.anvil_run("convert", model, "-o", gguf, "--type", "f16")
        cases = real_cases(r, name)
        texts = [c["text"] for c in cases]
        expected = [lib.encode(t, add_special_tokens=False).ids for t in texts] if first else [c["ids"] for c in cases]
        theirs = [llama_tokenize(llama_cpp, gguf, t, r.path("spm-text.txt")) for t in texts]
        ours = anvil_tokenize_texts(r, gguf, texts, "spm-" + tag)
        specials = [t.content for t in lib.get_added_tokens_decoder().values() if t.special]
        # llama.cpp's SPM tokenizer (llama-vocab.cpp, LLAMA_VOCAB_TYPE_SPM) puts a space before every raw
        # text fragment that begins the text or follows a special token, whenever the GGUF's
        # add_space_prefix is set, and the text may already begin with one; a GGUF "llama"
        # vocabulary has no way to say "before the first piece only, and not twice".
        explained = (lambda t: t.startswith(" ") or any(p in t for p in specials)) if first else (lambda t: False)
        differ = [i for i in range(len(texts)) if theirs[i] != expected[i]]
        odd = [i for i in differ if not explained(texts[i])]
        readback = sum(a == b for a, b in zip(ours, theirs))
        detail = "llama-tokenize on anvil's F16 GGUF: %d/%d texts identical; anvil reading that GGUF back = llama.cpp on %d/%d" % (
            len(texts) - len(differ), len(texts), readback, len(texts))
        if odd or readback != len(texts):
            bad = [show_difference(texts[i], theirs[i], expected[i], ("llama.cpp", "tokenizers")) for i in odd]
            bad += [show_difference(texts[i], ours[i], theirs[i], ("anvil", "llama.cpp"))
                    for i in range(len(texts)) if ours[i] != theirs[i]]
            return False, detail + "; " + "; ".join(bad[:3])
        if differ:
            examples = sorted({differ[0]} | set([i for i in differ if not texts[i].startswith(" ")][:1]))
            shown = "; ".join(show_difference(texts[i], theirs[i], expected[i], ("llama.cpp", "tokenizers"))
                              for i in examples)
            return None, detail + (
                ". The %d others begin with a space or hold %s: the GGUF can only say add_space_prefix, and "
                "llama.cpp's SPM tokenizer then puts a space before the text and after every special token "
                "(llama-vocab.cpp: is_prev_special), where this tokenizer.json's Metaspace(prepend_scheme "
                "\"first\") adds \u2581 only at the start of the text, and not to a text beginning with a space; "
                "e.g. %s" % (len(differ), "/".join(specials), shown))
        return True, detail
    return check


def llama_cpp_converter(llama_cpp):
    """convert_hf_to_gguf.py of the tree that --llama-cpp's bin/ (TREE/build/bin) was built in, or None."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(llama_cpp))), "convert_hf_to_gguf.py")
    return script if os.path.isfile(script) else None


def llama_cpp_convert(r, llama_cpp, model, out):
    """llama.cpp's own converter (with its tree's gguf-py, which it puts first on its path), in this
    environment's Python; returns the GGUF's tokenizer.ggml.model and .pre."""
    script = llama_cpp_converter(llama_cpp)
    res = subprocess.run([sys.executable, script, model, "--outfile", out, "--outtype", "f16"], cwd=os.path.dirname(script),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise RuntimeError("convert_hf_to_gguf.py failed: %s" % res.stdout.strip().splitlines()[-1:])
    from gguf import GGUFReader
    fields = GGUFReader(out).fields
    return {k: fields[k].contents() for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre") if k in fields}


def anvil_tokenize_texts(r, model, texts, name, special=False):
    """anvil tokenize MODEL --jsonl [--special]: the ids of each text."""
    path = r.path(name + ".jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    out = r.anvil_run("tokenize", model, "--jsonl", path, *(["--special"] if special else []))
    return [json.loads(line)["ids"] for line in out.splitlines()]


def with_bos_post_processor(tokenizer_json, out, bos):
    """Llama-3's tokenizer.json as Meta later published it: the same, with a post-processor that
    prepends BOS (the fixture's first release adds none, so llama.cpp's converter hashes it as
    Smaug-Llama-3's, "smaug-bpe"; with BOS it is "llama-bpe")."""
    with open(tokenizer_json, encoding="utf-8") as f:
        j = json.load(f)
    name = next(t["content"] for t in j["added_tokens"] if t["id"] == bos)
    j["post_processor"] = {"type": "Sequence", "processors": [
        j["post_processor"],
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": name, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {name: {"id": name, "ids": [bos], "tokens": [name]}}}]}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return out


def check_anvil_reads_llama_cpp_bpe(r, llama_cpp, name, pre, bos=None):
    def check():
        if not llama_cpp or not llama_cpp_converter(llama_cpp):
            return None, "not run: pass --llama-cpp TREE/build/bin (its converter, TREE/convert_hf_to_gguf.py, is used)"
        from tokenizers import Tokenizer
        d = os.path.join(r.shared, "tokenizers", name)
        files = [os.path.join(d, f) for f in ("tokenizer.json", "tokenizer_config.json")]
        tag = name + ("-bos" if bos is not None else "")
        if bos is not None:
            files[0] = with_bos_post_processor(files[0], r.path("tokenizer-" + tag + "/tokenizer.json"), bos)
        lib = Tokenizer.from_file(files[0])
        model = tiny_llama(r, "bpe-" + tag, files)
        gguf = r.path("llama-cpp-%s.gguf" % tag)
        meta = llama_cpp_convert(r, llama_cpp, model, gguf)
        if meta.get("tokenizer.ggml.pre") != pre:
            return False, "llama.cpp's converter wrote %s, not pre %s" % (meta, pre)
        cases = real_cases(r, name)
        texts = [c["text"] for c in cases]
        bad = []
        for special in (False, True):
            ours = anvil_tokenize_texts(r, gguf, texts, "bpe-" + tag, special)
            for t, a in zip(texts, ours):
                theirs = lib.encode(t, add_special_tokens=special).ids
                if a != theirs:
                    bad.append(("with special tokens, " if special else "") +
                               show_difference(t, a, theirs, ("anvil", "tokenizers")))
        detail = "llama.cpp's converter: %s / pre %s; anvil tokenize on its GGUF: %d/%d texts x with/without special tokens identical" % (
            meta.get("tokenizer.ggml.model"), pre, 2 * len(cases) - len(bad), 2 * len(cases))
        if bos is not None:
            detail += " (BOS %d added with them)" % bos
        if bad:
            return False, detail + "; " + "; ".join(bad[:3])
        return True, detail
    return check


def check_anvil_reads_llama_cpp_spm(r, llama_cpp, repo):
    """llama.cpp's converter on a tokenizer.model alone writes a "llama" vocabulary: pieces, scores and
    types, but not the model's normalizer (tiny_bpe.model's nmt_nfkc rules and extra-whitespace
    removal), and llama.cpp always puts a space before a text and after a special token. So anvil
    on that GGUF must give llama-tokenize's ids on every text, and sentencepiece's and transformers'
    on every text except those that, by these rules alone, they tokenize otherwise."""
    if not llama_cpp or not llama_cpp_converter(llama_cpp):
        return None, "not run: pass --llama-cpp TREE/build/bin (its converter, TREE/convert_hf_to_gguf.py, is used)"
    import sentencepiece
    sp_dir = os.path.join(repo, "tests", "data", "sentencepiece")
    model = tiny_llama(r, "spm-tokenizer-model", [(os.path.join(sp_dir, "tiny_bpe.model"), "tokenizer.model")],
                       vocab=600, bos=1, eos=2)
    gguf = r.path("llama-cpp-spm.gguf")
    meta = llama_cpp_convert(r, llama_cpp, model, gguf)
    with open(os.path.join(sp_dir, "texts.txt"), encoding="utf-8") as f:
        texts = f.read().split("\n")[:-1]
    ours = anvil_tokenize_texts(r, gguf, texts, "spm-gguf")
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(model, "tokenizer.model"))
    specials = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    has_special = lambda t: any(p in t for p in specials)  # noqa: E731
    normalized = lambda t: t and sp.normalize(t) != ("\u2581" + t).replace(" ", "\u2581")  # noqa: E731
    refs = [("llama-tokenize", [llama_tokenize(llama_cpp, gguf, t, r.path("spm-text.txt")) for t in texts],
             lambda t: False, "")]
    try:
        import google.protobuf  # noqa: F401 - transformers reads tokenizer.model through it
    except ImportError:
        transformers_note = "; transformers not run: converting a tokenizer.model needs protobuf, not installed"
    else:
        from transformers import AutoTokenizer, LlamaTokenizer
        transformers_note = ""
        lt = LlamaTokenizer.from_pretrained(model)
        auto = AutoTokenizer.from_pretrained(model)
        refs.append(("transformers LlamaTokenizer(Fast) (legacy=%s, the default)" % lt.legacy,
                     [lt.encode(t, add_special_tokens=False) for t in texts],
                     lambda t: t.startswith(" ") or has_special(t),
                     "begin with a space (Metaspace prepends no \u2581 to a text that begins with one) or hold "
                     "%s (no \u2581 after a special token)" % "/".join(specials)))
        refs.append(("AutoTokenizer's %s" % type(auto).__name__, [auto.encode(t, add_special_tokens=False) for t in texts],
                     lambda t: normalized(t) or has_special(t),
                     "changed by the model's normalizer, or hold special tokens (matched, with no \u2581 after them)"))
    refs.append(("sentencepiece", [sp.encode(t) for t in texts], lambda t: normalized(t) or has_special(t),
                 "changed by the model's normalizer (NFKC, whitespace), or hold %s (encoded as text)" % "/".join(specials)))
    parts, unexplained = [], []
    for who, ids, explains, why in refs:
        differ = [i for i, t in enumerate(texts) if ours[i] != ids[i]]
        odd = [i for i in differ if not explains(texts[i])]
        unexplained += [who + ": " + show_difference(texts[i], ours[i], ids[i], ("anvil", who)) for i in odd]
        parts.append("= %s on %d/%d%s" % (who, len(texts) - len(differ), len(texts),
                                          " (the %d others: %s)" % (len(differ), why) if differ and not odd else ""))
    direct = anvil_tokenize_texts(r, model, texts, "spm-dir")
    same = sum(a == b for a, b in zip(direct, refs[-1][1]))
    detail = "llama.cpp's converter: %s / pre %s; anvil tokenize on its GGUF %s%s; anvil on the tokenizer.model itself = sentencepiece on %d/%d" % (
        meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre"), ", ".join(parts), transformers_note, same, len(texts))
    if unexplained:
        return False, detail + "; " + "; ".join(unexplained[:3])
    return True, detail


CHATS = [
    ([{"role": "user", "content": "Hello! What is a Debian package?"}], True),
    ([{"role": "user", "content": "Hello! What is a Debian package?"}], False),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "Name two  text editors.\n(One per line.)"}], True),
    ([{"role": "system", "content": "You answer in German."},
      {"role": "user", "content": "How do I say 'thank you'?"},
      {"role": "assistant", "content": "Danke!"},
      {"role": "user", "content": "And 'good night'?"}], True),
    ([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
      {"role": "user", "content": "And 3*3?"}, {"role": "assistant", "content": "9"}], False),
    ([{"role": "system", "content": "Käse und Brötchen. \U0001F917"},
      {"role": "user", "content": "  leading spaces\tand a tab"},
      {"role": "assistant", "content": "Noted:\n\n- one\n- two"}], False),
]


def check_chat_template(r, name):
    def check():
        from jinja2 import TemplateError
        from transformers import AutoTokenizer
        d = os.path.join(r.shared, "tokenizers", name)
        tok = AutoTokenizer.from_pretrained(d)
        path = r.path("chats-%s.jsonl" % name)
        with open(path, "w", encoding="utf-8") as f:
            for messages, gen in CHATS:
                f.write(json.dumps({"messages": messages, "add_generation_prompt": gen}) + "\n")
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            if "chat_template" not in json.load(f):
                # No template: both must refuse rather than make one up.
                try:
                    tok.apply_chat_template(CHATS[0][0], tokenize=False)
                    return False, "its tokenizer_config.json has no chat_template, yet transformers rendered one"
                except ValueError:
                    pass
                try:
                    r.anvil_run("tokenize", d, "--chat", path)
                except RuntimeError as e:
                    if "has no chat template" in str(e):
                        return True, "no chat_template in its tokenizer_config.json: transformers and anvil both refuse"
                    raise
                return False, "its tokenizer_config.json has no chat_template, yet anvil rendered one"
        ours = [json.loads(line) for line in r.anvil_run("tokenize", d, "--chat", path).splitlines()]
        texts = ids = 0
        for i, ((messages, gen), mine) in enumerate(zip(CHATS, ours)):
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                enc = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
            except TemplateError as e:
                if "error" in mine:
                    continue
                return False, "conversation %d: transformers' template raised %r, anvil rendered" % (i, str(e))
            enc = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
            if "error" in mine:
                return False, "conversation %d: anvil: %s; transformers rendered %r" % (i, mine["error"], text[:80])
            if mine["text"] != text:
                at = first_difference(mine["text"], text)
                return False, "conversation %d: text differs from character %d: anvil %r vs transformers %r" % (
                    i, at, mine["text"][max(0, at - 20):at + 30], text[max(0, at - 20):at + 30])
            if mine["ids"] != enc:
                return False, "conversation %d: same text, ids differ: %s" % (
                    i, show_difference(text, mine["ids"], enc, ("anvil", "transformers")))
            texts += 1
            ids += len(enc)
        return True, "%d/%d conversations (system, multi-turn, add_generation_prompt both ways): same text and ids (%d ids)" % (
            texts, len(CHATS), ids)
    return check


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


FAMILIES = ("qwen3", "gemma", "gemma2", "gemma3", "phi3", "phi2", "qwen2-moe", "deepseek-moe", "minicpm")
REMOTE_CODE = ("deepseek-moe", "minicpm")  # transformers has no class for them; the fixtures carry no code


def check_family_gguf_to_hf(r, family):
    def check():
        if family in REMOTE_CODE:
            return None, "remote-code family: transformers needs the model's own modelling code, which the fixture lacks"
        out = r.path("family-%s-hf" % family)
        r.anvil_run("convert", os.path.join(r.models, "tiny-" + family, "model-f32.gguf"), "-o", out)
        model = load_hf(out)
        return compare_ppl(r.anvil_ppl(out), peer_ppl(model, tokens_of(out, r.text)))
    return check


def check_gemma3_linear_rope(r):
    """Gemma 3's larger models scale the global layers' rotary linearly (factor 8): anvil on the HF
    directory = transformers, and on its own GGUF of it (rope.scaling.type linear, factor 8, as
    llama.cpp's converter writes them: conversion/base.py) the same again."""
    import shutil
    src = os.path.join(r.models, "tiny-gemma3")
    out = r.path("gemma3-linear")
    os.makedirs(out, exist_ok=True)
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, f), out)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["rope_parameters"]["full_attention"] = {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    peer = peer_ppl(load_hf(out), tokens_of(out, r.text))
    ok, detail = compare_ppl(r.anvil_ppl(out), peer)
    r.anvil_run("convert", out, "-o", out + ".gguf", "--type", "f32")
    ok2, detail2 = compare_ppl(r.anvil_ppl(out + ".gguf"), peer)
    return ok and ok2, "HF directory: %s; anvil's GGUF of it: %s" % (detail, detail2)


def gguf_tensors(path):
    import gguf
    import numpy as np
    return {t.name: (t.tensor_type.name, list(map(int, t.shape)), np.array(t.data).view(np.uint8).tobytes())
            for t in gguf.GGUFReader(path).tensors}


def check_family_quantize(r, llama_cpp):
    """anvil quantize of each family's HF directory = llama-quantize of llama.cpp's own F32 GGUF of
    it: every tensor's type (the per-tensor rules), dims and bytes."""
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR"
    done = 0
    for family in FAMILIES:
        src = os.path.join(r.models, "tiny-" + family)
        for t in ("Q4_K_M", "Q3_K_M", "Q5_K_S", "Q8_0", "Q4_0"):
            ours, theirs = r.path("fq-%s-%s-anvil.gguf" % (family, t)), r.path("fq-%s-%s-lq.gguf" % (family, t))
            r.anvil_run("quantize", src, "-o", ours, "--type", t)
            res = subprocess.run([llama_bin(llama_cpp, "quantize"), os.path.join(src, "model-f32.gguf"), theirs, t],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if res.returncode != 0:
                return False, "llama-quantize failed on %s %s" % (family, t)
            a, b = gguf_tensors(ours), gguf_tensors(theirs)
            if a.keys() != b.keys():
                return False, "%s %s: tensor names differ: %s" % (family, t, sorted(set(a) ^ set(b))[:4])
            for name in b:
                if a[name] != b[name]:
                    what = "type %s vs %s" % (a[name][0], b[name][0]) if a[name][0] != b[name][0] else \
                           "dims %s vs %s" % (a[name][1], b[name][1]) if a[name][1] != b[name][1] else "bytes"
                    return False, "%s %s: %s differs (%s)" % (family, t, name, what)
            done += 1
    return True, "%d files (%d families x Q4_K_M/Q3_K_M/Q5_K_S/Q8_0/Q4_0): every tensor's type, dims and bytes identical" % (
        done, len(FAMILIES))


IMATRIX_TYPES = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q3_K_M", "Q3_K_L", "Q2_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                 "IQ4_NL", "Q8_0")
IMATRIX_RTOL = 1e-3  # llama-imatrix sums each column's squares in fp32, token by token (~70k here)


def imatrix_setup(r, llama_cpp):
    """base's F32 GGUF (both tools compute in fp32 on it), 200 kB of fortunes, and the importance
    matrices llama-imatrix and anvil imatrix measure on them with llama-imatrix's defaults
    (chunks of 512 tokens, BOS first)."""
    if "imatrix" not in r.__dict__:
        src, text = r.path("imx-base-f32.gguf"), r.path("imx-calib.txt")
        r.anvil_run("convert", os.path.join(r.models, "base"), "-o", src, "--type", "f32")
        with open(os.path.join(r.shared, "data", "fortune.train.txt"), encoding="utf-8") as f:
            open(text, "w", encoding="utf-8").write(f.read()[:200_000])
        theirs, ours = r.path("imx-llama.gguf"), r.path("imx-anvil.gguf")
        subprocess.run([llama_bin(llama_cpp, "imatrix"), "-m", src, "-f", text, "-o", theirs, "-t", "2", "--no-ppl"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        r.anvil_run("imatrix", src, "--calib", text, "-o", ours)
        r.imatrix = (src, theirs, ours)
    return r.imatrix


def imatrix_tensors(path):
    import gguf
    import numpy as np
    return {t.name: np.array(t.data, dtype=np.float64).ravel() for t in gguf.GGUFReader(path).tensors}


def llama_quantize(llama_cpp, src, out, t, imatrix):
    subprocess.run([llama_bin(llama_cpp, "quantize"), "--imatrix", imatrix, src, out, t, "2"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def check_imatrix_statistics(r, llama_cpp):
    """anvil imatrix = llama-imatrix on the same file and text: the same entries, token counts and
    metadata exactly, the sums within fp32 accumulation error; and llama-quantize given either
    file writes nearly the same Q4_K_M (a sum a rounding apart can flip a near-tie)."""
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR"
    src, theirs, ours = imatrix_setup(r, llama_cpp)
    a, b = imatrix_tensors(ours), imatrix_tensors(theirs)
    if a.keys() != b.keys():
        return False, "entries differ: %s" % sorted(set(a) ^ set(b))[:4]
    worst = 0.0
    for name in b:
        if name.endswith(".counts"):
            if list(a[name]) != list(b[name]):
                return False, "%s: %s tokens vs %s" % (name, a[name], b[name])
        else:
            worst = max(worst, float((abs(a[name] - b[name]) / abs(b[name]).clip(1e-30)).max()))
    if worst > IMATRIX_RTOL:
        return False, "sums differ by up to %.2g (relative)" % worst
    qa, qb = r.path("imx-q-from-anvil.gguf"), r.path("imx-q-from-llama.gguf")
    llama_quantize(llama_cpp, src, qa, "Q4_K_M", ours)
    llama_quantize(llama_cpp, src, qb, "Q4_K_M", theirs)
    ta, tb = gguf_tensors(qa), gguf_tensors(qb)
    blocks = same = 0
    for name, (_, _, bytes_b) in tb.items():
        size = 144 if "Q4_K" in tb[name][0] else 210 if "Q6_K" in tb[name][0] else len(bytes_b)
        for i in range(0, len(bytes_b), size):
            blocks += 1
            same += ta[name][2][i:i + size] == bytes_b[i:i + size]
    # The blocks that differ are near-ties either way: the two files' models score the same.
    pa, pb = r.anvil_ppl(qa), r.anvil_ppl(qb)
    return abs(pa / pb - 1) < 2e-3, "%d entries, token counts identical, sums within %.1e (relative; llama-imatrix " \
        "adds fp32, anvil fp64); llama-quantize Q4_K_M from either file: %.2f%% of the %d blocks identical, " \
        "perplexity %.4f vs %.4f (%+.3f%%)" % (len(b) // 2, worst, 100.0 * same / blocks, blocks, pa, pb, 100 * (pa / pb - 1))


def check_quantize_imatrix(r, llama_cpp):
    """anvil quantize --imatrix F = llama-quantize --imatrix F, F llama-imatrix's file: every tensor's
    type, dims and bytes, for every type anvil writes; and the quantize.imatrix.* keys."""
    if not llama_cpp:
        return None, "not run: pass --llama-cpp DIR"
    import gguf
    src, theirs, _ = imatrix_setup(r, llama_cpp)
    for t in IMATRIX_TYPES:
        ours, lq = r.path("imx-%s-anvil.gguf" % t), r.path("imx-%s-lq.gguf" % t)
        r.anvil_run("quantize", src, "-o", ours, "--type", t, "--imatrix", theirs)
        llama_quantize(llama_cpp, src, lq, t, theirs)
        a, b = gguf_tensors(ours), gguf_tensors(lq)
        if a != b:
            bad = [n for n in b if a.get(n) != b[n]]
            return False, "%s: %d of %d tensors differ, first %s" % (t, len(bad), len(b), bad[:1])
        keys = [k for k in gguf.GGUFReader(lq).fields if k.startswith("quantize.imatrix.")]
        fa, fb = gguf.GGUFReader(ours).fields, gguf.GGUFReader(lq).fields
        for k in keys:
            if k not in fa or fa[k].contents() != fb[k].contents() or fa[k].types != fb[k].types:
                return False, "%s: %s differs" % (t, k)
    return True, "%d types (%s): every tensor's type, dims and bytes identical; keys %s identical" % (
        len(IMATRIX_TYPES), ", ".join(IMATRIX_TYPES), ", ".join(sorted(k.split(".")[-1] for k in keys)))


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
    for family in ("tiny-phi3", "tiny-gemma2"):
        checks.append(("PEFT loads an adapter anvil trained on %s (all linear layers)" % family, pf,
                       lambda family=family: check_peft_loads_anvil_adapter(r, family)))
    for family in ("tiny-llama", "tiny-qwen2", "tiny-mixtral", "tiny-qwen3", "tiny-gemma", "tiny-gemma2", "tiny-gemma3",
                   "tiny-phi3", "tiny-phi2", "tiny-qwen2-moe"):
        what = "(attention)" if "mixtral" in family or "moe" in family else "(all linear layers)"
        checks.append(("anvil loads a PEFT adapter of %s %s" % (family, what), pf, check_anvil_loads_peft_adapter(r, family)))
    checks.append(("PEFT loads an adapter anvil extract-lora wrote", pf, lambda: check_peft_loads_extracted_adapter(r)))
    checks.append(("transformers loads anvil moe's Mixtral", tf, lambda: check_moe_in_transformers(r, repo)))
    checks.append(("transformers loads anvil moe's Qwen2-MoE (shared expert)", tf, lambda: check_qwen_moe_in_transformers(r)))
    checks.append(("gguf-py reads every GGUF anvil writes", "gguf %s" % v["gguf"], lambda: check_gguf_py(r)))
    for cfg in sorted(f for f in os.listdir(os.path.join(repo, "configs")) if f.endswith(".yaml")):
        checks.append(("mergekit: configs/%s" % cfg, "mergekit", check_mergekit(r, args.mergekit_yaml, os.path.join(repo, "configs", cfg))))
    lc = args.llama_cpp and os.path.abspath(args.llama_cpp)
    checks.append(("llama.cpp scores every GGUF type anvil writes as llama-quantize's file of that type", "llama.cpp",
                   lambda: check_llama_cpp_scores(r, lc)))
    checks.append(("llama.cpp tokenizes with anvil's GGUF vocabulary as the tokenizers library does", "llama.cpp",
                   lambda: check_llama_cpp_tokenizes(r, lc)))
    for name, first, what in (("mistral-7b", False, "Mistral-7B's"), ("gemma-3", False, "Gemma-3's"),
                              ("mistral-7b", True, "Mistral-7B's, non-legacy Metaspace spelling")):
        checks.append(("llama.cpp tokenizes anvil's GGUF as the tokenizers library does: %s" % what.replace("'s", "'s SentencePiece-style BPE"),
                       "llama.cpp", check_llama_cpp_tokenizes_spm(r, lc, name, first)))
    for name, pre, bos, what in (("llama-3", "smaug-bpe", None, "Llama-3's first release (no BOS)"),
                                 ("llama-3", "llama-bpe", 128000, "Llama-3's with a BOS post-processor"),
                                 ("qwen3", "qwen2", None, "Qwen3's")):
        checks.append(("anvil tokenizes llama.cpp's own GGUF as the tokenizers library does: %s byte-level BPE" % what,
                       "llama.cpp", check_anvil_reads_llama_cpp_bpe(r, lc, name, pre, bos)))
    checks.append(("anvil tokenizes llama.cpp's own GGUF of a SentencePiece tokenizer.model as llama.cpp, transformers "
                   "and sentencepiece do", "llama.cpp, %s, sentencepiece %s" % (tf, v["sentencepiece"]), lambda: check_anvil_reads_llama_cpp_spm(r, lc, repo)))
    checks.append(("llama-quantize accepts anvil's F32/F16/BF16 GGUFs", "llama.cpp", lambda: check_llama_quantize_input(r, lc)))
    checks.append(("anvil quantize of nine families = llama-quantize of llama.cpp's own GGUF of them", "llama.cpp",
                   lambda: check_family_quantize(r, lc)))
    checks.append(("anvil imatrix measures what llama-imatrix measures", "llama.cpp",
                   lambda: check_imatrix_statistics(r, lc)))
    checks.append(("anvil quantize --imatrix = llama-quantize --imatrix (llama-imatrix's file)", "llama.cpp",
                   lambda: check_quantize_imatrix(r, lc)))
    for family in FAMILIES:
        checks.append(("convert llama.cpp's GGUF of tiny-%s -> HF" % family, tf, check_family_gguf_to_hf(r, family)))
    checks.append(("Gemma 3 with linear rotary scaling (factor 8 on the global layers)", tf,
                   lambda: check_gemma3_linear_rope(r)))
    for name in sorted(os.listdir(os.path.join(shared, "tokenizers"))):
        checks.append(("anvil tokenize = tokenizers library: %s" % name, "tokenizers %s" % v["tokenizers"],
                       check_tokenizer_ids(r, name)))
    for name in sorted(os.listdir(os.path.join(shared, "tokenizers"))):
        checks.append(("transformers renders and tokenizes chat templates as anvil does: %s" % name, tf,
                       check_chat_template(r, name)))

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
