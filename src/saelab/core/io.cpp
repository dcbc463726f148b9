#include "saelab/core/io.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28+)
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "saelab/core/error.h"

namespace saelab {
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open for reading ({})", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  fs::path p(path);
  if (p.has_parent_path()) make_dirs(p.parent_path().string());
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create ({})", tmp, std::strerror(errno));
  // Errors name the final path (the file the user knows) and say how far the write got; the
  // temporary file is removed, so nothing partial is left under either name.
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("{}: write failed after {} of {} bytes ({}{}); nothing was written under that name",
           path, done, bytes.size(), std::strerror(e),
           e == ENOSPC || e == EFBIG || e == EDQUOT ? ": the disk or the file-size limit is full"
                                                    : "");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot flush to disk ({}); nothing was written under that name", path,
         std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename into place ({})", path, std::strerror(e));
  }
}

void rename_dir_atomic(const std::string& tmp_dir, const std::string& final_dir) {
  std::error_code ec;
  // Replacing a directory: swap the two in one step where the kernel can, so that a kill at any
  // moment leaves either the old or the new version under the final name, never neither.
  if (fs::exists(final_dir) &&
      ::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp_dir, ec);
    return;
  }
  std::string old = final_dir + ".old." + std::to_string(::getpid());
  bool had_old = fs::exists(final_dir);
  if (had_old) fs::rename(final_dir, old, ec);
  if (ec) fail("{}: cannot move the previous version aside ({})", final_dir, ec.message());
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) fail("{}: cannot rename {} into place ({})", final_dir, tmp_dir, ec.message());
  if (had_old) fs::remove_all(old, ec);
}

bool path_exists(const std::string& path) { return fs::exists(path); }

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) fail("{}: cannot create directory ({})", path, ec.message());
}

}  // namespace saelab
