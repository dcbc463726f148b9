// libzip wrapper: bounded, checked reads of whole entries (stored or deflated).
#include "saelab/core/zip.h"

#include <zip.h>

#include <filesystem>
#include <fstream>

#include "saelab/core/error.h"

namespace saelab {

ZipReader::ZipReader(const std::string& path) : path_(path) {
  int err = 0;
  zip_ = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (!zip_) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    fail("{}: cannot open as a zip archive ({})", path, msg);
  }
  zip_int64_t n = zip_get_num_entries(zip_, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(zip_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    names_.push_back(name ? name : "");
  }
}

ZipReader::~ZipReader() {
  if (zip_) zip_discard(zip_);
}

bool ZipReader::contains(const std::string& name) const {
  for (const auto& n : names_)
    if (n == name) return true;
  return false;
}

uint64_t ZipReader::index_of(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return i;
  fail("{}: zip archive has no entry '{}'", path_, name);
}

uint64_t ZipReader::size(const std::string& name) const {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(zip_, index_of(name), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    fail("{}: cannot read the size of zip entry '{}' ({})", path_, name, zip_strerror(zip_));
  // The sizes in a zip's directory are claims: a compressed size larger than the archive, or an
  // uncompressed size beyond what deflate can expand to (~1032:1), is a corrupt or hostile archive,
  // refused before anything is allocated (a 1 KB file must not make us allocate gigabytes).
  std::error_code ec;
  const uint64_t archive_bytes = std::filesystem::file_size(path_, ec);
  if (!ec && (st.valid & ZIP_STAT_COMP_SIZE) && st.comp_size > archive_bytes)
    fail("{}: zip entry '{}' claims {} compressed bytes in a {}-byte archive", path_, name,
         st.comp_size, archive_bytes);
  if (!ec && st.size > archive_bytes * 1100 + 4096)
    fail("{}: zip entry '{}' claims {} bytes from a {}-byte archive", path_, name, st.size,
         archive_bytes);
  if ((st.valid & ZIP_STAT_COMP_SIZE) && st.size > st.comp_size * 1100 + 4096)
    fail("{}: zip entry '{}' claims {} bytes from {} compressed bytes", path_, name, st.size,
         st.comp_size);
  return st.size;
}

void ZipReader::read_into(const std::string& name, void* dst, uint64_t capacity) const {
  uint64_t want = size(name);
  if (want > capacity)
    fail("{}: zip entry '{}' has {} bytes, expected at most {}", path_, name, want, capacity);
  zip_file_t* f = zip_fopen_index(zip_, index_of(name), 0);
  if (!f) fail("{}: cannot open zip entry '{}' ({})", path_, name, zip_strerror(zip_));
  uint64_t done = 0;
  char* out = static_cast<char*>(dst);
  while (done < want) {
    zip_int64_t r = zip_fread(f, out + done, want - done);
    if (r <= 0) {
      std::string msg = r < 0 ? zip_file_strerror(f) : "unexpected end of data";
      zip_fclose(f);
      fail("{}: cannot read zip entry '{}' ({})", path_, name, msg);
    }
    done += static_cast<uint64_t>(r);
  }
  zip_fclose(f);
}

std::string ZipReader::read(const std::string& name) const {
  std::string out(size(name), '\0');
  read_into(name, out.data(), out.size());
  return out;
}

bool looks_like_zip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char sig[4] = {};
  in.read(sig, 4);
  return in.gcount() == 4 && sig[0] == 'P' && sig[1] == 'K' && sig[2] == 3 && sig[3] == 4;
}

}  // namespace saelab
