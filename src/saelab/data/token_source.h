// Token sources: where the ActivationsStore gets its context_size windows of token ids (int64).
// A source reads pretokenized rows (jsonl `input_ids`/`tokens`, Parquet and Arrow list columns,
// .npy, nanoGPT-style flat .bin with a `<file>.json` sidecar), raw text (jsonl `text`, Parquet /
// Arrow string columns, .txt: one document per line; jsonl and txt also as .gz / .zst) tokenized
// and packed as SAELens's concat_and_batch_sequences does, a folder of such files, a Hugging Face
// dataset id found in the local hub cache or `datasets` cache (dataset_resolve.h), or the Othello
// game generator (dataset_path = "othello", othello.h).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"

namespace saelab {

class Tokenizer;

struct TokenSourceOptions {
  std::string dataset_path;
  int64_t context_size = 128;
  bool prepend_bos = true;  // raw text: each window starts with BOS
  // Raw text: the id put between concatenated documents (already resolved from
  // sequence_separator_token: "bos" | "eos" | "sep" | int | null); nullopt = none.
  std::optional<int64_t> separator_id;
  std::optional<int64_t> bos_id;  // needed when prepend_bos and the data is raw text
  bool disable_concat_sequences = false;
  std::shared_ptr<const Tokenizer> tokenizer;  // raw text only
  uint64_t seed = 42;                          // the Othello generator
  // Table files and jsonl: the column to read; "" = SAELens's choice (input_ids, tokens, text).
  // Refused for data without columns (.txt, .npy, .bin, othello).
  std::string dataset_column;
  // A Hugging Face dataset id: the hub-cache snapshot (commit hash or ref; "" = main). Refused
  // for local data.
  std::string dataset_revision;
  // The split's files chosen by name (dataset_resolve.h's select_split). "" = train for a dataset
  // id, every file for a local folder. Refused for a single file and othello.
  std::string dataset_split;
};

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The next window (context_size ids) or false when the data has run out.
  virtual bool next(std::vector<int64_t>& window) = 0;
  // Back to the first window (a new epoch).
  virtual void restart() = 0;
  // Infinite sources (Othello) never run out.
  virtual bool infinite() const { return false; }
  virtual std::string describe() const = 0;
};

// Opens dataset_path (a file, a folder, "othello", or a Hugging Face dataset id in the local
// caches). Errors name the path and what was expected.
std::unique_ptr<TokenSource> open_token_source(const TokenSourceOptions& opts);

// SAELens's sequence_separator_token resolved against the tokenizer's special ids: "bos", "eos",
// "sep", an int, or null (none). Naming a special token the tokenizer lacks is an error.
std::optional<int64_t> resolve_separator_token(const json& sequence_separator_token,
                                               std::optional<int64_t> bos,
                                               std::optional<int64_t> eos,
                                               std::optional<int64_t> sep);

// SAELens's concat_and_batch_sequences for one stream of documents, kept as a small state
// machine so a source can feed it document by document.
class SequencePacker {
 public:
  SequencePacker(int64_t context_size, std::optional<int64_t> begin_batch_id,
                 std::optional<int64_t> separator_id, bool disable_concat);
  // Adds a document; complete windows are appended to `out`.
  void add(const std::vector<int64_t>& doc, std::vector<std::vector<int64_t>>& out);
  void reset() { cur_.clear(); }

 private:
  void start_window();
  int64_t ctx_;
  std::optional<int64_t> begin_, sep_;
  bool disable_;
  std::vector<int64_t> cur_;
};

}  // namespace saelab
