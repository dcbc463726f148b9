// Where a dataset named by id ("org/name") lives on this machine, without network: the Hugging
// Face hub cache (the snapshot of `dataset_revision`, else of refs/main) and then the `datasets`
// library's cache of Arrow files; and which of its files form a split, in shard order.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace saelab {

// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
std::string hf_dataset_hub_cache_dir();
// $HF_DATASETS_CACHE, else $HF_HOME/datasets, else ~/.cache/huggingface/datasets.
std::string hf_datasets_cache_dir();

// True for the file names token sources read (.jsonl, .txt, .npy, .bin, .parquet, .arrow, and
// .jsonl / .txt compressed as .gz or .zst).
bool is_token_file_name(const std::string& path);

// The files of `split` among `files` (paths below `root`), as the `datasets` library assigns
// files to splits by name: a path word (split on / - . _ space and digits) "train"/"training",
// "test"/"testing"/"eval"/"evaluation", "validation"/"valid"/"val"/"dev". When no file names any
// split, every file is the train split. Sorted by path. Empty when the split has no files.
std::vector<std::string> select_split(const std::vector<std::string>& files,
                                      const std::string& root, const std::string& split);

struct ResolvedDataset {
  std::vector<std::string> files;  // sorted shards of the split
  std::string where;               // the folder they came from, for messages
};

// The dataset `id` found in the hub cache (snapshot of `revision`, "" = main) or else in the
// `datasets` cache; nullopt when neither holds it. A revision or split that is not there is an
// error naming what is.
std::optional<ResolvedDataset> resolve_hf_dataset(const std::string& id,
                                                  const std::string& revision,
                                                  const std::string& split);

}  // namespace saelab
