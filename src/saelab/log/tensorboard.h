// A TensorBoard event-file writer of our own: TFRecord framing (u64 length,
// masked CRC32C of the length, bytes, masked CRC32C of the bytes) around hand-encoded `Event`
// protobufs: the file_version record first, then scalars (Summary.Value.simple_value) and
// histograms (Summary.Value.histo = HistogramProto). TensorBoard reads the folder directly, and
// `wandb sync <run>/` uploads it to Weights & Biases.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace saelab {

// The protobuf bytes of one Event (exposed for tests and for writers of other files).
std::string encode_file_version_event(double wall_time);
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag,
                                float value);
// Histogram of `values`: `bins` equal-width buckets between min and max (bucket_limit = right
// edges, the last one +max), with min, max, num, sum and sum_squares.
std::string encode_histogram_event(double wall_time, int64_t step, const std::string& tag,
                                   const std::vector<double>& values, int bins = 50);
// One TFRecord: u64 LE length, masked crc of it, data, masked crc of data.
std::string frame_record(const std::string& data);

class TensorBoardWriter {
 public:
  // Creates dir if needed and opens events.out.tfevents.<10-digit time>.<host>.<pid>.<n> in it
  // (n counts writers opened by this process); writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  void add_histogram(const std::string& tag, const std::vector<double>& values, int64_t step,
                     int bins = 50);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Seconds since the epoch, as a double (Event.wall_time).
double wall_time_now();

}  // namespace saelab
