// Precompiled header: the heavy, stable headers every module includes.
#pragma once
#include <fmt/format.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
