// The Arrow IPC column reader (arrow_ipc.h). Messages are walked in order (the file format holds
// the stream format between its magic and its footer); field ids follow Arrow's Schema.fbs and
// Message.fbs.
#include "saelab/data/arrow_ipc.h"

#include <cstring>

#include "saelab/core/error.h"
#include "saelab/data/codec.h"
#include "saelab/data/flatbuffer.h"
#include "saelab/data/mapped_file.h"

namespace saelab {

namespace {
using fb::FlatBufferError;
using fb::Table;

// Schema.fbs Type union members.
enum ArrowType {
  kNull = 1,
  kInt = 2,
  kFloat = 3,
  kBinary = 4,
  kUtf8 = 5,
  kBool = 6,
  kDecimal = 7,
  kDate = 8,
  kTime = 9,
  kTimestamp = 10,
  kInterval = 11,
  kList = 12,
  kStruct = 13,
  kUnion = 14,
  kFixedSizeBinary = 15,
  kFixedSizeList = 16,
  kMap = 17,
  kDuration = 18,
  kLargeBinary = 19,
  kLargeUtf8 = 20,
  kLargeList = 21,
  kRunEndEncoded = 22,
  kBinaryView = 23,
  kUtf8View = 24,
  kListView = 25,
  kLargeListView = 26
};
constexpr int kMaxDepth = 32;

struct Field {
  std::string name;
  int type = 0;
  int bit_width = 0;      // Int
  bool is_signed = true;  // Int
  int list_size = 0;      // FixedSizeList
  int union_mode = 0;     // Union: 0 sparse, 1 dense
  bool dictionary = false;
  std::vector<Field> children;
};

Field read_field(const Table& t, int depth) {
  if (depth > kMaxDepth) throw FlatBufferError("fields nested too deeply");
  Field f;
  f.name = t.string(0);
  f.type = t.scalar<uint8_t>(2, 0);
  const Table ty = t.table(3);
  if (f.type == kInt && ty.valid()) {
    f.bit_width = ty.scalar<int32_t>(0, 0);
    f.is_signed = ty.scalar<uint8_t>(1, 0) != 0;
  } else if (f.type == kFixedSizeList && ty.valid()) {
    f.list_size = ty.scalar<int32_t>(0, 0);
  } else if (f.type == kUnion && ty.valid()) {
    f.union_mode = ty.scalar<int16_t>(0, 0);
  }
  f.dictionary = t.table(4).valid();
  size_t first;
  const size_t n = t.vector(5, first, 4);
  for (size_t i = 0; i < n; ++i)
    f.children.push_back(read_field(t.vector_table(first, i), depth + 1));
  return f;
}

// Buffers a field of this type has in a record batch (before its children's).
int buffer_count(const Field& f, const std::string& where) {
  switch (f.type) {
    case kNull:
    case kRunEndEncoded:
      return 0;
    case kStruct:
    case kFixedSizeList:
      return 1;
    case kInt:
    case kFloat:
    case kBool:
    case kDecimal:
    case kDate:
    case kTime:
    case kTimestamp:
    case kInterval:
    case kFixedSizeBinary:
    case kDuration:
    case kList:
    case kLargeList:
    case kMap:
      return 2;
    case kBinary:
    case kUtf8:
    case kLargeBinary:
    case kLargeUtf8:
    case kListView:
    case kLargeListView:
      return 3;
    case kUnion:
      return f.union_mode == 1 ? 2 : 1;
    default:
      fail("{}: column '{}' has Arrow type {}, which saelab cannot step over", where, f.name,
           f.type);
  }
}

struct Span {
  const uint8_t* p = nullptr;
  size_t n = 0;
};

class ArrowReader : public ColumnRowReader {
 public:
  ArrowReader(const std::string& path, const std::string& override_column) : f_(path) {
    const uint8_t* d = f_.data();
    const size_t n = f_.size();
    end_ = n;
    if (n >= 8 && std::memcmp(d, "ARROW1", 6) == 0) {
      // File format: the stream starts after the 8-byte magic and ends where the footer begins.
      if (n < 18 || std::memcmp(d + n - 6, "ARROW1", 6) != 0)
        fail("{}: truncated Arrow IPC file (no ARROW1 magic at the end)", path);
      int32_t flen;
      std::memcpy(&flen, d + n - 10, 4);
      if (flen < 0 || size_t(flen) > n - 18)
        fail("{}: the Arrow footer length {} exceeds the file", path, flen);
      pos_ = 8;
      end_ = n - 10 - size_t(flen);
    }
    std::vector<std::string> names;
    try {
      Table schema;
      if (end_ != n) {
        // A file's schema is in its footer; some writers repeat it as the first message.
        schema = Table::root(d + end_, n - 10 - end_).table(1);
      } else {
        Span meta, body;
        if (!next_message(meta, body) || header_type_ != 1)
          fail("{}: not an Arrow IPC file or stream (no schema message first)", path);
        schema = Table::root(meta.p, meta.n).table(2);
      }
      if (!schema.valid()) fail("{}: an Arrow file without a schema", path);
      if (schema.scalar<int16_t>(0, 0) != 0) fail("{}: a big-endian Arrow file", path);
      size_t first;
      const size_t nf = schema.vector(1, first, 4);
      for (size_t i = 0; i < nf; ++i)
        fields_.push_back(read_field(schema.vector_table(first, i), 0));
    } catch (const FlatBufferError& e) {
      fail("{}: corrupt Arrow schema ({})", path, e.what());
    }
    for (auto& fl : fields_) names.push_back(fl.name);
    col_ = choose_column(names, override_column, path);
    where_ = path + ": column '" + col_ + "'";
    for (size_t i = 0; i < fields_.size(); ++i)
      if (fields_[i].name == col_) col_index_ = i;
    const Field& c = fields_[col_index_];
    if (c.dictionary) fail("{}: a dictionary-encoded column, which saelab cannot read", where_);
    if (c.type == kUtf8 || c.type == kLargeUtf8) {
      text_ = true;
    } else if (c.type == kList || c.type == kLargeList || c.type == kFixedSizeList) {
      if (c.children.size() != 1 || c.children[0].type != kInt || c.children[0].dictionary)
        fail("{}: a list whose items are not integers, expected a list of token ids", where_);
      const int w = c.children[0].bit_width;
      if (w != 8 && w != 16 && w != 32 && w != 64) fail("{}: integers of {} bits", where_, w);
      if (c.type == kFixedSizeList && c.list_size <= 0)
        fail("{}: a fixed-size list of {} items", where_, c.list_size);
    } else {
      fail("{}: Arrow type {}, expected a list of integer token ids or a utf8 string", where_,
           c.type);
    }
  }

  std::string column() const override { return col_; }

  bool next(ColumnRow& row) override {
    row.is_text = text_;
    while (true) {
      if (row_ >= rows_) {
        if (!next_batch()) return false;
        continue;
      }
      const size_t r = row_++;
      if (valid_.p && !(valid_.p[r >> 3] >> (r & 7) & 1)) continue;  // a null row
      const uint64_t a = offset(r), b = offset(r + 1);
      if (b < a || b > items_)
        fail("{}: list offsets {}..{} outside {} items", where_, a, b, items_);
      if (text_) {
        row.text.assign(reinterpret_cast<const char*>(data_.p) + a, size_t(b - a));
        return true;
      }
      row.ids.resize(size_t(b - a));
      for (uint64_t i = a; i < b; ++i) {
        if (item_valid_.p && !(item_valid_.p[i >> 3] >> (i & 7) & 1))
          fail("{}: a null token id inside a list", where_);
        row.ids[size_t(i - a)] = item(i);
      }
      return true;
    }
  }

 private:
  // The next message: its FlatBuffer metadata and body. False at the end of the stream.
  bool next_message(Span& meta, Span& body) {
    const uint8_t* d = f_.data();
    if (pos_ + 4 > end_) return false;
    uint32_t len;
    std::memcpy(&len, d + pos_, 4);
    pos_ += 4;
    if (len == 0xFFFFFFFFu) {  // continuation marker, then the length
      if (pos_ + 4 > end_) return false;
      std::memcpy(&len, d + pos_, 4);
      pos_ += 4;
    }
    if (len == 0) return false;  // end-of-stream marker
    if (len > end_ - pos_)
      fail("{}: an Arrow message of {} bytes overruns the file", f_.path(), len);
    meta = {d + pos_, len};
    pos_ += len;
    const Table m = Table::root(meta.p, meta.n);
    header_type_ = m.scalar<uint8_t>(1, 0);
    const int64_t body_len = m.scalar<int64_t>(3, 0);
    if (body_len < 0 || uint64_t(body_len) > end_ - pos_)
      fail("{}: an Arrow message body of {} bytes overruns the file", f_.path(), body_len);
    body = {d + pos_, size_t(body_len)};
    pos_ += size_t(body_len);
    return true;
  }

  // Advances to the next record batch and locates the chosen column's buffers.
  bool next_batch() {
    Span meta, body;
    try {
      while (next_message(meta, body)) {
        if (header_type_ == 3) {
          load_batch(Table::root(meta.p, meta.n).table(2), body);
          return true;
        }
        // Dictionary batches (of other columns) and anything else are stepped over.
      }
    } catch (const FlatBufferError& e) {
      fail("{}: corrupt Arrow record batch ({})", f_.path(), e.what());
    }
    return false;
  }

  Span buffer(const Table& rb, size_t first_buf, size_t nbuf, size_t i, const Span& body,
              int codec) {
    if (i >= nbuf) fail("{}: a record batch with too few buffers", where_);
    int64_t off, len;
    std::memcpy(&off, rb.at(first_buf + 16 * i, 16), 8);
    std::memcpy(&len, rb.at(first_buf + 16 * i + 8, 8), 8);
    if (off < 0 || len < 0 || uint64_t(off) > body.n || uint64_t(len) > body.n - uint64_t(off))
      fail("{}: a buffer at {}+{} outside its {}-byte message body", where_, off, len, body.n);
    Span s{body.p + off, size_t(len)};
    if (codec < 0 || s.n == 0) return s;
    // Compressed bodies: each buffer is its uncompressed length (-1: stored as is), then data.
    if (s.n < 8) fail("{}: a compressed buffer shorter than its length prefix", where_);
    int64_t raw;
    std::memcpy(&raw, s.p, 8);
    if (raw == -1) return {s.p + 8, s.n - 8};
    if (raw < 0) fail("{}: a compressed buffer declaring {} bytes", where_, raw);
    store_.emplace_back();
    decompress(codec == 0 ? Codec::kLz4Frame : Codec::kZstd, s.p + 8, s.n - 8, size_t(raw),
               store_.back(), where_);
    return {store_.back().data(), store_.back().size()};
  }

  void load_batch(const Table& rb, const Span& body) {
    if (!rb.valid()) fail("{}: a record batch message without its header", f_.path());
    store_.clear();
    size_t first_node, first_buf, first_var;
    const size_t nnodes = rb.vector(1, first_node, 16);
    const size_t nbuf = rb.vector(2, first_buf, 16);
    const size_t nvar = rb.vector(4, first_var, 8);
    const Table comp = rb.table(3);
    const int codec = comp.valid() ? comp.scalar<int8_t>(0, 0) : -1;
    if (codec > 1) fail("{}: Arrow body compression {}", where_, codec);
    // Walk the fields in pre-order to the chosen column's first node and buffer.
    size_t node = 0, buf = 0, var = 0;
    for (size_t i = 0; i < col_index_; ++i) skip(fields_[i], node, buf, var, nvar);
    auto node_len = [&](size_t k, int64_t& len, int64_t& nulls) {
      if (k >= nnodes) fail("{}: a record batch with too few field nodes", where_);
      std::memcpy(&len, rb.at(first_node + 16 * k, 8), 8);
      std::memcpy(&nulls, rb.at(first_node + 16 * k + 8, 8), 8);
      if (len < 0 || nulls < 0 || nulls > len) fail("{}: a field node of length {}", where_, len);
    };
    const Field& c = fields_[col_index_];
    int64_t len, nulls;
    node_len(node, len, nulls);
    rows_ = size_t(len);
    row_ = 0;
    valid_ = nulls ? buffer(rb, first_buf, nbuf, buf, body, codec) : Span{};
    if (valid_.p && valid_.n * 8 < rows_)
      fail("{}: a validity bitmap shorter than its rows", where_);
    item_valid_ = {};
    if (text_) {
      large_ = c.type == kLargeUtf8;
      offsets_ = buffer(rb, first_buf, nbuf, buf + 1, body, codec);
      data_ = buffer(rb, first_buf, nbuf, buf + 2, body, codec);
      items_ = data_.n;
    } else {
      fixed_ = c.type == kFixedSizeList ? size_t(c.list_size) : 0;
      large_ = c.type == kLargeList;
      size_t child_buf = buf + 1;
      if (!fixed_) offsets_ = buffer(rb, first_buf, nbuf, child_buf++, body, codec);
      int64_t clen, cnulls;
      node_len(node + 1, clen, cnulls);
      items_ = size_t(clen);
      if (cnulls) {
        item_valid_ = buffer(rb, first_buf, nbuf, child_buf, body, codec);
        if (item_valid_.n * 8 < items_)
          fail("{}: a validity bitmap shorter than its items", where_);
      }
      data_ = buffer(rb, first_buf, nbuf, child_buf + 1, body, codec);
      width_ = size_t(c.children[0].bit_width / 8);
      signed_ = c.children[0].is_signed;
      if (data_.n / width_ < items_)
        fail("{}: {} items in a {}-byte buffer", where_, items_, data_.n);
      if (fixed_ && rows_ > items_ / fixed_)
        fail("{}: {} rows of {} items but {} items", where_, rows_, fixed_, items_);
    }
    if (!fixed_) {
      const size_t w = large_ ? 8 : 4;
      if (rows_ > 0 && offsets_.n / w < rows_ + 1)
        fail("{}: an offsets buffer shorter than its {} rows", where_, rows_);
    }
  }

  void skip(const Field& f, size_t& node, size_t& buf, size_t& var, size_t nvar) {
    ++node;
    buf += size_t(buffer_count(f, where_));
    if (f.type == kBinaryView || f.type == kUtf8View) {
      if (var >= nvar) fail("{}: a view column without its buffer count", where_);
      ++var;  // their variadic data buffers: counted but not needed here
      fail("{}: column '{}' is a view type, which saelab cannot step over", where_, f.name);
    }
    for (const auto& ch : f.children) skip(ch, node, buf, var, nvar);
  }

  uint64_t offset(size_t r) const {
    if (fixed_) return uint64_t(r) * fixed_;
    if (large_) {
      int64_t v;
      std::memcpy(&v, offsets_.p + 8 * r, 8);
      if (v < 0) fail("{}: a negative list offset", where_);
      return uint64_t(v);
    }
    int32_t v;
    std::memcpy(&v, offsets_.p + 4 * r, 4);
    if (v < 0) fail("{}: a negative list offset", where_);
    return uint64_t(v);
  }

  int64_t item(uint64_t i) const {
    const uint8_t* p = data_.p + i * width_;
    switch (width_) {
      case 1:
        return signed_ ? int64_t(int8_t(*p)) : int64_t(*p);
      case 2: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        return signed_ ? int64_t(int16_t(v)) : int64_t(v);
      }
      case 4: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return signed_ ? int64_t(int32_t(v)) : int64_t(v);
      }
      default: {
        int64_t v;
        std::memcpy(&v, p, 8);
        return v;
      }
    }
  }

  MappedFile f_;
  size_t pos_ = 0, end_ = 0;
  int header_type_ = 0;
  std::vector<Field> fields_;
  std::string col_, where_;
  size_t col_index_ = 0;
  bool text_ = false;
  // The current batch.
  std::vector<std::vector<uint8_t>> store_;  // decompressed buffers
  Span valid_, offsets_, data_, item_valid_;
  size_t rows_ = 0, row_ = 0, items_ = 0, fixed_ = 0, width_ = 1;
  bool large_ = false, signed_ = true;
};

}  // namespace

std::unique_ptr<ColumnRowReader> open_arrow(const std::string& path,
                                            const std::string& override_column) {
  return std::make_unique<ArrowReader>(path, override_column);
}

}  // namespace saelab
