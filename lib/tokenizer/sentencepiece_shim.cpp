// anvil's libsentencepiece module: a C interface over SentencePieceProcessor, loaded at run time
// (see sentencepiece_shim.h for why). Nothing here throws across the boundary.
#include "tokenizer/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int report(const std::string& what, char* error, size_t size) {
  if (size > 0) {
    std::strncpy(error, what.c_str(), size - 1);
    error[size - 1] = '\0';
  }
  return 1;
}

sentencepiece::SentencePieceProcessor& sp(void* model) { return *static_cast<sentencepiece::SentencePieceProcessor*>(model); }

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int anvil_spm_load(const char* bytes, size_t size, void** model, char* error,
                                                          size_t error_size) {
  try {
    auto* p = new sentencepiece::SentencePieceProcessor();
    const auto status = p->LoadFromSerializedProto(absl::string_view(bytes, size));
    if (!status.ok()) {
      delete p;
      return report(status.message(), error, error_size);
    }
    *model = p;
    return 0;
  } catch (const std::exception& e) {
    return report(e.what(), error, error_size);
  }
}

__attribute__((visibility("default"))) void anvil_spm_free(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

__attribute__((visibility("default"))) int anvil_spm_encode(void* model, const char* text, size_t size, int** ids,
                                                            size_t* count, char* error, size_t error_size) {
  try {
    std::vector<int> out;
    const auto status = sp(model).Encode(absl::string_view(text, size), &out);
    if (!status.ok()) return report(status.message(), error, error_size);
    *count = out.size();
    *ids = static_cast<int*>(std::malloc(std::max<size_t>(1, out.size()) * sizeof(int)));
    if (!*ids) return report("out of memory", error, error_size);
    std::copy(out.begin(), out.end(), *ids);
    return 0;
  } catch (const std::exception& e) {
    return report(e.what(), error, error_size);
  }
}

__attribute__((visibility("default"))) int anvil_spm_decode(void* model, const int* ids, size_t count, char** text,
                                                            size_t* size, char* error, size_t error_size) {
  try {
    std::string out;
    const auto status = sp(model).Decode(std::vector<int>(ids, ids + count), &out);
    if (!status.ok()) return report(status.message(), error, error_size);
    *size = out.size();
    *text = static_cast<char*>(std::malloc(out.size() + 1));
    if (!*text) return report("out of memory", error, error_size);
    std::memcpy(*text, out.data(), out.size());
    (*text)[out.size()] = '\0';
    return 0;
  } catch (const std::exception& e) {
    return report(e.what(), error, error_size);
  }
}

__attribute__((visibility("default"))) void anvil_spm_release(void* buffer) { std::free(buffer); }

__attribute__((visibility("default"))) int anvil_spm_size(void* model) { return sp(model).GetPieceSize(); }

__attribute__((visibility("default"))) const char* anvil_spm_piece(void* model, int id, size_t* size) {
  const std::string& p = sp(model).IdToPiece(id);
  *size = p.size();
  return p.data();
}

__attribute__((visibility("default"))) float anvil_spm_score(void* model, int id) { return sp(model).GetScore(id); }

__attribute__((visibility("default"))) int anvil_spm_piece_to_id(void* model, const char* piece, size_t size) {
  return sp(model).PieceToId(absl::string_view(piece, size));
}

__attribute__((visibility("default"))) int anvil_spm_flags(void* model, int id) {
  auto& p = sp(model);
  return (p.IsControl(id) ? 1 : 0) | (p.IsUnknown(id) ? 2 : 0) | (p.IsByte(id) ? 4 : 0) | (p.IsUnused(id) ? 8 : 0);
}

__attribute__((visibility("default"))) int anvil_spm_special_id(void* model, int which) {
  auto& p = sp(model);
  return which == 0 ? p.bos_id() : which == 1 ? p.eos_id() : which == 2 ? p.unk_id() : p.pad_id();
}

__attribute__((visibility("default"))) int anvil_spm_adds_dummy_prefix(void* model) {
  std::vector<std::string> pieces;
  if (!sp(model).Encode("a", &pieces).ok() || pieces.empty()) return 0;
  return pieces[0].rfind("\xE2\x96\x81", 0) == 0 ? 1 : 0;
}

}  // extern "C"
