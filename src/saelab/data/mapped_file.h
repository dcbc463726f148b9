// A read-only memory map of a whole file, so table readers (Parquet, Arrow IPC) touch only the
// bytes of the columns they read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace saelab {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws saelab::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Asks the kernel to start reading the first `max_bytes` of `path` in the background (the next
// shard of a dataset while this one is decoded). Best effort: errors are ignored.
void prefetch_file(const std::string& path, size_t max_bytes);

}  // namespace saelab
