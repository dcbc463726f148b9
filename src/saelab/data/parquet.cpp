// The native Parquet column reader (parquet.h): footer and schema, column-chunk page decoding
// (data pages v1 and v2, dictionary pages, every codec in codec.h) and the assembly of rows from
// repetition and definition levels.
#include "saelab/data/parquet.h"

#include <cstring>

#include "saelab/core/error.h"
#include "saelab/data/codec.h"
#include "saelab/data/mapped_file.h"
#include "saelab/data/parquet_encoding.h"
#include "saelab/data/parquet_meta.h"
#include "saelab/data/thrift_compact.h"

namespace saelab {

namespace {
using namespace parquet;

// Pages with more slots than this are refused: real writers cut pages at about 1 MiB, and the
// level and value arrays of a page are allocated up front.
constexpr int64_t kMaxPageValues = int64_t(1) << 24;

const char* type_name(int32_t t) {
  static const char* names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
  return t >= 0 && t < 8 ? names[t] : "an unknown type";
}

std::string encoding_name(int32_t e) {
  static const char* names[] = {
      "PLAIN",          "GROUP_VAR_INT",       "PLAIN_DICTIONARY",        "RLE",
      "BIT_PACKED",     "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
      "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  return e >= 0 && e < 10 ? names[e] : "encoding " + std::to_string(e);
}

Codec codec_of(int32_t c, const std::string& where) {
  switch (c) {
    case 0:
      return Codec::kNone;
    case 1:
      return Codec::kSnappy;
    case 2:
      return Codec::kGzip;
    case 4:
      return Codec::kBrotli;
    case 6:
      return Codec::kZstd;
    case 7:
      return Codec::kLz4Raw;
    case 3:
      fail("{}: the LZO codec is not supported (SNAPPY, GZIP, ZSTD, BROTLI, LZ4_RAW are)", where);
    case 5:
      fail("{}: the deprecated Hadoop LZ4 codec is not supported (LZ4_RAW is)", where);
    default:
      fail("{}: unknown compression codec {}", where, c);
  }
}

struct Footer {
  FileMetaData meta;
  std::vector<int> parent;                 // schema index -> parent index (-1 for the root)
  std::vector<std::vector<int>> children;  // schema index -> children
};

Footer read_footer(const MappedFile& f) {
  const std::string& path = f.path();
  const uint8_t* d = f.data();
  const size_t n = f.size();
  if (n < 12 || std::memcmp(d, "PAR1", 4) != 0)
    fail("{}: not a Parquet file (no PAR1 magic at the start)", path);
  if (std::memcmp(d + n - 4, "PARE", 4) == 0)
    fail("{}: an encrypted Parquet file, which saelab cannot read", path);
  if (std::memcmp(d + n - 4, "PAR1", 4) != 0)
    fail("{}: truncated Parquet file (no PAR1 magic at the end)", path);
  uint32_t len;
  std::memcpy(&len, d + n - 8, 4);
  if (len > n - 12) fail("{}: the Parquet footer length {} exceeds the file", path, len);
  Footer ft;
  try {
    ft.meta = parse_file_metadata(d + n - 8 - len, len);
  } catch (const ThriftError& e) {
    fail("{}: corrupt Parquet footer ({})", path, e.what());
  }
  auto& s = ft.meta.schema;
  if (s.empty()) fail("{}: the Parquet schema is empty", path);
  // The schema is a pre-order list of nodes with child counts; rebuild the tree iteratively.
  ft.parent.assign(s.size(), -1);
  ft.children.assign(s.size(), {});
  std::vector<std::pair<int, int>> stack{{0, s[0].num_children}};
  for (size_t i = 1; i < s.size(); ++i) {
    while (!stack.empty() && stack.back().second == 0) stack.pop_back();
    if (stack.empty()) fail("{}: corrupt Parquet schema (more nodes than children)", path);
    const int p = stack.back().first;
    --stack.back().second;
    ft.parent[i] = p;
    ft.children[size_t(p)].push_back(int(i));
    if (s[i].num_children < 0 || size_t(s[i].num_children) > s.size())
      fail("{}: corrupt Parquet schema ({} children)", path, s[i].num_children);
    if (s[i].num_children > 0) stack.push_back({int(i), s[i].num_children});
  }
  for (auto& e : stack)
    if (e.second != 0) fail("{}: corrupt Parquet schema (missing child nodes)", path);
  return ft;
}

std::vector<std::string> top_names(const Footer& ft) {
  std::vector<std::string> names;
  for (int c : ft.children[0]) names.push_back(ft.meta.schema[size_t(c)].name);
  return names;
}

class ParquetReader : public ColumnRowReader {
 public:
  ParquetReader(const std::string& path, const std::string& override_column)
      : f_(path), ft_(read_footer(f_)) {
    col_ = choose_column(top_names(ft_), override_column, path);
    where_ = path + ": column '" + col_ + "'";
    locate_leaf();
  }

  std::string column() const override { return col_; }

  bool next(ColumnRow& row) override {
    row.is_text = text_;
    while (true) {
      if (slot_ == nslots_) {
        if (load_page()) continue;
        // The chunk (row group) is over: its last row is complete.
        if (in_row_) {
          in_row_ = false;
          if (!row_null_) {
            row.ids.swap(cur_);
            return true;
          }
        }
        if (!next_chunk()) return false;
        continue;
      }
      if (text_) {
        const uint16_t d = max_def_ ? def_[slot_] : 0;
        ++slot_;
        if (d < max_def_) continue;  // a null document
        const std::string_view v = svals_[vpos_++];
        row.text.assign(v.data(), v.size());
        return true;
      }
      // Lists: a repetition level of 0 starts a new row.
      const uint16_t r = rep_[slot_];
      const uint16_t d = def_[slot_];
      if (r == 0) {
        if (in_row_) {
          in_row_ = false;
          if (!row_null_) {
            row.ids.swap(cur_);
            cur_.clear();
            return true;
          }
        }
        in_row_ = true;
        row_null_ = d < def_list_;
        cur_.clear();
      } else if (!in_row_) {
        fail("{}: a column chunk starts in the middle of a list", where_);
      }
      ++slot_;
      if (d >= def_elem_) {
        if (d < max_def_) fail("{}: a null token id inside a list", where_);
        // The common case, a run of present values of the same list, copied in one go.
        size_t k = slot_;
        if (all_present_) {  // no null or empty list in this page: only list starts end a run
          const uint16_t* rep = rep_.data();
          while (k < nslots_ && rep[k] != 0) ++k;
        } else {
          while (k < nslots_ && rep_[k] != 0 && def_[k] == max_def_) ++k;
        }
        const size_t run = 1 + k - slot_;
        const size_t old = cur_.size();
        cur_.resize(old + run);
        if (vidx_) {  // dictionary-encoded: look the ids up straight into the row
          int64_t* dst = cur_.data() + old;
          const uint32_t* idx = vidx_ + vpos_;
          const int64_t* dict = dict_int_.data();
          for (size_t i = 0; i < run; ++i) dst[i] = dict[idx[i]];
        } else {
          std::memcpy(cur_.data() + old, vraw_ + 8 * vpos_, 8 * run);
        }
        vpos_ += run;
        slot_ = k;
      }
    }
  }

 private:
  void locate_leaf() {
    const auto& s = ft_.meta.schema;
    int top = -1;
    for (int c : ft_.children[0])
      if (s[size_t(c)].name == col_) top = c;
    // The path from the top-level field down to its single leaf.
    std::vector<int> path{top};
    while (!ft_.children[size_t(path.back())].empty()) {
      if (ft_.children[size_t(path.back())].size() != 1)
        fail("{}: a struct or map column, expected a list of token ids or a string", where_);
      path.push_back(ft_.children[size_t(path.back())][0]);
    }
    // Leaf column index: leaves in schema order before this one.
    leaf_index_ = 0;
    for (size_t i = 1; i < size_t(path.back()); ++i)
      if (s[i].num_children == 0) ++leaf_index_;
    int reps = 0, rep_at = -1, defs = 0;
    for (size_t k = 0; k < path.size(); ++k) {
      const auto& e = s[size_t(path[k])];
      if (e.repetition == kRepeated) {
        ++reps;
        rep_at = int(k);
      }
      if (e.repetition != kRequired) ++defs;
    }
    const auto& leaf = s[size_t(path.back())];
    type_ = leaf.type;
    if (reps > 1) fail("{}: a nested list, expected a list of token ids", where_);
    max_def_ = uint16_t(defs);
    max_rep_ = uint16_t(reps);
    if (reps == 0) {
      if (type_ != kByteArray)
        fail("{}: a scalar {} column, expected a list of int32/int64 token ids or a string", where_,
             type_name(type_));
      text_ = true;
      return;
    }
    if (type_ != kInt32 && type_ != kInt64)
      fail("{}: a list of {}, expected a list of int32/int64 token ids", where_, type_name(type_));
    // Definition levels: below def_list_ the row is null; def_list_ itself (when the repeated
    // node adds a level) is an empty list; from def_elem_ on an element exists.
    int before = 0;
    for (int k = 0; k < rep_at; ++k)
      if (s[size_t(path[size_t(k)])].repetition != kRequired) ++before;
    def_list_ = uint16_t(before);
    def_elem_ = uint16_t(before + 1);
  }

  // Moves to the next row group's column chunk; false after the last.
  bool next_chunk() {
    const auto& rgs = ft_.meta.row_groups;
    if (rg_ >= rgs.size()) return false;
    const RowGroup& g = rgs[rg_++];
    if (leaf_index_ >= g.columns.size())
      fail("{}: row group {} has {} column chunks, the schema more", where_, rg_ - 1,
           g.columns.size());
    const ColumnChunk& c = g.columns[leaf_index_];
    if (c.has_file_path) fail("{}: column data in another file is not supported", where_);
    if (c.type != type_)
      fail("{}: row group {} stores {} where the schema says {}", where_, rg_ - 1,
           type_name(c.type), type_name(type_));
    codec_ = codec_of(c.codec, where_);
    int64_t start = c.data_page_offset;
    if (c.dictionary_page_offset > 0 && c.dictionary_page_offset < start)
      start = c.dictionary_page_offset;
    const int64_t size = int64_t(f_.size());
    if (start < 4 || c.total_compressed_size < 0 || start > size ||
        c.total_compressed_size > size - start)
      fail("{}: row group {} has its column chunk at bytes {}+{}, outside the file ({} bytes)",
           where_, rg_ - 1, start, c.total_compressed_size, size);
    pos_ = f_.data() + start;
    end_ = pos_ + c.total_compressed_size;
    values_left_ = c.num_values;
    have_dict_ = false;
    return true;
  }

  // Decodes the next data page of the chunk into levels and values; false at the chunk's end.
  bool load_page() {
    slot_ = nslots_ = 0;
    vpos_ = 0;
    while (pos_ < end_ && values_left_ > 0) {
      PageHeader h;
      try {
        h = parse_page_header(pos_, size_t(end_ - pos_));
      } catch (const ThriftError& e) {
        fail("{}: corrupt page header ({})", where_, e.what());
      }
      pos_ += h.header_size;
      if (h.compressed_size < 0 || h.uncompressed_size < 0 ||
          int64_t(h.compressed_size) > end_ - pos_)
        fail("{}: a page of {} bytes overruns its column chunk", where_, h.compressed_size);
      const uint8_t* body = pos_;
      pos_ += h.compressed_size;
      if (h.type == kDictionaryPage) {
        read_dictionary(h, body);
      } else if (h.type == kDataPage || h.type == kDataPageV2) {
        if (h.num_values < 0 || h.num_values > kMaxPageValues || h.num_values > values_left_)
          fail("{}: a page declares {} values ({} left in the chunk)", where_, h.num_values,
               values_left_);
        values_left_ -= h.num_values;
        read_data_page(h, body);
        if (nslots_ > 0) return true;
      }
      // Index pages and unknown page types are skipped.
    }
    return false;
  }

  void read_dictionary(const PageHeader& h, const uint8_t* body) {
    if (h.encoding != kPlain && h.encoding != kPlainDictionary)
      fail("{}: a dictionary page in {} encoding, expected PLAIN", where_,
           encoding_name(h.encoding));
    decompress(codec_, body, size_t(h.compressed_size), size_t(h.uncompressed_size), dict_buf_,
               where_ + " dictionary page");
    const size_t n = dict_buf_.size();
    if (h.num_values < 0) fail("{}: a dictionary of {} values", where_, h.num_values);
    const size_t count = size_t(h.num_values);
    try {
      if (text_) {
        decode_plain_byte_arrays(dict_buf_.data(), n, count, dict_str_);
      } else {
        const size_t w = type_ == kInt64 ? 8 : 4;
        if (count > n / w) fail("{}: a dictionary of {} values in {} bytes", where_, count, n);
        dict_int_.resize(count);
        plain_ints(dict_buf_.data(), count, dict_int_.data());
      }
    } catch (const DecodeError& e) {
      fail("{}: corrupt dictionary page ({})", where_, e.what());
    }
    have_dict_ = true;
  }

  void plain_ints(const uint8_t* p, size_t count, int64_t* out) const {
    if (type_ == kInt64) {
      if (count) std::memcpy(out, p, count * 8);  // an empty dictionary may have no buffer
    } else {
      for (size_t i = 0; i < count; ++i) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
      }
    }
  }

  // Levels of a v1 page: a 4-byte length, then RLE; returns the bytes used.
  size_t levels_v1(const uint8_t* p, size_t n, int32_t enc, uint16_t max, size_t count,
                   std::vector<uint16_t>& out, RleStats& st) {
    if (enc != kRle) fail("{}: levels in {} encoding, expected RLE", where_, encoding_name(enc));
    if (n < 4) fail("{}: a data page too short for its levels", where_);
    uint32_t len;
    std::memcpy(&len, p, 4);
    if (len > n - 4) fail("{}: levels of {} bytes overrun their page", where_, len);
    out.resize(count);
    decode_rle_hybrid(p + 4, len, bit_width_of(max), count, out.data(), &st);
    return 4 + size_t(len);
  }

  void read_data_page(const PageHeader& h, const uint8_t* body) {
    const size_t count = size_t(h.num_values);
    const uint8_t* vals;
    size_t vlen;
    // Level statistics gathered while decoding: the largest of each, and the number of present
    // values (definition level at its maximum).
    RleStats rs, ds;
    ds.target = max_def_;
    try {
      if (h.type == kDataPage) {
        decompress(codec_, body, size_t(h.compressed_size), size_t(h.uncompressed_size), page_buf_,
                   where_ + " data page");
        const uint8_t* p = page_buf_.data();
        size_t n = page_buf_.size(), used = 0;
        if (max_rep_) used += levels_v1(p, n, h.rep_encoding, max_rep_, count, rep_, rs);
        if (max_def_)
          used += levels_v1(p + used, n - used, h.def_encoding, max_def_, count, def_, ds);
        vals = p + used;
        vlen = n - used;
      } else {
        if (h.rep_bytes < 0 || h.def_bytes < 0 ||
            int64_t(h.rep_bytes) + h.def_bytes > h.compressed_size ||
            int64_t(h.rep_bytes) + h.def_bytes > h.uncompressed_size)
          fail("{}: a v2 data page with {} + {} level bytes in {} bytes", where_, h.rep_bytes,
               h.def_bytes, h.compressed_size);
        // v2 levels are stored uncompressed ahead of the (possibly compressed) values.
        const size_t lv = size_t(h.rep_bytes) + size_t(h.def_bytes);
        if (max_rep_) {
          rep_.resize(count);
          decode_rle_hybrid(body, size_t(h.rep_bytes), bit_width_of(max_rep_), count, rep_.data(),
                            &rs);
        }
        if (max_def_) {
          def_.resize(count);
          decode_rle_hybrid(body + h.rep_bytes, size_t(h.def_bytes), bit_width_of(max_def_), count,
                            def_.data(), &ds);
        }
        const Codec c = h.is_compressed ? codec_ : Codec::kNone;
        decompress(c, body + lv, size_t(h.compressed_size) - lv, size_t(h.uncompressed_size) - lv,
                   page_buf_, where_ + " data page");
        vals = page_buf_.data();
        vlen = page_buf_.size();
      }
      const size_t present = max_def_ ? ds.equal : count;
      all_present_ = present == count;
      if (rs.max > max_rep_ || ds.max > max_def_)
        fail("{}: a level above its column's maximum", where_);
      if (max_rep_ && count > 0 && rep_[0] != 0 && !in_row_)
        fail("{}: a column chunk starts in the middle of a list", where_);
      read_values(h.encoding, vals, vlen, present);
    } catch (const DecodeError& e) {
      fail("{}: corrupt data page ({})", where_, e.what());
    }
    if (!max_rep_) rep_.assign(0, 0);
    if (!max_def_ && !text_) def_.assign(count, max_def_);
    if (!max_rep_ && !text_) fail("{}: internal: a list column without repetition", where_);
    nslots_ = count;
  }

  void read_values(int32_t enc, const uint8_t* p, size_t n, size_t count) {
    vidx_ = nullptr;
    if (enc == kPlainDictionary || enc == kRleDictionary) {
      if (!have_dict_) fail("{}: dictionary-encoded values without a dictionary page", where_);
      if (count > 0 && n < 1) fail("{}: dictionary indices truncated", where_);
      idx_.resize(count);
      const size_t dn = text_ ? dict_str_.size() : dict_int_.size();
      RleStats st;
      if (count) decode_rle_hybrid(p + 1, n - 1, p[0], count, idx_.data(), &st);
      if (count > 0 && st.max >= dn)
        fail("{}: dictionary index {} beyond the dictionary's {} values", where_, st.max, dn);
      if (text_) {
        svals_.resize(count);
        for (size_t i = 0; i < count; ++i) svals_[i] = dict_str_[idx_[i]];
      } else {
        vidx_ = idx_.data();  // looked up as rows are assembled
      }
      return;
    }
    if (text_) {
      if (enc == kPlain)
        decode_plain_byte_arrays(p, n, count, svals_);
      else if (enc == kDeltaLengthByteArray)
        decode_delta_length_byte_arrays(p, n, count, svals_);
      else if (enc == kDeltaByteArray)
        decode_delta_byte_arrays(p, n, count, str_store_, svals_);
      else
        fail("{}: strings in {} encoding, which saelab cannot read", where_, encoding_name(enc));
      return;
    }
    if (enc == kPlain) {
      const size_t w = type_ == kInt64 ? 8 : 4;
      if (count > n / w) fail("{}: {} values in a PLAIN page of {} bytes", where_, count, n);
      if (type_ == kInt64) {
        vraw_ = p;  // little-endian int64s already: read in place
        return;
      }
      ivals_.resize(count);
      plain_ints(p, count, ivals_.data());
    } else if (enc == kDeltaBinaryPacked) {
      ivals_.resize(count);
      decode_delta_binary(p, n, count, ivals_.data());
      if (type_ == kInt32)
        for (auto& v : ivals_) v = int32_t(uint32_t(uint64_t(v)));  // 32-bit wrap-around
    } else {
      fail("{}: token ids in {} encoding, which saelab cannot read", where_, encoding_name(enc));
    }
    vraw_ = reinterpret_cast<const uint8_t*>(ivals_.data());
  }

  MappedFile f_;
  Footer ft_;
  std::string col_, where_;
  size_t leaf_index_ = 0;
  int32_t type_ = -1;
  bool text_ = false;
  uint16_t max_def_ = 0, max_rep_ = 0, def_list_ = 0, def_elem_ = 0;
  // Chunk state.
  size_t rg_ = 0;
  Codec codec_ = Codec::kNone;
  const uint8_t* pos_ = nullptr;
  const uint8_t* end_ = nullptr;
  int64_t values_left_ = 0;
  bool have_dict_ = false;
  std::vector<uint8_t> dict_buf_, page_buf_;
  std::vector<int64_t> dict_int_;
  std::vector<std::string_view> dict_str_;
  // Page state.
  std::vector<uint16_t> rep_, def_;
  std::vector<uint32_t> idx_;
  std::vector<int64_t> ivals_;
  const uint8_t* vraw_ = nullptr;   // the page's int64 values (little-endian), maybe unaligned
  const uint32_t* vidx_ = nullptr;  // or, dictionary-encoded, their indices into dict_int_
  std::vector<std::string_view> svals_;
  std::string str_store_;
  size_t slot_ = 0, nslots_ = 0, vpos_ = 0;
  bool all_present_ = false;  // every slot of the page holds a value
  // Row state.
  bool in_row_ = false, row_null_ = false;
  std::vector<int64_t> cur_;
};

}  // namespace

std::vector<std::string> parquet_columns(const std::string& path) {
  MappedFile f(path);
  return top_names(read_footer(f));
}

std::unique_ptr<ColumnRowReader> open_parquet(const std::string& path,
                                              const std::string& override_column) {
  return std::make_unique<ParquetReader>(path, override_column);
}

}  // namespace saelab
