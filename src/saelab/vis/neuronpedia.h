// `saelab vis --neuronpedia OUT_DIR`: the features in the JSON body of Neuronpedia's batch upload
// (POST /api/feature/upload-batch): {"modelId", "source", "features": [...]} with at most 128
// features per body, each {"index", "density", "topLogits": [{"token", "value"}] (<= 20),
// "bottomLogits" (<= 20), "activations": [{"tokens": [strings], "values": [numbers] (<= 1024),
// "quantileMin", "quantileMax", "quantileFraction"}] (>= 1)}. Neuronpedia derives each
// activation's max position (maxValueTokenIndex) and max/min values from "values" itself.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "saelab/core/json.h"

namespace saelab::vis {

struct NeuronpediaExport {
  std::vector<std::string> files;  // written, in order
  int64_t n_features = 0;          // exported
  int64_t n_skipped = 0;           // never fired: Neuronpedia needs at least one activation
};

// stats: the --json contract; token: the display string of a token id. Writes
// OUT_DIR/batch-0000.json, batch-0001.json, ... (each atomically).
NeuronpediaExport write_neuronpedia(const json& stats, const std::string& out_dir,
                                    const std::string& model_id, const std::string& source,
                                    const std::function<std::string(int64_t)>& token);

}  // namespace saelab::vis
