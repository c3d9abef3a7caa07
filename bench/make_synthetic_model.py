#!/usr/bin/python3
"""Writes a randomly initialised Llama-shaped bf16 checkpoint (default: Llama-3.2-1B's shapes,
~2.5 GB; --shape 8b: Llama-3.1-8B's, ~16 GB, untied head) for merge, quantize and kernel
benchmarks. Needs Debian's python3-numpy; no network, no torch.

usage: make_synthetic_model.py OUT_DIR [--seed S] [--layers N] [--shape 1b|8b]
"""
import argparse, json, os, struct
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--layers", type=int, default=None)
p.add_argument("--shape", choices=["1b", "8b"], default="1b")
a = p.parse_args()

if a.shape == "1b":
    H, F, V, NH, NKV, D, layers, tied = 2048, 8192, 128256, 32, 8, 64, 16, True
else:
    H, F, V, NH, NKV, D, layers, tied = 4096, 14336, 128256, 32, 8, 128, 32, False
a.layers = a.layers or layers
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
    "intermediate_size": F, "num_hidden_layers": a.layers, "num_attention_heads": NH,
    "num_key_value_heads": NKV, "head_dim": D, "vocab_size": V, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": tied,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
}
shapes = [("model.embed_tokens.weight", (V, H))]
for i in range(a.layers):
    pre = f"model.layers.{i}."
    shapes += [(pre + "input_layernorm.weight", (H,)), (pre + "post_attention_layernorm.weight", (H,)),
               (pre + "self_attn.q_proj.weight", (NH * D, H)), (pre + "self_attn.k_proj.weight", (NKV * D, H)),
               (pre + "self_attn.v_proj.weight", (NKV * D, H)), (pre + "self_attn.o_proj.weight", (H, NH * D)),
               (pre + "mlp.gate_proj.weight", (F, H)), (pre + "mlp.up_proj.weight", (F, H)),
               (pre + "mlp.down_proj.weight", (H, F))]
shapes.append(("model.norm.weight", (H,)))
if not tied:
    shapes.append(("lm_head.weight", (V, H)))

header, offset = {"__metadata__": {"format": "pt"}}, 0
for name, shape in shapes:
    n = int(np.prod(shape)) * 2
    header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
    offset += n
text = json.dumps(header, separators=(",", ":"))
text += " " * ((8 - len(text) % 8) % 8)
os.makedirs(a.out, exist_ok=True)
rng = np.random.default_rng(a.seed)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text.encode())
    for name, shape in shapes:
        n = int(np.prod(shape))
        if len(shape) == 1:
            x = np.ones(n, dtype=np.float32)
        else:
            x = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
        (x.view(np.uint32) >> 16).astype(np.uint16).tofile(f)  # truncate to bf16
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
