// Parquet's metadata as saelab reads it: the file footer (schema, row groups, column chunks) and
// page headers, decoded from the Thrift compact protocol. Only the fields a reader of token and
// text columns needs are kept; the rest is skipped. Field ids follow apache/parquet-format's
// parquet.thrift.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace saelab::parquet {

enum PhysicalType {
  kBoolean = 0,
  kInt32 = 1,
  kInt64 = 2,
  kInt96 = 3,
  kFloat = 4,
  kDouble = 5,
  kByteArray = 6,
  kFixedLenByteArray = 7
};
enum Repetition { kRequired = 0, kOptional = 1, kRepeated = 2 };
enum Encoding {
  kPlain = 0,
  kPlainDictionary = 2,
  kRle = 3,
  kBitPacked = 4,
  kDeltaBinaryPacked = 5,
  kDeltaLengthByteArray = 6,
  kDeltaByteArray = 7,
  kRleDictionary = 8,
  kByteStreamSplit = 9
};
enum PageType { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };

struct SchemaElement {
  int32_t type = -1;  // PhysicalType; -1 for a group
  int32_t repetition = kRequired;
  std::string name;
  int32_t num_children = 0;
  int32_t converted_type = -1;
  bool logical_string = false;  // LogicalType STRING
  bool logical_list = false;    // LogicalType LIST
};

struct ColumnChunk {
  int32_t type = -1;
  std::vector<std::string> path;
  int32_t codec = 0;
  int64_t num_values = 0;
  int64_t total_compressed_size = 0;
  int64_t data_page_offset = -1;
  int64_t dictionary_page_offset = -1;
  bool has_file_path = false;  // the data lives in another file: not supported
};

struct RowGroup {
  std::vector<ColumnChunk> columns;
  int64_t num_rows = 0;
};

struct FileMetaData {
  std::vector<SchemaElement> schema;
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
};

struct PageHeader {
  int32_t type = -1;
  int32_t uncompressed_size = 0;
  int32_t compressed_size = 0;
  int32_t num_values = 0;
  int32_t encoding = 0;
  int32_t def_encoding = kRle;
  int32_t rep_encoding = kRle;
  // Data page v2 only.
  int32_t num_nulls = 0;
  int32_t num_rows = 0;
  int32_t def_bytes = 0;
  int32_t rep_bytes = 0;
  bool is_compressed = true;
  size_t header_size = 0;  // bytes of the Thrift header itself
};

// Both throw ThriftError (or saelab::Error for impossible values); the caller names the file.
FileMetaData parse_file_metadata(const uint8_t* data, size_t size);
PageHeader parse_page_header(const uint8_t* data, size_t size);

}  // namespace saelab::parquet
