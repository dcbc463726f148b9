// --dataset-column / --dataset-split / --dataset-revision, shared by the verbs that read --dataset
// (eval, vis) with the meaning of the config keys dataset_column / dataset_split /
// dataset_revision.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace saelab::cli {

inline void add_dataset_part_options(CLI::App* sub, std::string& column, std::string& split,
                                     std::string& revision) {
  sub->add_option("--dataset-column", column,
                  "the jsonl/Parquet/Arrow column to read (default: input_ids, tokens or text)");
  sub->add_option("--dataset-split", split,
                  "the split to read, chosen among the files by name (default: train for a "
                  "Hugging Face dataset id, every file of a folder)");
  sub->add_option("--dataset-revision", revision,
                  "a Hugging Face dataset id's hub-cache revision (default: main)");
}

}  // namespace saelab::cli
