// Token sources (token_source.h): file readers, folders and Hugging Face datasets, and the
// SAELens packing of raw text into windows.
#include "saelab/data/token_source.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "saelab/core/error.h"
#include "saelab/core/npy.h"
#include "saelab/data/arrow_ipc.h"
#include "saelab/data/compressed_lines.h"
#include "saelab/data/dataset_resolve.h"
#include "saelab/data/mapped_file.h"
#include "saelab/data/othello.h"
#include "saelab/data/parquet.h"
#include "saelab/data/tokenizer.h"

namespace saelab {
namespace fs = std::filesystem;

std::optional<int64_t> resolve_separator_token(const json& t, std::optional<int64_t> bos,
                                               std::optional<int64_t> eos,
                                               std::optional<int64_t> sep) {
  if (t.is_null()) return std::nullopt;
  if (t.is_number_integer()) return t.get<int64_t>();
  if (t.is_string()) {
    const std::string s = t.get<std::string>();
    auto need = [&](std::optional<int64_t> id) {
      if (!id) fail("sequence_separator_token = \"{}\": the tokenizer has no {} token", s, s);
      return id;
    };
    if (s == "bos") return need(bos);
    if (s == "eos") return need(eos);
    if (s == "sep") return need(sep);
  }
  fail("sequence_separator_token: expected \"bos\", \"eos\", \"sep\", an integer or null, got {}",
       t.dump());
}

SequencePacker::SequencePacker(int64_t context_size, std::optional<int64_t> begin_batch_id,
                               std::optional<int64_t> separator_id, bool disable_concat)
    : ctx_(context_size), begin_(begin_batch_id), sep_(separator_id), disable_(disable_concat) {}

void SequencePacker::start_window() {
  cur_.clear();
  if (begin_) cur_.push_back(*begin_);
}

void SequencePacker::add(const std::vector<int64_t>& doc, std::vector<std::vector<int64_t>>& out) {
  if (disable_) {
    // One window per document, its tail dropped; shorter documents are dropped.
    std::vector<int64_t> w;
    if (begin_ && (doc.empty() || doc.front() != *begin_)) w.push_back(*begin_);
    w.insert(w.end(), doc.begin(), doc.end());
    if (int64_t(w.size()) >= ctx_) out.emplace_back(w.begin(), w.begin() + ctx_);
    return;
  }
  if (doc.empty()) return;
  const size_t fresh = begin_ ? 1 : 0;
  if (cur_.empty()) start_window();
  // Separate from the previous document, unless this window has none yet.
  if (sep_ && cur_.size() > fresh) {
    cur_.push_back(*sep_);
    if (int64_t(cur_.size()) == ctx_) {
      out.push_back(cur_);
      start_window();
    }
  }
  for (int64_t id : doc) {
    cur_.push_back(id);
    if (int64_t(cur_.size()) == ctx_) {
      out.push_back(cur_);
      start_window();
    }
  }
}

namespace {

// One item of a file: a pretokenized row (ids) or a raw-text document.
struct Item {
  bool is_text = false;
  std::vector<int64_t> ids;
  std::string text;
};

class FileReader {
 public:
  virtual ~FileReader() = default;
  virtual bool next(Item& it) = 0;
};

std::vector<int64_t> json_ids(const json& v, const std::string& where) {
  if (!v.is_array()) fail("{}: expected a list of token ids, got {}", where, v.type_name());
  std::vector<int64_t> ids;
  ids.reserve(v.size());
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail("{}: expected integer token ids, got {}", where, x.dump());
    ids.push_back(x.get<int64_t>());
  }
  return ids;
}

// JSON Lines, plain or compressed (.jsonl.gz / .jsonl.zst), one object per line.
class JsonlReader : public FileReader {
 public:
  JsonlReader(std::string path, std::string column)
      : path_(std::move(path)), column_(std::move(column)), in_(path_) {}
  bool next(Item& it) override {
    std::string line;
    while (in_.getline(line)) {
      ++lineno_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = path_ + ":" + std::to_string(lineno_);
      const json j = parse_json(line, where);
      if (!j.is_object()) fail("{}: expected a JSON object per line", where);
      const char* key = !column_.empty()          ? column_.c_str()
                        : j.contains("input_ids") ? "input_ids"
                        : j.contains("tokens")    ? "tokens"
                                                  : "text";
      if (!j.contains(key)) {
        if (!column_.empty()) fail("{}: no field '{}' (dataset_column)", where, column_);
        fail("{}: expected a field 'input_ids', 'tokens' or 'text'", where);
      }
      const json& v = j[key];
      if (v.is_string()) {
        it.is_text = true;
        it.text = v.get<std::string>();
      } else {
        it.is_text = false;
        it.ids = json_ids(v, where);
      }
      return true;
    }
    return false;
  }

 private:
  std::string path_, column_;
  LineReader in_;
  int64_t lineno_ = 0;
};

// A Parquet or Arrow IPC column, row by row.
class TableReader : public FileReader {
 public:
  explicit TableReader(std::unique_ptr<ColumnRowReader> r) : r_(std::move(r)) {}
  bool next(Item& it) override {
    if (!r_->next(row_)) return false;
    it.is_text = row_.is_text;
    if (row_.is_text)
      it.text.swap(row_.text);
    else
      it.ids.swap(row_.ids);
    return true;
  }

 private:
  std::unique_ptr<ColumnRowReader> r_;
  ColumnRow row_;
};

class TextReader : public FileReader {  // .txt: one document per non-empty line (HF "text" builder)
 public:
  explicit TextReader(std::string path) : in_(std::move(path)) {}
  bool next(Item& it) override {
    std::string line;
    while (in_.getline(line)) {
      if (line.empty()) continue;
      it.is_text = true;
      it.text = line;
      return true;
    }
    return false;
  }

 private:
  LineReader in_;
};

// Rows of a 2-D tensor, or windows of a flat 1-D stream.
class TensorReader : public FileReader {
 public:
  TensorReader(at::Tensor t, int64_t row_len)
      : t_(t.to(at::kLong).contiguous()), row_len_(row_len) {}
  bool next(Item& it) override {
    const int64_t n = t_.numel();
    if (pos_ + row_len_ > n) return false;
    const int64_t* p = t_.data_ptr<int64_t>() + pos_;
    it.is_text = false;
    it.ids.assign(p, p + row_len_);
    pos_ += row_len_;
    return true;
  }

 private:
  at::Tensor t_;
  int64_t row_len_;
  int64_t pos_ = 0;
};

// nanoGPT-style flat .bin, read row by row (not loaded whole).
class BinReader : public FileReader {
 public:
  BinReader(std::string path, int64_t ctx) : path_(std::move(path)), in_(path_, std::ios::binary) {
    if (!in_) fail("{}: cannot open", path_);
    const std::string side = path_ + ".json";
    if (!fs::exists(side))
      fail(
          "{}: a .bin token file needs a sidecar {} like {{\"dtype\": \"uint16\", \"row_length\": "
          "1024}}",
          path_, side);
    const json j = read_json_file(side);
    const std::string dt = j.value("dtype", std::string());
    if (dt == "uint16")
      width_ = 2;
    else if (dt == "uint32")
      width_ = 4;
    else
      fail("{}: dtype: expected \"uint16\" or \"uint32\", got '{}'", side, dt);
    row_len_ = j.contains("row_length") && !j["row_length"].is_null()
                   ? j["row_length"].get<int64_t>()
                   : ctx;
    if (row_len_ <= 0) fail("{}: row_length: expected a positive integer", side);
    const auto bytes = int64_t(fs::file_size(path_));
    if (bytes % width_ != 0)
      fail("{}: size {} bytes is not a multiple of {} ({})", path_, bytes, width_, dt);
  }
  bool next(Item& it) override {
    std::vector<char> buf(size_t(row_len_ * width_));
    in_.read(buf.data(), std::streamsize(buf.size()));
    if (in_.gcount() != std::streamsize(buf.size())) return false;
    it.is_text = false;
    it.ids.resize(size_t(row_len_));
    for (int64_t i = 0; i < row_len_; ++i) {
      const unsigned char* b = reinterpret_cast<const unsigned char*>(buf.data()) + i * width_;
      uint64_t v = 0;
      for (int k = width_ - 1; k >= 0; --k) v = (v << 8) | b[k];  // little-endian
      it.ids[size_t(i)] = int64_t(v);
    }
    return true;
  }

 private:
  std::string path_;
  std::ifstream in_;
  int width_ = 2;
  int64_t row_len_ = 0;
};

std::string ext_of(const std::string& p) {
  std::string e = fs::path(p).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e;
}

// The kind of a token file by name: "jsonl" and "txt" (also .gz / .zst), "npy", "bin",
// "parquet", "arrow"; "" for anything else.
std::string kind_of(const std::string& p) {
  std::string e = ext_of(p);
  if (e == ".gz" || e == ".zst") e = ext_of(p.substr(0, p.size() - e.size()));
  return e.empty() ? e : e.substr(1);
}

std::unique_ptr<FileReader> open_reader(const std::string& path, const TokenSourceOptions& o) {
  const std::string k = kind_of(path);
  if (!is_token_file_name(path))
    fail(
        "{}: unsupported token file (expected .parquet, .arrow, .jsonl, .txt (both also .gz or "
        ".zst), .npy or .bin)",
        path);
  if (!o.dataset_column.empty() && k != "jsonl" && k != "parquet" && k != "arrow")
    fail("dataset_column = '{}': {} is a .{} file, which has no columns", o.dataset_column, path,
         k);
  if (k == "jsonl") return std::make_unique<JsonlReader>(path, o.dataset_column);
  if (k == "txt") return std::make_unique<TextReader>(path);
  if (k == "parquet") return std::make_unique<TableReader>(open_parquet(path, o.dataset_column));
  if (k == "arrow") return std::make_unique<TableReader>(open_arrow(path, o.dataset_column));
  if (k == "bin") return std::make_unique<BinReader>(path, o.context_size);
  // .npy
  at::Tensor t = read_npy(path);
  const auto st = t.scalar_type();
  if (st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBool)
    fail("{}: expected integer token ids (int32, int64 or uint16), got a {} array", path,
         std::string(c10::toString(st)));
  if (t.dim() == 1) return std::make_unique<TensorReader>(t, o.context_size);
  if (t.dim() == 2) return std::make_unique<TensorReader>(t, t.size(1));
  fail("{}: expected a 1-D or 2-D array of token ids, got {} dimensions", path, t.dim());
}

// Every data file under a folder, sorted by path; an error when none is readable.
std::vector<std::string> list_files(const std::string& dir, const std::string& what) {
  std::vector<std::string> files;
  for (auto& e :
       fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink)) {
    if (e.is_regular_file() && is_token_file_name(e.path().string()))
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    fail("{}: no token files (.parquet, .arrow, .jsonl, .txt, .npy, .bin) found", what);
  return files;
}

class FileTokenSource : public TokenSource {
 public:
  FileTokenSource(TokenSourceOptions o, std::vector<std::string> files, std::string what)
      : o_(std::move(o)),
        files_(std::move(files)),
        what_(std::move(what)),
        packer_(o_.context_size, o_.prepend_bos ? o_.bos_id : std::nullopt, o_.separator_id,
                o_.disable_concat_sequences) {
    if (o_.prepend_bos && !o_.bos_id) bos_missing_ = true;
  }
  bool next(std::vector<int64_t>& window) override {
    while (ready_pos_ >= ready_.size()) {
      ready_.clear();
      ready_pos_ = 0;
      if (!fill()) return false;
    }
    window = std::move(ready_[ready_pos_++]);
    return true;
  }
  void restart() override {
    file_ = 0;
    reader_.reset();
    ready_.clear();
    ready_pos_ = 0;
    packer_.reset();
  }
  std::string describe() const override {
    return files_.size() == 1 ? what_ : what_ + " (" + std::to_string(files_.size()) + " files)";
  }

 private:
  // Reads items until at least one window is ready; false at the end of the last file.
  bool fill() {
    Item it;
    while (ready_.empty()) {
      if (!reader_) {
        if (file_ >= files_.size()) return false;
        reader_ = open_reader(files_[file_], o_);
        // Bounded read-ahead: the next shard (its first 256 MiB) is read from disk meanwhile.
        if (file_ + 1 < files_.size()) prefetch_file(files_[file_ + 1], size_t(256) << 20);
      }
      if (!reader_->next(it)) {
        reader_.reset();
        ++file_;
        continue;
      }
      if (it.is_text) {
        if (!o_.tokenizer)
          fail("{}: raw text needs the model's tokenizer, and none was loaded", files_[file_]);
        if (bos_missing_) fail("{}: prepend_bos = true but the tokenizer has no BOS token", what_);
        packer_.add(o_.tokenizer->encode(it.text), ready_);
      } else {
        // Pretokenized rows are used as they are: the first context_size ids of each row.
        if (int64_t(it.ids.size()) < o_.context_size)
          fail("{}: a pretokenized row has {} tokens, fewer than context_size = {}", files_[file_],
               it.ids.size(), o_.context_size);
        it.ids.resize(size_t(o_.context_size));
        ready_.push_back(std::move(it.ids));
      }
    }
    return true;
  }

  TokenSourceOptions o_;
  std::vector<std::string> files_;
  std::string what_;
  SequencePacker packer_;
  bool bos_missing_ = false;
  size_t file_ = 0;
  std::unique_ptr<FileReader> reader_;
  std::vector<std::vector<int64_t>> ready_;
  size_t ready_pos_ = 0;
};

}  // namespace

std::unique_ptr<TokenSource> open_token_source(const TokenSourceOptions& o) {
  if (o.context_size <= 0)
    fail("context_size: expected a positive integer, got {}", o.context_size);
  const std::string& p = o.dataset_path;
  if (p.empty())
    fail(
        "dataset_path: empty; expected a token file, a folder, a Hugging Face dataset id or "
        "\"othello\"");
  // Keys naming a part of a dataset are refused where the data has no such part, never ignored.
  const bool local = p == "othello" || fs::exists(p);
  if (local && !o.dataset_revision.empty())
    fail(
        "dataset_revision = '{}': dataset_path = '{}' is local data, not a Hugging Face dataset id",
        o.dataset_revision, p);
  if (!o.dataset_split.empty() && (p == "othello" || fs::is_regular_file(p)))
    fail("dataset_split = '{}': dataset_path = '{}' is {}, which has no splits", o.dataset_split, p,
         p == "othello" ? "the Othello game generator" : "one file");
  if (p == "othello") {
    if (!o.dataset_column.empty())
      fail("dataset_column = '{}': the Othello game generator has no columns", o.dataset_column);
    return make_othello_token_source(o.context_size, o.seed);
  }
  if (fs::is_regular_file(p)) {
    (void)open_reader(p, o);  // a bad file fails here, before training starts
    return std::make_unique<FileTokenSource>(o, std::vector<std::string>{p}, p);
  }
  // The first file of a folder or dataset is opened here too, so that a file saelab cannot read
  // stops the run before training starts.
  if (fs::is_directory(p)) {
    auto files = list_files(p, p);
    if (!o.dataset_split.empty()) {
      files = select_split(files, p, o.dataset_split);
      if (files.empty())
        fail(
            "dataset_split = '{}': no file of that split in {} (files are assigned to splits by "
            "name: train, test/eval, validation/val/dev)",
            o.dataset_split, p);
    }
    (void)open_reader(files.front(), o);
    return std::make_unique<FileTokenSource>(o, std::move(files), p);
  }
  if (p.find('/') != std::string::npos && p.front() != '/' && p.front() != '.') {
    const std::string split = o.dataset_split.empty() ? "train" : o.dataset_split;
    if (auto d = resolve_hf_dataset(p, o.dataset_revision, split)) {
      (void)open_reader(d->files.front(), o);
      return std::make_unique<FileTokenSource>(o, d->files, p + " (" + d->where + ")");
    }
  }
  fail(
      "dataset_path = '{}': not a file or folder, and not a dataset in the Hugging Face hub cache "
      "{} or datasets cache {} (fetch it with `huggingface-cli download --repo-type dataset {}`)",
      p, hf_dataset_hub_cache_dir(), hf_datasets_cache_dir(), p);
}

}  // namespace saelab
