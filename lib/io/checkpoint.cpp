#include <charconv>
#include "io/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::io {
namespace fs = std::filesystem;

Checkpoint::Checkpoint(const fs::path& path) : path_(path) {
  if (!fs::exists(path)) fail(path.string(), "no such file or directory");
  std::vector<fs::path> files;
  std::unordered_map<std::string, std::string> expected_shard;  // tensor -> shard file name
  if (fs::is_directory(path)) {
    fs::path index = path / "model.safetensors.index.json";
    fs::path single = path / "model.safetensors";
    if (fs::exists(index)) {
      nlohmann::json json = util::parse_json(read_text_file(index), index.string());
      if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object())
        fail(index.string(), "missing weight_map object");
      for (auto it = json["weight_map"].begin(); it != json["weight_map"].end(); ++it) {
        if (!it.value().is_string()) fail(index.string(), "weight_map entry for '" + it.key() + "' is not a string");
        std::string shard = it.value().get<std::string>();
        if (shard.find('/') != std::string::npos || shard == "..")
          fail(index.string(), "shard name '" + shard + "' must be a plain file name");
        expected_shard[it.key()] = shard;
        fs::path shard_path = path / shard;
        if (std::find(files.begin(), files.end(), shard_path) == files.end()) {
          if (!exists_quietly(shard_path))
            fail(index.string(), "shard '" + shard + "' (holding '" + it.key() + "') is missing");
          files.push_back(shard_path);
        }
      }
      std::sort(files.begin(), files.end());
    } else if (fs::exists(single)) {
      files.push_back(single);
    } else {
      fail(path.string(), "no model.safetensors or model.safetensors.index.json in this directory");
    }
  } else {
    files.push_back(path);
  }

  for (const auto& f : files) {
    shards_.push_back(std::make_unique<SafetensorsFile>(f));
    for (const auto& t : shards_.back()->tensors()) {
      if (by_name_.count(t.name()))
        fail(f.string(), "tensor '" + t.name() + "' also appears in " + by_name_[t.name()]->file.string());
      by_name_[t.name()] = &t;
      names_.push_back(t.name());
    }
  }
  for (const auto& [name, shard] : expected_shard) {
    auto it = by_name_.find(name);
    if (it == by_name_.end() || it->second->file.filename() != shard)
      fail((path / "model.safetensors.index.json").string(),
           "tensor '" + name + "' is not in shard '" + shard + "' as the index says");
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(path_.string(), "tensor '" + name + "' not found");
  return *t;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& s : shards_)
    for (const auto& t : s->tensors()) total += t.bytes.size();
  return total;
}

ShardedWriter::ShardedWriter(const fs::path& dir, const std::vector<TensorSpec>& specs, uint64_t max_shard_bytes,
                             const Metadata& metadata)
    : dir_(dir), specs_(specs) {
  // Greedy packing in the given order, as transformers does: a tensor larger than the limit
  // gets a shard of its own.
  std::vector<std::vector<TensorSpec>> groups;
  uint64_t current = 0;
  for (const auto& s : specs) {
    total_bytes_ += s.nbytes();
    if (groups.empty() || (current > 0 && current + s.nbytes() > max_shard_bytes)) {
      groups.emplace_back();
      current = 0;
    }
    groups.back().push_back(s);
    current += s.nbytes();
  }
  if (groups.empty()) groups.emplace_back();
  for (size_t i = 0; i < groups.size(); ++i) {
    std::string name = "model.safetensors";
    if (groups.size() > 1) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, groups.size());
      name = buf;
    }
    shard_names_.push_back(name);
    for (const auto& s : groups[i]) shard_of_[s.name] = i;
    writers_.push_back(std::make_unique<SafetensorsWriter>(dir / name, groups[i], metadata));
  }
}

ShardedWriter::~ShardedWriter() = default;

void ShardedWriter::write(const std::string& name, std::span<const uint8_t> bytes) {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(dir_.string(), "tensor '" + name + "' was not planned");
  writers_[it->second]->write(name, bytes);
}

void ShardedWriter::write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes) {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(dir_.string(), "tensor '" + name + "' was not planned");
  writers_[it->second]->write_part(name, offset, bytes);
}

void ShardedWriter::commit() {
  if (writers_.size() > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes_}};
    nlohmann::ordered_json map = nlohmann::ordered_json::object();
    std::vector<std::string> names;
    for (const auto& s : specs_) names.push_back(s.name);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) map[n] = shard_names_[shard_of_[n]];
    index["weight_map"] = map;
    write_text_file(dir_ / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  for (auto& w : writers_) w->commit();
}

uint64_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) fail("size '" + text + "'", "expected a number such as 5GB or 500MB");
  double value = 0;
  if (auto [end, ec] = std::from_chars(text.data(), text.data() + i, value); ec != std::errc() || end != text.data() + i ||
                                                                           !(value > 0 && value < 1e18))
    fail("size '" + text + "'", "expected a positive number such as 5GB or 500MB");
  std::string unit = text.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit == "" || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else fail("size '" + text + "'", "unknown unit '" + unit + "'");
  return static_cast<uint64_t>(value * mult);
}

}  // namespace anvil::io
