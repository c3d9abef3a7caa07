#include "io/safetensors.h"

#include <algorithm>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::io {
namespace {

using ordered_json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t TensorSpec::nbytes() const { return static_cast<uint64_t>(numel()) * dtype_size(dtype); }

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  const std::string where = path.string();
  const uint64_t file_size = file_.size();
  if (file_size < 8) fail(where, "truncated: " + std::to_string(file_size) + " bytes, too short for a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file_.data()[i];
  if (n > kMaxHeaderBytes) fail(where, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > file_size - 8)
    fail(where, "header length " + std::to_string(n) + " runs past the end of the file (" +
                    std::to_string(file_size) + " bytes)");
  header_size_ = n;
  const char* header = reinterpret_cast<const char*>(file_.data() + 8);
  if (n == 0 || header[0] != '{') fail(where, "header is not a JSON object");

  // A plain (sorted) object, not ordered_json, whose key lookups are linear scans: a stranger's
  // header of millions of keys would parse in quadratic time. Tensors are served in data order.
  nlohmann::json json = util::parse_json(std::string_view(header, n), where + " (header)");
  if (!json.is_object()) fail(where, "header is not a JSON object");

  const uint64_t data_size = file_size - 8 - n;
  const uint8_t* data = file_.data() + 8 + n;
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    const auto& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(where, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) fail(where, "__metadata__ value for " + quote(m.key()) + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = "tensor " + quote(name);
    if (!entry.is_object()) fail(where, tw + ": entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail(where, tw + ": missing or non-string dtype");
    auto dtype = parse_dtype(dt->get<std::string>());
    if (!dtype) fail(where, tw + ": unknown dtype " + quote(dt->get<std::string>()));
    if (sh == entry.end() || !sh->is_array()) fail(where, tw + ": missing or non-array shape");
    TensorSpec spec{name, *dtype, {}};
    uint64_t expected = dtype_size(*dtype);
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) fail(where, tw + ": shape has a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || mul_overflows(expected, dim, &expected))
        fail(where, tw + ": shape is too large");
      spec.shape.push_back(static_cast<int64_t>(dim));
    }
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail(where, tw + ": data_offsets must be two non-negative integers");
    uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (begin > end) fail(where, tw + ": data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
    if (end > data_size)
      fail(where, tw + ": data_offsets end " + std::to_string(end) + " is past the data area (" +
                      std::to_string(data_size) + " bytes; file truncated?)");
    if (end - begin != expected)
      fail(where, tw + ": " + std::string(dtype_name(*dtype)) + " shape needs " + std::to_string(expected) +
                      " bytes but data_offsets span " + std::to_string(end - begin));
    if (index_.count(name)) fail(where, tw + ": listed twice");
    index_[name] = tensors_.size();
    tensors_.push_back(TensorView{std::move(spec), std::span<const uint8_t>(data + begin, end - begin), path});
  }

  // The data area must be covered exactly: no overlaps, no holes, nothing after the last tensor.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return tensors_[a].bytes.data() < tensors_[b].bytes.data() ||
           (tensors_[a].bytes.data() == tensors_[b].bytes.data() && tensors_[a].bytes.size() < tensors_[b].bytes.size());
  });
  uint64_t cursor = 0;
  const TensorView* prev = nullptr;
  for (size_t i : order) {
    const TensorView& t = tensors_[i];
    uint64_t begin = static_cast<uint64_t>(t.bytes.data() - data);
    if (begin < cursor)
      fail(where, "tensor " + quote(t.name()) + ": data_offsets overlap tensor " + quote(prev->name()));
    if (begin > cursor)
      fail(where, "tensor " + quote(t.name()) + ": gap of " + std::to_string(begin - cursor) +
                      " bytes before its data (offsets must be contiguous)");
    cursor = begin + t.bytes.size();
    prev = &t;
  }
  if (cursor != data_size)
    fail(where, std::to_string(data_size - cursor) + " trailing bytes after the last tensor");

  // Serve tensors in data order, which is also the order a round trip must write them.
  std::vector<TensorView> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(tensors_[i]));
  tensors_ = std::move(sorted);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name()] = i;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string serialize_header(const std::vector<TensorSpec>& specs, const Metadata& metadata) {
  ordered_json json = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    json["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& s : specs) {
    ordered_json entry = ordered_json::object();
    entry["dtype"] = std::string(dtype_name(s.dtype));
    entry["shape"] = s.shape;
    uint64_t size = s.nbytes();
    entry["data_offsets"] = {offset, offset + size};
    offset += size;
    json[s.name] = entry;
  }
  std::string text = json.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorSpec> specs,
                                     const Metadata& metadata)
    : specs_(std::move(specs)), path_(path) {
  std::string header = serialize_header(specs_, metadata);
  uint64_t offset = 0;
  for (const auto& s : specs_) {
    if (slots_.count(s.name)) fail(path.string(), "tensor " + quote(s.name) + " given twice");
    slots_[s.name] = Slot{offset, s.nbytes(), 0};
    offset += s.nbytes();
  }
  file_ = std::make_unique<AtomicFile>(path);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  file_->append(std::span<const uint8_t>(len, 8));
  file_->append(header);
  data_start_ = 8 + n;
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(const std::string& name, std::span<const uint8_t> bytes) {
  auto it = slots_.find(name);
  if (it != slots_.end() && bytes.size() != it->second.size)
    fail(path_.string(), "tensor " + quote(name) + ": got " + std::to_string(bytes.size()) + " bytes, expected " +
                             std::to_string(it->second.size));
  write_part(name, 0, bytes);
}

void SafetensorsWriter::write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes) {
  auto it = slots_.find(name);
  if (it == slots_.end()) fail(path_.string(), "tensor " + quote(name) + " is not in the planned header");
  Slot& slot = it->second;
  if (offset > slot.size || bytes.size() > slot.size - offset)
    fail(path_.string(), "tensor " + quote(name) + ": write past its " + std::to_string(slot.size) + " bytes");
  file_->write_at(data_start_ + slot.offset + offset, bytes);
  slot.received += bytes.size();  // distinct tensors touch distinct slots: no lock needed
}

void SafetensorsWriter::commit() {
  for (const auto& s : specs_)
    if (slots_.at(s.name).received != s.nbytes())
      fail(path_.string(), "tensor " + quote(s.name) + " was not completely written");
  file_->commit();
}

void write_safetensors(const std::filesystem::path& path, const std::vector<OwnedTensor>& tensors,
                       const Metadata& metadata) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) {
    if (t.bytes.size() != t.spec.nbytes())
      fail(path.string(), "tensor " + quote(t.spec.name) + ": byte size does not match its shape and dtype");
    specs.push_back(t.spec);
  }
  SafetensorsWriter writer(path, specs, metadata);
  for (const auto& t : tensors) writer.write(t.spec.name, t.bytes);
  writer.commit();
}

}  // namespace anvil::io
