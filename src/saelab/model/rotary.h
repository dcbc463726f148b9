// Rotary position embeddings as TransformerLens and Hugging Face (GPT-NeoX / Llama style) apply
// them: rotate_half over the first rotary_dim dimensions of each head, the rest passed through.
// Frequencies base^(-2i/rotary_dim), optionally rescaled as Llama 3.1 does (NTK-by-parts).
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

#include "saelab/model/model_config.h"

namespace saelab {

int64_t effective_rotary_dim(const ModelConfig& cfg);  // cfg.rotary_dim, or d_head when 0
// Inverse frequencies [rotary_dim / 2], float64.
at::Tensor rotary_inv_freq(const ModelConfig& cfg);
// sin and cos [n, rotary_dim] (each frequency twice: [f0..f_{r/2-1}, f0..f_{r/2-1}]) for the
// int64 `positions` [n], computed in float64 and returned in `dtype`.
std::pair<at::Tensor, at::Tensor> rotary_sin_cos(const ModelConfig& cfg,
                                                 const at::Tensor& positions, at::ScalarType dtype);
// x [batch, pos, heads, d_head]; sin, cos [pos, rotary_dim]. Returns the rotated x.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& sin, const at::Tensor& cos,
                        int64_t rotary_dim);

}  // namespace saelab
