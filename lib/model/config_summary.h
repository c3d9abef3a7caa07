#pragma once
// What sets a model's family apart, in words, for `anvil inspect`: "sliding window 16 on 5 of 6
// layers", "logit softcap 30", "q/k norms", "4 experts top 2 + shared 64"... Nothing for plain
// Llama.
#include <string>
#include <vector>

#include "model/config.h"

namespace anvil::model {

std::vector<std::string> family_features(const ModelConfig& config);

}  // namespace anvil::model
