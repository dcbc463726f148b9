"""End-to-end training speed: `saelab train` on cached activations, as a user runs it, against
the physical floor and PyTorch eager, all measured in this one run (bench/compare.sh --e2e).

For each shape and architecture it prints:
  eager tok/s      the PyTorch reference step (../shared/bench/pytorch_eager_step.py for standard
                   and topk, bench/pytorch_eager_more.py for gated, jumprelu, batchtopk)
  train tok/s      `saelab train`'s own loop: loop_steps × batch / loop_seconds from its --json
                   summary (every step, with logging, firing statistics, the read-ahead source)
  floor tok/s      the dense products the architecture cannot avoid (standard, jumprelu 5; gated 7;
                   topk, batchtopk, matryoshka_batchtopk 1) of 2·d_in·d_sae FLOP per token each,
                   at the sgemm rate `saelab bench --sgemm-n` measured at the start of this run
  of floor         floor time / train time
  outside step     1 − step_seconds / loop_seconds: what the trainer costs around the SAE step
  data wait        source_wait_seconds / loop_seconds
  peak RSS         of the `saelab train` process, against 1.5 × what must be resident: parameters,
                   their gradients and two Adam moments (4 × params), three batches (the one in
                   use and the read-ahead queue of two), the [batch, d_sae] intermediates the
                   step cannot do without (WORK_BUFFERS) and the mapped cache file; LibTorch's
                   own resident baseline (from
                   `saelab bench`) is shown apart and added to the budget.
With --model, also `saelab train` on a language model source: a GPT-2-small-shaped model with
random weights (12 blocks, d_model 768, 12 heads, vocabulary 50257, written here as a Hugging Face
folder), hook blocks.8.hook_resid_pre, context 128, random token ids. It prints the model's
forward pass to the hook alone (`saelab bench --model`) beside a PyTorch eager forward of the same
weights (bench/pytorch_eager_forward.py), the SAE step alone (`saelab bench`), and `saelab
train`'s steady loop rate (the difference of a (2 + steps)-step and a 2-step run's loops) against
1 / (t_forward + t_step) per token, the rate of running both one after
the other (on the CPU the store runs the model on the trainer's thread, between steps).
usage: python3 bench/e2e.py [--grid "768x16384 ..."] [--archs "standard topk ..."] [--batch 4096]
                            [--steps 6] [--k 32] [--sgemm-n 4096] [--out results.json]
                            [--model] [--model-archs "standard topk"] [--model-d-sae 6144]
                            [--model-batch 4096] [--model-steps 8] [--grid ""]
Env: SAELAB (the binary, default build/saelab), SAELAB_SHARED (default ../shared)."""
import argparse, json, os, re, resource, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
saelab = os.environ.get("SAELAB", os.path.join(root, "build", "saelab"))
shared = os.environ.get("SAELAB_SHARED", os.path.join(root, "..", "shared"))
FLOOR_PRODUCTS = {"standard": 5, "jumprelu": 5, "gated": 7, "topk": 1, "batchtopk": 1,
                  "matryoshka_batchtopk": 1}

ap = argparse.ArgumentParser(usage=__doc__)
ap.add_argument("--grid", default="512x8192 512x65536 2304x8192 2304x65536")
ap.add_argument("--archs", default="standard jumprelu gated topk batchtopk matryoshka_batchtopk")
ap.add_argument("--batch", type=int, default=4096)
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--k", type=int, default=32)
ap.add_argument("--sgemm-n", type=int, default=4096)
ap.add_argument("--out", default="")
ap.add_argument("--model", action="store_true")
ap.add_argument("--model-archs", default="standard topk")
ap.add_argument("--model-d-sae", type=int, default=6144)
ap.add_argument("--model-batch", type=int, default=4096)
ap.add_argument("--model-steps", type=int, default=8)
a = ap.parse_args()
archs = a.archs.split()
for arch in archs + (a.model_archs.split() if a.model else []):
    if arch not in FLOOR_PRODUCTS:
        sys.exit(f"e2e.py: unknown architecture '{arch}' (expected one of {', '.join(FLOOR_PRODUCTS)})")
if not os.access(saelab, os.X_OK):
    sys.exit(f"e2e.py: {saelab}: expected the saelab binary (make build)")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"e2e.py: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def peak_rss_mb_of(cmd):
    """Runs cmd in its own child (so RUSAGE_CHILDREN is its peak alone); returns (stdout, MiB)."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
             "sys.exit(r.returncode)\n")
    r = subprocess.run([sys.executable, "-c", probe] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"e2e.py: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout, int(r.stderr.strip().splitlines()[-1]) / 1024.0


def write_cache(path, rows, d_in):
    """A safetensors file of `rows` random float32 activations, written from the format's spec."""
    import numpy as np
    x = np.random.default_rng(0).standard_normal((rows, d_in), dtype=np.float32)
    data = x.astype("<f4").tobytes()
    header = json.dumps({"activations": {"dtype": "F32", "shape": [rows, d_in],
                                         "data_offsets": [0, len(data)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + data)


def eager(d_in, d_sae):
    """tokens/s of the PyTorch reference per architecture at this shape."""
    out = {}
    std = [x for x in archs if x in ("standard", "topk")]
    more = [x for x in archs if x in ("gated", "jumprelu", "batchtopk")]
    text = ""
    if std:
        text += run([sys.executable, os.path.join(shared, "bench", "pytorch_eager_step.py"),
                     str(d_in), str(d_sae), str(a.batch), str(a.steps), str(a.k)])
    if more:
        text += run([sys.executable, os.path.join(root, "bench", "pytorch_eager_more.py"),
                     str(d_in), str(d_sae), str(a.batch), str(a.steps), str(a.k), ",".join(more)])
    for line in text.splitlines():
        m = re.match(r"(\w+) d_in=\d+ d_sae=\d+ B=\d+.*: [\d.]+ ms/step, ([\d.]+) tokens/s", line)
        if m:
            out[m[1]] = float(m[2])
    return out


def write_gpt2_small(d):
    """A GPT-2-small-shaped Hugging Face folder with random weights (GPT-2's init: N(0, 0.02),
    layer norms at 1 and 0), and GPT-2's config.json."""
    import numpy as np
    D, L, V, CTX, M = 768, 12, 50257, 1024, 3072
    os.makedirs(d, exist_ok=True)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": D, "n_head": 12,
           "n_layer": L, "n_ctx": CTX, "n_positions": CTX, "n_inner": None, "vocab_size": V,
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
           "bos_token_id": V - 1, "eos_token_id": V - 1}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    g = np.random.default_rng(1)
    shapes = {"wte.weight": (V, D), "wpe.weight": (CTX, D)}
    for l in range(L):
        p = f"h.{l}."
        shapes.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,),
                       p + "attn.c_attn.weight": (D, 3 * D), p + "attn.c_attn.bias": (3 * D,),
                       p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,),
                       p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
                       p + "mlp.c_fc.weight": (D, M), p + "mlp.c_fc.bias": (M,),
                       p + "mlp.c_proj.weight": (M, D), p + "mlp.c_proj.bias": (D,)})
    shapes.update({"ln_f.weight": (D,), "ln_f.bias": (D,)})
    header, blobs, off = {}, [], 0
    for name, shape in shapes.items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            t = np.ones(shape, dtype="<f4")
        elif len(shape) == 1:
            t = np.zeros(shape, dtype="<f4")
        else:
            t = (0.02 * g.standard_normal(shape, dtype=np.float32)).astype("<f4")
        b = t.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h)
        for b in blobs:
            f.write(b)


def model_source(tmp):
    """`saelab train` on the GPT-2-small-shaped model against its parts, measured side by side."""
    import numpy as np
    lm, data = os.path.join(tmp, "gpt2-small-random"), os.path.join(tmp, "ids.jsonl")
    write_gpt2_small(lm)
    B, steps, d_sae, T, P = a.model_batch, a.model_steps, a.model_d_sae, 128, 16
    # Enough 128-token rows for the buffer's fill, the steps and the final evaluation.
    n_rows = (B * (steps + 12)) // T + 64
    ids = np.random.default_rng(2).integers(0, 50257, (n_rows, T))
    with open(data, "w") as f:
        for row in ids:
            f.write(json.dumps({"input_ids": row.tolist()}) + "\n")
    print("# model: forward alone", file=sys.stderr)
    fwd = json.loads(run([saelab, "bench", "--json", "--sgemm-n", "0", "--arch", "", "--model", lm,
                          "--hook", "blocks.8.hook_resid_pre", "--context", str(T), "--prompts",
                          str(P), "--steps", "3"]))["forward"]
    text = run([sys.executable, os.path.join(root, "bench", "pytorch_eager_forward.py"), lm, "8",
                str(T), str(P), "3"])
    m = re.search(r"([\d.]+) tokens/s", text)
    eager_fwd = float(m[1]) if m else None
    out = []
    for arch in a.model_archs.split():
        print(f"# model: {arch}", file=sys.stderr)
        step = json.loads(run([saelab, "bench", "--json", "--sgemm-n", "0", "--arch", arch,
                               "--d-in", "768", "--d-sae", str(d_sae), "--batch", str(B),
                               "--steps", "2", "--k", str(a.k)]))["results"][0]
        cfg = os.path.join(tmp, "model_run.toml")
        with open(cfg, "w") as f:
            f.write(f'model_name = "{lm}"\ndataset_path = "{data}"\n'
                    f'hook_name = "blocks.8.hook_resid_pre"\nhook_layer = 8\nd_in = 768\n'
                    f'd_sae = {d_sae}\narchitecture = "{arch}"\nk = {a.k}\n'
                    f'context_size = {T}\nprepend_bos = false\ntrain_batch_size_tokens = {B}\n'
                    f'training_tokens = {B * steps}\nstore_batch_size_prompts = {P}\n'
                    f'n_batches_in_buffer = {max(2, 2 * B // (P * T))}\nlog_to_wandb = false\n'
                    f'b_dec_init_method = "zeros"\nn_eval_batches = 0\nwandb_log_frequency = 2\n')
        # The mixing buffer's first fill happens before the loop and the store reads ahead, so
        # a short loop gets part of its forward passes for free: the steady rate is the
        # difference of a long and a short run's loops.
        loops = {}
        for n_steps in (2, 2 + steps):
            s = json.loads(run([saelab, "train", cfg, "--json", "--run-dir",
                                os.path.join(tmp, f"model_{arch}_{n_steps}"), "--set",
                                f"training_tokens={B * n_steps}"]))
            loops[n_steps] = s
        long, short = loops[2 + steps], loops[2]
        train_tps = steps * B / (long["loop_seconds"] - short["loop_seconds"])
        s = long
        serial_tps = 1.0 / (1.0 / fwd["tokens_per_s"] + 1.0 / step["tokens_per_s"])
        out.append(dict(arch=arch, d_sae=d_sae, batch=B, forward_tokens_per_s=fwd["tokens_per_s"],
                        eager_forward_tokens_per_s=eager_fwd,
                        step_tokens_per_s=step["tokens_per_s"], train_tokens_per_s=train_tps,
                        serial_tokens_per_s=serial_tps, loop_steps=s["loop_steps"],
                        data_wait=s["source_wait_seconds"] / s["loop_seconds"]))
    return out


sgemm = json.loads(run([saelab, "bench", "--json", "--sgemm-n", str(a.sgemm_n), "--arch", ""]))
# LibTorch's resident baseline: the RSS `saelab bench` sees before it builds a (tiny) SAE.
baseline_mb = json.loads(run([saelab, "bench", "--json", "--sgemm-n", "0", "--arch", "standard",
                              "--d-in", "8", "--d-sae", "8", "--steps", "1"]))["results"][0]["rss_before_mb"]
# Per-latent parameters besides W_enc and W_dec's rows (b_enc; gated: r_mag, b_mag; jumprelu: the
# threshold).
EXTRA_PER_LATENT = {"gated": 3, "jumprelu": 2}
# [batch, d_sae] float32 intermediates a step cannot do without, in units of batch·d_sae·4 bytes
# (a bool mask counts 1/4). Dense: the activations f (dW_dec = fᵀ g reads them) and dL/dz
# (dW_enc = x̃ᵀ dz), which cannot share memory since dL/dz = (g W_decᵀ) ⊙ mask needs a product
# written out beside f; jumprelu adds its bool window mask, gated its gate pre-activations a and a
# bool mask. k-sparse: z only, everything after the selection is k-sparse.
WORK_BUFFERS = {"standard": 2, "jumprelu": 2.25, "gated": 3.25, "topk": 1, "batchtopk": 1,
                "matryoshka_batchtopk": 1}
rate = sgemm["sgemm_gflops"] * 1e9
rows, model_rows = [], []
with tempfile.TemporaryDirectory() as tmp:
    if a.model:
        model_rows = model_source(tmp)
    for shape in a.grid.split():
        d_in, d_sae = map(int, shape.split("x"))
        cache = os.path.join(tmp, f"acts_{d_in}.safetensors")
        if not os.path.exists(cache):
            write_cache(cache, 4 * a.batch, d_in)
        print(f"# {shape}: reference", file=sys.stderr)
        ref = eager(d_in, d_sae)
        for arch in archs:
            print(f"# {shape}: {arch}", file=sys.stderr)
            run_dir = os.path.join(tmp, f"run_{arch}_{shape}")
            cfg = os.path.join(tmp, "run.toml")
            with open(cfg, "w") as f:
                f.write(f'architecture = "{arch}"\nd_in = {d_in}\nd_sae = {d_sae}\nk = {a.k}\n'
                        f'use_cached_activations = true\ncached_activations_path = "{cache}"\n'
                        f'dataset_path = "unused"\nmodel_name = "unused"\n'
                        f'hook_name = "blocks.0.hook_resid_pre"\n'
                        f'train_batch_size_tokens = {a.batch}\n'
                        f'training_tokens = {a.batch * a.steps}\nlog_to_wandb = false\n'
                        f'b_dec_init_method = "zeros"\nwandb_log_frequency = 2\n')
                if arch == "matryoshka_batchtopk":
                    f.write(f"matryoshka_widths = [{d_sae // 4}, {d_sae // 2}, {d_sae}]\n")
            out, rss = peak_rss_mb_of([saelab, "train", cfg, "--json", "--run-dir", run_dir])
            s = json.loads(out)
            loop = s["loop_seconds"]
            train_tps = s["loop_steps"] * a.batch / loop
            floor_tps = rate / (FLOOR_PRODUCTS[arch] * 2.0 * d_in * d_sae)
            params = 4.0 * (2 * d_in * d_sae + d_in + d_sae * EXTRA_PER_LATENT.get(arch, 1))
            budget = (4 * params + 3 * a.batch * d_in * 4.0
                      + WORK_BUFFERS[arch] * a.batch * d_sae * 4.0
                      + os.path.getsize(cache)) / 2**20
            rows.append(dict(arch=arch, d_in=d_in, d_sae=d_sae, batch=a.batch,
                             eager_tokens_per_s=ref.get(arch), train_tokens_per_s=train_tps,
                             floor_tokens_per_s=floor_tps, floor_fraction=train_tps / floor_tps,
                             outside_step=1 - s["step_seconds"] / loop,
                             data_wait=s["source_wait_seconds"] / loop, loop_steps=s["loop_steps"],
                             peak_rss_mb=rss, libtorch_baseline_mb=baseline_mb,
                             rss_budget_mb=budget))

print(f"sgemm {sgemm['sgemm_n']}² float32: {sgemm['sgemm_gflops']:.1f} GFLOP/s, "
      f"{sgemm['threads']} threads, LibTorch {sgemm['libtorch']}; batch {a.batch}, k {a.k}, "
      f"{a.steps} steps per run")
print()
if rows:
    print("| arch | d_in × d_sae | eager tok/s | train tok/s | × eager | floor tok/s | of floor "
          "| outside step | data wait | peak RSS MiB (1.5 × budget + LibTorch) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        e = r["eager_tokens_per_s"]
        eager_s = f"{e:,.0f}" if e else "n/a"
        ratio_s = f"{r['train_tokens_per_s'] / e:.2f}×" if e else "n/a"
        print(f"| {r['arch']} | {r['d_in']} × {r['d_sae']} | {eager_s} "
              f"| {r['train_tokens_per_s']:,.0f} | {ratio_s} "
              f"| {r['floor_tokens_per_s']:,.0f} | {100 * r['floor_fraction']:.0f}% "
              f"| {100 * r['outside_step']:.1f}% | {100 * r['data_wait']:.1f}% "
              f"| {r['peak_rss_mb']:.0f} ({1.5 * r['rss_budget_mb'] + r['libtorch_baseline_mb']:.0f}) |")
if model_rows:
    print()
    print("Model source: GPT-2-small shape (random weights), blocks.8.hook_resid_pre, context 128")
    print()
    print("| arch | d_sae, batch | forward tok/s (eager) | step tok/s | 1/(t_fwd + t_step) "
          "| train tok/s | of that | data wait |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in model_rows:
        e = r["eager_forward_tokens_per_s"]
        fwd_s = f"{r['forward_tokens_per_s']:,.0f}" + (f" ({e:,.0f}, {r['forward_tokens_per_s'] / e:.2f}×)" if e else "")
        print(f"| {r['arch']} | {r['d_sae']}, {r['batch']} | {fwd_s} | {r['step_tokens_per_s']:,.0f} "
              f"| {r['serial_tokens_per_s']:,.0f} | {r['train_tokens_per_s']:,.0f} "
              f"| {r['train_tokens_per_s'] / r['serial_tokens_per_s']:.2f} | {100 * r['data_wait']:.0f}% |")
if a.out:
    with open(a.out, "w") as f:
        json.dump({"sgemm": sgemm, "results": rows, "model_source": model_rows}, f, indent=1)
