// Precompiled header: the heavy, stable headers every module includes.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <fmt/format.h>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <optional>
