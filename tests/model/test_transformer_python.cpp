// An independent reference: Debian's /usr/bin/python3 re-implements each family's forward pass
// in float64 torch, written here from the Hugging Face / TransformerLens definitions (per-head
// einsums, rotate_half, repeat_kv, HF's "sliding window on even layers" rule for Gemma-2, the
// Llama-3.1 frequency scaling), on the same random weights. saelab's logits must match to 1e-4.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "saelab/model/transformer.h"
#include "test_transformer_models.h"
#include "test_util.h"

using namespace saelab;
using namespace saelab::test;

namespace {

void write_raw(const std::string& path, const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

at::Tensor read_f64(const std::string& path, std::vector<int64_t> shape) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int64_t n = 1;
  for (auto s : shape) n *= s;
  EXPECT_EQ(int64_t(bytes.size()), n * 8) << path;
  return torch::from_blob(bytes.data(), shape, torch::kDouble).clone();
}

// One model for the reference: its weights and tokens go to `dir`; `body` (python) sees W, tok,
// B, P, d (the folder) and must set `logits` [B, P, V] and `resid0` (block 0's resid_post).
struct Case {
  std::string dir;
  const Weights* w;
  at::Tensor tokens;
  std::string body;
  int64_t d_vocab, d_model;
};

// Runs every case in ONE python process (importing torch costs seconds); returns each case's
// {logits, resid0}.
std::vector<std::pair<at::Tensor, at::Tensor>> python_reference(const std::vector<Case>& cases) {
  nlohmann::json jcases = nlohmann::json::array();
  for (const auto& c : cases) {
    nlohmann::json man;
    for (const auto& [name, t] : *c.w) {
      write_raw(c.dir + "/" + name + ".bin", t.to(at::kFloat));
      man["weights"][name] = t.sizes().vec();
    }
    write_raw(c.dir + "/tokens.bin", c.tokens.to(at::kLong));
    man["tokens"] = c.tokens.sizes().vec();
    write_text(c.dir + "/manifest.json", man.dump());
    jcases.push_back({{"dir", c.dir}, {"body", c.body}});
  }
  std::string script = std::string(R"PY(
import json, math
import numpy as np
import torch
torch.set_default_dtype(torch.float64)

def causal(P, window=None):
    i = torch.arange(P)[:, None]; j = torch.arange(P)[None, :]
    m = j <= i
    if window is not None:
        m = m & (j > i - window)
    return m

def attend(q, k, v, W_O, b_O, mask, scale, softcap=None):
    # q [B,H,P,E], k/v [B,H,P,E] (already repeated), W_O [H,E,D]
    s = torch.einsum("bhqe,bhke->bhqk", q, k) * scale
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    z = torch.einsum("bhqk,bhke->bhqe", p, v)
    out = torch.einsum("bhqe,hed->bqd", z, W_O)
    return out + b_O if b_O is not None else out

def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

def rope(x, inv_freq):
    # x [B,H,P,E]; HF: emb = cat(freqs, freqs); x*cos + rotate_half(x)*sin
    P = x.shape[2]
    freqs = torch.arange(P, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()

def rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w

def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

def heads(W, x, Wn, bn=None):
    y = torch.einsum("bpd,hde->bhpe", x, W[Wn])
    if bn is not None and bn in W:
        y = y + W[bn][None, :, None, :]
    return y
)PY") + "cases = " + jcases.dump() +
                       R"PY(
for case in cases:
    d = case["dir"]
    man = json.load(open(d + "/manifest.json"))
    W = {k: torch.from_numpy(np.fromfile(f"{d}/{k}.bin", dtype="<f4").astype(np.float64).reshape(s))
         for k, s in man["weights"].items()}
    tok = torch.from_numpy(np.fromfile(d + "/tokens.bin", dtype="<i8").reshape(man["tokens"]))
    B, P = tok.shape
    ns = dict(globals())
    ns.update(W=W, tok=tok, B=B, P=P, d=d)
    exec(case["body"], ns)
    np.ascontiguousarray(ns["logits"].numpy()).astype("<f8").tofile(d + "/logits.bin")
    np.ascontiguousarray(ns["resid0"].numpy()).astype("<f8").tofile(d + "/resid0.bin")
)PY";
  run_python(script);
  std::vector<std::pair<at::Tensor, at::Tensor>> out;
  for (const auto& c : cases) {
    const int64_t B = c.tokens.size(0), P = c.tokens.size(1);
    out.push_back({read_f64(c.dir + "/logits.bin", {B, P, c.d_vocab}),
                   read_f64(c.dir + "/resid0.bin", {B, P, c.d_model})});
  }
  return out;
}

void expect_close(const at::Tensor& got, const at::Tensor& want, double rel) {
  const double scale = want.abs().max().item<double>();
  EXPECT_LT(max_abs_diff(got, want), rel * std::max(1.0, scale)) << "max |ref| " << scale;
}

}  // namespace

namespace {

// GPT-2 and its relatives, as Hugging Face / TransformerLens define them: GPT-Neo (no score
// scaling, local layers), minGPT Othello (erf gelu), and the attn-only shortformer (no norms,
// positions added to the query and key inputs only). Per-case switches come from gpt.json.
const char* kGptBody = R"PY(
o = json.load(open(d + "/gpt.json"))
def ln(x, p, eps=1e-5):
    if not o["norm"]:
        return x
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * W[p + ".w"] + W[p + ".b"]
def act(x):
    if o["erf_gelu"]:
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
pos = W["pos_embed.W_pos"][:P][None]
x = W["embed.W_E"][tok]
if not o["shortformer"]:
    x = x + pos
E = W["blocks.0.attn.W_Q"].shape[2]
for l in range(2):
    b = f"blocks.{l}."
    a = ln(x, b + "ln1")
    qk_in = a + pos if o["shortformer"] else a
    q, k, v = heads(W, qk_in, b + "attn.W_Q", b + "attn.b_Q"), heads(W, qk_in, b + "attn.W_K", b + "attn.b_K"), heads(W, a, b + "attn.W_V", b + "attn.b_V")
    mask = causal(P, o["window"] if l in o["local_layers"] else None)
    x = x + attend(q, k, v, W[b + "attn.W_O"], W.get(b + "attn.b_O"), mask, 1 / math.sqrt(E) if o["scale"] else 1.0)
    if o["mlp"]:
        m = ln(x, b + "ln2")
        x = x + act(m @ W[b + "mlp.W_in"] + W[b + "mlp.b_in"]) @ W[b + "mlp.W_out"] + W[b + "mlp.b_out"]
    if l == 0:
        resid0 = x
logits = ln(x, "ln_final") @ W["unembed.W_U"] + W.get("unembed.b_U", 0.0)
)PY";

}  // namespace

TEST(TransformerPython, Gpt2NeoOthelloShortformerMatchTheReference) {
  std::vector<ModelConfig> cfgs{tiny_gpt2(), tiny_neo(), tiny_othello(), tiny_shortformer()};
  std::vector<TempDir> dirs(cfgs.size());
  std::vector<Weights> weights;
  std::vector<Case> cases;
  for (size_t i = 0; i < cfgs.size(); ++i) weights.push_back(tiny_weights(cfgs[i], 101 + i));
  for (size_t i = 0; i < cfgs.size(); ++i) {
    const ModelConfig& c = cfgs[i];
    // The switches are written from the family name, not read from the config under test.
    const bool neo = c.family == "gpt_neo", sf = c.family == "attn_only_shortformer";
    nlohmann::json o{{"norm", !sf},
                     {"mlp", !sf},
                     {"shortformer", sf},
                     {"scale", !neo},
                     {"erf_gelu", c.family == "othello_mingpt"},
                     {"window", 3},
                     {"local_layers", neo ? std::vector<int>{0} : std::vector<int>{}}};
    write_text(dirs[i] / "gpt.json", o.dump());
    cases.push_back({dirs[i].path(), &weights[i], random_tokens(c, 3, 12, 200 + i), kGptBody,
                     c.d_vocab, c.d_model});
  }
  auto ref = python_reference(cases);
  for (size_t i = 0; i < cfgs.size(); ++i) {
    SCOPED_TRACE(cfgs[i].model_name);
    Transformer m(cfgs[i], weights[i]);
    auto cache = m.run_with_cache(cases[i].tokens, {"blocks.0.hook_resid_post"}, true);
    expect_close(cache.at("logits"), ref[i].first, 1e-4);
    expect_close(cache.at("blocks.0.hook_resid_post"), ref[i].second, 1e-4);
  }
}

TEST(TransformerPython, Gemma2MatchesTheReference) {
  ModelConfig cfg = tiny_gemma2();
  Weights w = tiny_weights(cfg, 103, /*scale=*/6.0);  // large enough that both soft caps bend
  at::Tensor tokens = random_tokens(cfg, 2, 10, 104);
  TempDir dir;
  auto ref = python_reference({{dir.path(), &w, tokens, R"PY(
# Gemma-2 (HF Gemma2ForCausalLM): hidden = embed * sqrt(hidden_size); RMSNorm weights here are
# already 1 + w; sliding window on layers with layer_idx % 2 == 0; query_pre_attn_scalar 12.
D, H, KV, E, eps, window = 16, 4, 2, 8, 1e-6, 3
inv_freq = 1.0 / (10000.0 ** (torch.arange(0, E, 2, dtype=torch.float64) / E))
h = W["embed.W_E"][tok] * torch.tensor(D ** 0.5)
for l in range(2):
    b = f"blocks.{l}."
    res = h
    x = rms(h, W[b + "ln1.w"], eps)
    q = rope(heads(W, x, b + "attn.W_Q"), inv_freq)
    k = rope(heads(W, x, b + "attn.W_K"), inv_freq).repeat_interleave(H // KV, dim=1)
    v = heads(W, x, b + "attn.W_V").repeat_interleave(H // KV, dim=1)
    mask = causal(P, window if l % 2 == 0 else None)
    o = attend(q, k, v, W[b + "attn.W_O"], None, mask, 12 ** -0.5, softcap=50.0)
    h = res + rms(o, W[b + "ln1_post.w"], eps)
    res = h
    x = rms(h, W[b + "ln2.w"], eps)
    mlp = (gelu_tanh(x @ W[b + "mlp.W_gate"]) * (x @ W[b + "mlp.W_in"])) @ W[b + "mlp.W_out"]
    h = res + rms(mlp, W[b + "ln2_post.w"], eps)
    if l == 0:
        resid0 = h
logits = rms(h, W["ln_final.w"], eps) @ W["unembed.W_U"]
logits = torch.tanh(logits / 30.0) * 30.0
)PY",
                                cfg.d_vocab, cfg.d_model}});
  auto [logits, resid0] = ref.at(0);
  // The caps must matter here, or this test would not check them.
  EXPECT_GT(logits.abs().max().item<double>(), 15.0);
  Transformer m(cfg, w);
  auto cache = m.run_with_cache(tokens, {"blocks.0.hook_resid_post"}, true);
  expect_close(cache.at("logits"), logits, 1e-4);
  expect_close(cache.at("blocks.0.hook_resid_post"), resid0, 1e-4);
}

namespace {

// Llama-family reference: GQA, SwiGLU, optional q/k/v biases (Qwen2), optional Llama-3.1 rope
// scaling and an optional sliding window on every layer (Mistral).
const char* kLlamaBody = R"PY(
D, H, KV, E, eps = 32, 4, 2, 8, 1e-6
cfgp = json.load(open(d + "/llama.json"))
inv_freq = 1.0 / (cfgp["base"] ** (torch.arange(0, E, 2, dtype=torch.float64) / E))
if cfgp["llama3"]:
    factor, low, high, old = 8.0, 1.0, 4.0, 16.0
    wavelen = 2 * math.pi / inv_freq
    f = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * f / factor + smooth * f
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    inv_freq = torch.where(medium, smoothed, f)
h = W["embed.W_E"][tok]
for l in range(2):
    b = f"blocks.{l}."
    x = rms(h, W[b + "ln1.w"], eps)
    q = rope(heads(W, x, b + "attn.W_Q", b + "attn.b_Q"), inv_freq)
    k = rope(heads(W, x, b + "attn.W_K", b + "attn.b_K"), inv_freq).repeat_interleave(H // KV, dim=1)
    v = heads(W, x, b + "attn.W_V", b + "attn.b_V").repeat_interleave(H // KV, dim=1)
    h = h + attend(q, k, v, W[b + "attn.W_O"], None, causal(P, cfgp["window"]), E ** -0.5)
    x = rms(h, W[b + "ln2.w"], eps)
    g = x @ W[b + "mlp.W_gate"]
    h = h + ((g * torch.sigmoid(g)) * (x @ W[b + "mlp.W_in"])) @ W[b + "mlp.W_out"]
    if l == 0:
        resid0 = h
logits = rms(h, W["ln_final.w"], eps) @ W["unembed.W_U"]
)PY";

struct LlamaVariant {
  ModelConfig cfg;
  bool llama3;
  std::optional<int64_t> window;
  uint64_t seed;
};

}  // namespace

TEST(TransformerPython, LlamaQwen2MistralMatchTheReference) {
  std::vector<LlamaVariant> variants{{tiny_llama(), false, std::nullopt, 105},
                                     {tiny_llama(), true, std::nullopt, 107},
                                     {tiny_qwen2(), false, std::nullopt, 109},
                                     {tiny_mistral(), false, 3, 111}};
  std::vector<TempDir> dirs(variants.size());
  std::vector<Weights> weights;
  std::vector<Case> cases;
  for (auto& v : variants) {
    if (v.llama3) {
      v.cfg.model_name = "tiny-llama3.1";
      v.cfg.rotary_base = 500000.0;
      v.cfg.use_NTK_by_parts_rope = true;
      v.cfg.NTK_by_parts_factor = 8.0;
      v.cfg.NTK_by_parts_low_freq_factor = 1.0;
      v.cfg.NTK_by_parts_high_freq_factor = 4.0;
      v.cfg.NTK_original_ctx_len = 16;  // small so that every frequency band occurs with d_head 8
    }
    weights.push_back(tiny_weights(v.cfg, v.seed));
  }
  for (size_t i = 0; i < variants.size(); ++i) {
    const auto& v = variants[i];
    nlohmann::json p{{"base", v.cfg.rotary_base}, {"llama3", v.llama3}};
    p["window"] = v.window ? nlohmann::json(*v.window) : nlohmann::json(nullptr);
    write_text(dirs[i] / "llama.json", p.dump());
    cases.push_back({dirs[i].path(), &weights[i], random_tokens(v.cfg, 2, 12, v.seed + 1),
                     kLlamaBody, v.cfg.d_vocab, v.cfg.d_model});
  }
  auto ref = python_reference(cases);
  for (size_t i = 0; i < variants.size(); ++i) {
    SCOPED_TRACE(variants[i].cfg.model_name);
    Transformer m(variants[i].cfg, weights[i]);
    auto cache = m.run_with_cache(cases[i].tokens, {"blocks.0.hook_resid_post"}, true);
    expect_close(cache.at("logits"), ref[i].first, 1e-4);
    expect_close(cache.at("blocks.0.hook_resid_post"), ref[i].second, 1e-4);
  }
}
