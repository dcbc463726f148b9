// Test-side reference for the SAE formulas (SAELens's losses and run-time normalisation),
// in float64 with plain loops over std::vector, so no expected value goes through the code under
// test. Shared by the sae tests.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

namespace saelab::test {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // row-major: m[i][j]

inline Vec to_vec(const at::Tensor& t) {
  at::Tensor d = t.to(torch::kDouble).contiguous().reshape({-1});
  return Vec(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}
inline Mat to_mat(const at::Tensor& t) {
  Mat m(t.size(0));
  for (int64_t i = 0; i < t.size(0); ++i) m[i] = to_vec(t[i]);
  return m;
}

struct RefParams {
  std::string arch;
  bool apply_b_dec = true;
  std::string norm = "none";
  int64_t k = 0;
  bool rescale_topk = false;  // SAELens 6 rescale_acts_by_decoder_norm
  Mat W_enc, W_dec;           // [d_in][d_sae], [d_sae][d_in]
  Vec b_enc, b_dec, threshold, b_gate, b_mag, r_mag;
};

inline RefParams ref_params(const std::map<std::string, at::Tensor>& p, const std::string& arch,
                            bool apply_b_dec, const std::string& norm, int64_t k) {
  RefParams r;
  r.arch = arch;
  r.apply_b_dec = apply_b_dec;
  r.norm = norm;
  r.k = k;
  r.W_enc = to_mat(p.at("W_enc"));
  r.W_dec = to_mat(p.at("W_dec"));
  r.b_dec = to_vec(p.at("b_dec"));
  auto opt = [&](const char* n, Vec& v) {
    if (p.count(n)) v = to_vec(p.at(n));
  };
  opt("b_enc", r.b_enc);
  opt("threshold", r.threshold);
  opt("b_gate", r.b_gate);
  opt("b_mag", r.b_mag);
  opt("r_mag", r.r_mag);
  return r;
}

struct RefOut {
  Vec pre, post, recon;
};

inline Vec ref_decode(const RefParams& r, const Vec& f) {
  size_t d_in = r.b_dec.size(), d_sae = f.size();
  Vec out(d_in);
  for (size_t i = 0; i < d_in; ++i) {
    double s = r.b_dec[i];
    for (size_t j = 0; j < d_sae; ++j) {
      double fj = f[j];
      if (r.rescale_topk) {
        double n = 0;
        for (size_t q = 0; q < d_in; ++q) n += r.W_dec[j][q] * r.W_dec[j][q];
        fj /= std::sqrt(n);
      }
      s += fj * r.W_dec[j][i];
    }
    out[i] = s;
  }
  return out;
}

// One token through normalise-in, encoder, decoder, normalise-out.
inline RefOut ref_forward(const RefParams& r, const Vec& x_raw) {
  const size_t d_in = x_raw.size(), d_sae = r.W_enc[0].size();
  Vec x = x_raw;
  double coeff = 1, mu = 0, sd = 1;
  if (r.norm == "constant_norm_rescale") {
    double n = 0;
    for (double v : x) n += v * v;
    coeff = std::sqrt(double(d_in)) / std::sqrt(n);
    for (double& v : x) v *= coeff;
  } else if (r.norm == "layer_norm") {
    mu = std::accumulate(x.begin(), x.end(), 0.0) / d_in;
    double ss = 0;
    for (double v : x) ss += (v - mu) * (v - mu);
    sd = std::sqrt(ss / (d_in - 1));  // unbiased, as torch.std
    for (double& v : x) v = (v - mu) / (sd + 1e-5);
  }
  if (r.apply_b_dec)
    for (size_t i = 0; i < d_in; ++i) x[i] -= r.b_dec[i];
  auto affine = [&](const Vec& bias, const Vec* log_scale) {
    Vec z(d_sae);
    for (size_t j = 0; j < d_sae; ++j) {
      double s = 0;
      for (size_t i = 0; i < d_in; ++i) s += x[i] * r.W_enc[i][j];
      if (log_scale) s *= std::exp((*log_scale)[j]);
      z[j] = s + bias[j];
    }
    return z;
  };
  RefOut o;
  o.post.assign(d_sae, 0.0);
  if (r.arch == "standard") {
    o.pre = affine(r.b_enc, nullptr);
    for (size_t j = 0; j < d_sae; ++j) o.post[j] = std::max(o.pre[j], 0.0);
  } else if (r.arch == "jumprelu") {
    o.pre = affine(r.b_enc, nullptr);
    for (size_t j = 0; j < d_sae; ++j)
      o.post[j] = o.pre[j] > r.threshold[j] ? std::max(o.pre[j], 0.0) : 0.0;
  } else if (r.arch == "topk") {
    o.pre = affine(r.b_enc, nullptr);
    Vec z = o.pre;
    if (r.rescale_topk)
      for (size_t j = 0; j < d_sae; ++j) {
        double n = 0;
        for (size_t q = 0; q < d_in; ++q) n += r.W_dec[j][q] * r.W_dec[j][q];
        z[j] *= std::sqrt(n);
      }
    std::vector<size_t> idx(d_sae);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return z[a] > z[b]; });
    for (int64_t q = 0; q < r.k; ++q) o.post[idx[q]] = std::max(z[idx[q]], 0.0);
  } else if (r.arch == "gated") {
    o.pre = affine(r.b_gate, nullptr);
    Vec mag = affine(r.b_mag, &r.r_mag);
    for (size_t j = 0; j < d_sae; ++j) o.post[j] = o.pre[j] > 0 ? std::max(mag[j], 0.0) : 0.0;
  }
  o.recon = ref_decode(r, o.post);
  for (double& v : o.recon) {
    if (r.norm == "constant_norm_rescale")
      v /= coeff;
    else if (r.norm == "layer_norm")
      v = v * sd + mu;
  }
  return o;
}

}  // namespace saelab::test
