#pragma once
// A SentencePiece vocabulary (pieces and scores, as GGUF's "llama" vocabularies store them) has
// no merge list; transformers' converter derives one, and the BPE tokenizer.json it writes is
// what Hugging Face tokenizes with. This is that derivation, so that reading such a GGUF gives
// the ids of the model's tokenizer.json.
#include <string>
#include <utility>
#include <vector>

namespace anvil::tokenizer {

// Every split of every piece into two pieces of the vocabulary, ordered by the whole piece's
// score (highest first), then by the left and the right part's length in characters (longest
// first), ties kept in vocabulary order and by the parts' ids (transformers' generate_merges).
std::vector<std::pair<std::string, std::string>> merges_from_scores(const std::vector<std::string>& pieces,
                                                                    const std::vector<float>& scores);

}  // namespace anvil::tokenizer
