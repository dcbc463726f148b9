// save_sae -> load_sae round trips bit for bit for every architecture, the files saelab writes have
// exactly SAELens's names/shapes (checked by a reader written in Python), and bad directories give
// saelab::Error naming the thing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"
#include "test_util.h"

using namespace saelab;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kDIn = 5, kDSae = 12;

SaeConfig full_cfg(const std::string& arch) {
  json j = {{"architecture", arch},
            {"d_in", kDIn},
            {"d_sae", kDSae},
            {"dtype", "float32"},
            {"apply_b_dec_to_input", arch != "jumprelu"},
            {"normalize_activations", "constant_norm_rescale"},
            {"model_name", "gpt2-small"},
            {"hook_name", "blocks.3.attn.hook_z"},
            {"hook_layer", 3},
            {"hook_head_index", 2},
            {"context_size", 64},
            {"prepend_bos", false},
            {"dataset_path", "NeelNanda/c4-10k"},
            {"seqpos_slice", json::array({1, nullptr})},
            {"model_from_pretrained_kwargs", {{"center_writing_weights", false}}},
            {"l1_coefficient", 5},
            {"metadata", {{"exclude_special_tokens", true}}}};
  if (arch == "topk" || arch == "batchtopk") j["k"] = 4;
  return SaeConfig::from_json(j, "test config");
}

std::unique_ptr<Sae> random_sae(const std::string& arch, at::ScalarType dtype) {
  auto sae = make_sae(full_cfg(arch));
  sae->to(dtype);
  torch::manual_seed(42);
  for (auto& [name, t] : sae->params()) t = torch::randn(t.sizes()).to(dtype);
  if (arch == "batchtopk")  // what the trainer writes: one θ for every latent
    sae->params()["threshold"] = torch::full({kDSae}, 0.37f).to(dtype);
  return sae;
}

std::string bytes_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

class RoundTrip : public ::testing::TestWithParam<std::tuple<std::string, at::ScalarType>> {};

TEST_P(RoundTrip, BitForBitWithConfigAndSparsity) {
  auto [arch, dtype] = GetParam();
  test::TempDir tmp;
  auto sae = random_sae(arch, dtype);
  at::Tensor sparsity = torch::log10(torch::rand({kDSae}) + 1e-10);
  save_sae(*sae, tmp / "sae", sparsity);

  std::set<std::string> files;
  for (auto& e : fs::directory_iterator(tmp / "sae")) files.insert(e.path().filename().string());
  EXPECT_EQ(files,
            (std::set<std::string>{"cfg.json", "sae_weights.safetensors", "sparsity.safetensors"}));

  auto back = load_sae(tmp / "sae");
  ASSERT_EQ(back->params().size(), sae->params().size());
  for (const auto& [name, t] : sae->params()) {
    const at::Tensor& u = back->param(name);
    EXPECT_EQ(u.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(u.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(u, t)) << name;
    EXPECT_EQ(bytes_of(u), bytes_of(t)) << name;
  }
  EXPECT_EQ(back->cfg().to_json(), sae->cfg().to_json());
  EXPECT_EQ(back->cfg().architecture, arch == "batchtopk" ? "jumprelu" : arch);
  EXPECT_EQ(back->cfg().hook_head_index, std::optional<int64_t>(2));
  EXPECT_EQ(back->cfg().seqpos_slice, json::parse("[1, null]"));
  EXPECT_EQ(back->cfg().extra.at("l1_coefficient"), 5);
  EXPECT_EQ(back->cfg().normalize_activations, "constant_norm_rescale");
  auto sp = load_safetensors(tmp / "sae/sparsity.safetensors");
  ASSERT_EQ(sp.size(), 1u);
  EXPECT_TRUE(torch::equal(sp.at("sparsity"), sparsity));

  // Same numbers from the loaded SAE.
  at::Tensor x = torch::randn({3, kDIn});
  EXPECT_TRUE(torch::equal(back->forward(x).reconstruction, sae->forward(x).reconstruction));
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, RoundTrip,
                         ::testing::Combine(::testing::Values("standard", "gated", "topk",
                                                              "jumprelu", "batchtopk"),
                                            ::testing::Values(at::kFloat, at::kBFloat16)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) == at::kFloat
                                                                 ? "_float32"
                                                                 : "_bfloat16");
                         });

// A reader written here in Python (struct + json, not saelab's) lists the tensors saelab wrote.
TEST(SaveSae, FilesHaveExactlySaeLensNamesShapesAndFields) {
  if (!test::python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  test::TempDir tmp;
  for (std::string arch : {"standard", "gated", "topk", "jumprelu", "batchtopk"})
    save_sae(*random_sae(arch, at::kFloat), tmp / arch);
  std::string out = test::run_python(R"(
import json, struct, sys
root = )" + json(tmp.path()).dump() + R"(
res = {}
for arch in ["standard", "gated", "topk", "jumprelu", "batchtopk"]:
    with open(f"{root}/{arch}/sae_weights.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    cfg = json.load(open(f"{root}/{arch}/cfg.json"))
    res[arch] = {"tensors": {k: [v["dtype"], v["shape"]] for k, v in header.items()},
                 "cfg": cfg}
print(json.dumps(res))
)");
  json res = json::parse(out);
  auto t = [](std::vector<int64_t> shape) { return json::array({"F32", shape}); };
  json common = {{"W_enc", t({kDIn, kDSae})}, {"W_dec", t({kDSae, kDIn})}, {"b_dec", t({kDIn})}};
  json want = {{"standard", common}, {"gated", common}, {"topk", common}, {"jumprelu", common}};
  want["standard"]["b_enc"] = want["topk"]["b_enc"] = want["jumprelu"]["b_enc"] = t({kDSae});
  want["jumprelu"]["threshold"] = t({kDSae});
  for (const char* n : {"b_gate", "b_mag", "r_mag"}) want["gated"][n] = t({kDSae});
  want["batchtopk"] = want["jumprelu"];
  for (auto& [arch, w] : want.items()) {
    EXPECT_EQ(res[arch]["tensors"], w) << arch;
    const json& cfg = res[arch]["cfg"];
    // SAELens's cfg.json fields, flat, plus SAELens 5's required ones and v6's metadata object.
    for (const char* key : {"architecture",
                            "d_in",
                            "d_sae",
                            "dtype",
                            "device",
                            "apply_b_dec_to_input",
                            "normalize_activations",
                            "model_name",
                            "hook_name",
                            "hook_layer",
                            "hook_head_index",
                            "context_size",
                            "prepend_bos",
                            "dataset_path",
                            "seqpos_slice",
                            "model_from_pretrained_kwargs",
                            "activation_fn_str",
                            "finetuning_scaling_factor",
                            "dataset_trust_remote_code",
                            "sae_lens_training_version"})
      EXPECT_TRUE(cfg.contains(key)) << arch << " " << key;
    EXPECT_EQ(cfg["architecture"], arch == "batchtopk" ? "jumprelu" : arch);
    EXPECT_EQ(cfg["d_in"], kDIn);
    EXPECT_EQ(cfg["hook_name"], "blocks.3.attn.hook_z");
    EXPECT_EQ(cfg["metadata"]["hook_name"], "blocks.3.attn.hook_z");
    EXPECT_EQ(cfg["metadata"]["exclude_special_tokens"], true);
    if (arch == "topk") {
      EXPECT_EQ(cfg["k"], 4);
      EXPECT_EQ(cfg["activation_fn_kwargs"]["k"], 4);
      EXPECT_EQ(cfg["activation_fn_str"], "topk");
    } else {
      EXPECT_EQ(cfg["activation_fn_str"], "relu");
    }
  }
}

TEST(SaveSae, RejectsWrongSparsityShape) {
  test::TempDir tmp;
  auto sae = random_sae("standard", at::kFloat);
  EXPECT_THROW(save_sae(*sae, tmp / "s", torch::zeros({kDSae + 1})), Error);
}

// Errors: load_sae on a tampered copy of a good directory.
class LoadErrors : public ::testing::Test {
 protected:
  void SetUp() override { save_sae(*random_sae("jumprelu", at::kFloat), dir()); }
  std::string dir() const { return tmp_ / "sae"; }
  std::map<std::string, at::Tensor> weights() const {
    return load_safetensors(dir() + "/sae_weights.safetensors");
  }
  void write_weights(const std::map<std::string, at::Tensor>& w) const {
    NamedTensors nt(w.begin(), w.end());
    save_safetensors(dir() + "/sae_weights.safetensors", nt);
  }
  void expect_error(const std::vector<std::string>& parts) const {
    try {
      load_sae(dir());
      FAIL() << "expected saelab::Error";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << p << " in: " << msg;
    }
  }
  test::TempDir tmp_;
};

TEST_F(LoadErrors, WrongShapeNamesDirTensorExpectedAndFound) {
  auto w = weights();
  w["W_dec"] = torch::zeros({kDSae, kDIn + 1});
  write_weights(w);
  expect_error({dir(), "W_dec", "[12, 6]", "[12, 5]"});
}

TEST_F(LoadErrors, MissingTensor) {
  auto w = weights();
  w.erase("threshold");
  write_weights(w);
  expect_error({dir(), "missing tensor 'threshold'"});
}

TEST_F(LoadErrors, UnknownExtraTensor) {
  auto w = weights();
  w["log_threshold"] = torch::zeros({kDSae});
  w["b_gate"] = torch::zeros({kDSae});
  write_weights(w);
  expect_error({dir(), "'b_gate'", "'log_threshold'"});
}

TEST_F(LoadErrors, AllOnesScalingFactorIsDroppedLikeSaeLensOtherwiseRefused) {
  auto w = weights();
  w["scaling_factor"] = torch::ones({kDSae});
  write_weights(w);
  EXPECT_EQ(load_sae(dir())->params().count("scaling_factor"), 0u);
  w["scaling_factor"] = torch::full({kDSae}, 2.0f);
  write_weights(w);
  expect_error({dir(), "scaling_factor"});
}

TEST_F(LoadErrors, IntegerTensor) {
  auto w = weights();
  w["b_enc"] = torch::zeros({kDSae}, torch::kInt);
  write_weights(w);
  expect_error({dir(), "b_enc", "floating"});
}

TEST_F(LoadErrors, MissingCfgJson) {
  fs::remove(dir() + "/cfg.json");
  expect_error({dir(), "cfg.json"});
}

TEST_F(LoadErrors, MissingWeightsFile) {
  fs::remove(dir() + "/sae_weights.safetensors");
  expect_error({dir(), "sae_weights.safetensors"});
}

TEST_F(LoadErrors, CfgWithoutDIn) {
  json cfg = read_json_file(dir() + "/cfg.json");
  cfg.erase("d_in");
  write_json_atomic(dir() + "/cfg.json", cfg);
  expect_error({dir() + "/cfg.json", "d_in"});
}

TEST_F(LoadErrors, CfgDSaeDisagreesWithWeights) {
  json cfg = read_json_file(dir() + "/cfg.json");
  cfg["d_sae"] = kDSae * 2;
  write_json_atomic(dir() + "/cfg.json", cfg);
  expect_error({dir(), "W_enc", "[5, 24]", "[5, 12]"});
}

TEST_F(LoadErrors, CorruptWeightsFile) {
  test::write_text(dir() + "/sae_weights.safetensors", "not a safetensors file");
  expect_error({dir() + "/sae_weights.safetensors"});
}

TEST(LoadSae, MissingDirectory) {
  try {
    load_sae("/nonexistent/sae_dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/sae_dir"), std::string::npos);
  }
}

}  // namespace
