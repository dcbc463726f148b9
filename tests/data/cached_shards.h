// Cached activation shards written by an independent writer (numpy, by hand from the safetensors
// spec), for the cached-activation and read-ahead tests.
#pragma once
#include <string>

#include "test_util.h"

namespace saelab::test {

// Writes shards with numpy: row r of the whole set holds (r, 2r, -r) in the given dtype.
inline void write_shards(const std::string& dir,
                         const std::string& spec /* python list of (name, rows, dtype, d_in) */) {
  run_python(R"(
import json, struct, numpy as np, os
d = ")" + dir +
             R"("
os.makedirs(d, exist_ok=True)
start = 0
for name, rows, dt, d_in in )" +
             spec + R"(:
    a = np.zeros((rows, d_in), dtype=np.float64)
    r = np.arange(start, start + rows, dtype=np.float64)
    a[:, 0] = r; a[:, 1] = 2 * r; a[:, 2] = -r
    start += rows
    np_dt = {"F16": np.float16, "F32": np.float32, "F64": np.float64}[dt]
    data = a.astype(np.dtype(np_dt).newbyteorder("<")).tobytes()
    header = json.dumps({"activations": {"dtype": dt, "shape": [rows, d_in], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)
)");
}

}  // namespace saelab::test
