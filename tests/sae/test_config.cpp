// SaeConfig::from_json / to_json: SAELens's v5 flat and v6 metadata layouts, topk's k in both
// places, batchtopk, defaults, unknown fields, and errors that name the file and key.
#include <gtest/gtest.h>

#include "saelab/core/error.h"
#include "saelab/sae/config.h"

using namespace saelab;

namespace {

// The keys SAELens 5's SAEConfig.to_dict writes (sae_lens/sae.py, v5.9.2).
json v5_cfg() {
  return json::parse(R"({
    "architecture": "standard", "d_in": 768, "d_sae": 24576, "dtype": "float32", "device": "cpu",
    "model_name": "gpt2-small", "hook_name": "blocks.8.hook_resid_pre", "hook_layer": 8,
    "hook_head_index": null, "activation_fn_str": "relu", "activation_fn_kwargs": {},
    "apply_b_dec_to_input": true, "finetuning_scaling_factor": false,
    "sae_lens_training_version": null, "prepend_bos": true, "dataset_path": "Skylion007/openwebtext",
    "dataset_trust_remote_code": true, "context_size": 128, "normalize_activations": "none",
    "neuronpedia_id": "gpt2-small/8-res-jb", "model_from_pretrained_kwargs": {"center_writing_weights": true},
    "seqpos_slice": [null]})");
}

// What SAELens 6's SAEConfig.to_dict writes (sae_lens/saes/sae.py, v6.18) for a TopKSAE.
json v6_topk_cfg() {
  return json::parse(R"({
    "d_in": 512, "d_sae": 4096, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": false,
    "normalize_activations": "layer_norm", "reshape_activations": "none",
    "metadata": {"sae_lens_version": "6.18.0", "sae_lens_training_version": "6.18.0",
                 "model_name": "pythia-70m-deduped", "hook_name": "blocks.3.hook_mlp_out",
                 "hook_head_index": null, "context_size": 256, "prepend_bos": false,
                 "dataset_path": "monology/pile-uncopyrighted", "seqpos_slice": [1, null],
                 "model_from_pretrained_kwargs": {}, "exclude_special_tokens": true},
    "architecture": "topk", "k": 32, "rescale_acts_by_decoder_norm": false})");
}

TEST(SaeConfig, ReadsV5FlatLayout) {
  SaeConfig c = SaeConfig::from_json(v5_cfg(), "v5/cfg.json");
  EXPECT_EQ(c.architecture, "standard");
  EXPECT_EQ(c.d_in, 768);
  EXPECT_EQ(c.d_sae, 24576);
  EXPECT_EQ(c.model_name, "gpt2-small");
  EXPECT_EQ(c.hook_name, "blocks.8.hook_resid_pre");
  EXPECT_EQ(c.hook_layer, 8);
  EXPECT_FALSE(c.hook_head_index.has_value());
  EXPECT_EQ(c.context_size, 128);
  EXPECT_TRUE(c.prepend_bos);
  EXPECT_TRUE(c.apply_b_dec_to_input);
  EXPECT_EQ(c.dataset_path, "Skylion007/openwebtext");
  EXPECT_EQ(c.model_from_pretrained_kwargs, json::parse(R"({"center_writing_weights": true})"));
  EXPECT_EQ(c.seqpos_slice, json::parse("[null]"));
  EXPECT_EQ(c.extra.at("neuronpedia_id"), "gpt2-small/8-res-jb");
}

TEST(SaeConfig, ReadsV6MetadataLayout) {
  SaeConfig c = SaeConfig::from_json(v6_topk_cfg(), "v6/cfg.json");
  EXPECT_EQ(c.architecture, "topk");
  EXPECT_EQ(c.k, 32);
  EXPECT_EQ(c.d_in, 512);
  EXPECT_FALSE(c.apply_b_dec_to_input);
  EXPECT_EQ(c.normalize_activations, "layer_norm");
  EXPECT_EQ(c.model_name, "pythia-70m-deduped");
  EXPECT_EQ(c.hook_name, "blocks.3.hook_mlp_out");
  EXPECT_EQ(c.hook_layer, 3);  // v6 has no hook_layer: taken from the hook name
  EXPECT_EQ(c.context_size, 256);
  EXPECT_FALSE(c.prepend_bos);
  EXPECT_EQ(c.seqpos_slice, json::parse("[1, null]"));
  EXPECT_EQ(c.extra.at("metadata").at("exclude_special_tokens"), true);
  EXPECT_EQ(c.extra.at("reshape_activations"), "none");
}

TEST(SaeConfig, V5TopKFromActivationFnKwargs) {
  json j = v5_cfg();
  j["activation_fn_str"] = "topk";
  j["activation_fn_kwargs"] = {{"k", 50}};
  SaeConfig c = SaeConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.architecture, "topk");  // SAELens 6's pre-6 conversion does the same
  EXPECT_EQ(c.k, 50);
  json out = c.to_json();
  EXPECT_EQ(out["activation_fn_kwargs"]["k"], 50);
  EXPECT_EQ(out["k"], 50);
  EXPECT_EQ(out["activation_fn_str"], "topk");
}

TEST(SaeConfig, BatchTopKIsReadAsJumpReLU) {
  json j = v5_cfg();
  j["architecture"] = "batchtopk";
  j["k"] = 16;
  SaeConfig c = SaeConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.architecture, "jumprelu");
  EXPECT_EQ(c.to_json()["architecture"], "jumprelu");
}

TEST(SaeConfig, DefaultsAsSaeLensPre6) {
  json j = {{"d_in", 4},
            {"d_sae", 8},
            {"hook_point", "blocks.2.hook_resid_post"},
            {"hook_point_layer", 2},
            {"normalize_activations", true}};
  SaeConfig c = SaeConfig::from_json(j, "old/cfg.json");
  EXPECT_EQ(c.architecture, "standard");
  EXPECT_EQ(c.hook_name, "blocks.2.hook_resid_post");
  EXPECT_EQ(c.hook_layer, 2);
  EXPECT_EQ(c.normalize_activations, "expected_average_only_in");
  EXPECT_TRUE(c.apply_b_dec_to_input);
  EXPECT_EQ(c.dtype, "float32");
  j["normalize_activations"] = nullptr;
  EXPECT_EQ(SaeConfig::from_json(j, "x").normalize_activations, "none");
}

void expect_error(const json& j, const std::vector<std::string>& parts) {
  try {
    SaeConfig::from_json(j, "some/dir/cfg.json");
    FAIL() << "expected saelab::Error for " << j.dump();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("some/dir/cfg.json"), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

TEST(SaeConfig, ErrorsNameTheFileAndKey) {
  json j = v5_cfg();
  j.erase("d_in");
  expect_error(j, {"d_in"});
  j = v5_cfg();
  j.erase("d_sae");
  expect_error(j, {"d_sae"});
  j = v5_cfg();
  j["d_in"] = "768";
  expect_error(j, {"d_in"});
  j = v5_cfg();
  j["architecture"] = "crosscoder";
  expect_error(j, {"crosscoder"});
  j = v5_cfg();
  j["normalize_activations"] = "rms";
  expect_error(j, {"rms"});
  j = v5_cfg();
  j["dtype"] = "int8";
  expect_error(j, {"int8"});
  j = v5_cfg();
  j["architecture"] = "topk";
  expect_error(j, {"k"});
  j = v6_topk_cfg();
  j.erase("architecture");
  expect_error(j, {"architecture"});
  j = v6_topk_cfg();
  j["k"] = 5000;
  expect_error(j, {"k"});
  j = v5_cfg();
  j["activation_fn_str"] = "softplus";
  expect_error(j, {"softplus"});
  expect_error(json::array(), {"object"});
}

TEST(SaeConfig, WritesFlatFieldsAndCompleteMetadata) {
  SaeConfig c = SaeConfig::from_json(v6_topk_cfg(), "v6/cfg.json");
  json out = c.to_json();
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
                          "activation_fn_kwargs",
                          "finetuning_scaling_factor",
                          "dataset_trust_remote_code",
                          "sae_lens_training_version",
                          "k"})
    EXPECT_TRUE(out.contains(key)) << key;
  EXPECT_EQ(out["hook_name"], "blocks.3.hook_mlp_out");
  EXPECT_EQ(out["metadata"]["hook_name"], "blocks.3.hook_mlp_out");
  EXPECT_EQ(out["metadata"]["model_name"], "pythia-70m-deduped");
  EXPECT_EQ(out["metadata"]["sae_lens_version"], "6.18.0");  // kept
  EXPECT_EQ(out["metadata"]["exclude_special_tokens"], true);
  EXPECT_EQ(out["rescale_acts_by_decoder_norm"], false);
  EXPECT_EQ(out["reshape_activations"], "none");
  EXPECT_FALSE(out.contains("sae_lens_version"));
}

TEST(SaeConfig, RoundTripKeepsEveryFieldAndUnknownOnes) {
  for (json j : {v5_cfg(), v6_topk_cfg()}) {
    j["l1_coefficient"] = 5.0;
    j["custom"] = {{"nested", json::array({1, 2})}};
    SaeConfig a = SaeConfig::from_json(j, "a");
    json written = a.to_json();
    EXPECT_EQ(written["l1_coefficient"], 5.0);
    EXPECT_EQ(written["custom"], j["custom"]);
    SaeConfig b = SaeConfig::from_json(written, "b");
    EXPECT_EQ(b.to_json(), written);
    EXPECT_EQ(b.architecture, a.architecture);
    EXPECT_EQ(b.k, a.k);
    EXPECT_EQ(b.hook_layer, a.hook_layer);
    EXPECT_EQ(b.seqpos_slice, a.seqpos_slice);
    // Written defaults (finetuning_scaling_factor, ...) join extra; nothing of a's is lost.
    for (auto it = a.extra.begin(); it != a.extra.end(); ++it)
      EXPECT_EQ(b.extra[it.key()], it.value()) << it.key();
  }
}

TEST(SaeConfig, V6FileValuesUnderMetadataWinOverStaleFlatOnes) {
  json j = v6_topk_cfg();
  j["hook_name"] = "stale";
  EXPECT_EQ(SaeConfig::from_json(j, "x").hook_name, "blocks.3.hook_mlp_out");
  j["metadata"].erase("sae_lens_version");  // pre-6: the flat field is what SAELens reads
  EXPECT_EQ(SaeConfig::from_json(j, "x").hook_name, "stale");
}

}  // namespace
