#pragma once
// safetensors: an 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
// The reader validates the header completely before handing out zero-copy views into the map;
// the writer lays out a header first and then accepts tensor bytes in any order (pwrite).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/dtype.h"
#include "io/mapped_file.h"

namespace anvil::io {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  int64_t numel() const;
  uint64_t nbytes() const;
};

struct TensorView {
  TensorSpec spec;
  std::span<const uint8_t> bytes;  // points into the memory map
  std::filesystem::path file;      // for error messages

  const std::string& name() const { return spec.name; }
};

using Metadata = std::map<std::string, std::string>;

class SafetensorsFile {
 public:
  // Maps and validates the file; throws Error naming the file (and tensor) on any problem.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::vector<TensorView>& tensors() const { return tensors_; }  // in data order
  const TensorView* find(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return file_.path(); }
  uint64_t header_size() const { return header_size_; }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  Metadata metadata_;
  uint64_t header_size_ = 0;
};

// Streaming writer: the header is fixed from the specs up front, tensor bytes follow.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorSpec> specs,
                    const Metadata& metadata = {});
  ~SafetensorsWriter();
  // Thread-safe for distinct tensors.
  void write(const std::string& name, std::span<const uint8_t> bytes);
  // Writes bytes [offset, offset + size) of one tensor; the tensor counts as written once all its
  // bytes have arrived. Parts of one tensor must come from one thread.
  void write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes);
  void commit();  // every tensor must have been written

 private:
  struct Slot {
    uint64_t offset;
    uint64_t size;
    uint64_t received;
  };
  std::unique_ptr<class AtomicFile> file_;
  std::vector<TensorSpec> specs_;
  std::unordered_map<std::string, Slot> slots_;
  uint64_t data_start_ = 0;
  std::filesystem::path path_;
};

// The JSON header exactly as the reference implementation writes it: compact, __metadata__
// first, tensors in the given order, space-padded to a multiple of 8 bytes.
std::string serialize_header(const std::vector<TensorSpec>& specs, const Metadata& metadata);

// Convenience: write whole in-memory tensors to one file.
struct OwnedTensor {
  TensorSpec spec;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<OwnedTensor>& tensors,
                       const Metadata& metadata = {});

}  // namespace anvil::io
