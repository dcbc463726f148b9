// Directories written by Python exactly as SAELens 5 and 6 lay them out (cfg.json + a safetensors
// file from a hand-rolled struct/numpy writer, F32/F16/BF16), and GemmaScope params.npz files from
// numpy, load with the right parameters and give the outputs numpy computes in float64.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "sae_reference.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/sae/sae.h"
#include "test_util.h"

using namespace saelab;

namespace {

const char* kWriter = R"PY(
import json, struct, sys
import numpy as np

root = sys.argv[1] if len(sys.argv) > 1 else ROOT
rng = np.random.default_rng(1234)

def st_write(path, tensors):
    """safetensors by hand: u64 header length, JSON header, data. Returns the stored values."""
    header, blobs, off, stored = {}, [], 0, {}
    for name, arr, dt in tensors:
        a = np.ascontiguousarray(arr, dtype=np.float32)
        if dt == "F32":
            b, val = a.astype("<f4").tobytes(), a.astype(np.float64)
        elif dt == "F16":
            h = a.astype("<f2")
            b, val = h.tobytes(), h.astype(np.float64)
        elif dt == "BF16":
            u = (a.view(np.uint32) >> 16).astype("<u2")
            b, val = u.tobytes(), (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
        stored[name] = val
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return stored

def forward(p, arch, x, apply_b_dec, norm, k=None, rescale=False):
    d_in = x.shape[-1]
    c = mu = sd = None
    if norm == "constant_norm_rescale":
        c = np.sqrt(d_in) / np.linalg.norm(x, axis=-1, keepdims=True)
        xn = x * c
    elif norm == "layer_norm":
        mu = x.mean(-1, keepdims=True)
        sd = (x - mu).std(-1, ddof=1, keepdims=True)
        xn = (x - mu) / (sd + 1e-5)
    else:
        xn = x
    xt = xn - p["b_dec"] if apply_b_dec else xn
    if arch == "gated":
        pre = xt @ p["W_enc"] + p["b_gate"]
        mag = xt @ (p["W_enc"] * np.exp(p["r_mag"])) + p["b_mag"]
        post = (pre > 0) * np.maximum(mag, 0)
    else:
        pre = xt @ p["W_enc"] + p["b_enc"]
        if arch == "standard":
            post = np.maximum(pre, 0)
        elif arch == "jumprelu":
            post = np.maximum(pre, 0) * (pre > p["threshold"])
        else:
            dn = np.linalg.norm(p["W_dec"], axis=-1)
            z = pre * dn if rescale else pre
            post = np.zeros_like(z)
            idx = np.argsort(-z, axis=-1)[:, :k]
            np.put_along_axis(post, idx, np.maximum(np.take_along_axis(z, idx, -1), 0), -1)
    f = post / np.linalg.norm(p["W_dec"], axis=-1) if (arch == "topk" and rescale) else post
    rec = f @ p["W_dec"] + p["b_dec"]
    if c is not None:
        rec = rec / c
    if mu is not None:
        rec = rec * sd + mu
    return pre, post, rec

def params(arch, d_in, d_sae):
    p = {"W_enc": rng.normal(size=(d_in, d_sae)), "W_dec": rng.normal(size=(d_sae, d_in)) * 0.7,
         "b_dec": rng.normal(size=d_in) * 0.3}
    if arch == "gated":
        p.update(b_gate=rng.normal(size=d_sae) * 0.2, b_mag=rng.normal(size=d_sae) * 0.2,
                 r_mag=rng.normal(size=d_sae) * 0.2)
    else:
        p["b_enc"] = rng.normal(size=d_sae) * 0.2
    if arch == "jumprelu":
        p["threshold"] = rng.uniform(0.05, 0.6, size=d_sae)
    return p

V5_BASE = {"dtype": "float32", "device": "cpu", "model_name": "gpt2-small",
           "hook_name": "blocks.8.hook_resid_pre", "hook_layer": 8, "hook_head_index": None,
           "activation_fn_str": "relu", "activation_fn_kwargs": {}, "apply_b_dec_to_input": True,
           "finetuning_scaling_factor": False, "sae_lens_training_version": "5.9.1",
           "prepend_bos": True, "dataset_path": "Skylion007/openwebtext",
           "dataset_trust_remote_code": True, "context_size": 128, "normalize_activations": "none",
           "neuronpedia_id": None, "model_from_pretrained_kwargs": {}, "seqpos_slice": [None]}

def v6_cfg(arch, d_in, d_sae, **kw):
    cfg = {"d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"sae_lens_version": "6.18.0", "sae_lens_training_version": "6.18.0",
                        "model_name": "pythia-70m-deduped", "hook_name": "blocks.4.hook_resid_post",
                        "model_class_name": "HookedTransformer", "hook_head_index": None,
                        "model_from_pretrained_kwargs": {}, "prepend_bos": True,
                        "exclude_special_tokens": True, "context_size": 256, "seqpos_slice": [None],
                        "dataset_path": "monology/pile-uncopyrighted"},
           "architecture": arch}
    cfg.update(kw)
    return cfg

# name: (arch, d_in, d_sae, safetensors dtype, cfg, forward kwargs)
cases = {
  "v5_standard": ("standard", 6, 10, "F32", dict(V5_BASE, architecture="standard", d_in=6, d_sae=10),
                  dict(apply_b_dec=True, norm="none")),
  "v5_topk": ("topk", 6, 10, "F16",
              dict(V5_BASE, architecture="topk", d_in=6, d_sae=10, activation_fn_str="topk",
                   activation_fn_kwargs={"k": 3}, normalize_activations="constant_norm_rescale"),
              dict(apply_b_dec=True, norm="constant_norm_rescale", k=3)),
  "v5_gated": ("gated", 5, 8, "F32",
               dict(V5_BASE, architecture="gated", d_in=5, d_sae=8,
                    normalize_activations="expected_average_only_in"),
               dict(apply_b_dec=True, norm="none")),
  "v6_jumprelu": ("jumprelu", 7, 12, "BF16",
                  v6_cfg("jumprelu", 7, 12, apply_b_dec_to_input=False, normalize_activations="layer_norm"),
                  dict(apply_b_dec=False, norm="layer_norm")),
  "v6_topk": ("topk", 6, 11, "F32",
              v6_cfg("topk", 6, 11, k=3, rescale_acts_by_decoder_norm=True, dtype="torch.float32"),
              dict(apply_b_dec=True, norm="none", k=3, rescale=True)),
}

import os
out = {}
for name, (arch, d_in, d_sae, dt, cfg, fw) in cases.items():
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    p = params(arch, d_in, d_sae)
    stored = st_write(os.path.join(d, "sae_weights.safetensors"), [(k, v, dt) for k, v in p.items()])
    x = rng.normal(size=(4, d_in)) * 2 + 0.3
    pre, post, rec = forward(stored, arch, x, **fw)
    out[name] = {"params": {k: v.reshape(-1).tolist() for k, v in stored.items()},
                 "x": x.tolist(), "pre": pre.tolist(), "post": post.tolist(), "rec": rec.tolist()}

# GemmaScope: params.npz, no cfg.json; one with lower-case w_ keys (stored zip), one upper-case
# (deflated), the second addressed by the file path.
for name, lower, save in [("gemmascope_lower", True, np.savez), ("gemmascope_upper", False, np.savez_compressed)]:
    d = os.path.join(root, name)
    os.makedirs(d)
    p = {k: v.astype(np.float32) for k, v in params("jumprelu", 8, 16).items()}
    keys = {k: ("w_" + k[2:] if lower and k.startswith("W_") else k) for k in p}
    save(os.path.join(d, "params.npz"), **{keys[k]: v for k, v in p.items()})
    stored = {k: v.astype(np.float64) for k, v in p.items()}
    x = rng.normal(size=(4, 8)) * 2
    pre, post, rec = forward(stored, "jumprelu", x, apply_b_dec=False, norm="none")
    out[name] = {"params": {k: v.reshape(-1).tolist() for k, v in stored.items()},
                 "x": x.tolist(), "pre": pre.tolist(), "post": post.tolist(), "rec": rec.tolist()}
print(json.dumps(out))
)PY";

at::Tensor from_json_2d(const json& rows) {
  std::vector<double> flat;
  for (const auto& r : rows)
    for (const auto& v : r) flat.push_back(v.get<double>());
  return torch::tensor(flat, torch::kDouble).reshape({static_cast<int64_t>(rows.size()), -1});
}

void expect_close(const at::Tensor& got, const json& want, double tol, const std::string& what) {
  auto g = test::to_vec(got);
  std::vector<double> w;
  for (const auto& r : want)
    for (const auto& v : r) w.push_back(v.get<double>());
  ASSERT_EQ(g.size(), w.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], w[i], tol * (1 + std::abs(w[i]))) << what << " element " << i;
}

class SaeLensFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::python_has("numpy")) return;
    tmp_ = new test::TempDir();
    std::string script = std::string("ROOT = ") + json(tmp_->path()).dump() + "\n" + kWriter;
    expected_ = new json(json::parse(test::run_python(script)));
  }
  static void TearDownTestSuite() {
    delete tmp_;
    delete expected_;
    tmp_ = nullptr;
    expected_ = nullptr;
  }
  void SetUp() override {
    if (!expected_) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  }

  // Loads `path`, checks every parameter equals what Python stored (exactly) and forward() equals
  // numpy's float64 computation.
  std::unique_ptr<Sae> check(const std::string& name, const std::string& path) {
    const json& e = expected_->at(name);
    auto sae = load_sae(path);
    EXPECT_EQ(sae->params().size(), e["params"].size()) << name;
    for (auto& [pname, values] : e["params"].items()) {
      const at::Tensor& t = sae->param(pname);
      EXPECT_EQ(t.scalar_type(), torch::kFloat) << name << " " << pname;
      auto got = test::to_vec(t);
      auto want = values.get<std::vector<double>>();
      EXPECT_EQ(got, want) << name << " " << pname;
    }
    at::Tensor x = from_json_2d(e["x"]).to(torch::kFloat);
    SaeForward out = sae->forward(x);
    expect_close(out.acts_pre, e["pre"], 2e-5, name + " acts_pre");
    expect_close(out.acts_post, e["post"], 2e-5, name + " acts_post");
    expect_close(out.reconstruction, e["rec"], 2e-5, name + " reconstruction");
    return sae;
  }
  std::string dir(const std::string& name) { return (*tmp_) / name; }

  static test::TempDir* tmp_;
  static json* expected_;
};
test::TempDir* SaeLensFiles::tmp_ = nullptr;
json* SaeLensFiles::expected_ = nullptr;

TEST_F(SaeLensFiles, V5FlatStandard) {
  auto sae = check("v5_standard", dir("v5_standard"));
  EXPECT_EQ(sae->cfg().architecture, "standard");
  EXPECT_EQ(sae->cfg().hook_name, "blocks.8.hook_resid_pre");
  EXPECT_EQ(sae->cfg().hook_layer, 8);
  EXPECT_EQ(sae->cfg().extra.at("sae_lens_training_version"), "5.9.1");
}

TEST_F(SaeLensFiles, V5FlatTopKWithF16WeightsAndConstantNormRescale) {
  auto sae = check("v5_topk", dir("v5_topk"));
  EXPECT_EQ(sae->cfg().architecture, "topk");
  EXPECT_EQ(sae->cfg().k, 3);
  EXPECT_EQ(sae->cfg().normalize_activations, "constant_norm_rescale");
}

TEST_F(SaeLensFiles, V5FlatGatedWithExpectedAverageOnlyInActingAsNone) {
  auto sae = check("v5_gated", dir("v5_gated"));
  EXPECT_EQ(sae->cfg().normalize_activations, "expected_average_only_in");
}

TEST_F(SaeLensFiles, V6MetadataJumpReLUWithBF16WeightsAndLayerNorm) {
  auto sae = check("v6_jumprelu", dir("v6_jumprelu"));
  EXPECT_EQ(sae->cfg().architecture, "jumprelu");
  EXPECT_FALSE(sae->cfg().apply_b_dec_to_input);
  EXPECT_EQ(sae->cfg().model_name, "pythia-70m-deduped");
  EXPECT_EQ(sae->cfg().hook_name, "blocks.4.hook_resid_post");
  EXPECT_EQ(sae->cfg().hook_layer, 4);
  EXPECT_EQ(sae->cfg().context_size, 256);
  EXPECT_EQ(sae->cfg().extra.at("metadata").at("model_class_name"), "HookedTransformer");
}

TEST_F(SaeLensFiles, V6MetadataTopKWithRescaleByDecoderNorm) {
  auto sae = check("v6_topk", dir("v6_topk"));
  EXPECT_EQ(sae->cfg().k, 3);
  EXPECT_EQ(sae->cfg().dtype, "torch.float32");
}

TEST_F(SaeLensFiles, GemmaScopeLowerCaseKeysFromDirectory) {
  auto sae = check("gemmascope_lower", dir("gemmascope_lower"));
  EXPECT_EQ(sae->cfg().architecture, "jumprelu");
  EXPECT_FALSE(sae->cfg().apply_b_dec_to_input);
  EXPECT_EQ(sae->cfg().d_in, 8);
  EXPECT_EQ(sae->cfg().d_sae, 16);
}

TEST_F(SaeLensFiles, GemmaScopeDeflatedByFilePath) {
  auto sae = check("gemmascope_upper", dir("gemmascope_upper") + "/params.npz");
  EXPECT_EQ(sae->cfg().architecture, "jumprelu");
  EXPECT_EQ(sae->cfg().d_sae, 16);
}

TEST_F(SaeLensFiles, ResavedSaeLensDirectoryKeepsValuesAndFields) {
  for (std::string name : {"v5_topk", "v6_jumprelu"}) {
    auto a = load_sae(dir(name));
    save_sae(*a, dir(name + "_resaved"));
    auto b = load_sae(dir(name + "_resaved"));
    for (const auto& [p, t] : a->params()) EXPECT_TRUE(torch::equal(b->param(p), t)) << p;
    EXPECT_EQ(b->cfg().to_json(), a->cfg().to_json());
  }
}

TEST_F(SaeLensFiles, GemmaScopeMissingThresholdNamesIt) {
  std::string d = dir("gemmascope_bad");
  test::run_python("import numpy as np, os\nos.makedirs(" + json(d).dump() + ")\nnp.savez(" +
                   json(d + "/params.npz").dump() +
                   ", W_enc=np.zeros((4, 6), np.float32), W_dec=np.zeros((6, 4), np.float32),"
                   " b_enc=np.zeros(6, np.float32), b_dec=np.zeros(4, np.float32))\n");
  try {
    load_sae(d);
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("params.npz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("threshold"), std::string::npos) << msg;
  }
}

}  // namespace
