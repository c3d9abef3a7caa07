#pragma once
// A Hugging Face checkpoint: one .safetensors file, a directory holding model.safetensors, or a
// directory with model.safetensors.index.json and its shards. Tensors are looked up by name
// across shards; every shard the index names must exist and hold what the index says.
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/safetensors.h"

namespace anvil::io {

class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& path);

  // Tensor names in file order (shard by shard, data order within a shard).
  const std::vector<std::string>& names() const { return names_; }
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws naming the checkpoint
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  const std::filesystem::path& path() const { return path_; }
  uint64_t total_bytes() const;

 private:
  std::filesystem::path path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, const TensorView*> by_name_;
  std::vector<std::string> names_;
};

// Writes tensors into DIR as model.safetensors, or as model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json when they exceed max_shard_bytes. Tensors are given as specs
// first (the layout is planned up front), then streamed with write() in any order.
class ShardedWriter {
 public:
  ShardedWriter(const std::filesystem::path& dir, const std::vector<TensorSpec>& specs, uint64_t max_shard_bytes,
                const Metadata& metadata = {{"format", "pt"}});
  ~ShardedWriter();
  void write(const std::string& name, std::span<const uint8_t> bytes);  // thread-safe per tensor
  void write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes);
  void commit();
  size_t shard_count() const { return writers_.size(); }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsWriter>> writers_;
  std::unordered_map<std::string, size_t> shard_of_;
  std::vector<std::string> shard_names_;
  std::vector<TensorSpec> specs_;
  uint64_t total_bytes_ = 0;
};

// Parses a size such as "5GB", "500MB", "2GiB" or a plain byte count.
uint64_t parse_byte_size(const std::string& text);

}  // namespace anvil::io
