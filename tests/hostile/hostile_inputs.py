#!/usr/bin/env python3
"""Hostile-input corpus for anvil (issue #11).

Builds crafted bad inputs in a temporary directory from the shared fixtures and runs every case
against the binaries. anvil's promise for bad input: ONE line on stderr naming the file and the
key/tensor, exit status 2; never a signal, a hang, exit 1 ("internal error"), nor an output (or a
temporary beside it) left behind.

  python3 tests/hostile/hostile_inputs.py --anvil build/tools/anvil --shared ../shared [--only PATTERN] [-v]

Python 3 standard library only. Prints one line per failing case and "N cases, K failed"; exits 1
when any case fails.
"""
import argparse
import copy
import fnmatch
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

TIMEOUT_S = 10

# ---------------------------------------------------------------------------------------------
# GGUF: a small reader/writer (metadata and tensor infos parsed, tensor data kept as one blob).

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from gguf_values import SCALAR_FORMATS as _FMT, TYPES as GT, pack_string as gstr, pack_value as gval  # noqa: E402


class Gguf:
    def __init__(self, path):
        b = open(path, "rb").read()
        self.pos = 4
        assert b[:4] == b"GGUF"
        self.version, nt, nkv = struct.unpack_from("<IQQ", b, 4)
        self.pos = 24
        self.kv = []  # [key, type, value]
        for _ in range(nkv):
            k = self._str(b)
            t = self._u(b, "<I")
            self.kv.append([k, t, self._val(b, t)])
        self.tensors = []  # [name, dims, type, offset]
        for _ in range(nt):
            name = self._str(b)
            nd = self._u(b, "<I")
            dims = [self._u(b, "<Q") for _ in range(nd)]
            ttype = self._u(b, "<I")
            off = self._u(b, "<Q")
            self.tensors.append([name, dims, ttype, off])
        self.alignment = self.get("general.alignment", 32)
        start = (self.pos + self.alignment - 1) // self.alignment * self.alignment
        self.data = b[start:]

    def _u(self, b, fmt):
        v = struct.unpack_from(fmt, b, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self, b):
        n = self._u(b, "<Q")
        s = b[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s

    def _val(self, b, t):
        if t == 8:
            return self._str(b)
        if t == 9:
            et = self._u(b, "<I")
            n = self._u(b, "<Q")
            return (et, [self._val(b, et) for _ in range(n)])
        return self._u(b, _FMT[t])

    def get(self, key, default=None):
        for k, _, v in self.kv:
            if k == key:
                return v
        return default

    def set(self, key, t, v):
        for e in self.kv:
            if e[0] == key:
                e[1], e[2] = t, v
                return self
        self.kv.append([key, t, v])
        return self

    def tensor(self, name):
        return next(t for t in self.tensors if t[0] == name)

    def to_bytes(self):
        h = b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kv))
        for k, t, v in self.kv:
            h += gstr(k) + struct.pack("<I", t) + gval(t, v)
        for name, dims, ttype, off in self.tensors:
            h += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            h += struct.pack("<IQ", ttype, off)
        h += b"\0" * (-len(h) % self.alignment)
        return h + self.data


def raw_gguf(kvs=b"", n_kv=0, tensors=b"", n_tensors=0, version=3, magic=b"GGUF", tail=b""):
    """A hand-written GGUF: pre-serialised KV and tensor-info bytes, counts given separately."""
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + tensors + tail


# ---------------------------------------------------------------------------------------------
# safetensors

def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_bytes(header, data=b""):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def st_small(**entries):
    """A two-tensor F32 file with the given per-tensor header overrides (name -> dict)."""
    hdr = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}
    for k, v in entries.items():
        hdr[k] = v
    return st_bytes(hdr, bytes(32))


# ---------------------------------------------------------------------------------------------
# The corpus: files and directories, built lazily by name.

class Corpus:
    def __init__(self, root, shared):
        self.root, self.shared = root, shared
        self.models = os.path.join(shared, "models")
        self.built = {}
        self._gguf = None

    def path(self, *p):
        return os.path.join(self.root, *p)

    def write(self, rel, data):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return p

    def base_gguf_bytes(self):
        return open(os.path.join(self.shared, "refs", "gguf", "base-Q4_0.gguf"), "rb").read()

    def base_gguf(self):
        if self._gguf is None:
            self._gguf = Gguf(os.path.join(self.shared, "refs", "gguf", "base-Q4_0.gguf"))
        return copy.deepcopy(self._gguf)  # callers mutate it

    def model_copy(self, rel, fixture, edits):
        """A copy of models/FIXTURE in REL: files named in EDITS get new bytes (or a function of the
        old text/bytes, or are left out when DELETE); the others are symlinks to the read-only fixture."""
        d = self.path(rel)
        src = os.path.join(self.models, fixture)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(src):
            if f not in edits:
                os.symlink(os.path.join(src, f), os.path.join(d, f))
        for f, e in edits.items():
            if e is DELETE:  # the copy lacks this file
                continue
            if callable(e):
                old = os.path.join(src, f)
                e = e(open(old, "rb").read() if f.endswith(".safetensors") else open(old).read())
            with open(os.path.join(d, f), "wb") as out:
                out.write(e if isinstance(e, bytes) else e.encode())
        return d


def json_edit(fn):
    """An edit of a JSON file: FN mutates the parsed object (or returns a replacement)."""
    def edit(text):
        j = json.loads(text)
        r = fn(j)
        return json.dumps(j if r is None else r, indent=1)
    return edit


def setk(path, value):
    """json_edit setting a dotted key (or deleting it when value is DELETE)."""
    def fn(j):
        *parents, last = path.split(".")
        for p in parents:
            j = j[p]
        if value is DELETE:
            j.pop(last, None)
        else:
            j[last] = value
    return json_edit(fn)


DELETE = object()


def text_sub(old, new):
    def edit(text):
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def gguf_meta(key, t, v):
    return lambda g: g.set(key, GT[t], v)


def gguf_tensor(name, idx, v):
    def fn(g):
        g.tensor(name)[idx] = v
    return fn


def deep_pre_tokenizer(levels):
    def edit(text):
        j = json.loads(text)
        inner = json.dumps(j["pre_tokenizer"])
        j["pre_tokenizer"] = "@@"
        s = json.dumps(j)
        nest = '{"type": "Sequence", "pretokenizers": [' * levels + inner + "]}" * levels
        return s.replace('"@@"', nest)
    return edit


def laughs_yaml(models, levels=10, width=10):
    """A merge config whose weight is a conditional parameter nesting aliases LEVELS deep."""
    lines = ["l0: &l0 [{filter: x, value: 0.5}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join(f"{{filter: f{k}, value: *l{i - 1}}}" for k in range(width)) + "]")
    # the anchors live under parameters of the first model so the config keys stay valid
    body = "\n".join("      " + ln.split(": ", 1)[0] + "_: " + ln.split(": ", 1)[1] for ln in lines)
    return (f"merge_method: linear\nmodels:\n  - model: {models}/tiny-llama\n    parameters:\n{body}\n"
            f"      weight: *l{levels - 1}\n  - model: {models}/tiny-llama\n    parameters: {{weight: 0.5}}\n")


def linear_yaml(models, weight="0.5", extra=""):
    return (f"merge_method: linear\nmodels:\n  - model: {models}/tiny-llama\n    parameters: {{weight: {weight}}}\n"
            f"  - model: {models}/tiny-llama\n    parameters: {{weight: 0.5}}\n{extra}")


def slerp_yaml(models, t):
    return (f"merge_method: slerp\nbase_model: {models}/tiny-llama\nslices:\n  - sources:\n"
            f"      - {{model: {models}/tiny-llama, layer_range: [0, 2]}}\n"
            f"      - {{model: {models}/tiny-llama, layer_range: [0, 2]}}\nparameters: {{t: {t}}}\n")


def ties_yaml(models, density):
    return (f"merge_method: ties\nbase_model: {models}/tiny-llama\nmodels:\n"
            f"  - model: {models}/tiny-llama\n    parameters: {{weight: 1.0, density: {density}}}\n")


def recipe_yaml(models, data, out, extra="", lora="{r: 4, target_modules: [q_proj, v_proj]}", steps=1, base=None):
    return (f"base_model: {base or models + '/tiny-llama'}\noutput_dir: {out}\n"
            f"datasets: [{{path: {data}, type: raw}}]\nsequence_len: 32\nmicro_batch_size: 2\n"
            f"max_steps: {steps}\nthreads: 1\nlora: {lora}\n{extra}")


# ---------------------------------------------------------------------------------------------
# Cases. args is a format string: {T} the corpus root, {M} shared/models, {S} shared,
# {O} a fresh empty output directory for this case (it must be empty afterwards on failure),
# {D} a small valid text file (a few windows). expect: regexes the single stderr line must match: the
# first names the hostile file (matched on the whole line), the others the key or tensor (matched on
# the line with every path under the corpus and the fixtures removed, so that a file named after its
# key does not count as naming the key).

@dataclass
class Case:
    name: str
    args: str
    expect: tuple = ()
    rc: tuple = (2,)
    build: object = None  # callable(corpus) run before the case (builders are idempotent)
    out: str = "{O}"  # the directory that must be left empty (train: the output_dir's parent)
    stdin: str = None  # a file (format string) fed on stdin; otherwise /dev/null


CASES = []


def case(name, args, *expect, rc=(2,), build=None, out="{O}", stdin=None):
    CASES.append(Case(name, args, tuple(expect), rc, build, out, stdin))


def once(rel, make):
    """A builder that makes REL (a corpus path) the first time it is asked for."""
    def b(c):
        if rel not in c.built:
            try:
                make(c)
                c.built[rel] = None
            except Exception as e:  # noqa: BLE001 - remembered: every case using REL fails the same way
                c.built[rel] = e
        if c.built[rel]:
            raise c.built[rel]
    return b


def gguf_file(rel, *mutations):
    """Build REL as base-Q4_0.gguf with MUTATIONS applied to the parsed file."""
    def b(c):
        g = c.base_gguf()
        for m in mutations:
            m(g)
        c.write(rel, g.to_bytes())
    return once(rel, b)


def raw_file(rel, make):
    return once(rel, lambda c: c.write(rel, make(c) if callable(make) else make))


def model_dir(rel, fixture, **edits):
    edits = {k.replace("__", "."): v for k, v in edits.items()}  # config__json -> config.json
    return once(rel, lambda c: c.model_copy(rel, fixture, edits))


EVAL = "eval {f} --data {D}"
BENCH = "bench {f} -p 4 -n 2 -r 1"
TO_HF = "convert {f} -o {O}/hf"
QUANT = "quantize {f} -o {O}/q.gguf --type Q8_0"
TO_GGUF = "convert {f} -o {O}/m.gguf --type f32"


def on(tmpl, f):
    return tmpl.replace("{f}", f)


# --- controls: unmodified fixtures must work (the harness itself is sane) --------------------
case("control.inspect.gguf", "inspect {S}/refs/gguf/base-Q4_0.gguf", rc=(0,))
case("control.convert.gguf_to_hf", on(TO_HF, "{S}/refs/gguf/base-Q4_0.gguf"), rc=(0,))
case("control.convert.hf_to_gguf", on(TO_GGUF, "{M}/tiny-llama"), rc=(0,))
case("control.eval.tiny-llama", on(EVAL, "{M}/tiny-llama"), rc=(0,))

def token_not_utf8(g):
    """One vocabulary string that is not UTF-8 (a fuzz finding: it escaped as a JSON type_error)."""
    for kv in g.kv:
        if kv[0] == "tokenizer.ggml.tokens":
            et, items = kv[2]
            items = list(items)
            items[5] = b"\x90\x91\x8f"
            kv[2] = (et, items)
    return g


# --- GGUF: hyperparameters the rotary permutation and attention divide by --------------------
GG = [  # name, mutation, expected key
    ("head_count_0", gguf_meta("llama.attention.head_count", "u32", 0), "head.count"),
    ("head_count_3", gguf_meta("llama.attention.head_count", "u32", 3), "head.count"),
    ("head_count_kv_3", gguf_meta("llama.attention.head_count_kv", "u32", 3), "head.count"),
    ("head_count_6", gguf_meta("llama.attention.head_count", "u32", 6), "head.count"),
    ("head_count_huge", gguf_meta("llama.attention.head_count", "u32", 0xFFFFFFFF), "head.count"),
    ("head_count_3_kv_1", lambda g: g.set("llama.attention.head_count", 4, 3).set("llama.attention.head_count_kv", 4, 1),
     "head.count"),
    ("head_count_5_kv_5", lambda g: g.set("llama.attention.head_count", 4, 5).set("llama.attention.head_count_kv", 4, 5),
     "head.count"),
    ("key_length_48", gguf_meta("llama.attention.key_length", "u32", 48),
     "key_length|head.count|dimension_count|head dimension"),
    ("key_length_odd", gguf_meta("llama.attention.key_length", "u32", 63), "key_length|dimension_count|head dimension"),
    ("rope_dim_0", gguf_meta("llama.rope.dimension_count", "u32", 0), "rope.dimension_count"),
    ("rope_freq_nan", gguf_meta("llama.rope.freq_base", "f32", float("nan")), "rope.freq_base"),
    ("rope_freq_neg", gguf_meta("llama.rope.freq_base", "f32", -1.0), "rope.freq_base"),
    ("rms_eps_nan", gguf_meta("llama.attention.layer_norm_rms_epsilon", "f32", float("nan")), "layer_norm_rms_epsilon"),
    ("block_count_huge", gguf_meta("llama.block_count", "u64", 1 << 40), "block_count"),
    ("block_count_9", gguf_meta("llama.block_count", "u32", 9), "block_count|blk\\.8|layers\\.8"),
    ("embedding_length_1e12", gguf_meta("llama.embedding_length", "u64", 10**12), "embedding_length"),
    ("head_count_str", gguf_meta("llama.attention.head_count", "str", "4"), "head.count"),
    ("token_not_utf8", token_not_utf8, "tokenizer.ggml.tokens"),
]
def rename_gguf_tensor(old, new):
    def mutate(g):
        for t in g.tensors:
            if t[0] == old:
                t[0] = new
        return g
    return mutate


GG.append(("layer_leading_zero", rename_gguf_tensor("blk.7.attn_q.weight", "blk.07.attn_q.weight"), r"blk\.07|layers\.07"))
for n, m, key in GG:
    f = "{T}/gguf/" + n + ".gguf"
    b = gguf_file("gguf/" + n + ".gguf", m)
    case(f"gguf.{n}.eval", on(EVAL, f), n + r"\.gguf", key, build=b)
    case(f"gguf.{n}.convert", on(TO_HF, f), n + r"\.gguf", key, build=b)
case("gguf.head_count_3.quantize", on(QUANT, "{T}/gguf/head_count_3.gguf"), r"head_count_3\.gguf", "head.count",
     build=gguf_file("gguf/head_count_3.gguf", GG[1][1]))
case("gguf.bos_out_of_vocab.generate", "generate {T}/gguf/bos_big.gguf --prompt hi -n 2", r"bos_big\.gguf", "bos",
     build=gguf_file("gguf/bos_big.gguf", gguf_meta("tokenizer.ggml.bos_token_id", "u32", 10**9)))

# --- GGUF: structure -------------------------------------------------------------------------
def truncated(n):
    return lambda c: c.base_gguf_bytes()[:n]


def big_offset(g):
    g.tensors[-1][3] = (len(g.data) // 32 + 1024) * 32


one_kv = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
STRUCT = [  # name, builder bytes, expected key, commands
    ("truncated_header", truncated(5000), "truncat|past the end|impossible", ("inspect", "convert", "eval")),
    ("truncated_data", truncated(3_000_000), "truncat|past the end|blk\\.|output", ("inspect", "convert", "quantize")),
    ("bad_magic", raw_gguf(magic=b"GGUX", tail=bytes(40)), "magic|GGUF|format|header", ("inspect", "eval")),
    ("version_1", raw_gguf(version=1), "version", ("inspect", "convert")),
    ("version_huge", raw_gguf(version=0xFFFFFFFF), "version", ("inspect",)),
    ("kv_count_huge", raw_gguf(n_kv=1 << 62), "count|metadata", ("inspect", "convert")),
    ("tensor_count_huge", raw_gguf(one_kv, 1, n_tensors=1 << 62), "count|tensor", ("inspect", "convert")),
    ("array_count_huge", raw_gguf(gstr("hostile.array") + struct.pack("<IIQ", 9, 4, 1 << 61), 1),
     "hostile\\.array", ("inspect", "convert")),
    ("string_len_past_end", raw_gguf(gstr("hostile.str") + struct.pack("<IQ", 8, 1 << 40) + b"abc", 1),
     "hostile\\.str", ("inspect", "convert")),
    ("key_len_past_end", raw_gguf(struct.pack("<Q", 1 << 50) + b"general", 1), "past the end|key", ("inspect",)),
    ("value_type_unknown", raw_gguf(gstr("hostile.type") + struct.pack("<I", 99), 1), "hostile\\.type",
     ("inspect",)),
    ("nested_array", raw_gguf(gstr("hostile.nest") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 0), 1),
     "hostile\\.nest", ("inspect",)),
    ("n_dims_9", raw_gguf(one_kv, 1, gstr("token_embd.weight") + struct.pack("<I", 9) + bytes(8 * 9 + 12), 1),
     "token_embd\\.weight", ("inspect", "convert")),
    ("alignment_3", None, "alignment", ("inspect", "convert")),
]
for n, data, key, cmds in STRUCT:
    f = "{T}/gguf/" + n + ".gguf"
    b = gguf_file("gguf/" + n + ".gguf", gguf_meta("general.alignment", "u32", 3)) if data is None else \
        raw_file("gguf/" + n + ".gguf", data)
    tmpl = {"inspect": "inspect {f}", "convert": TO_HF, "eval": EVAL, "quantize": QUANT}
    for cmd in cmds:
        case(f"gguf.{n}.{cmd}", on(tmpl[cmd], f), n + r"\.gguf", key, build=b)

TENSOR = [  # name, mutation, expected tensor name (the GGUF one or its Hugging Face name)
    ("offset_past_end", big_offset, "output\\.weight|past|offset"),
    ("dims_overflow", gguf_tensor("token_embd.weight", 1, [1 << 40, 1 << 40]), "token_embd\\.weight"),
    ("dims_zero", gguf_tensor("blk.0.attn_q.weight", 1, [256, 0]), "blk\\.0\\.attn_q\\.weight|layers\\.0\\.self_attn\\.q_proj"),
    ("type_99", gguf_tensor("blk.0.attn_k.weight", 2, 99), "blk\\.0\\.attn_k\\.weight"),
    ("offset_unaligned", gguf_tensor("blk.1.attn_v.weight", 3, 7), "blk\\.1\\.attn_v\\.weight"),
    ("shape_mismatch", gguf_tensor("blk.0.ffn_up.weight", 1, [256, 384]), "blk\\.0\\.ffn_up\\.weight|layers\\.0\\.mlp\\.up_proj"),
]
for n, m, key in TENSOR:
    f = "{T}/gguf/" + n + ".gguf"
    b = gguf_file("gguf/" + n + ".gguf", m)
    # inspect lists tensors: a shape the hyperparameters disagree with is not its business
    case(f"gguf.{n}.inspect", "inspect " + f, n + r"\.gguf", key, build=b,
         rc=(0, 2) if n in ("dims_zero", "shape_mismatch") else (2,))
    case(f"gguf.{n}.convert", on(TO_HF, f), n + r"\.gguf", key, build=b)
    case(f"gguf.{n}.quantize", on(QUANT, f), n + r"\.gguf", key, build=b)
    # bench computes from the stored blocks without a tokenizer: the same checks must stop it
    case(f"gguf.{n}.bench", on(BENCH, f), n + r"\.gguf", key, build=b)
# A merge takes GGUF inputs: the same checks must stop it before any output exists.
def merge_over(rel_gguf, gguf_builder):
    """Builds the GGUF and a TIES config over it (as the base, with models/base as the other model)."""
    rel = "merge/over_" + os.path.basename(rel_gguf).replace(".gguf", ".yaml")
    yaml = lambda c: (f"merge_method: ties\nbase_model: {c.path(rel_gguf)}\nmodels:\n  - model: {c.models}/base\n"
                      f"    parameters: {{weight: 0.5, density: 0.5}}\n")
    make = raw_file(rel, yaml)
    return "{T}/" + rel, lambda c: (gguf_builder(c), make(c))


for n, m, key in GG + TENSOR:
    cfg, b = merge_over("gguf/" + n + ".gguf", gguf_file("gguf/" + n + ".gguf", m))
    case(f"gguf.{n}.merge", "merge " + cfg + " -o {O}/m", n + r"\.gguf", key, build=b)

case("gguf.shape_mismatch.eval", on(EVAL, "{T}/gguf/shape_mismatch.gguf"), r"shape_mismatch\.gguf", TENSOR[5][2],
     build=gguf_file("gguf/shape_mismatch.gguf", TENSOR[5][1]))

# --- tokenizer.json --------------------------------------------------------------------------
def add_token(tid):
    return json_edit(lambda j: j["added_tokens"].append(
        {"id": tid, "content": "<|huge|>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}))


def bos_ids(j):
    j["post_processor"]["special_tokens"]["<|begin_of_text|>"]["ids"] = [5_000_000]


TOK = [  # name, edit, expected key, rc
    ("deep_pre_tokenizer", deep_pre_tokenizer(50_000), "pre_tokenizer|depth|nest", (0, 2)),
    ("added_id_huge", add_token(10**15), "added|<\\|huge\\|>", (2,)),
    ("added_id_negative", add_token(-5), "added", (2,)),
    ("added_id_string", add_token("7"), "added|id", (2,)),
    ("bos_out_of_vocab", json_edit(bos_ids), "begin_of_text|post_processor|bos|5000000", (2,)),
    ("root_array", lambda t: "[1, 2, 3]", "object", (2,)),
    ("root_string", lambda t: '"tokenizer"', "object", (2,)),
    ("vocab_id_string", json_edit(lambda j: j["model"]["vocab"].__setitem__("a", "x")), "vocab|'a'", (2,)),
    ("merges_not_list", json_edit(lambda j: j["model"].__setitem__("merges", {"a": 1})), "merges", (2,)),
    ("deep_json", lambda t: "[" * 100_000 + "]" * 100_000, "JSON|depth|object", (2,)),
]
for n, edit, key, rc in TOK:
    d = "{T}/tok/" + n
    b = model_dir("tok/" + n, "tiny-llama", tokenizer__json=edit)
    case(f"tokenizer.{n}.convert", on(TO_GGUF, d), f"tok/{n}/tokenizer\\.json", key, rc=rc, build=b)
for n in ("deep_pre_tokenizer", "added_id_huge", "bos_out_of_vocab"):
    b = model_dir("tok/" + n, "tiny-llama", tokenizer__json=dict((t[0], t[1]) for t in TOK)[n])
    key, rc = dict((t[0], (t[2], t[3])) for t in TOK)[n]
    case(f"tokenizer.{n}.generate", "generate {T}/tok/" + n + " --prompt hi -n 2", f"tok/{n}/tokenizer\\.json", key, rc=rc,
         build=b)

# --- config.json -----------------------------------------------------------------------------
CFG = [  # name, edit, expected key, rc
    ("hidden_size_str", setk("hidden_size", "64"), "hidden_size", (2,)),
    ("heads_str", setk("num_attention_heads", "4"), "num_attention_heads", (2,)),
    ("tie_yes", setk("tie_word_embeddings", "yes"), "tie_word_embeddings", (2,)),
    ("bias_str", setk("attention_bias", "false"), "attention_bias", (2,)),
    ("rope_theta_str", setk("rope_parameters.rope_theta", "10000"), "rope_theta", (2,)),
    ("rope_theta_inf", text_sub('"rope_theta": 10000.0', '"rope_theta": 1e999'), "rope_theta|1e999", (2,)),
    ("rms_eps_negative", setk("rms_norm_eps", -1e-6), "rms_norm_eps", (2,)),
    ("rms_eps_inf", text_sub('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e999'), "rms_norm_eps|1e999", (2,)),
    ("rms_eps_str", setk("rms_norm_eps", "1e-6"), "rms_norm_eps", (2,)),
    ("sliding_window_0", setk("sliding_window", 0), "sliding_window", (2,)),
    ("sliding_window_str", setk("sliding_window", "4096"), "sliding_window", (2,)),
    ("hidden_size_128", setk("hidden_size", 128), "hidden_size|embed_tokens|model\\.", (2,)),
    ("vocab_size_8192", setk("vocab_size", 8192), "vocab_size|embed_tokens", (2,)),
    ("layers_5", setk("num_hidden_layers", 5), "num_hidden_layers|model\\.layers\\.2\\.", (2,)),
    ("heads_3", setk("num_attention_heads", 3), "num_attention_heads|q_proj|head", (2,)),
    ("heads_3_no_head_dim", json_edit(lambda j: j.update(num_attention_heads=3, num_key_value_heads=3, head_dim=None)),
     "num_attention_heads|head_dim|hidden_size", (2,)),
    ("head_dim_1e12", setk("head_dim", 10**12), "head_dim", (2,)),
    ("hidden_size_1e12", setk("hidden_size", 10**12), "hidden_size", (2,)),
    ("intermediate_1e12", setk("intermediate_size", 10**12), "intermediate_size|mlp", (2,)),
    ("vocab_size_1e12", setk("vocab_size", 10**12), "vocab_size", (2,)),
    ("layers_1e12", setk("num_hidden_layers", 10**12), "num_hidden_layers", (2,)),
    ("max_pos_1e12", setk("max_position_embeddings", 10**12), "max_position_embeddings", (0, 2)),
    ("bos_id_huge", setk("bos_token_id", 10**9), "bos_token_id", (2,)),
    ("eos_id_negative", setk("eos_token_id", -3), "eos_token_id", (2,)),
    ("root_array", lambda t: "[]", "object", (2,)),
    # Control characters from the file are escaped: the message stays one line.
    ("model_type_newline", setk("model_type", "llama\nINJECTED"), "model_type|architecture|INJECTED", (2,)),
]
for n, edit, key, rc in CFG:
    d = "{T}/cfg/" + n
    b = model_dir("cfg/" + n, "tiny-llama", config__json=edit)
    for cmd, tmpl in (("eval", EVAL), ("convert", TO_GGUF), ("quantize", QUANT)):
        case(f"config.{n}.{cmd}", on(tmpl, d), f"cfg/{n}/", key, rc=rc, build=b)

# --- family config keys (issue #12): the new families' own keys, wrong in every way ----------
def tiny_partial_rotary(j):
    j["partial_rotary_factor"] = 0.01  # int(16 * 0.01) = 0 rotary dimensions
    j["rope_parameters"]["partial_rotary_factor"] = 0.01


FAM = [  # name, base model, edit, expected key
    ("gemma2_layer_types_short", "tiny-gemma2", setk("layer_types", ["sliding_attention"]), "layer_types"),
    ("gemma2_layer_type_unknown", "tiny-gemma2", setk("layer_types", ["sliding_attention", "chunked"]), "layer_types|chunked"),
    ("gemma2_softcap_negative", "tiny-gemma2", setk("attn_logit_softcapping", -50.0), "attn_logit_softcapping"),
    ("gemma2_softcap_inf", "tiny-gemma2", text_sub('"final_logit_softcapping": 30.0', '"final_logit_softcapping": 1e999'),
     "final_logit_softcapping|1e999"),
    ("gemma2_query_scalar_zero", "tiny-gemma2", setk("query_pre_attn_scalar", 0), "query_pre_attn_scalar"),
    ("gemma2_activation_unknown", "tiny-gemma2", setk("hidden_activation", "relu2"), "hidden_activation|relu2"),
    ("gemma3_rope_sliding_str", "tiny-gemma3", setk("rope_parameters.sliding_attention.rope_theta", "10000"),
     "sliding_attention|rope_theta"),
    ("gemma3_rope_full_not_object", "tiny-gemma3", setk("rope_parameters.full_attention", 5), "full_attention"),
    ("phi2_partial_rotary_2", "tiny-phi2", setk("partial_rotary_factor", 2.0), "partial_rotary_factor"),
    ("phi2_partial_rotary_tiny", "tiny-phi2", json_edit(tiny_partial_rotary), "partial_rotary_factor"),
    ("phi2_qk_layernorm", "tiny-phi2", setk("qk_layernorm", True), "qk_layernorm"),
    ("phi2_layer_norm_eps_str", "tiny-phi2", setk("layer_norm_eps", "1e-5"), "layer_norm_eps"),
    ("qwen2moe_experts_0", "tiny-qwen2-moe", setk("num_experts", 0), "num_experts"),
    ("qwen2moe_top_k_9", "tiny-qwen2-moe", setk("num_experts_per_tok", 9), "num_experts_per_tok|expert"),
    ("qwen2moe_mlp_only_99", "tiny-qwen2-moe", setk("mlp_only_layers", [99]), "mlp_only_layers|99"),
    ("qwen2moe_shared_str", "tiny-qwen2-moe", setk("shared_expert_intermediate_size", "64"), "shared_expert_intermediate_size"),
    ("deepseek_scoring_sigmoid", "tiny-deepseek-moe", setk("scoring_func", "sigmoid"), "scoring_func|sigmoid"),
    ("deepseek_first_dense_99", "tiny-deepseek-moe", setk("first_k_dense_replace", 99), "first_k_dense_replace"),
    ("deepseek_moe_freq_2", "tiny-deepseek-moe", setk("moe_layer_freq", 2), "moe_layer_freq"),
    ("deepseek_routed_1e9", "tiny-deepseek-moe", setk("n_routed_experts", 10**9), "n_routed_experts"),
    ("minicpm_scale_emb_0", "tiny-minicpm", setk("scale_emb", 0), "scale_emb"),
    ("minicpm_dim_base_str", "tiny-minicpm", setk("dim_model_base", "16"), "dim_model_base"),
    ("phi3_original_ctx_neg", "tiny-phi3", setk("original_max_position_embeddings", -1), "original_max_position_embeddings"),
    ("qwen3_head_dim_odd", "tiny-qwen3", setk("head_dim", 31), "head_dim|q_proj|q_norm"),
]
for n, src, edit, key in FAM:
    d = "{T}/fam/" + n
    b = model_dir("fam/" + n, src, config__json=edit)
    for cmd, tmpl in (("eval", EVAL), ("convert", TO_GGUF)):
        case(f"family.{n}.{cmd}", on(tmpl, d), f"fam/{n}/", key, build=b)

# --- adapter_config.json ---------------------------------------------------------------------
ADA = [
    ("r_str", setk("r", "8"), r"\br\b"),
    ("alpha_str", setk("lora_alpha", "16"), "lora_alpha"),
    ("alpha_inf", text_sub('"lora_alpha": 16', '"lora_alpha": 1e999'), "lora_alpha|1e999"),
    ("targets_missing", setk("target_modules", ["nonexistent_proj"]), "target_modules|nonexistent_proj|q_proj"),
    ("targets_str_int", setk("target_modules", 7), "target_modules"),
    ("r_huge", setk("r", 10**12), r"\br\b"),
    ("r_zero", setk("r", 0), r"\br\b"),
    ("root_array", lambda t: "[]", "object"),
    # Exponential backtracking for a backtracking engine (std::regex); PCRE2 bounds it.
    ("targets_redos", setk("target_modules", "(a|aa)*(a|aa)*(a|aa)*(a|aa)*$x"), "target_modules"),
    # Per-module ranks (extract-lora writes them): wrong types, a bad pattern, a rank the tensors lack.
    ("rank_pattern_str", setk("rank_pattern", {"q_proj": "4"}), "rank_pattern"),
    ("rank_pattern_list", setk("rank_pattern", [4]), "rank_pattern"),
    ("rank_pattern_zero", setk("rank_pattern", {"q_proj": 0}), "rank_pattern"),
    ("rank_pattern_regex", setk("rank_pattern", {"q_proj(": 4}), "rank_pattern"),
    ("rank_pattern_mismatch", setk("rank_pattern", {"q_proj": 4}), "q_proj|r = 4"),
    ("alpha_pattern_nan", text_sub('"alpha_pattern": {}', '"alpha_pattern": {"v_proj": NaN}'), "alpha_pattern|JSON|json"),
]
for n, edit, key in ADA:
    d = "{T}/ada/" + n
    b = model_dir("ada/" + n, "lora-random", adapter_config__json=edit)
    case(f"adapter.{n}.eval", "eval {M}/base --adapter " + d + " --data {D}", f"ada/{n}/", key, build=b)
for n, edit, key in ADA[:1] + ADA[3:4]:
    case(f"adapter.{n}.merge_adapter", "convert {M}/base --merge-adapter {T}/ada/" + n + " -o {O}/m", f"ada/{n}/", key,
         build=model_dir("ada/" + n, "lora-random", adapter_config__json=edit))

# --- extract-lora: models that do not match, and bad options -------------------------------
XL = "extract-lora --base {M}/base --model {m} -o {O}/x --rank {r}"
case("extract_lora.other_family", XL.format(M="{M}", m="{M}/tiny-qwen2", O="{O}", r=8), "tiny-qwen2")
case("extract_lora.hidden_mismatch", XL.format(M="{M}", m="{T}/xl/wide", O="{O}", r=8), "xl/wide",
     build=model_dir("xl/wide", "ft-fortune", config__json=setk("intermediate_size", 512)))
case("extract_lora.same_model", XL.format(M="{M}", m="{M}/base", O="{O}", r=8), "base")
case("extract_lora.rank_zero", XL.format(M="{M}", m="{M}/ft-fortune", O="{O}", r=0), "--rank")
case("extract_lora.rank_text", XL.format(M="{M}", m="{M}/ft-fortune", O="{O}", r="eight"), "rank")
case("extract_lora.energy_two", XL.format(M="{M}", m="{M}/ft-fortune", O="{O}", r=8) + " --energy 2", "--energy")

# --- moe: configs from strangers -------------------------------------------------------------
MOE_EXPERT = "experts:\n  - source_model: {M}/ft-fortune\n    positive_prompts: [\"a\"]\n"
MOE_LAUGHS = "".join("l%d: &l%d [%s]\n" % (i, i, ", ".join(["*l%d" % (i - 1)] * 10 if i else ["x"] * 10)) for i in range(10))
for n, body, key in [
    ("k_text", "base_model: {M}/base\nexperts_per_token: two\n" + MOE_EXPERT, "experts_per_token"),
    ("unknown_key", "base_model: {M}/base\nrouter: learned\n" + MOE_EXPERT, "router"),
    ("base_missing", "base_model: {M}/nonexistent\n" + MOE_EXPERT, "local directory"),
    ("prompts_map", "base_model: {M}/base\nexperts:\n  - source_model: {M}/ft-fortune\n    positive_prompts: {a: 1}\n",
     "positive_prompts"),
    ("laughs", MOE_LAUGHS + "base_model: {M}/base\n" + MOE_EXPERT, "alias|nodes|expan"),
    ("qwen_without_shared", "base_model: {M}/base\narchitecture: qwen\n" + MOE_EXPERT, "shared_experts|qwen"),
    ("two_shared", "base_model: {M}/base\n" + MOE_EXPERT + "shared_experts:\n  - source_model: {M}/base\n"
     "    positive_prompts: [\"a\"]\n  - source_model: {M}/base\n    positive_prompts: [\"b\"]\n", "shared_experts"),
    ("shared_for_mixtral", "base_model: {M}/base\narchitecture: mixtral\n" + MOE_EXPERT +
     "shared_experts:\n  - source_model: {M}/base\n    positive_prompts: [\"a\"]\n", "shared_experts|mixtral"),
]:
    case(f"moe.{n}", "moe {T}/moe/%s.yaml -o {O}/moe" % n, "%s.yaml" % n, key,
         build=raw_file("moe/%s.yaml" % n, lambda c, body=body: body.replace("{M}", c.models).encode()))

# --- safetensors -----------------------------------------------------------------------------
def rename_tensor(old, new):
    def edit(b):
        n = struct.unpack_from("<Q", b)[0]
        hdr = json.loads(b[8:8 + n])
        hdr[new] = hdr.pop(old)
        return st_bytes(hdr, b[8 + n:])
    return edit


# A layer the config does not have, spelled so that a careless parser reads it as layer 0 or 7.
for n, old, new in (("layer_leading_zero", "model.layers.0.self_attn.q_proj.weight", "model.layers.00.self_attn.q_proj.weight"),
                    ("layer_beyond", "model.layers.1.self_attn.q_proj.weight", "model.layers.40.self_attn.q_proj.weight")):
    b = model_dir("st/" + n, "tiny-llama", model__safetensors=rename_tensor(old, new))
    for cmd, tmpl in (("eval", EVAL), ("convert", TO_GGUF)):
        case(f"safetensors.{n}.{cmd}", on(tmpl, "{T}/st/" + n), "st/" + n, r"layers\.(00|40)\.|layers\.[01]\.self_attn\.q_proj",
             build=b)

# A FIFO under config.json's name must not block the open.
case("config.fifo.eval", on(EVAL, "{T}/cfg/fifo"), "cfg/fifo/config.json", "regular file",
     build=once("cfg/fifo", lambda c: (c.model_copy("cfg/fifo", "tiny-llama", {}), os.remove(c.path("cfg/fifo/config.json")),
                                       os.mkfifo(c.path("cfg/fifo/config.json")))))

E0 = "model.layers.0.block_sparse_moe.experts.0.w1.weight"
EBIG = "model.layers.0.block_sparse_moe.experts.99999999999.w1.weight"
b = model_dir("moe/expert_huge", "tiny-mixtral", model__safetensors=rename_tensor(E0, EBIG))
for cmd, tmpl in (("eval", EVAL), ("convert", TO_GGUF), ("quantize", QUANT)):
    case(f"mixtral.expert_index_huge.{cmd}", on(tmpl, "{T}/moe/expert_huge"), "moe/expert_huge",
         "99999999999|experts\\.0\\.w1", build=b)
b = model_dir("moe/expert_neg", "tiny-mixtral", model__safetensors=rename_tensor(E0, E0.replace(".0.w1", ".-1.w1")))
case("mixtral.expert_index_negative.convert", on(TO_GGUF, "{T}/moe/expert_neg"), "moe/expert_neg", "experts\\.-1|experts\\.0\\.w1",
     build=b)

ST = [  # name, bytes, expected key
    ("header_past_end", struct.pack("<Q", 4096) + b'{"a": 1}', "header length"),
    ("header_len_huge", struct.pack("<Q", 1 << 63) + b"{}", "header length"),
    ("too_short", b"\x10\0\0", "truncated|short"),
    ("offsets_overlap", st_small(b={"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}), "overlap|'b'|\"b\""),
    ("offsets_past_end", st_small(b={"dtype": "F32", "shape": [4], "data_offsets": [16, 4096]}), "'b'|\"b\""),
    ("offsets_reversed", st_small(b={"dtype": "F32", "shape": [4], "data_offsets": [32, 16]}), "'b'|\"b\""),
    ("offsets_negative", st_small(b={"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}), "'b'|\"b\""),
    ("shape_overflow", st_small(b={"dtype": "F32", "shape": [1 << 32, 1 << 32, 1 << 32], "data_offsets": [16, 32]}),
     "'b'|\"b\""),
    ("shape_negative", st_small(b={"dtype": "F32", "shape": [-4], "data_offsets": [16, 32]}), "'b'|\"b\""),
    ("shape_float", st_small(b={"dtype": "F32", "shape": [4.0], "data_offsets": [16, 32]}), "'b'|\"b\""),
    ("dtype_unknown", st_small(b={"dtype": "F7", "shape": [4], "data_offsets": [16, 32]}), "F7"),
    ("dtype_int", st_small(b={"dtype": 5, "shape": [4], "data_offsets": [16, 32]}), "dtype"),
    ("header_not_json", st_bytes(b"{this is not json", bytes(8)), "JSON"),
    ("header_array", st_bytes(b"[1, 2]"), "object"),
    ("header_deep", st_bytes(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "JSON|depth|'a'|\"a\""),
    ("metadata_not_str", st_bytes({"__metadata__": {"format": 5},
                                   "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)),
     "__metadata__|format"),
]
for n, data, key in ST:
    case(f"safetensors.{n}.inspect", "inspect {T}/st/" + n + ".safetensors", n + r"\.safetensors", key,
         build=raw_file("st/" + n + ".safetensors", data))
for n, data, key in ST[:1] + ST[3:4] + ST[14:15]:
    case(f"safetensors.{n}.convert", on(TO_GGUF, "{T}/stm/" + n), f"stm/{n}/model\\.safetensors", key,
         build=model_dir("stm/" + n, "tiny-llama", model__safetensors=data))
case("safetensors.truncated_model.eval", on(EVAL, "{T}/stm/cut"), "stm/cut/model\\.safetensors", "past|truncat",
     build=model_dir("stm/cut", "tiny-llama", model__safetensors=lambda b: b[:len(b) // 2]))

# --- importance matrices (quantize --imatrix) -------------------------------------------------
def dat_entry(name, values, ncall=1, nval=None):
    n = name.encode()
    return struct.pack("<i", len(n)) + n + struct.pack("<ii", ncall, len(values) if nval is None else nval) + \
        struct.pack(f"<{len(values)}f", *values)


def imatrix_gguf(entries, meta=True, general_type="imatrix"):
    """An imatrix GGUF as llama-imatrix writes one: ENTRIES are (tensor name, ggml type, dims, floats)."""
    kv, n_kv = b"", 0
    if general_type:
        kv += gstr("general.type") + struct.pack("<I", 8) + gstr(general_type); n_kv += 1
    if meta:
        kv += gstr("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 1) + gstr("calib.txt")
        kv += gstr("imatrix.chunk_count") + struct.pack("<II", 4, 1)
        kv += gstr("imatrix.chunk_size") + struct.pack("<II", 4, 512)
        n_kv += 3
    infos, data = b"", b""
    for name, ttype, dims, values in entries:
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ttype, len(data))
        data += struct.pack(f"<{len(values)}f", *values) if ttype == 0 else struct.pack(f"<{len(values)}e", *values)
        data += b"\0" * (-len(data) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(entries), n_kv) + kv + infos
    return head + b"\0" * (-len(head) % 32) + data


Q = "blk.0.attn_q.weight"
IMATRIX = [  # name, bytes, expected key
    ("dat_empty", b"", "entry count|truncated"),
    ("dat_count_huge", struct.pack("<i", 1 << 30), "entry count"),
    ("dat_name_length", struct.pack("<ii", 1, -5) + bytes(32), "name length"),
    ("dat_values_huge", struct.pack("<i", 1) + dat_entry(Q, [1.0], nval=1 << 30), "blk\\.0\\.attn_q|values"),
    ("dat_nan", struct.pack("<i", 1) + dat_entry(Q, [float("nan")] * 256), "blk\\.0\\.attn_q"),
    ("dat_negative", struct.pack("<i", 1) + dat_entry(Q, [-1.0] * 256), "blk\\.0\\.attn_q"),
    ("dat_twice", struct.pack("<i", 2) + dat_entry(Q, [1.0] * 256) * 2, "twice"),
    ("dat_wrong_size", struct.pack("<i", 1) + dat_entry(Q, [1.0] * 3), "blk\\.0\\.attn_q.*3 values"),
    ("gguf_no_metadata", imatrix_gguf([(Q + ".in_sum2", 0, [256], [1.0] * 256), (Q + ".counts", 0, [1], [1.0])],
                                      meta=False), "imatrix metadata"),
    ("gguf_model_type", imatrix_gguf([], general_type="model"), "general\\.type"),
    ("gguf_no_entries", imatrix_gguf([]), "no importance entries"),
    ("gguf_sums_alone", imatrix_gguf([(Q + ".in_sum2", 0, [256], [1.0] * 256)]), "blk\\.0\\.attn_q.*counts"),
    ("gguf_f16_counts", imatrix_gguf([(Q + ".in_sum2", 0, [256], [1.0] * 256), (Q + ".counts", 1, [1], [1.0])]),
     "F32"),
    ("gguf_split", imatrix_gguf([(Q + ".in_sum2", 0, [5], [1.0] * 5), (Q + ".counts", 0, [2], [1.0, 1.0])]),
     "split"),
    ("gguf_count_nan", imatrix_gguf([(Q + ".in_sum2", 0, [256], [1.0] * 256), (Q + ".counts", 0, [1], [float("nan")])]),
     "count"),
]
for n, data, key in IMATRIX:
    ext = ".dat" if n.startswith("dat") else ".gguf"
    case(f"imatrix.{n}.quantize", "quantize {S}/refs/gguf/base-Q8_0.gguf -o {O}/q.gguf --type Q4_K_M --imatrix {T}/imatrix/" +
         n + ext, n + "\\" + ext, key, build=raw_file("imatrix/" + n + ext, data))
case("imatrix.missing.quantize", "quantize {S}/refs/gguf/base-Q8_0.gguf -o {O}/q.gguf --type Q4_K_M --imatrix {T}/none.dat",
     "none\\.dat", "importance matrix")
case("imatrix.text_too_short", "imatrix {M}/tiny-llama --calib {D} -o {O}/i.gguf --chunk 100000", "calibration|chunk")

# --- merge YAML ------------------------------------------------------------------------------
MERGE = [  # name, yaml (function of models dir), expected key
    ("billion_laughs", lambda m: laughs_yaml(m, 10), "alias|expan|large|nodes"),
    ("billion_laughs_9", lambda m: laughs_yaml(m, 9), "alias|expan|large|nodes"),
    ("deep_nesting", lambda m: linear_yaml(m, "[" * 50_000 + "1" + "]" * 50_000), r"line \d+|deep|nest|depth"),
    ("weight_nan", lambda m: linear_yaml(m, ".nan"), "weight|nan"),
    ("weight_inf", lambda m: linear_yaml(m, "-.inf"), "weight|inf"),
    ("weight_1e999", lambda m: linear_yaml(m, "1e999"), "weight|range|1e999"),
    ("weight_string", lambda m: linear_yaml(m, "heavy"), "weight|heavy"),
    ("weight_map", lambda m: linear_yaml(m, "{a: 1}"), "weight|param"),
    ("density_nan", lambda m: ties_yaml(m, ".nan"), "density|nan"),
    ("density_string", lambda m: ties_yaml(m, "half"), "density|half"),
    ("t_inf", lambda m: slerp_yaml(m, ".inf"), r"\bt\b|inf"),
    ("t_string", lambda m: slerp_yaml(m, "middle"), r"\bt\b|middle"),
    ("layer_range_huge", lambda m: slerp_yaml(m, "0.5").replace("[0, 2]", "[0, 99999999999]"), "layer_range"),
    ("root_list", lambda m: "- 1\n- 2\n", "mapping"),
    # An alias to the node that holds it: yaml-cpp builds a cycle that a reader would recurse on.
    ("alias_cycle", lambda m: linear_yaml(m, "&w [{filter: x, value: *w}]"), "alias|cycle"),
    ("duplicate_key", lambda m: linear_yaml(m, "0.5", "merge_method: ties\n"), "merge_method|twice"),
]
for n, y, key in MERGE:
    case(f"merge.{n}", "merge {T}/merge/" + n + ".yaml -o {O}/m", n + r"\.yaml", key,
         build=raw_file("merge/" + n + ".yaml", lambda c, y=y: y(c.models)))

# merge -o OUT.gguf: a type that does not exist, or GGUF options for a directory output
MERGE_OK = raw_file("merge/ok.yaml", lambda c: linear_yaml(c.models, "0.5"))
case("merge.gguf_type_unknown", "merge {T}/merge/ok.yaml -o {O}/m.gguf --type Q9_X", "--type|Q9_X", build=MERGE_OK)
case("merge.type_for_directory", "merge {T}/merge/ok.yaml -o {O}/m --type Q4_K_M", "--type|gguf", build=MERGE_OK)
case("merge.imatrix_missing", "merge {T}/merge/ok.yaml -o {O}/m.gguf --type Q4_K_M --imatrix {T}/none.dat", r"none\.dat",
     build=MERGE_OK)

# merge --search SPEC: bad specs stop before any trial
def search_yaml(body):
    return lambda c: body.replace("@DATA@", f"{c.shared}/data/fortune.val.txt")


SEARCH = [  # name, spec, expected key
    ("not_mapping", "- 1\n", "mapping"),
    ("range_reversed", "search: {weight: [1, 0]}\ndata:\n  - file: @DATA@\n", "weight|low < high"),
    ("range_nan", "search: {weight: [0, .nan]}\ndata:\n  - file: @DATA@\n", "weight"),
    ("range_scalar", "search: {weight: 0.5}\ndata:\n  - file: @DATA@\n", "weight|range"),
    ("unknown_parameter", "search: {gamma: [0, 1]}\ndata:\n  - file: @DATA@\n", "gamma"),
    ("no_data", "search: {weight: [0, 1]}\n", "data"),
    ("data_missing", "search: {weight: [0, 1]}\ndata:\n  - file: nowhere.txt\n", "nowhere"),
    ("budget_huge", "search: {weight: [0, 1]}\ndata:\n  - file: @DATA@\nbudget: 1e99\n", "budget"),
    ("unknown_key", "search: {weight: [0, 1]}\ndata:\n  - file: @DATA@\ntrials: 5\n", "trials"),
    ("billion_laughs", None, "alias|expan|large|nodes"),
]
for n, body, key in SEARCH:
    spec = raw_file("search/" + n + ".yaml", search_yaml(body) if body else (lambda c: laughs_yaml(c.models, 10)))
    case(f"search.{n}", "merge {T}/merge/ok.yaml --search {T}/search/" + n + ".yaml -o {O}/best.yaml", n + r"\.yaml",
         key, build=lambda c, spec=spec: (MERGE_OK(c), spec(c)))
case("search.output_not_yaml", "merge {T}/merge/ok.yaml --search {T}/search/no_data.yaml -o {O}/best", "-o|yaml",
     build=MERGE_OK)

# --- eval --data ---------------------------------------------------------------------------
case("data.directory", "eval {M}/tiny-llama --data {T}/data/adir", "adir", build=lambda c: os.makedirs(
    c.path("data/adir/x"), exist_ok=True))
case("data.not_utf8", "eval {M}/tiny-llama --data {T}/data/latin1.txt", r"latin1\.txt", "UTF-8",
     build=raw_file("data/latin1.txt", ("caf\xe9 " * 2000).encode("latin-1")))
case("data.shorter_than_window", "eval {M}/tiny-llama --data {T}/data/short.txt", r"short\.txt", "window|token",
     build=raw_file("data/short.txt", b"hello world"))
case("data.empty", "eval {M}/tiny-llama --data {T}/data/empty.txt", r"empty\.txt", ".",
     build=raw_file("data/empty.txt", b""))
case("data.second_file_bad", "eval {M}/tiny-llama --data {D} {T}/data/latin1.txt", r"latin1\.txt", "UTF-8",
     build=raw_file("data/latin1.txt", ("caf\xe9 " * 2000).encode("latin-1")))

# --- train -----------------------------------------------------------------------------------
def recipe(name, **kw):
    return raw_file(f"train/{name}.yaml", lambda c: recipe_yaml(c.models, c.train_data(), c.path("train-out", name, "run"), **kw))


def train_case(name, args, *expect, build, out):
    case(name, args, *expect, build=all_of(build, lambda c: os.makedirs(c.path("train-out", out), exist_ok=True)),
         out="{T}/train-out/" + out)


def all_of(*builders):
    def b(c):
        for x in builders:
            x(c)
    return b


TRAIN = [  # name, recipe kwargs, expected key
    ("max_steps_string", dict(extra="", steps='"ten"'), "max_steps"),
    ("r_string", dict(lora="{r: four, target_modules: [q_proj]}"), r"\br\b"),
    ("lr_nan", dict(extra="optimizer: {lr: .nan}\n"), r"\blr\b"),
    ("lr_inf", dict(extra="optimizer: {lr: .inf}\n"), r"\blr\b"),
    ("lr_string", dict(extra="optimizer: {lr: fast}\n"), r"\blr\b"),
    ("seq_len_1e999", dict(extra="sequence_len: 1e999\n"), "sequence_len"),
    ("alpha_nan", dict(lora="{r: 4, alpha: .nan, target_modules: [q_proj]}"), "alpha"),
    ("dropout_2", dict(lora="{r: 4, dropout: 2.0, target_modules: [q_proj]}"), "dropout"),
    ("targets_missing", dict(lora="{r: 4, target_modules: [nonexistent_proj]}"), "target_modules|nonexistent"),
    ("betas_nan", dict(extra="optimizer: {betas: [.nan, 0.9]}\n"), "betas"),
    ("patience_string", dict(extra="eval_steps: 1\nearly_stopping_patience: soon\n"), "early_stopping_patience"),
    ("patience_no_evals", dict(extra="early_stopping_patience: 2\n"), "early_stopping_patience|eval_steps"),
    ("threshold_nan", dict(extra="early_stopping_threshold: .nan\n"), "early_stopping_threshold"),
    ("save_limit_negative", dict(extra="save_total_limit: -3\n"), "save_total_limit"),
    ("loraplus_inf", dict(extra="loraplus_lr_ratio: .inf\n"), "loraplus_lr_ratio"),
    ("neftune_negative", dict(extra="neftune_noise_alpha: -5\n"), "neftune_noise_alpha"),
    ("load_best_string", dict(extra="load_best_model_at_end: maybe\n"), "load_best_model_at_end"),
]
for n, kw, key in TRAIN:
    train_case(f"train.{n}", "train {T}/train/" + n + ".yaml", n + r"\.yaml", key, build=recipe(n, **kw), out=n)
train_case("train.set_lr_nan", "train {T}/train/ok.yaml --set optimizer.lr=nan", r"ok\.yaml|optimizer\.lr|override",
           r"\blr\b", build=recipe("ok"), out="ok")
# The tokenizer has a token the model's embedding lacks and the data uses it: the run fails at
# its first step (or before) and must leave no output_dir behind.
train_case("train.token_beyond_vocab", "train {T}/train/beyond.yaml", r"beyond|tok/beyond|beyond_data", ".",
           build=all_of(model_dir("tok/beyond", "tiny-llama", tokenizer__json=json_edit(lambda j: j["added_tokens"].append(
               {"id": 4500, "content": "<|beyond|>", "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}))),
               raw_file("train/beyond_data.txt", ("a <|beyond|> b " * 400).encode()),
               raw_file("train/beyond.yaml", lambda c: recipe_yaml(c.models, c.path("train/beyond_data.txt"),
                                                                   c.path("train-out", "beyond", "run"),
                                                                   base=c.path("tok/beyond")))), out="beyond")


def resume_checkpoint(edit):
    n = edit.__name__

    def b(c):
        dst = c.path("resume", n)
        shutil.copytree(c.checkpoint(), dst)
        p = os.path.join(dst, "trainer_state.json")
        st = json.load(open(p))
        edit(st)
        open(p, "w").write(json.dumps(st))
        c.write(f"resume/{n}.yaml", recipe_yaml(c.models, c.train_data(), c.path("train-out", "resume-" + n, "run"),
                                                  steps=2))
    return once("resume/" + n, b)


def step_string(st): st["step"] = "one"
def step_negative(st): st["step"] = -1
def log_loss_string(st): st["log"] = [dict(st["log"][0], loss="low")] if st.get("log") else [{"loss": "low"}]
def val_loss_string(st): st["initial_val_loss"] = "high"


for fn, key in ((step_string, "step"), (step_negative, "step"), (log_loss_string, "loss|log"),
                (val_loss_string, "initial_val_loss")):
    n = fn.__name__
    train_case(f"train.resume.{n}", "train {T}/resume/" + n + ".yaml --resume {T}/resume/" + n,
               r"trainer_state\.json", key, build=resume_checkpoint(fn), out="resume-" + n)


# --- tokenizers and chat templates (issue #17) -----------------------------------------------
# SentencePiece-style tokenizer.json (Mistral-7B's: Prepend/Replace normalizers, BPE with byte
# fallback and unk_token, Replace/ByteFallback/Fuse/Strip decoders), tokenizer.model files read by
# libsentencepiece, GGUF "llama" and "gpt2" vocabularies, chat templates and the commands that use
# them (tokenize, chat, generate --chat, convert, train with chat data).
SPM_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sentencepiece", "tiny_bpe.model")
TOKENIZE = "tokenize {f} --text hello"


def spm_json(rel, edit):
    """REL as Mistral-7B's tokenizer.json with EDIT applied to its text."""
    def make(c):
        text = open(os.path.join(c.shared, "tokenizers", "mistral-7b", "tokenizer.json"), encoding="utf-8").read()
        c.write(rel, edit(text))
    return once(rel, make)


def jset(**kv):
    """json_edit setting keys; a double underscore descends (model__dropout -> model.dropout)."""
    def fn(j):
        for k, v in kv.items():
            *parents, last = k.split("__")
            o = j
            for p in parents:
                o = o[p]
            o[last] = v
    return json_edit(fn)


def metaspace(**kw):
    return dict({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}, **kw)


def split_pt(**kw):
    return dict({"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated", "invert": False}, **kw)


def vocab_id(token, v):
    return json_edit(lambda j: j["model"]["vocab"].__setitem__(token, v))


def merge_at(i, v, lists=False):
    """Merge I replaced by V (the merges first turned into [left, right] lists when LISTS)."""
    def fn(j):
        if lists:
            j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
        j["model"]["merges"][i] = v
    return json_edit(fn)


def spm_added(content):
    return json_edit(lambda j: j["added_tokens"].append(
        {"id": 32000, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}))


def pp_unknown_special(j):
    j["post_processor"]["single"][0] = {"SpecialToken": {"id": "<nope>", "type_id": 0}}


def unk_missing(j):
    j["model"].update(unk_token="<nope>", byte_fallback=False)


def no_pre_tokenizer_key(j):
    j["pre_tokenizer"] = {"type": "Split", "behavior": "Isolated", "invert": False}


SPMJ = [  # name, edit of Mistral-7B's tokenizer.json, expected key, text to encode
    ("normalizer_unknown", jset(normalizer={"type": "NoSuchNormalizer"}), "normalizer|NoSuchNormalizer", "hello"),
    ("normalizer_seq_not_list", jset(normalizer={"type": "Sequence", "normalizers": 7}), "normalizers?", "hello"),
    ("replace_regex_bad", jset(normalizer={"type": "Replace", "pattern": {"Regex": "[z-a]"}, "content": "x"}),
     r"normalizer|Regex|pattern|\[z-a\]", "hello"),
    ("pre_tokenizer_unknown", jset(pre_tokenizer={"type": "Whitespacey"}), "pre_tokenizer|Whitespacey", "hello"),
    ("split_behavior_unknown", jset(pre_tokenizer=split_pt(behavior="Sideways")), "behavior|Sideways", "hello"),
    ("split_pattern_missing", json_edit(no_pre_tokenizer_key), "pattern", "hello"),
    ("split_pattern_glob", jset(pre_tokenizer=split_pt(pattern={"Glob": "*"})), "pattern|Glob", "hello"),
    ("split_regex_unclosed", jset(pre_tokenizer=split_pt(pattern={"Regex": "(a|b"})), r"Regex|pattern|\(a\|b", "hello"),
    ("metaspace_two_chars", jset(pre_tokenizer=metaspace(replacement="__")), "replacement", "hello"),
    ("metaspace_empty", jset(pre_tokenizer=metaspace(replacement="")), "replacement", "hello"),
    ("metaspace_scheme_unknown", jset(pre_tokenizer=metaspace(prepend_scheme="sometimes")), "prepend_scheme|sometimes",
     "hello"),
    ("metaspace_no_prefix_always", jset(pre_tokenizer=metaspace(add_prefix_space=False)), "add_prefix_space|prepend_scheme",
     "hello"),
    ("pre_sequence_missing", jset(pre_tokenizer={"type": "Sequence"}), "pretokenizers|Sequence", "hello"),
    ("decoder_unknown", jset(decoder={"type": "Unscramble"}), "decoder|Unscramble", "hello"),
    ("strip_two_chars", jset(decoder={"type": "Strip", "content": "  ", "start": 1, "stop": 0}), "content|Strip", "hello"),
    ("decoder_replace_no_pattern", jset(decoder={"type": "Replace", "content": " "}), "pattern|Replace", "hello"),
    ("post_processor_unknown", jset(post_processor={"type": "Scramble"}), "post_processor|Scramble", "hello"),
    ("post_processor_special_missing", json_edit(pp_unknown_special), "<nope>|special_tokens", "hello"),
    ("model_wordpiece", jset(model__type="WordPiece"), "type|WordPiece", "hello"),
    ("dropout_half", jset(model__dropout=0.5), "dropout", "hello"),
    ("continuing_subword_prefix", jset(model__continuing_subword_prefix="##"), "continuing_subword_prefix", "hello"),
    ("end_of_word_suffix", jset(model__end_of_word_suffix="</w>"), "end_of_word_suffix", "hello"),
    ("vocab_id_string", vocab_id("\u2581t", "x"), "vocab|\u2581t", "hello"),
    ("vocab_id_negative", vocab_id("\u2581t", -3), "vocab|\u2581t", "hello"),
    ("vocab_id_1e12", vocab_id("\u2581t", 10**12), "vocab|\u2581t", "hello"),
    ("vocab_id_float", vocab_id("\u2581t", 3.5), "vocab|\u2581t", "hello"),
    ("merge_three_tokens", merge_at(0, "\u2581 t x"), r"merges|\[0\]", "hello"),
    ("merge_one_token", merge_at(5, "\u2581t"), r"merges|\[5\]", "hello"),
    ("merge_token_missing", merge_at(7, "\u2581t zqzqzq"), "merges|zqzqzq", "hello"),
    ("merge_result_missing", merge_at(9, "ll \u2581t"), "merges|ll\u2581t", "hello"),
    ("merge_object", merge_at(3, {"a": "b"}), r"merges|\[3\]", "hello"),
    ("merge_list_three", merge_at(2, ["\u2581", "t", "x"], lists=True), r"merges|\[2\]", "hello"),
    ("added_content_empty", spm_added(""), "added_tokens|content", "hello"),
    # json.dumps writes the lone surrogate as the escape \ud800: not a UTF-8 string.
    ("added_content_surrogate", spm_added("\ud800"), "added_tokens|content|JSON|surrogate|UTF", "hello"),
    # byte_fallback false and an unk_token the vocabulary lacks: the text needs it for U+A66E.
    ("unk_not_in_vocab", json_edit(unk_missing), "unk_token|<nope>", "a\ua66eb"),
]
case("control.tokenize.mistral_json", "tokenize {S}/tokenizers/mistral-7b/tokenizer.json --text h\u00e9llo --json", rc=(0,))
for n, edit, key, text in SPMJ:
    f = "{T}/tokj/" + n + "/tokenizer.json"
    case(f"tokenizer_json.{n}.tokenize", "tokenize " + f + " --text " + text, f"tokj/{n}/tokenizer\\.json", key,
         build=spm_json("tokj/" + n + "/tokenizer.json", edit))


# Byte-level tokenizer.json (tiny-llama's) through convert to GGUF: a Split regex PCRE2 refuses,
# and a valid one llama.cpp has no name for (GGUF's tokenizer.ggml.pre is never a guess).
def bl_regex(new):
    def fn(j):
        j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = new
    return json_edit(fn)


for n, edit, key in (("split_regex_bad", bl_regex("(?<=a+)b[\\p{Nope}"), "Regex|pattern|pre_tokenizer"),
                     ("split_regex_unnamed", bl_regex("\\p{L}+|\\p{N}|\\s+|."), "pre_tokenizer|Regex|pattern|llama\\.cpp")):
    case(f"tokenizer_json.{n}.convert", on(TO_GGUF, "{T}/tokb/" + n), f"tokb/{n}/tokenizer\\.json", key,
         build=model_dir("tokb/" + n, "tiny-llama", tokenizer__json=edit))


# tokenizer.model: libsentencepiece's protobuf, garbage and real ones cut mid-field (a cut at a
# field boundary would be a smaller valid model).
def spm_cut(n):
    return lambda c: open(SPM_MODEL, "rb").read()[:n]


SPMM = [  # name, bytes, expected key
    ("garbage", b"definitely not a protobuf\n" * 8, "SentencePiece|protobuf|model"),
    ("empty", b"", "SentencePiece|empty|unk|model"),
    ("cut_7", spm_cut(7), "SentencePiece|truncat|parse"),         # inside the first piece
    ("cut_4000", spm_cut(4000), "SentencePiece|truncat|parse"),   # inside the pieces
    ("cut_8600", spm_cut(8600), "SentencePiece|truncat|parse"),   # inside trainer_spec
    ("cut_last_byte", spm_cut(-1), "SentencePiece|truncat|parse"),  # inside the normalizer's charsmap
]
case("control.tokenize.spm_model", "tokenize {T}/spmm/ok/tokenizer.model --text hello --json", rc=(0,),
     build=raw_file("spmm/ok/tokenizer.model", lambda c: open(SPM_MODEL, "rb").read()))
for n, data, key in SPMM:
    case(f"tokenizer_model.{n}.tokenize", "tokenize {T}/spmm/" + n + "/tokenizer.model --text hello",
         f"spmm/{n}/tokenizer\\.model", key, build=raw_file("spmm/" + n + "/tokenizer.model", data))
case("tokenizer_model.directory.tokenize", "tokenize {T}/spmm/dir/tokenizer.model --text hello", "spmm/dir/tokenizer\\.model",
     "director|tokenizer\\.model", build=lambda c: os.makedirs(c.path("spmm/dir/tokenizer.model/x"), exist_ok=True))
# A model directory whose only tokenizer is a cut tokenizer.model, or a directory of that name.
b = all_of(model_dir("spmd/cut", "tiny-llama", tokenizer__json=DELETE), raw_file("spmd/cut/tokenizer.model", spm_cut(4000)))
case("tokenizer_model.cut_4000.generate", "generate {T}/spmd/cut --prompt hi -n 2", "spmd/cut/tokenizer\\.model",
     "SentencePiece|truncat|parse", build=b)
b = model_dir("spmd/dir", "tiny-llama", tokenizer__json=DELETE)
case("tokenizer_model.directory_in_model.generate", "generate {T}/spmd/dir --prompt hi -n 2", "spmd/dir",
     "director|tokenizer", build=all_of(b, lambda c: os.makedirs(c.path("spmd/dir/tokenizer.model"), exist_ok=True)))


# GGUF vocabularies. "llama": tiny-llama with tiny_bpe.model as its tokenizer, converted by anvil
# (Env.spm_gguf); "gpt2": base-Q4_0.gguf's own.
def gv_file(rel, *mutations):
    def b(c):
        g = c.spm_gguf()
        for m in mutations:
            m(g)
        c.write(rel, g.to_bytes())
    return once(rel, b)


def gguf_array(key, fn):
    """Mutation of the array KEY: FN gets a copy of its items and returns the new items (and may
    return (element type, items) to change the element type)."""
    def m(g):
        et, items = g.get(key)
        r = fn(list(items))
        g.set(key, GT["arr"], r if isinstance(r, tuple) else (et, r))
    return m


def gguf_drop(key):
    def m(g):
        g.kv = [kv for kv in g.kv if kv[0] != key]
    return m


def item(i, v):
    def fn(items):
        items[i] = v
        return items
    return fn


GV = [  # name, mutation of the "llama" vocabulary GGUF, expected key, commands
    ("scores_short", gguf_array("tokenizer.ggml.scores", lambda it: it[:-1]), "tokenizer\\.ggml\\.scores",
     ("tokenize", "convert")),
    ("score_nan", gguf_array("tokenizer.ggml.scores", item(100, float("nan"))), "tokenizer\\.ggml\\.scores", ("tokenize",)),
    ("scores_missing", gguf_drop("tokenizer.ggml.scores"), "tokenizer\\.ggml\\.scores", ("tokenize",)),
    ("token_type_9", gguf_array("tokenizer.ggml.token_type", item(50, 9)), "tokenizer\\.ggml\\.token_type",
     ("tokenize",)),
    ("token_type_short", gguf_array("tokenizer.ggml.token_type", lambda it: it[:10]), "tokenizer\\.ggml\\.token_type",
     ("tokenize",)),
    ("tokens_not_strings", gguf_array("tokenizer.ggml.tokens", lambda it: (GT["u32"], list(range(len(it))))),
     "tokenizer\\.ggml\\.tokens", ("tokenize",)),
    # token_type 6 (byte) on a piece that is not <0xXX>: llama.cpp cannot read it as a byte.
    ("byte_piece_bad", gguf_array("tokenizer.ggml.tokens", item(3, "<0xZZ>")), "tokenizer\\.ggml\\.tokens|<0xZZ>|token_type",
     ("tokenize",)),
    ("unknown_token_id_past", gguf_meta("tokenizer.ggml.unknown_token_id", "u32", 5000), "unknown_token_id",
     ("tokenize",)),
    ("bos_token_id_past", gguf_meta("tokenizer.ggml.bos_token_id", "u32", 10**6), "bos_token_id", ("tokenize",)),
    ("add_bos_string", gguf_meta("tokenizer.ggml.add_bos_token", "str", "yes"), "add_bos_token", ("tokenize",)),
    ("model_t5", gguf_meta("tokenizer.ggml.model", "str", "t5"), "tokenizer\\.ggml\\.model|t5", ("tokenize", "convert")),
]
case("control.tokenize.llama_gguf", "tokenize {T}/gv/ok.gguf --text hello --json", rc=(0,), build=gv_file("gv/ok.gguf"))
case("control.convert.llama_gguf_to_hf", on(TO_HF, "{T}/gv/ok.gguf"), rc=(0,), build=gv_file("gv/ok.gguf"))
for n, m, key, cmds in GV:
    f = "{T}/gv/" + n + ".gguf"
    for cmd in cmds:
        case(f"gguf_vocab.{n}.{cmd}", on({"tokenize": TOKENIZE, "convert": TO_HF}[cmd], f), f"gv/{n}\\.gguf", key,
             build=gv_file("gv/" + n + ".gguf", m))
for n, m, key, cmds in (("pre_unknown", gguf_meta("tokenizer.ggml.pre", "str", "no-such-pre"),
                         "tokenizer\\.ggml\\.pre|no-such-pre", ("tokenize", "convert")),
                        ("merge_one_token", gguf_array("tokenizer.ggml.merges", item(3, "abc")), "tokenizer\\.ggml\\.merges",
                         ("tokenize",))):
    for cmd in cmds:
        case(f"gguf_vocab.{n}.{cmd}", on({"tokenize": TOKENIZE, "convert": TO_HF}[cmd], "{T}/gv/" + n + ".gguf"),
             f"gv/{n}\\.gguf", key, build=gguf_file("gv/" + n + ".gguf", m))

# --- chat templates ----------------------------------------------------------------------------
CONV_OK = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}\n'
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
RECURSE = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
DOUBLING = ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
            "{{ ns.s | length }}")
CHAT_CMDS = {"tokenize": "tokenize {f} --chat {T}/in/conv.jsonl", "chat": "chat {f} -n 2",
             "generate": "generate {f} --chat -p hi -n 2"}
conv_ok = raw_file("in/conv.jsonl", CONV_OK)
CT = [  # name, chat_template.jinja, expected key, commands
    ("unclosed_if", "{% if messages %}x", r"line 1, column \d+", ("tokenize", "chat", "generate")),
    ("plus_nothing", "{{ 1 + }}", r"line 1, column \d+", ("tokenize",)),
    ("line_3", "a\nb\n{{ messages[ }}", r"line 3, column \d+", ("tokenize",)),
    ("loop_forever", LOOP, r"line 1, column \d+", ("tokenize", "chat", "generate")),
    ("recursion", RECURSE, r"line 1, column \d+", ("tokenize",)),
    ("string_doubling", DOUBLING, r"line 1, column \d+", ("tokenize",)),
    ("unknown_method", "{{ messages.frobnicate() }}", r"line 1, column \d+", ("tokenize",)),
]
case("control.tokenize.chat", "tokenize {M}/tiny-llama --chat {T}/in/conv.jsonl", rc=(0,), build=conv_ok)
for n, src, key, cmds in CT:
    d = "{T}/ct/" + n
    for cmd in cmds:
        case(f"chat_template.{n}.{cmd}", on(CHAT_CMDS[cmd], d), f"ct/{n}/chat_template\\.jinja", key,
             build=all_of(conv_ok, model_dir("ct/" + n, "tiny-llama", chat_template__jinja=src)))
# raise_exception: tokenize --chat prints {"error": ...} for the line (exit 0); chat and generate
# --chat end with the template's message as the one line.
b = all_of(conv_ok, raw_file("in/hello.txt", "hello\n"),
           model_dir("ct/raise", "tiny-llama", chat_template__jinja="{{ raise_exception('no chatting today') }}"))
case("chat_template.raise.tokenize", on(CHAT_CMDS["tokenize"], "{T}/ct/raise"), rc=(0,), build=b)
case("chat_template.raise.chat", on(CHAT_CMDS["chat"], "{T}/ct/raise"), "ct/raise", "no chatting today", build=b,
     stdin="{T}/in/hello.txt")
case("chat_template.raise.generate", on(CHAT_CMDS["generate"], "{T}/ct/raise"), "ct/raise", "no chatting today", build=b)
case("control.chat.tiny-llama", "chat {M}/tiny-llama -n 2", rc=(0,), build=b, stdin="{T}/in/hello.txt")

# No template: tiny-llama and base without chat_template.jinja (their tokenizer_config.json has none).
b = all_of(conv_ok, model_dir("ct/none", "tiny-llama", chat_template__jinja=DELETE))
for cmd in ("chat", "generate"):
    case(f"chat_template.none.{cmd}", on(CHAT_CMDS[cmd], "{T}/ct/none"), "ct/none", "chat template|chat_template", build=b)
case("chat_template.none_base.chat", "chat {T}/ct/base_none -n 2", "ct/base_none", "chat template|chat_template",
     build=model_dir("ct/base_none", "base", chat_template__jinja=DELETE))

# tokenizer_config.json's chat_template (no chat_template.jinja beside it).
CFGT = [  # name, chat_template value, expected key, commands
    ("number", 5, "chat_template", ("tokenize", "convert")),
    ("no_default", [{"name": "tool_use", "template": "{{ 'x' }}"}], "default|tool_use", ("tokenize",)),
    ("entry_string", ["{{ 'x' }}"], r"chat_template\[0\]", ("tokenize",)),
    ("template_number", [{"name": "default", "template": 7}], r"chat_template\[0\]|template", ("tokenize",)),
    ("syntax", "{{ 1 + }}", r"line 1, column \d+", ("tokenize", "generate")),
]
for n, v, key, cmds in CFGT:
    d = "{T}/ctc/" + n
    b = all_of(conv_ok, model_dir("ctc/" + n, "tiny-llama", chat_template__jinja=DELETE,
                                  tokenizer_config__json=setk("chat_template", v)))
    for cmd in cmds:
        case(f"chat_template.config_{n}.{cmd}", on(dict(CHAT_CMDS, convert=TO_GGUF)[cmd], d),
             f"ctc/{n}/tokenizer_config\\.json", key, build=b)

# GGUF tokenizer.chat_template (base-Q4_0.gguf): not a string, or a syntax error; convert to a
# Hugging Face directory must fail before the directory exists.
for n, t, v, key, cmds in (("chat_template_u32", "u32", 5, "tokenizer\\.chat_template", ("tokenize", "convert")),
                           ("chat_template_syntax", "str", "{% if messages %}{{ 1 + }}", r"line 1, column \d+",
                            ("tokenize", "convert", "generate"))):
    f = "{T}/gct/" + n + ".gguf"
    b = all_of(conv_ok, gguf_file("gct/" + n + ".gguf", gguf_meta("tokenizer.chat_template", t, v)))
    for cmd in cmds:
        case(f"gguf.{n}.{cmd}", on(dict(CHAT_CMDS, convert=TO_HF)[cmd], f), f"gct/{n}\\.gguf", key, build=b)

# --- tokenize --jsonl / --chat input files: the bad line is line 2 ----------------------------
INP = [  # name, line 2, options, expected key
    ("jsonl_not_json", '{"text": "unterminated', "--jsonl", "JSON"),
    ("jsonl_not_object", '["hello"]', "--jsonl", "object"),
    ("jsonl_text_number", '{"text": 5}', "--jsonl", "text"),
    ("decode_ids_strings", '{"ids": ["1", "2"]}', "--jsonl --decode", "ids"),
    ("decode_ids_negative", '{"ids": [5, -1]}', "--jsonl --decode", "ids"),
    ("decode_ids_huge", '{"ids": [10000000000000]}', "--jsonl --decode", "ids"),
    ("chat_no_messages", '{"add_generation_prompt": true}', "--chat", "messages"),
    ("chat_messages_string", '{"messages": "hi"}', "--chat", "messages"),
    ("chat_generation_prompt_string", '{"messages": [], "add_generation_prompt": "yes"}', "--chat", "add_generation_prompt"),
]
FIRST = {"--jsonl": '{"text": "hello"}', "--chat": CONV_OK.strip()}
for n, line2, opts, key in INP:
    first = '{"ids": [1, 2]}' if "--decode" in opts else FIRST[opts.split()[0]]
    case(f"tokenize.{n}", "tokenize {M}/tiny-llama " + opts.replace("--jsonl", "--jsonl {T}/in/" + n + ".jsonl")
         .replace("--chat", "--chat {T}/in/" + n + ".jsonl"), f"in/{n}\\.jsonl:2", key,
         build=raw_file("in/" + n + ".jsonl", first + "\n" + line2 + "\n"))
# Ids the vocabulary lacks (tiny-llama has 4096): an error naming the line, or skipped as the
# tokenizers library skips them; never a crash.
case("tokenize.decode_ids_beyond_vocab", "tokenize {M}/tiny-llama --jsonl {T}/in/beyond.jsonl --decode", "in/beyond\\.jsonl",
     "ids|4096|99999", rc=(0, 2), build=raw_file("in/beyond.jsonl", '{"ids": [1, 99999, 2147483647]}\n'))
case("tokenize.decode_text_negative", "tokenize {M}/tiny-llama --decode --text 1,-1", "--text", "-")
case("tokenize.decode_file_huge", "tokenize {M}/tiny-llama --decode --file {T}/in/huge_ids.txt", "in/huge_ids\\.txt",
     "4294967296", build=raw_file("in/huge_ids.txt", "1 2 4294967296\n"))
# Messages the conversation file gets wrong (not an object, no role): the line is the hostile
# input and must be named, as train names it, not (only) the model's template.
for n, line2 in (("chat_message_string", '{"messages": ["hi"]}'),
                 ("chat_message_no_role", '{"messages": [{"content": "hi"}]}')):
    case(f"tokenize.{n}", "tokenize {M}/tiny-llama --chat {T}/in/" + n + ".jsonl", f"in/{n}\\.jsonl:2", "messages|role",
         build=raw_file("in/" + n + ".jsonl", CONV_OK + line2 + "\n"))


# --- train with chat data ----------------------------------------------------------------------
def chat_recipe(name, data, base=None):
    def make(c):
        b = c.path(base) if base else c.models + "/tiny-llama"
        return (f"base_model: {b}\noutput_dir: {c.path('train-out', name, 'run')}\n"
                f"datasets: [{{path: {c.path(data)}, type: chat}}]\nsequence_len: 64\nmicro_batch_size: 1\n"
                f"max_steps: 1\nthreads: 1\nlora: {{r: 4, target_modules: [q_proj]}}\n")
    return raw_file(f"train/{name}.yaml", make)


def gemma3_model(c):
    """tiny-llama with Gemma-3's chat template (from refs/chat_template_cases.json)."""
    model_dir("ct/gemma3", "tiny-llama", chat_template__jinja=DELETE)(c)
    cases = json.load(open(os.path.join(c.shared, "refs", "chat_template_cases.json"), encoding="utf-8"))
    c.write("ct/gemma3/chat_template.jinja", next(t["template"] for t in cases["templates"] if t["name"] == "gemma-3"))


TWO_USERS = '{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}\n'
b = all_of(raw_file("train/chat_ok.jsonl", CONV_OK * 4),
           raw_file("train/chat_roles.jsonl", CONV_OK + TWO_USERS + CONV_OK),
           raw_file("train/chat_messages_string.jsonl", CONV_OK + '{"messages": "hi"}\n'),
           raw_file("train/chat_bad_line.jsonl", CONV_OK + "{not json\n"))
case("control.train.chat", "train {T}/train/chat_ok.yaml", rc=(0,),
     build=all_of(b, chat_recipe("chat_ok", "train/chat_ok.jsonl"),
                  lambda c: os.makedirs(c.path("train-out", "chat_ok"), exist_ok=True)),
     out="{T}/train-out/chat_ok")
# Gemma-3's template raises "Conversation roles must alternate ..." on two user turns in a row.
train_case("train.chat_roles_alternate", "train {T}/train/chat_roles.yaml", "chat_roles\\.jsonl:2", "alternate",
           build=all_of(b, gemma3_model, chat_recipe("chat_roles", "train/chat_roles.jsonl", "ct/gemma3")), out="chat_roles")
train_case("train.chat_no_template", "train {T}/train/chat_none.yaml", "chat_none\\.yaml|ct/none", "chat_template|chat template",
           build=all_of(b, model_dir("ct/none", "tiny-llama", chat_template__jinja=DELETE),
                        chat_recipe("chat_none", "train/chat_ok.jsonl", "ct/none")), out="chat_none")
train_case("train.chat_template_syntax", "train {T}/train/chat_syntax.yaml", "ct/plus_nothing/chat_template\\.jinja",
           r"line 1, column \d+", build=all_of(b, model_dir("ct/plus_nothing", "tiny-llama", chat_template__jinja="{{ 1 + }}"),
                                                chat_recipe("chat_syntax", "train/chat_ok.jsonl", "ct/plus_nothing")),
           out="chat_syntax")
train_case("train.chat_template_loop", "train {T}/train/chat_loop.yaml", "ct/loop_forever/chat_template\\.jinja",
           r"line 1, column \d+", build=all_of(b, model_dir("ct/loop_forever", "tiny-llama", chat_template__jinja=LOOP),
                                                chat_recipe("chat_loop", "train/chat_ok.jsonl", "ct/loop_forever")),
           out="chat_loop")
train_case("train.chat_messages_string", "train {T}/train/chat_messages_string.yaml", "chat_messages_string\\.jsonl:2",
           "messages", build=all_of(b, chat_recipe("chat_messages_string", "train/chat_messages_string.jsonl")),
           out="chat_messages_string")
train_case("train.chat_bad_line", "train {T}/train/chat_bad_line.yaml", "chat_bad_line\\.jsonl:2", "JSON",
           build=all_of(b, chat_recipe("chat_bad_line", "train/chat_bad_line.jsonl")), out="chat_bad_line")
# A template whose generation prompt is not a prefix of the conversation: the assistant turns
# cannot be found.
NOT_PREFIX = ("{% if add_generation_prompt %}GEN{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
              "{{ m.content }}<|im_end|>\n{% endfor %}")
train_case("train.chat_template_not_prefix", "train {T}/train/chat_not_prefix.yaml",
           "ct/not_prefix/chat_template\\.jinja|chat_ok\\.jsonl", "assistant|prefix|generation",
           build=all_of(b, model_dir("ct/not_prefix", "tiny-llama", chat_template__jinja=NOT_PREFIX),
                        chat_recipe("chat_not_prefix", "train/chat_ok.jsonl", "ct/not_prefix")), out="chat_not_prefix")


# ---------------------------------------------------------------------------------------------
# Runner

class Env(Corpus):
    anvil = None
    _ckpt = None
    _spm = None

    def spm_gguf(self):
        """A GGUF with a "llama" vocabulary: tiny-llama with tests/data/sentencepiece/tiny_bpe.model
        as its only tokenizer, converted to F32 by anvil (built once); parsed, a copy per call."""
        if self._spm is None:
            d = self.model_copy("spm-model", "tiny-llama", {"tokenizer.json": DELETE, "chat_template.jinja": DELETE})
            shutil.copy(SPM_MODEL, os.path.join(d, "tokenizer.model"))
            out = self.path("spm-model.gguf")
            r = run(self.anvil, ["convert", d, "-o", out, "--type", "f32"], self.root)
            if r[0] != 0 or not os.path.isfile(out):
                raise RuntimeError("setup: anvil convert of tiny-llama with tiny_bpe.model failed (rc %s): %s"
                                   % (r[0], r[2][:150]))
            self._spm = Gguf(out)
            assert self._spm.get("tokenizer.ggml.model") == "llama", self._spm.get("tokenizer.ggml.model")
        return copy.deepcopy(self._spm)

    def train_data(self):
        p = self.path("train_data.txt")
        if not os.path.exists(p):
            text = open(os.path.join(self.shared, "data", "fortune.train.txt"), "rb").read(20000)
            self.write("train_data.txt", text)
        return p

    def checkpoint(self):
        """checkpoint-1 of a one-step run of tiny-llama (built once, by anvil train)."""
        if self._ckpt is None:
            out = self.path("ckpt-run")
            self.write("ckpt.yaml", recipe_yaml(self.models, self.train_data(), out, steps=1))
            r = run(self.anvil, ["train", self.path("ckpt.yaml")], self.root)
            d = os.path.join(out, "checkpoint-1")
            if r[0] != 0 or not os.path.isdir(d):
                raise RuntimeError("setup: tiny training run failed (rc %s): %s" % (r[0], r[2][:150]))
            self._ckpt = d
        return self._ckpt


def run(anvil, argv, cwd, stdin=None):
    env = dict(os.environ, ANVIL_NO_PROGRESS="1")
    t0 = time.monotonic()
    try:
        with open(stdin or os.devnull, "rb") as inp:
            p = subprocess.run([anvil] + argv, cwd=cwd, env=env, stdin=inp, capture_output=True,
                               timeout=TIMEOUT_S, start_new_session=True)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), \
            time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        return "timeout", "", (e.stderr or b"").decode("utf-8", "replace"), time.monotonic() - t0


def check(c, rc, stderr, out_dir, strip):
    """The failure reason for case C, or None."""
    if rc == "timeout":
        return f"hang (no exit within {TIMEOUT_S} s)"
    if rc < 0:
        return f"killed by signal {signal.Signals(-rc).name}"
    if rc not in c.rc:
        return f"exit status {rc}, expected {' or '.join(map(str, c.rc))}"
    left = sorted(os.listdir(out_dir))
    if rc == 0:
        stray = [f for f in left if f.startswith(".")]
        return f"left temporaries {stray}" if stray else None
    if left:
        return f"left {left} in the output directory"
    lines = stderr.splitlines()
    if len(lines) != 1 or not stderr.endswith("\n"):
        return f"stderr has {len(lines)} lines, expected one"
    for k, pat in enumerate(c.expect):
        line = lines[0] if k == 0 else re.sub(r"(%s)[^\s:'\"]*" % "|".join(map(re.escape, strip)), "", lines[0])
        if not re.search(pat, line):
            return f"stderr does not match /{pat}/" + (" (paths removed)" if k else "")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--anvil", required=True, help="path of the anvil front end (anvil-torch beside it)")
    ap.add_argument("--shared", required=True, help="the shared fixtures directory (ANVIL_SHARED overrides it)")
    ap.add_argument("--only", help="run only cases whose name matches this glob (or contains it)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case with its time and stderr")
    ap.add_argument("--keep", action="store_true", help="keep the corpus directory")
    a = ap.parse_args()
    anvil = os.path.abspath(a.anvil)
    shared = os.path.abspath(os.environ.get("ANVIL_SHARED") or a.shared)
    cases = [c for c in CASES if not a.only or a.only in c.name or fnmatch.fnmatch(c.name, a.only)]
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"

    root = tempfile.mkdtemp(prefix="anvil-hostile-")
    env = Env(root, shared)
    env.anvil = anvil
    small = os.path.join(root, "small.txt")
    with open(small, "wb") as f:
        f.write(open(os.path.join(shared, "data", "fortune.val.txt"), "rb").read(3000))
    failed, t_start = 0, time.monotonic()
    try:
        for i, c in enumerate(cases):
            fmt = dict(T=root, M=os.path.join(shared, "models"), S=shared, O=os.path.join(root, "out", str(i)), D=small)
            os.makedirs(fmt["O"])
            cmd = c.args.format(**fmt)
            out_dir = c.out.format(**fmt)
            try:
                if c.build:
                    c.build(env)
            except Exception as e:  # noqa: BLE001 - a broken corpus builder is a failing case too
                rc, stderr, secs, why = "setup", str(e), 0.0, f"setup failed: {e}"
            else:
                rc, _, stderr, secs = run(anvil, cmd.split(), root, c.stdin.format(**fmt) if c.stdin else None)
                why = check(c, rc, stderr, out_dir, (root, shared))
            first = (stderr.splitlines() or [""])[0][:150]
            if why:
                failed += 1
                print(f"FAIL {c.name}: {why}; rc={rc}; stderr: {first.replace(root, '$T')}", flush=True)
                if a.verbose:
                    print(f"     $ anvil {cmd.replace(root, '$T')}", flush=True)
            elif a.verbose:
                print(f"ok   {c.name} ({secs:.2f} s) rc={rc}: {first.replace(root, '$T')}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("corpus kept in", root)
    print(f"{len(cases)} cases, {failed} failed ({time.monotonic() - t_start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
