#pragma once
// The C interface of anvil's libsentencepiece module (sentencepiece_shim.cpp, built as its own
// shared object). Debian's libsentencepiece carries its own protobuf 3.14 runtime, whose
// exported symbols collide with the protobuf 3.21 that LibTorch loads: linked into anvil-torch
// both crash at start-up. The module is therefore opened with dlopen(RTLD_LOCAL | RTLD_DEEPBIND)
// only when a tokenizer.model is read, so each library keeps its own protobuf.
#include <cstddef>

extern "C" {
// Errors: a nonzero return, with a message in `error` (of `error_size` bytes).
int anvil_spm_load(const char* bytes, size_t size, void** model, char* error, size_t error_size);
void anvil_spm_free(void* model);
int anvil_spm_encode(void* model, const char* text, size_t size, int** ids, size_t* count, char* error, size_t error_size);
int anvil_spm_decode(void* model, const int* ids, size_t count, char** text, size_t* size, char* error, size_t error_size);
void anvil_spm_release(void* buffer);  // ids or text from encode/decode
int anvil_spm_size(void* model);
const char* anvil_spm_piece(void* model, int id, size_t* size);
float anvil_spm_score(void* model, int id);
int anvil_spm_piece_to_id(void* model, const char* piece, size_t size);
// Bits: 1 control, 2 unknown, 4 byte, 8 unused.
int anvil_spm_flags(void* model, int id);
// 0: BOS, 1: EOS, 2: unknown, 3: padding (-1: none).
int anvil_spm_special_id(void* model, int which);
int anvil_spm_adds_dummy_prefix(void* model);
}
