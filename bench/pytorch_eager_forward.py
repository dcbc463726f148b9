"""Anchor for the model source: a GPT-2 forward pass in PyTorch eager, as a Python user runs it to
collect activations (HF GPT2Model's math, no grad), stopped at a block's hook_resid_pre like
TransformerLens's run_with_cache(stop_at_layer=...). Reads the same Hugging Face folder saelab
reads (config.json + model.safetensors, parsed here with numpy). Run with Debian's python3-torch.
Prints the forward's tokens/s.
usage: python3 pytorch_eager_forward.py MODEL_DIR BLOCK CONTEXT PROMPTS STEPS
       (BLOCK 8: the output of blocks 0..7, i.e. blocks.8.hook_resid_pre)"""
import json, math, os, sys, time

import numpy as np
import torch

model_dir, block, context, prompts, steps = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(torch.get_num_threads() if torch.get_num_threads() > 1 else 2)
cfg = json.load(open(os.path.join(model_dir, "config.json")))
D, H, eps = cfg["n_embd"], cfg["n_head"], cfg.get("layer_norm_epsilon", 1e-5)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", f"{name}: expected F32"
        a, b = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(e["shape"]).copy())
    return out


W = {k.removeprefix("transformer."): v for k, v in read_safetensors(
    os.path.join(model_dir, "model.safetensors")).items()}


def layer_norm(x, p):
    return torch.nn.functional.layer_norm(x, (D,), W[p + ".weight"], W[p + ".bias"], eps)


def conv1d(x, p):  # GPT-2's Conv1D: weight [in, out]
    return torch.addmm(W[p + ".bias"], x.reshape(-1, x.shape[-1]), W[p + ".weight"]).view(
        *x.shape[:-1], -1)


def forward(ids):
    B, T = ids.shape
    x = W["wte.weight"][ids] + W["wpe.weight"][:T]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(block):
        p = f"h.{l}"
        q, k, v = conv1d(layer_norm(x, p + ".ln_1"), p + ".attn.c_attn").split(D, -1)
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H) + mask, -1)
        z = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + conv1d(z, p + ".attn.c_proj")
        h = conv1d(layer_norm(x, p + ".ln_2"), p + ".mlp.c_fc")
        x = x + conv1d(torch.nn.functional.gelu(h, approximate="tanh"), p + ".mlp.c_proj")
    return x


torch.manual_seed(0)
ids = torch.randint(0, cfg["vocab_size"], (prompts, context))
with torch.no_grad():
    forward(ids)
    best = 1e30
    for _ in range(steps):
        t0 = time.perf_counter()
        forward(ids)
        best = min(best, time.perf_counter() - t0)
print(f"forward d_model={D} blocks={block} B={prompts} T={context} threads={torch.get_num_threads()}: "
      f"{best * 1e3:.0f} ms/batch, {prompts * context / best:.0f} tokens/s")
