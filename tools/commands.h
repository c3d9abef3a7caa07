#pragma once
// The subcommand table. Each subcommand lives in its own cmd_*.cpp; adding one means writing that
// file and adding a row to ANVIL_COMMANDS. `light` commands run in the light `anvil` front end,
// which does not load LibTorch (its start-up alone costs ~0.45 s); `torch` commands run in
// `anvil-torch`, which the front end executes in its place.
#include <string_view>

// X(name, summary, light|torch)
#define ANVIL_COMMANDS(X)                                                                                          \
  X(inspect, "show a checkpoint's architecture, parameters, dtypes and tensors", light)                            \
  X(tokenize, "print the token ids a model's tokenizer gives a text", light)                                       \
  X(eval, "perplexity on text files, optionally KL divergence against a reference model", torch)                  \
  X(generate, "generate text from a prompt (greedy or sampled, KV cache)", torch)                                  \
  X(chat, "chat with a model on the terminal, using its own chat template", torch)                               \
  X(bench, "prompt-processing and generation speed, load time and peak memory (like llama-bench)", torch)        \
  X(convert, "Hugging Face directory <-> GGUF (f32/f16/bf16/q8_0)", light)                                         \
  X(quantize, "quantize to GGUF with llama.cpp's types and mixes (Q4_K_M, Q8_0, ...)", light)                      \
  X(imatrix, "measure an importance matrix on calibration text (llama-imatrix's GGUF or .dat)", torch)            \
  X(merge, "merge models from a mergekit-style YAML config (linear, slerp, ties, dare, della, ...)", torch)        \
  X(moe, "assemble a Mixtral-layout mixture of experts from dense fine-tunes (mergekit-moe configs)", torch)    \
  X(extract_lora, "a fine-tune's difference from its base as a PEFT LoRA adapter (truncated SVD)", torch)        \
  X(train, "LoRA fine-tuning from a YAML recipe; writes a PEFT adapter", torch)                                    \
  X(env, "show version, LibTorch, BLAS library and threads", torch)

namespace anvil::cli {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int argc, char** argv);  // argv[0] is "anvil NAME"; null: runs in anvil-torch
};

#define ANVIL_DECLARE_COMMAND(name, summary, where) int run_##name(int argc, char** argv);
ANVIL_COMMANDS(ANVIL_DECLARE_COMMAND)
#undef ANVIL_DECLARE_COMMAND

}  // namespace anvil::cli
