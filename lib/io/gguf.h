#pragma once
// GGUF v3 (llama.cpp's file format): header, typed metadata key/values, tensor infos and an
// aligned data section. The reader validates every count, length, dimension and offset against
// the file before trusting it, so a hostile file can neither make it allocate huge amounts of
// memory nor read out of bounds. Tensor data is served zero-copy from the memory map.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"

namespace anvil::io {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

struct GgufValue;
struct GgufArray {
  GgufType type = GgufType::UINT8;
  std::vector<GgufValue> values;
};

// A metadata value. Integers keep their GGUF type so that a round trip writes the same bytes.
struct GgufValue {
  GgufType type = GgufType::UINT32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> value;

  static GgufValue u32(uint32_t v) { return {GgufType::UINT32, uint64_t{v}}; }
  static GgufValue i32(int32_t v) { return {GgufType::INT32, int64_t{v}}; }
  static GgufValue u64(uint64_t v) { return {GgufType::UINT64, v}; }
  static GgufValue f32(float v) { return {GgufType::FLOAT32, double{v}}; }
  static GgufValue boolean(bool v) { return {GgufType::BOOL, v}; }
  static GgufValue str(std::string v) { return {GgufType::STRING, std::move(v)}; }
  static GgufValue array(GgufType element_type, std::vector<GgufValue> values);

  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;
  const std::string* as_string() const;
  const GgufArray* as_array() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] is the fastest-varying (row length)
  uint32_t type = 0;           // ggml_type
  uint64_t offset = 0;         // relative to the data section
  uint64_t nbytes = 0;
  std::span<const uint8_t> data;  // reader only
  uint64_t numel() const;
};

// ggml's block layout per type: elements per block and bytes per block (0 if unknown).
struct GgmlTypeSize {
  uint32_t block_elements;
  uint32_t block_bytes;
  const char* name;
};
std::optional<GgmlTypeSize> ggml_type_size(uint32_t type);

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;  // key -> position in metadata_
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes a GGUF v3 file atomically. Tensor data is laid out in the given order, each tensor
// aligned to general.alignment (32 unless the metadata says otherwise).
class GgufWriter {
 public:
  GgufWriter(const std::filesystem::path& path, std::vector<std::pair<std::string, GgufValue>> metadata,
             std::vector<GgufTensorInfo> tensors);
  ~GgufWriter();
  void write(const std::string& name, std::span<const uint8_t> bytes);  // thread-safe per tensor
  // Part of a tensor's bytes, at `offset` into them (tensors written in row chunks); thread-safe.
  // The parts must not overlap; commit() checks that each tensor got all its bytes.
  void write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes);
  void commit();

 private:
  std::unique_ptr<class AtomicFile> file_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::unique_ptr<std::atomic<uint64_t>[]> written_;  // bytes written per tensor
  uint64_t data_start_ = 0;
  std::filesystem::path path_;
};

}  // namespace anvil::io
