// Read-only access to zip archives (libzip), shared by the .npz reader and the torch.save reader.
// Errors name the archive and the entry.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct zip;

namespace saelab {

class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<std::string>& names() const { return names_; }  // in archive order
  bool contains(const std::string& name) const;
  // Uncompressed size of an entry; throws naming the entry when it is missing.
  uint64_t size(const std::string& name) const;
  std::string read(const std::string& name) const;
  // Reads exactly size(name) bytes into dst.
  void read_into(const std::string& name, void* dst, uint64_t capacity) const;

 private:
  uint64_t index_of(const std::string& name) const;
  std::string path_;
  struct zip* zip_ = nullptr;
  std::vector<std::string> names_;
};

// True when the file starts with a zip local-file signature ("PK\3\4").
bool looks_like_zip(const std::string& path);

}  // namespace saelab
