// TensorBoard event files written by hand. Protobuf wire format in brief: each
// field is a varint key (field_number << 3 | wire_type) then its value; wire types used here are
// 0 varint, 1 fixed64 (double), 2 length-delimited (strings, sub-messages, packed doubles) and
// 5 fixed32 (float). Messages (tensorflow/core/util/event.proto, summary.proto):
//   Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }
//   HistogramProto { double min = 1, max = 2, num = 3, sum = 4, sum_squares = 5;
//                    repeated double bucket_limit = 6 [packed]; repeated double bucket = 7
//                    [packed]; }
#include "saelab/log/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/log/crc32c.h"

namespace saelab {

namespace {

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void put_key(std::string& out, int field, int wire) {
  put_varint(out, uint64_t(field) << 3 | wire);
}
template <typename T>
void put_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // x86 and ARM hosts are little-endian, as the format is
  out.append(b, sizeof(T));
}
void put_double(std::string& out, int field, double v) {
  put_key(out, field, 1);
  put_le(out, v);
}
void put_float(std::string& out, int field, float v) {
  put_key(out, field, 5);
  put_le(out, v);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_packed_doubles(std::string& out, int field, const std::vector<double>& xs) {
  std::string body;
  for (double x : xs) put_le(body, x);
  put_bytes(out, field, body);
}

std::string event_with_value(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string ev;
  put_double(ev, 1, wall_time);
  put_key(ev, 2, 0);
  put_varint(ev, uint64_t(step));
  put_bytes(ev, 5, summary);
  return ev;
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

std::atomic<int> g_writer_count{0};

}  // namespace

double wall_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string encode_file_version_event(double wall_time) {
  std::string ev;
  put_double(ev, 1, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag,
                                float value) {
  std::string v;
  put_bytes(v, 1, tag);
  put_float(v, 2, value);
  return event_with_value(wall_time, step, v);
}

std::string encode_histogram_event(double wall_time, int64_t step, const std::string& tag,
                                   const std::vector<double>& values, int bins) {
  std::vector<double> xs;
  xs.reserve(values.size());
  for (double x : values)
    if (std::isfinite(x)) xs.push_back(x);  // TensorBoard cannot draw inf/NaN
  double mn = 0, mx = 0, sum = 0, sum_sq = 0;
  if (!xs.empty()) {
    mn = *std::min_element(xs.begin(), xs.end());
    mx = *std::max_element(xs.begin(), xs.end());
  }
  for (double x : xs) sum += x, sum_sq += x * x;
  bins = std::max(bins, 1);
  std::vector<double> limits, counts;
  if (xs.empty()) {
    limits = {0.0};
    counts = {0.0};
  } else if (mx == mn) {
    limits = {mx};
    counts = {double(xs.size())};
  } else {
    double width = (mx - mn) / bins;
    counts.assign(size_t(bins), 0.0);
    for (double x : xs) {
      int b = int((x - mn) / width);
      counts[size_t(std::clamp(b, 0, bins - 1))] += 1;
    }
    for (int i = 1; i < bins; ++i) limits.push_back(mn + width * i);
    limits.push_back(mx);
  }
  std::string h;
  put_double(h, 1, mn);
  put_double(h, 2, mx);
  put_double(h, 3, double(xs.size()));
  put_double(h, 4, sum);
  put_double(h, 5, sum_sq);
  put_packed_doubles(h, 6, limits);
  put_packed_doubles(h, 7, counts);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 5, h);
  return event_with_value(wall_time, step, v);
}

std::string frame_record(const std::string& data) {
  std::string out;
  uint64_t len = data.size();
  std::string len_bytes;
  put_le(len_bytes, len);
  out += len_bytes;
  put_le(out, mask_crc32c(crc32c(len_bytes.data(), len_bytes.size())));
  out += data;
  put_le(out, mask_crc32c(crc32c(data.data(), data.size())));
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_dirs(dir);
  double now = wall_time_now();
  path_ = fmt::format("{}/events.out.tfevents.{:010d}.{}.{}.{}", dir, int64_t(now), hostname(),
                      int(getpid()), g_writer_count++);
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_) fail("{}: cannot create TensorBoard event file ({})", path_, std::strerror(errno));
  write_record(encode_file_version_event(now));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::write_record(const std::string& event) {
  std::string rec = frame_record(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size())
    fail("{}: cannot write TensorBoard event ({})", path_, std::strerror(errno));
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  write_record(encode_scalar_event(wall_time_now(), step, tag, float(value)));
}

void TensorBoardWriter::add_histogram(const std::string& tag, const std::vector<double>& values,
                                      int64_t step, int bins) {
  write_record(encode_histogram_event(wall_time_now(), step, tag, values, bins));
}

void TensorBoardWriter::flush() {
  if (file_ && std::fflush(file_) != 0)
    fail("{}: cannot flush TensorBoard event file ({})", path_, std::strerror(errno));
}

}  // namespace saelab
