// The MLP sub-layer. Plain: hook_pre = x W_in + b_in, hook_post = act(hook_pre), out = post W_out
// + b_out. Gated (GeGLU / SwiGLU, as TransformerLens's GatedMLP): hook_pre = x W_gate (the branch
// through the activation), hook_pre_linear = x W_in (+ b_in when present), hook_post =
// act(pre) * pre_linear.
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/model/fused_cpu.h"
#include "saelab/model/transformer_parts.h"

namespace saelab {

void check_activation_name(const std::string& act_fn) {
  static const char* known[] = {"gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu", "silu",
                                "swish",    "relu"};
  for (const char* k : known)
    if (act_fn == k) return;
  fail(
      "model config: act_fn '{}' is not supported; expected one of gelu_new, gelu_fast, "
      "gelu_pytorch_tanh, gelu, silu, relu",
      act_fn);
}

at::Tensor apply_activation(const std::string& act_fn, const at::Tensor& x) {
  // gelu_new (GPT-2), gelu_fast and gelu_pytorch_tanh (Gemma) are all the tanh approximation
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); "gelu" is the exact erf form (minGPT).
  if (act_fn == "gelu_new" || act_fn == "gelu_fast" || act_fn == "gelu_pytorch_tanh")
    return at::gelu(x, "tanh");
  if (act_fn == "gelu") return at::gelu(x);
  if (act_fn == "silu" || act_fn == "swish") return at::silu(x);
  if (act_fn == "relu") return at::relu(x);
  check_activation_name(act_fn);
  return x;  // unreachable
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b) {
  if (!b.defined()) return at::matmul(x, W);
  auto sizes = x.sizes().vec();
  sizes.back() = W.size(1);
  return at::addmm(b, x.reshape({-1, x.size(-1)}), W).view(sizes);
}

namespace {

// act(pre). The tanh-form GELU runs fused_cpu.h's loop where it applies, whether or not a hook
// or the cache wants hook_pre (the same bits either way), over pre's own buffer when nothing else
// holds it (pre_private: pre is then the fresh output of its linear layer).
at::Tensor activate(const std::string& act_fn, const at::Tensor& pre, bool pre_private) {
  if ((act_fn == "gelu_new" || act_fn == "gelu_fast" || act_fn == "gelu_pytorch_tanh") &&
      fused_cpu_applies(pre)) {
    at::Tensor out = pre_private ? pre : at::empty_like(pre);
    if (gelu_tanh_cpu(pre, out)) return out;
  }
  return apply_activation(act_fn, pre);
}

}  // namespace

at::Tensor mlp_forward(const ModelConfig& cfg, const MlpWeights& w, const at::Tensor& x,
                       HookState& hs, const std::string& prefix) {
  // Asked before the hook runs: the cache stops wanting a name once it has recorded it.
  const bool pre_private = hs.empty() || !hs.wants(prefix + "mlp.hook_pre");
  at::Tensor post;
  if (cfg.gated_mlp) {
    at::Tensor pre = run_hook(hs, prefix, "mlp.hook_pre", at::matmul(x, w.W_gate));
    at::Tensor pre_linear = run_hook(hs, prefix, "mlp.hook_pre_linear", linear(x, w.W_in, w.b_in));
    post = activate(cfg.act_fn, pre, pre_private) * pre_linear;
  } else {
    at::Tensor pre = run_hook(hs, prefix, "mlp.hook_pre", linear(x, w.W_in, w.b_in));
    post = activate(cfg.act_fn, pre, pre_private);
  }
  post = run_hook(hs, prefix, "mlp.hook_post", post);
  return linear(post, w.W_out, w.b_out);
}

}  // namespace saelab
