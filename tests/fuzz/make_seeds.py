#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, made from ../shared and the repo's configs/ and
recipes/, into OUT/<target>/ (scripts/fuzz.sh calls it on every run: the fixtures stay out of the
repository; tests/fuzz/corpus/ holds only the regression seeds, regress-*, reproducers of fixed
findings). Standard library only. Big fixtures are cut down so that each seed stays
small (a few KB; the whole corpus well under 2 MB) while still being a file the reader accepts:
tokenizers keep their structure with a few hundred vocabulary entries, safetensors and GGUF files
keep their real headers (names, dtypes, metadata) with every tensor shrunk to a block or two.

    python3 tests/fuzz/make_seeds.py --out DIR [--shared ../shared]
"""
import argparse
import json
import os
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pylib"))
from gguf_values import SCALAR_FORMATS as SCALAR, pack_string as w_string, pack_value as w_value  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = HERE / "corpus"  # replaced by --out


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def pattern_bytes(n, seed=1):
    """Deterministic filler (no randomness: regenerating gives the same corpus)."""
    return bytes((i * 131 + seed * 17 + (i >> 7)) & 0xFF for i in range(n))


# ---------------------------------------------------------------- config.json, adapter_config.json

def config_seeds(shared):
    for p in sorted(shared.glob("models/*/config*.json")):
        put("config", f"{p.parent.name}-{p.name}", p.read_bytes())
    p = shared / "models/lora-random/adapter_config.json"
    put("adapter_config", "lora-random.json", p.read_bytes())
    cfg = json.loads(p.read_text())
    cfg.update({"r": 16, "lora_alpha": 32, "use_rslora": True, "target_modules": "all-linear",
                "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"v_proj": 8}, "lora_dropout": 0.1})
    put("adapter_config", "variant-rslora.json", json.dumps(cfg, indent=2))
    put("adapter_config", "minimal.json", json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                                       "target_modules": ["q_proj", "v_proj"]}))


# ---------------------------------------------------------------- tokenizer.json

def shrink_tokenizer(text, keep=320, max_merges=400, max_added=24):
    j = json.loads(text)
    model = j.get("model", {})
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        kept = {t: i for t, i in vocab.items() if i < keep}
        merges = []
        for m in model.get("merges", []):
            parts = m.split(" ", 1) if isinstance(m, str) else list(m)
            if len(parts) != 2:
                continue
            a, b = parts
            if a in kept and b in kept and (a + b) in kept:
                merges.append(m)
            if len(merges) >= max_merges:
                break
        model["vocab"] = kept
        model["merges"] = merges
    elif isinstance(vocab, list):  # Unigram: [piece, score]
        model["vocab"] = vocab[:keep]
    added = j.get("added_tokens") or []
    j["added_tokens"] = added[:max_added]
    if isinstance(vocab, dict):
        for t in j["added_tokens"]:
            model["vocab"].setdefault(t["content"], t["id"])
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def tokenizer_seeds(shared):
    sources = [("base", shared / "models/base/tokenizer.json")]
    sources += [(p.parent.name, p) for p in sorted(shared.glob("tokenizers/*/tokenizer.json"))]
    for name, p in sources:
        put("tokenizer", f"{name}.json", shrink_tokenizer(p.read_text()))


# ---------------------------------------------------------------- safetensors

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
              "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def read_st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def safetensors_bytes(specs, metadata=None, seed=1):
    """specs: [(name, dtype, shape)] -> file bytes (reference layout, space-padded header)."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape in specs:
        n = DTYPE_SIZE[dt]
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + pattern_bytes(off, seed)


def shrunk_specs(header, limit=64):
    specs = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        specs.append((name, e["dtype"], [min(d, 2) for d in e["shape"]]))
    return specs[:limit], header.get("__metadata__")


def safetensors_seeds(shared):
    for src, out in [("models/tiny-llama/model.safetensors", "tiny-llama"),
                     ("models/tiny-mixtral/model.safetensors", "tiny-mixtral"),
                     ("models/base/model-00002-of-00002.safetensors", "base-shard2"),
                     ("models/lora-random/adapter_model.safetensors", "lora-adapter"),
                     ("models/tiny-qwen3/reference_logits.safetensors", "reference-logits")]:
        specs, meta = shrunk_specs(read_st_header(shared / src))
        put("safetensors", f"{out}.safetensors", safetensors_bytes(specs, meta))
    every = [(f"t.{dt.lower()}", dt, [3]) for dt in DTYPE_SIZE]
    every += [("scalar", "F32", []), ("empty", "F16", [0, 4]), ("cube", "BF16", [2, 2, 2])]
    put("safetensors", "every-dtype.safetensors", safetensors_bytes(every, {"format": "pt", "note": "x"}))
    put("safetensors", "metadata-only.safetensors", safetensors_bytes([], {"format": "pt"}))


# ---------------------------------------------------------------- model.safetensors.index.json

def index_seeds(shared):
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    # The fuzz target's checkpoint directory: shard 1 holds a (F32 [1]) and b (F16 [2, 2]), shard 2 c.
    put("safetensors_index", "valid.json", json.dumps(
        {"metadata": {"total_size": 16}, "weight_map": {"a": s1, "b": s1, "c": s2}}, indent=2))
    put("safetensors_index", "one-shard.json", json.dumps({"weight_map": {"c": s2}}))
    put("safetensors_index", "wrong-shard.json", json.dumps({"weight_map": {"a": s2, "b": s1, "c": s2}}))
    real = (shared / "models/base/model.safetensors.index.json").read_text()
    put("safetensors_index", "base.json", real)


# ---------------------------------------------------------------- GGUF

GGML_BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
              10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def read_gguf_header(path):
    with open(path, "rb") as f:
        data = f.read(4 << 20)  # headers of the fixtures are far smaller
    r = Reader(data)
    assert r.take("<I") == 0x46554747
    version, n_t, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv = []
    for _ in range(n_kv):
        k = r.string()
        t = r.take("<I")
        kv.append((k, t, r.value(t)))
    tensors = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take("<I")
        dims = [r.take("<Q") for _ in range(nd)]
        tensors.append((name, dims, r.take("<I"), r.take("<Q")))
    return version, kv, tensors, r.p


def gguf_bytes(version, kv, tensors, alignment=32, seed=1):
    """tensors: [(name, dims, type)]; offsets and data laid out here."""
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kv))
    for k, t, v in kv:
        out += w_string(k) + struct.pack("<I", t) + w_value(t, v)
    off, layout = 0, []
    for name, dims, t in tensors:
        be, bb = GGML_BLOCK[t]
        n = 1
        for d in dims:
            n *= d
        nbytes = n // be * bb
        off += -off % alignment
        layout.append((name, dims, t, off, nbytes))
        off += nbytes
    for name, dims, t, o, _ in layout:
        out += w_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, o)
    out += b"\0" * (-len(out) % alignment)
    data = bytearray(off)
    for name, dims, t, o, nbytes in layout:
        if name == b"rope_freqs.weight":
            data[o:o + nbytes] = b"".join(struct.pack("<f", 1.0 + i / 8) for i in range(nbytes // 4))
        else:
            data[o:o + nbytes] = pattern_bytes(nbytes, seed)
    return out + bytes(data)


def trim_kv(kv, n_tokens=400, n_merges=150):
    """Arrays cut to n_tokens entries; merges to those whose parts and result survive the cut."""
    tokens = next((v[1] for k, t, v in kv if k == b"tokenizer.ggml.tokens"), [])
    kept = set(tokens[:n_tokens])
    out = []
    for k, t, v in kv:
        if t == 9:
            et, vals = v
            if k == b"tokenizer.ggml.merges":
                good = []
                for m in vals:
                    parts = m.split(b" ", 1)
                    if len(parts) == 2 and parts[0] in kept and parts[1] in kept and parts[0] + parts[1] in kept:
                        good.append(m)
                vals = good[:n_merges]
            v = (et, vals[:n_tokens])
        elif k in (b"tokenizer.ggml.bos_token_id", b"tokenizer.ggml.eos_token_id",
                   b"tokenizer.ggml.padding_token_id", b"tokenizer.ggml.unknown_token_id") and v >= n_tokens:
            v = 0
        out.append((k, t, v))
    return out


def shrink_tensors(tensors, limit=12):
    out = []
    for name, dims, t, _ in tensors[:limit]:
        be, _ = GGML_BLOCK.get(t, (1, 4))
        if t not in GGML_BLOCK:
            t = 0
        out.append((name, [be] + [min(d, 2) for d in dims[1:]], t))
    return out


def gguf_seeds(shared):
    for src, out in [("refs/gguf/base-Q4_K_M.gguf", "base-Q4_K_M"), ("refs/gguf/base-Q8_0.gguf", "base-Q8_0"),
                     ("models/tiny-qwen3/model-f32.gguf", "tiny-qwen3"),
                     ("models/tiny-qwen2-moe/model-f32.gguf", "tiny-qwen2-moe"),
                     ("models/tiny-gemma2/model-f32.gguf", "tiny-gemma2")]:
        p = shared / src
        if not p.exists():
            continue
        version, kv, tensors, header_end = read_gguf_header(p)
        kv = trim_kv(kv)
        names = [t[0] for t in tensors]
        small = shrink_tensors(tensors)
        # what ModelConfig::from_gguf looks for: token_embd.weight [hidden, vocab]
        if b"token_embd.weight" in names and not any(t[0] == b"token_embd.weight" for t in small):
            small.insert(0, (b"token_embd.weight", [8, 300], 0))
        put("gguf", f"{out}.gguf", gguf_bytes(version, kv, small))
        if out == "base-Q4_K_M":
            # The real bytes up to the tensor data (rejected: no data); the fixtures' full
            # vocabularies make that over 100 KB, so only its first 8 KB are kept then.
            put("gguf", f"{out}-rope-freqs.gguf",
                gguf_bytes(version, kv, small + [(b"rope_freqs.weight", [32], 0)], seed=2))
            put("gguf", f"{out}-align8.gguf",
                gguf_bytes(version, [(b"general.alignment", 4, 8)] + kv, small, alignment=8, seed=3))
            raw = open(p, "rb").read(header_end)
            if len(raw) <= 100_000:
                put("gguf", f"{out}-header-only.gguf", raw)
            else:  # keep the header, cut inside the vocabulary (still a reader input worth having)
                put("gguf", f"{out}-header-prefix.gguf", raw[:8192])


# ---------------------------------------------------------------- merge configs and recipes (YAML)

def merge_seeds():
    subst = [(r"\.\./\.\./shared/models/base", "models/base"), (r"\.\./\.\./shared/models/ft-fortune", "models/ft-a"),
             (r"\.\./\.\./shared/models/ft-changelog", "models/ft-b"), (r"\.\./\.\./shared/models/[\w.-]+", "models/ft-a")]
    for p in sorted((REPO / "configs").glob("*.yaml")):
        text = p.read_text()
        for a, b in subst:
            text = re.sub(a, b, text)
        put("merge_config", p.name, text)
    put("merge_config", "gradient-filters.yaml", """\
merge_method: slerp
base_model: models/base
slices:
  - sources:
      - model: models/base
        layer_range: [0, 4]
      - model: models/ft-a
        layer_range: [0, 4]
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
  name: [a, b]
dtype: float32
tokenizer_source: base
""")


def recipe_seeds():
    text = (REPO / "recipes/fortune-lora.yaml").read_text()
    text = re.sub(r"\.\./\.\./shared/models/base", "models/base", text)
    text = re.sub(r"\.\./\.\./shared/data/[\w.]*train[\w.]*", "data/train.txt", text)
    text = re.sub(r"\.\./\.\./shared/data/[\w.]*val[\w.]*", "data/val.txt", text)
    text = "\n".join(l for l in text.splitlines() if not l.startswith("#")) + "\n"
    put("recipe", "fortune-lora.yaml", text)
    put("recipe", "fortune-lora-overrides.yaml",
        text + "#overrides\nlora.r=4\noptimizer.lr=0.01\nval_dataset=null\nval_split=0.1\n"
               "datasets=[{path: data/train.txt, type: text}]\n")
    put("recipe", "minimal.yaml", "base_model: models/base\noutput_dir: out\ndatasets:\n  - path: data/train.txt\n"
                                  "num_epochs: 1.5\nlora:\n  target_modules: all-linear\n  rslora: true\n")


def chat_template_seeds(shared):
    """The six real templates of refs/chat_template_cases.json, and the base model's."""
    cases = json.loads((shared / "refs/chat_template_cases.json").read_text())
    for t in cases["templates"]:
        put("chat_template", t["name"] + ".jinja", t["template"])
    put("chat_template", "base.jinja", (shared / "models/base/chat_template.jinja").read_text())
    put("chat_template", "features.jinja",
        "{%- set ns = namespace(n=0) -%}{% macro m(x, y='d') %}[{{ x|upper }}{{ y }}]{% endmacro %}"
        "{% for msg in messages if msg.role != 'tool' %}{% set ns.n = ns.n + 1 %}{{ m(msg['role']) }}"
        "{{ msg.content|trim|tojson }}{{ msg.content[1:3] }}{{ loop.index }}{% if loop.last %}!{% elif loop.first %}^"
        "{% else %}-{% endif %}{% endfor %}{{ ns.n ~ ' ' ~ (messages|length) }}{{ 'a,b'.split(',')|join('|') }}"
        "{% if add_generation_prompt is defined and add_generation_prompt %}{{ bos_token + eos_token }}{% endif %}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("ANVIL_SHARED") or str(REPO.parent / "shared"))
    ap.add_argument("--out", required=True, help="directory for the corpora (one subdirectory per target)")
    args = ap.parse_args()
    shared = Path(args.shared)
    global CORPUS
    CORPUS = Path(args.out)
    config_seeds(shared)
    tokenizer_seeds(shared)
    safetensors_seeds(shared)
    index_seeds(shared)
    gguf_seeds(shared)
    merge_seeds()
    recipe_seeds()
    chat_template_seeds(shared)
    total = 0
    for d in sorted(CORPUS.iterdir()):
        sizes = [f.stat().st_size for f in d.iterdir()]
        total += sum(sizes)
        print(f"{d.name:20} {len(sizes):3} seeds, {sum(sizes):8} bytes, largest {max(sizes)}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
