// Cached activations read from safetensors shards in a seeded shuffled order (see
// cached_activations.h). Only the shard being read is memory-mapped; rows are gathered through a
// permutation so each epoch visits every row exactly once.
#include "saelab/data/cached_activations.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"

namespace saelab {

namespace fs = std::filesystem;

namespace {

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

at::Tensor permutation(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
}

bool is_float(StDtype d) {
  return d == StDtype::F16 || d == StDtype::BF16 || d == StDtype::F32 || d == StDtype::F64;
}

}  // namespace

struct CachedActivations::Open {
  std::unique_ptr<SafetensorsFile> file;
  at::Tensor data;  // zero-copy view [rows, d_in] in the stored dtype
  at::Tensor out;   // the same for activations_out [rows, d_out], when read
  at::Tensor perm;  // row order for this epoch
  int* counter;
  Open(const std::string& path, at::Tensor p, int* c, bool outputs)
      : perm(std::move(p)), counter(c) {
    file = std::make_unique<SafetensorsFile>(path);
    data = file->view("activations");
    if (outputs) out = file->view("activations_out");
    ++*counter;
  }
  ~Open() { --*counter; }
};

CachedActivations::CachedActivations(const std::string& path, uint64_t seed, int64_t expected_d_in,
                                     bool outputs, int64_t expected_d_out)
    : outputs_(outputs), seed_(seed) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: cached activations path does not exist", path);
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        shards_.push_back(e.path().string());
    std::sort(shards_.begin(), shards_.end());
    if (shards_.empty())
      fail("{}: folder holds no *.safetensors shards of cached activations", path);
  } else {
    shards_.push_back(path);
  }
  for (const auto& shard : shards_) {
    TensorEntry entry, out;
    try {
      SafetensorsFile f(shard);
      if (!f.contains("activations"))
        fail("{}: expected a tensor named 'activations' [N, d_in] in the cached activations shard",
             shard);
      entry = f.entry("activations");
      if (outputs && !f.contains("activations_out"))
        fail(
            "{}: a transcoder (hook_name_out) trains on 'activations_out' [N, d_out] as well, "
            "and this shard has none; cache it with hook_name_out set",
            shard);
      if (outputs) out = f.entry("activations_out");
    } catch (const Error& e) {
      std::string msg = e.what();
      if (msg.find(shard) == std::string::npos) fail("{}: {}", shard, msg);
      throw;
    }
    if (entry.shape.size() != 2)
      fail("{}: 'activations' must be 2-D [N, d_in], got {} dimensions", shard, entry.shape.size());
    if (!is_float(entry.dtype))
      fail("{}: 'activations' must be a float tensor (F16, BF16, F32, F64), got {}", shard,
           st_dtype_name(entry.dtype));
    int64_t d = entry.shape[1];
    if (d_in_ == 0) d_in_ = d;
    if (d != d_in_)
      fail("{}: 'activations' has d_in = {} but {} has d_in = {}", shard, d, shards_[0], d_in_);
    if (expected_d_in > 0 && d != expected_d_in)
      fail("{}: 'activations' has d_in = {} but the run config has d_in = {}", shard, d,
           expected_d_in);
    if (outputs) {
      if (out.shape.size() != 2 || out.shape[0] != entry.shape[0] || !is_float(out.dtype))
        fail(
            "{}: 'activations_out' must be a float tensor [{}, d_out] (a row per 'activations' "
            "row)",
            shard, entry.shape[0]);
      if (d_out_ == 0) d_out_ = out.shape[1];
      if (out.shape[1] != d_out_ || (expected_d_out > 0 && out.shape[1] != expected_d_out))
        fail("{}: 'activations_out' has d_out = {}, expected {}", shard, out.shape[1],
             expected_d_out > 0 ? expected_d_out : d_out_);
    }
    rows_.push_back(entry.shape[0]);
    total_rows_ += entry.shape[0];
  }
  if (total_rows_ == 0) fail("{}: cached activations hold no rows", path);
  if (d_in_ <= 0) fail("{}: cached activations have d_in = 0", path);
  order_ = shard_order(0);
}

CachedActivations::~CachedActivations() = default;

std::vector<int64_t> CachedActivations::shard_order(int64_t epoch) const {
  at::Tensor p = permutation(int64_t(shards_.size()), mix(seed_ ^ mix(uint64_t(epoch) * 2 + 1)));
  std::vector<int64_t> order(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
  return order;
}

void CachedActivations::open_current() {
  int64_t shard = order_[order_pos_];
  uint64_t s = mix(seed_ ^ mix(uint64_t(epoch_) * 2 + 2) ^ mix(uint64_t(shard) + 77));
  current_.reset();  // unmap the previous shard before mapping the next one
  current_ =
      std::make_unique<Open>(shards_[shard], permutation(rows_[shard], s), &open_count_, outputs_);
  max_open_ = std::max(max_open_, open_count_);
}

namespace {

// rows[idx[i]] into column block [col, col + width) of out's row i. float32 rows are copied with
// memcpy: one thread, no ATen parallel region, since this may run on the read-ahead thread beside
// the training step's OpenMP threads. Other dtypes are converted by ATen.
void gather_rows(const at::Tensor& rows, const at::Tensor& idx, at::Tensor& out, int64_t col) {
  const int64_t width = rows.size(1);
  if (rows.scalar_type() != at::kFloat || !rows.is_contiguous()) {
    out.narrow(1, col, width).copy_(rows.index_select(0, idx));
    return;
  }
  const float* src = rows.data_ptr<float>();
  const int64_t* ix = idx.data_ptr<int64_t>();
  float* dst = out.data_ptr<float>() + col;
  const int64_t stride = out.size(1);
  for (int64_t i = 0; i < idx.numel(); ++i)
    std::memcpy(dst + i * stride, src + ix[i] * width, sizeof(float) * size_t(width));
}

}  // namespace

at::Tensor CachedActivations::take_rows(int64_t n) {
  at::Tensor idx = current_->perm.slice(0, row_pos_, row_pos_ + n).contiguous();
  row_pos_ += n;
  at::Tensor out = at::empty({n, d_in_ + (outputs_ ? d_out_ : 0)}, at::kFloat);
  gather_rows(current_->data, idx, out, 0);
  if (outputs_) gather_rows(current_->out, idx, out, d_in_);
  return out;
}

at::Tensor CachedActivations::next_batch(int64_t n) {
  if (n <= 0) fail("cached activations: batch size must be positive, got {}", n);
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  int64_t need = n;
  while (need > 0) {
    if (order_pos_ >= int64_t(shards_.size())) {
      ++epoch_;
      order_pos_ = 0;
      row_pos_ = 0;
      order_ = shard_order(epoch_);
      current_.reset();
      std::cerr << "saelab: warning: cached activations exhausted (" << total_rows_
                << " rows); starting epoch " << epoch_ + 1 << "\n";
    }
    if (!current_) open_current();
    int64_t shard = order_[order_pos_];
    int64_t take = std::min(need, rows_[shard] - row_pos_);
    if (take > 0) parts.push_back(take_rows(take));
    need -= take;
    if (row_pos_ >= rows_[shard]) {
      current_.reset();
      ++order_pos_;
      row_pos_ = 0;
    }
  }
  at::Tensor out = parts.size() == 1 ? parts[0] : at::cat(parts, 0);
  return out.contiguous();
}

json CachedActivations::state() const {
  return {{"type", "cached"},
          {"epoch", epoch_},
          {"order_pos", order_pos_},
          {"row_pos", row_pos_},
          {"total_rows", total_rows_}};
}

void CachedActivations::load_state(const json& s) {
  auto bad = [&] {
    fail(
        "cached activations: cannot resume from state {}: expected {{\"type\": \"cached\", "
        "\"epoch\", \"order_pos\", \"row_pos\"}} for the same shards",
        s.dump());
  };
  if (!s.is_object() || s.value("type", "") != "cached") bad();
  for (const char* k : {"epoch", "order_pos", "row_pos"})
    if (!s.contains(k) || !s[k].is_number_integer()) bad();
  if (s.contains("total_rows") && s["total_rows"].get<int64_t>() != total_rows_)
    fail("cached activations: the state was saved for {} rows but the shards now hold {}",
         s["total_rows"].get<int64_t>(), total_rows_);
  int64_t epoch = s["epoch"], pos = s["order_pos"], row = s["row_pos"];
  if (epoch < 0 || pos < 0 || pos > int64_t(shards_.size()) || row < 0) bad();
  epoch_ = epoch;
  order_ = shard_order(epoch_);
  order_pos_ = pos;
  row_pos_ = row;
  if (pos < int64_t(shards_.size()) && row > rows_[order_[pos]]) bad();
  current_.reset();
}

std::string CachedActivations::describe() const {
  return fmt::format("cached activations: {} rows of d_in = {}{} in {} shard{} (first {})",
                     total_rows_, d_in_, outputs_ ? fmt::format(", d_out = {}", d_out_) : "",
                     shards_.size(), shards_.size() == 1 ? "" : "s", shards_[0]);
}

}  // namespace saelab
