// Parquet footer and page-header decoding (parquet_meta.h).
#include "saelab/data/parquet_meta.h"

#include <algorithm>
#include <initializer_list>

#include "saelab/data/thrift_compact.h"

namespace saelab::parquet {

namespace {
using T = ThriftReader;

void expect(bool ok, const char* what) {
  if (!ok) throw ThriftError(std::string("bad Thrift type for ") + what);
}

// A union of empty structs (LogicalType): only which member is set matters here.
void read_logical_type(T& r, SchemaElement& s) {
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    if (id == 1) s.logical_string = true;  // STRING
    if (id == 3) s.logical_list = true;    // LIST
    r.skip(t);
  }
}

SchemaElement read_schema_element(T& r) {
  SchemaElement s;
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    switch (id) {
      case 1:
        s.type = r.read_i32(t);
        break;
      case 3:
        s.repetition = r.read_i32(t);
        break;
      case 4:
        expect(t == T::kBinary, "SchemaElement.name");
        s.name = r.read_string(1 << 16);
        break;
      case 5:
        s.num_children = r.read_i32(t);
        break;
      case 6:
        s.converted_type = r.read_i32(t);
        break;
      case 10:
        expect(t == T::kStruct, "SchemaElement.logicalType");
        read_logical_type(r, s);
        break;
      default:
        r.skip(t);
    }
  }
  return s;
}

ColumnChunk read_column_meta(T& r, ColumnChunk c) {
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    switch (id) {
      case 1:
        c.type = r.read_i32(t);
        break;
      case 3: {
        expect(t == T::kList, "ColumnMetaData.path_in_schema");
        uint8_t et;
        const size_t n = r.read_list_header(et);
        expect(et == T::kBinary, "path_in_schema elements");
        for (size_t i = 0; i < n; ++i) c.path.push_back(r.read_string(1 << 16));
        break;
      }
      case 4:
        c.codec = r.read_i32(t);
        break;
      case 5:
        c.num_values = r.read_int();
        break;
      case 7:
        c.total_compressed_size = r.read_int();
        break;
      case 9:
        c.data_page_offset = r.read_int();
        break;
      case 11:
        c.dictionary_page_offset = r.read_int();
        break;
      default:
        r.skip(t);
    }
  }
  return c;
}

ColumnChunk read_column_chunk(T& r) {
  ColumnChunk c;
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    if (id == 1) {
      c.has_file_path = true;
      r.skip(t);
    } else if (id == 3) {
      expect(t == T::kStruct, "ColumnChunk.meta_data");
      c = read_column_meta(r, c);
    } else {
      r.skip(t);
    }
  }
  return c;
}

RowGroup read_row_group(T& r) {
  RowGroup g;
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    if (id == 1) {
      expect(t == T::kList, "RowGroup.columns");
      uint8_t et;
      const size_t n = r.read_list_header(et);
      expect(et == T::kStruct, "RowGroup.columns elements");
      for (size_t i = 0; i < n; ++i) g.columns.push_back(read_column_chunk(r));
    } else if (id == 3) {
      g.num_rows = r.read_int();
    } else {
      r.skip(t);
    }
  }
  return g;
}

// A Thrift struct of which only i32 fields (and at most one bool) are wanted: each field id maps to
// where its value goes; the other fields are skipped.
struct I32Field {
  int16_t id;
  int32_t* to;
};
void read_i32_fields(T& r, std::initializer_list<I32Field> fields, int16_t bool_id = 0,
                     bool* bool_to = nullptr) {
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    const I32Field* f =
        std::find_if(fields.begin(), fields.end(), [&](const I32Field& x) { return x.id == id; });
    if (f != fields.end())
      *f->to = r.read_i32(t);
    else if (bool_to && id == bool_id)
      *bool_to = r.read_bool(t);
    else
      r.skip(t);
  }
}

// DataPageHeader: num_values 1, encoding 2, definition_level_encoding 3,
// repetition_level_encoding 4.
void read_data_page_header(T& r, PageHeader& h) {
  read_i32_fields(
      r, {{1, &h.num_values}, {2, &h.encoding}, {3, &h.def_encoding}, {4, &h.rep_encoding}});
}

// DictionaryPageHeader: num_values 1, encoding 2.
void read_dictionary_page_header(T& r, PageHeader& h) {
  read_i32_fields(r, {{1, &h.num_values}, {2, &h.encoding}});
}

// DataPageHeaderV2: num_values 1, num_nulls 2, num_rows 3, encoding 4,
// definition_levels_byte_length 5, repetition_levels_byte_length 6, is_compressed 7 (bool).
void read_data_page_header_v2(T& r, PageHeader& h) {
  read_i32_fields(r,
                  {{1, &h.num_values},
                   {2, &h.num_nulls},
                   {3, &h.num_rows},
                   {4, &h.encoding},
                   {5, &h.def_bytes},
                   {6, &h.rep_bytes}},
                  7, &h.is_compressed);
}

}  // namespace

FileMetaData parse_file_metadata(const uint8_t* data, size_t size) {
  T r(data, size);
  FileMetaData m;
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    if (id == 2) {
      expect(t == T::kList, "FileMetaData.schema");
      uint8_t et;
      const size_t n = r.read_list_header(et);
      expect(et == T::kStruct, "schema elements");
      for (size_t i = 0; i < n; ++i) m.schema.push_back(read_schema_element(r));
    } else if (id == 3) {
      m.num_rows = r.read_int();
    } else if (id == 4) {
      expect(t == T::kList, "FileMetaData.row_groups");
      uint8_t et;
      const size_t n = r.read_list_header(et);
      expect(et == T::kStruct, "row_groups elements");
      for (size_t i = 0; i < n; ++i) m.row_groups.push_back(read_row_group(r));
    } else {
      r.skip(t);
    }
  }
  return m;
}

PageHeader parse_page_header(const uint8_t* data, size_t size) {
  T r(data, size);
  PageHeader h;
  r.begin_struct();
  int16_t id;
  uint8_t t;
  while (r.next_field(id, t)) {
    switch (id) {
      case 1:
        h.type = r.read_i32(t);
        break;
      case 2:
        h.uncompressed_size = r.read_i32(t);
        break;
      case 3:
        h.compressed_size = r.read_i32(t);
        break;
      case 5:
        expect(t == T::kStruct, "PageHeader.data_page_header");
        read_data_page_header(r, h);
        break;
      case 7:
        expect(t == T::kStruct, "PageHeader.dictionary_page_header");
        read_dictionary_page_header(r, h);
        break;
      case 8:
        expect(t == T::kStruct, "PageHeader.data_page_header_v2");
        read_data_page_header_v2(r, h);
        break;
      default:
        r.skip(t);
    }
  }
  h.header_size = r.consumed();
  return h;
}

}  // namespace saelab::parquet
