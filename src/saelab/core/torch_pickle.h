// torch.save checkpoints: a zip of <name>/data.pkl plus one raw storage per
// tensor under <name>/data/<key>, read with a restricted unpickler of our own. Only the globals a
// state dict needs are accepted (collections.OrderedDict, torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter, the torch.*Storage types); any other global is refused before anything runs,
// so a malicious pickle cannot execute code. The legacy (pre-1.6, non-zip) format is refused with a
// clear error.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace saelab {

// Every tensor of the checkpoint keyed by name; nested dicts flatten to dotted keys
// ({"model": {"W": t}} -> "model.W"). Non-tensor leaves (ints, strings, None, lists) and dict
// entries with non-string keys are skipped. Tensors come out contiguous, in their stored dtype;
// tensors that were views of one storage share memory when already contiguous.
std::map<std::string, at::Tensor> load_torch_state_dict(const std::string& path);

}  // namespace saelab
