// ActivationsStore: a language model's activations at one hook, served as shuffled training batches
// (SAELens's ActivationsStore). A background thread reads store_batch_size_prompts windows from the
// token source, runs the model up to the hook's layer, applies hook_head_index / seqpos_slice /
// special-token exclusion and hands the rows over through a bounded queue (2 chunks), so the model
// runs while the SAE trains. The consumer keeps a mixing buffer of at most
// n_batches_in_buffer × store_batch_size_prompts × context_size rows (SAELens: sized in
// tokens), refills it when it is half empty (new rows mixed with the remaining half, shuffled with
// a generator seeded by (seed, refill number)) and serves batches from it.
//
// Determinism: the producer is sequential and the queue is FIFO, so the stream does not depend on
// thread timing; batches are a function of the seed and the data.
// Resume (state/load_state): exact for the position in the dataset (windows read into the buffer)
// and the refill counter; the rows that were in the buffer when state() was taken are not served
// again (at most one buffer), and the resumed store starts with a fresh fill.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saelab/data/activation_source.h"
#include "saelab/data/token_source.h"

namespace saelab {

class Collectives;
class Transformer;

struct ActivationsStoreOptions {
  std::string model_name;    // for messages
  std::string dataset_name;  // for messages
  std::string hook_name;
  std::optional<int64_t> hook_head_index;
  // A transcoder's output hook: each row is then [input at hook_name | output at hook_name_out],
  // d_in + d_out values from the same forward pass, so shuffles keep the pairs together.
  std::string hook_name_out;
  // A sweep over hook_name: more hooks of the same forward pass, each as wide as hook_name; each
  // row is then [hook_name | more_hook_names[0] | ...] of one token (d_in values each), and the
  // sweep hands every member its own block. Not with hook_name_out or hook_head_index.
  std::vector<std::string> more_hook_names;
  int64_t context_size = 128;
  std::vector<std::optional<int64_t>> seqpos_slice = {std::nullopt};  // python slice args
  std::vector<int64_t> exclude_token_ids;  // positions holding these ids are dropped
  int64_t n_batches_in_buffer = 20;
  int64_t store_batch_size_prompts = 32;
  int64_t train_batch_size_tokens = 4096;
  uint64_t seed = 42;
  bool background = true;  // false: the model runs on the caller's thread (same stream)
  int queue_chunks = 2;
  // Data-parallel ranks (a process group of their own: the producer thread runs these
  // collectives): each runs the model on its contiguous share of every store batch of prompts
  // and the rows are gathered, so every rank holds the stream a single process would, at 1/W of
  // the model's cost. Null or one rank: the model runs on every prompt here.
  // Every rank makes the same chunks while any rank still reads: a rank that stops reading (its
  // consumer is done) keeps running its share for the others and drops the rows, so no rank waits
  // on an exchange another has left. Stopping the store therefore waits for every rank to stop.
  std::shared_ptr<Collectives> exchange;
  // With exchange, a sweep over hook_name spread over the ranks: the hooks every rank records on
  // its share of the prompts (one list, in one order, on every rank: the whole sweep's). After the
  // exchange a rank keeps only its own hooks' columns (hook_name, more_hook_names), which must be
  // among them. Empty: the rank's own hooks are recorded.
  std::vector<std::string> exchange_hook_names;
  // How the token source was opened (dataset, context, BOS, tokenizer), kept so that the
  // trainer's model evals can open a second, held-out source on the same data. Informational:
  // the store itself reads only the TokenSource it is given.
  TokenSourceOptions token_source;
};

// One run of the model: its rows [n, d_in] in dataset order and the windows read so far.
struct ActivationChunk {
  at::Tensor rows;
  int64_t windows_end = 0;
};

class ActivationsStore : public ActivationSource {
 public:
  // Checks the hook name, the head index and the buffer size against the batch size; errors name
  // the key. d_in is the hook's width (n_heads·d_head for flattened hook_z heads); with
  // more_hook_names a batch holds 1 + more_hook_names.size() blocks of d_in columns.
  ActivationsStore(std::shared_ptr<const Transformer> model, std::unique_ptr<TokenSource> tokens,
                   ActivationsStoreOptions opts);
  ~ActivationsStore() override;

  int64_t d_in() const override { return d_in_; }
  int64_t d_out() const override { return d_out_; }
  at::Tensor next_batch(int64_t n) override;
  json state() const override;
  void load_state(const json& s) override;
  std::string describe() const override;

  // The unshuffled stream (for `saelab cache`): the next chunk in dataset order. Do not mix with
  // next_batch on one store.
  ActivationChunk next_chunk();
  // Reads the first buffer's worth now (token-id check, model run), so data errors come before
  // training starts.
  void fill_buffer();
  // Skips `windows` windows of the dataset (wrapping around), before any chunk is read.
  void skip_windows(int64_t windows);
  // This reader takes no more batches (ActivationSource::release): the model thread stops, or,
  // shared with other ranks, goes on making its share for them until they stop too. Returns at
  // once; the store is not read from again.
  void release() override;

  // The model the store runs (shared, so that evals reuse it instead of loading it again) and
  // the options it was built with.
  std::shared_ptr<const Transformer> model() const { return model_; }
  const ActivationsStoreOptions& options() const { return o_; }

  int64_t buffer_capacity_tokens() const { return capacity_; }
  int64_t buffer_numel() const;                            // the mixing buffer now
  int64_t max_buffer_numel() const { return max_numel_; }  // the most ever held
  int64_t windows_read() const { return windows_consumed_; }
  int64_t dataset_restarts() const;

 private:
  struct Producer;
  void start();
  void stop();
  ActivationChunk pop();
  void refill();

  std::shared_ptr<const Transformer> model_;
  std::shared_ptr<TokenSource> tokens_;
  ActivationsStoreOptions o_;
  int64_t d_in_ = 0;
  int64_t d_out_ = 0;  // the output hook's width (transcoders), else 0
  int64_t capacity_ = 0;
  at::Tensor buffer_;   // [rows, d_in], shuffled
  at::Tensor pending_;  // rows popped that did not fit in the buffer
  int64_t refills_ = 0;
  int64_t windows_consumed_ = 0;
  int64_t start_windows_ = 0;  // where the producer starts reading
  int64_t max_numel_ = 0;
  std::unique_ptr<Producer> producer_;
};

}  // namespace saelab
