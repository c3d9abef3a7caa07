#include "io/gguf.h"

#include <array>
#include <cstring>
#include <limits>

#include "io/atomic_file.h"
#include "io/ggml_types.h"
#include "util/error.h"

namespace anvil::io {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;
constexpr size_t kMaxNameLength = 63;
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 24;    // llama.cpp's GGML_MAX_NAME - 1

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: return 8;   // at least its length prefix
    case GgufType::ARRAY: return 12;   // at least type + count
  }
  return 0;
}

// A bounds-checked cursor over the mapped file: every read names what it was reading on failure.
class Cursor {
 public:
  Cursor(const MappedFile& f) : f_(f) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return f_.size() - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) fail(f_.path().string(), std::string("truncated while reading ") + what);
    T v;
    std::memcpy(&v, f_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    if (n > remaining())
      fail(f_.path().string(), std::string(what) + ": string length " + std::to_string(n) + " runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(f_.data() + pos_), n);
    pos_ += n;
    return s;
  }

  // `count` items of at least `min_size` bytes each must fit in what is left of the file.
  void check_count(uint64_t count, uint64_t min_size, const std::string& what) {
    if (min_size && count > remaining() / min_size)
      fail(f_.path().string(), what + " count " + std::to_string(count) + " is impossible for a file of " +
                                   std::to_string(f_.size()) + " bytes");
  }

 private:
  const MappedFile& f_;
  uint64_t pos_ = 0;
};

GgufValue read_value(Cursor& c, GgufType type, const std::string& key, const std::string& where, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::UINT8: v.value = uint64_t{c.read<uint8_t>(key.c_str())}; break;
    case GgufType::INT8: v.value = int64_t{c.read<int8_t>(key.c_str())}; break;
    case GgufType::UINT16: v.value = uint64_t{c.read<uint16_t>(key.c_str())}; break;
    case GgufType::INT16: v.value = int64_t{c.read<int16_t>(key.c_str())}; break;
    case GgufType::UINT32: v.value = uint64_t{c.read<uint32_t>(key.c_str())}; break;
    case GgufType::INT32: v.value = int64_t{c.read<int32_t>(key.c_str())}; break;
    case GgufType::UINT64: v.value = c.read<uint64_t>(key.c_str()); break;
    case GgufType::INT64: v.value = c.read<int64_t>(key.c_str()); break;
    case GgufType::FLOAT32: v.value = double{c.read<float>(key.c_str())}; break;
    case GgufType::FLOAT64: v.value = c.read<double>(key.c_str()); break;
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>(key.c_str());
      if (b > 1) fail(where, "metadata '" + key + "': bool value " + std::to_string(b));
      v.value = b == 1;
      break;
    }
    case GgufType::STRING: v.value = c.string(key.c_str()); break;
    case GgufType::ARRAY: {
      if (depth > 0) fail(where, "metadata '" + key + "': nested arrays are not supported");
      auto arr = std::make_shared<GgufArray>();
      uint32_t et = c.read<uint32_t>(key.c_str());
      if (et > static_cast<uint32_t>(GgufType::FLOAT64))
        fail(where, "metadata '" + key + "': unknown array element type " + std::to_string(et));
      arr->type = static_cast<GgufType>(et);
      uint64_t n = c.read<uint64_t>(key.c_str());
      c.check_count(n, scalar_size(arr->type), "metadata '" + key + "' array");
      // Each element is held as a GgufValue (~48 bytes), so a byte array the size of the file would
      // ask for 48 times its size; no real array comes near this (vocabularies: < 300,000).
      if (n > kMaxArrayElements)
        fail(where, "metadata '" + key + "': array of " + std::to_string(n) + " elements (more than " +
                        std::to_string(kMaxArrayElements) + ")");
      arr->values.reserve(n);
      for (uint64_t i = 0; i < n; ++i) arr->values.push_back(read_value(c, arr->type, key, where, depth + 1));
      v.value = arr;
      break;
    }
    default: fail(where, "metadata '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  }
  return v;
}

void put(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
template <typename T>
void put(std::string& out, T v) { put(out, &v, sizeof v); }
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void write_value(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::UINT8: put<uint8_t>(out, static_cast<uint8_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::INT8: put<int8_t>(out, static_cast<int8_t>(std::get<int64_t>(v.value))); break;
    case GgufType::UINT16: put<uint16_t>(out, static_cast<uint16_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::INT16: put<int16_t>(out, static_cast<int16_t>(std::get<int64_t>(v.value))); break;
    case GgufType::UINT32: put<uint32_t>(out, static_cast<uint32_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::INT32: put<int32_t>(out, static_cast<int32_t>(std::get<int64_t>(v.value))); break;
    case GgufType::UINT64: put<uint64_t>(out, std::get<uint64_t>(v.value)); break;
    case GgufType::INT64: put<int64_t>(out, std::get<int64_t>(v.value)); break;
    case GgufType::FLOAT32: put<float>(out, static_cast<float>(std::get<double>(v.value))); break;
    case GgufType::FLOAT64: put<double>(out, std::get<double>(v.value)); break;
    case GgufType::BOOL: put<uint8_t>(out, std::get<bool>(v.value) ? 1 : 0); break;
    case GgufType::STRING: put_string(out, std::get<std::string>(v.value)); break;
    case GgufType::ARRAY: {
      const auto& arr = *std::get<std::shared_ptr<GgufArray>>(v.value);
      put<uint32_t>(out, static_cast<uint32_t>(arr.type));
      put<uint64_t>(out, arr.values.size());
      for (const auto& e : arr.values) write_value(out, e);
      break;
    }
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufValue GgufValue::array(GgufType element_type, std::vector<GgufValue> values) {
  auto arr = std::make_shared<GgufArray>();
  arr->type = element_type;
  arr->values = std::move(values);
  return {GgufType::ARRAY, arr};
}

std::optional<int64_t> GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&value)) return static_cast<int64_t>(*u);
  if (auto* i = std::get_if<int64_t>(&value)) return *i;
  if (auto* b = std::get_if<bool>(&value)) return *b ? 1 : 0;
  return std::nullopt;
}
std::optional<double> GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&value)) return *d;
  if (auto i = as_int()) return static_cast<double>(*i);
  return std::nullopt;
}
const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&value); }
const GgufArray* GgufValue::as_array() const {
  auto* a = std::get_if<std::shared_ptr<GgufArray>>(&value);
  return a ? a->get() : nullptr;
}

uint64_t GgufTensorInfo::numel() const {
  uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::optional<GgmlTypeSize> ggml_type_size(uint32_t type) {
  const ggml::TypeInfo* info = ggml::type_info(type);
  if (!info) return std::nullopt;
  return GgmlTypeSize{info->block_elements, info->block_bytes, info->name.data()};
}

GgufFile::GgufFile(const std::filesystem::path& path) : file_(path) {
  const std::string where = path.string();
  Cursor c(file_);
  if (file_.size() < 4 || c.read<uint32_t>("magic") != kMagic) fail(where, "not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) fail(where, "unsupported GGUF version " + std::to_string(version_) + " (2 or 3)");
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  c.check_count(n_kv, 8 + 4 + 1, "metadata");
  c.check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.string("metadata key");
    uint32_t type = c.read<uint32_t>(key.c_str());
    if (type > static_cast<uint32_t>(GgufType::FLOAT64))
      fail(where, "metadata '" + key + "': unknown value type " + std::to_string(type));
    // A hash index: a stranger's file may hold millions of keys, and a scan per key is quadratic.
    if (!metadata_index_.emplace(key, metadata_.size()).second) fail(where, "metadata key '" + key + "' appears twice");
    metadata_.emplace_back(key, read_value(c, static_cast<GgufType>(type), key, where, 0));
  }
  if (const GgufValue* a = find("general.alignment")) {
    auto v = a->as_int();
    if (a->type != GgufType::UINT32 || !v || *v <= 0 || (*v & (*v - 1)) != 0)
      fail(where, "general.alignment must be a power of two (u32)");
    alignment_ = static_cast<uint64_t>(*v);
  }

  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.string("tensor name");
    if (t.name.size() > kMaxNameLength)
      fail(where, "tensor name '" + t.name.substr(0, 40) + "...' is longer than " + std::to_string(kMaxNameLength));
    const std::string tw = "tensor '" + t.name + "'";
    uint32_t n_dims = c.read<uint32_t>(tw.c_str());
    if (n_dims == 0 || n_dims > kMaxDims) fail(where, tw + ": " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = c.read<uint64_t>(tw.c_str());
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, dim, &numel) || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(where, tw + ": dimensions overflow");
      t.dims.push_back(dim);
    }
    t.type = c.read<uint32_t>(tw.c_str());
    auto size = ggml_type_size(t.type);
    if (!size) fail(where, tw + ": unknown ggml type " + std::to_string(t.type));
    if (t.dims[0] % size->block_elements != 0)
      fail(where, tw + ": row length " + std::to_string(t.dims[0]) + " is not a multiple of the " + size->name +
                      " block (" + std::to_string(size->block_elements) + ")");
    if (__builtin_mul_overflow(numel / size->block_elements, uint64_t{size->block_bytes}, &t.nbytes))
      fail(where, tw + ": size overflows");
    t.offset = c.read<uint64_t>(tw.c_str());
    if (tensor_index_.count(t.name)) fail(where, tw + " appears twice");
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = align_up(c.pos(), alignment_);
  if (data_start > file_.size() && !tensors_.empty()) fail(where, "truncated before the tensor data");
  for (auto& t : tensors_) {
    const std::string tw = "tensor '" + t.name + "'";
    if (t.offset % alignment_ != 0) fail(where, tw + ": offset " + std::to_string(t.offset) + " is not aligned");
    if (t.offset > file_.size() || t.nbytes > file_.size() - std::min(file_.size(), data_start + t.offset) ||
        data_start + t.offset > file_.size())
      fail(where, tw + ": data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                      ") runs past the end of the file (truncated?)");
    t.data = std::span<const uint8_t>(file_.data() + data_start + t.offset, t.nbytes);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

GgufWriter::GgufWriter(const std::filesystem::path& path, std::vector<std::pair<std::string, GgufValue>> metadata,
                       std::vector<GgufTensorInfo> tensors)
    : tensors_(std::move(tensors)), path_(path) {
  uint64_t alignment = 32;
  for (const auto& [k, v] : metadata)
    if (k == "general.alignment" && v.as_int()) alignment = static_cast<uint64_t>(*v.as_int());
  std::string header;
  put<uint32_t>(header, kMagic);
  put<uint32_t>(header, 3);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, metadata.size());
  for (const auto& [k, v] : metadata) {
    put_string(header, k);
    put<uint32_t>(header, static_cast<uint32_t>(v.type));
    write_value(header, v);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    auto& t = tensors_[i];
    auto size = ggml_type_size(t.type);
    if (!size) fail(path.string(), "tensor '" + t.name + "': unknown ggml type " + std::to_string(t.type));
    if (t.name.size() > kMaxNameLength) fail(path.string(), "tensor name '" + t.name + "' is too long for GGUF");
    t.nbytes = t.numel() / size->block_elements * size->block_bytes;
    t.offset = offset;
    offset = align_up(offset + t.nbytes, alignment);
    index_[t.name] = i;
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.dims.size()));
    for (auto d : t.dims) put<uint64_t>(header, d);
    put<uint32_t>(header, t.type);
    put<uint64_t>(header, t.offset);
  }
  header.append(align_up(header.size(), alignment) - header.size(), '\0');
  data_start_ = header.size();
  written_ = std::make_unique<std::atomic<uint64_t>[]>(tensors_.size());
  file_ = std::make_unique<AtomicFile>(path);
  file_->append(header);
  // Zero padding after the last tensor keeps the file length a multiple of the alignment.
  if (offset > 0) {
    uint8_t zero = 0;
    file_->write_at(data_start_ + offset - 1, std::span<const uint8_t>(&zero, 1));
  }
}

GgufWriter::~GgufWriter() = default;

void GgufWriter::write(const std::string& name, std::span<const uint8_t> bytes) {
  auto it = index_.find(name);
  if (it != index_.end() && bytes.size() != tensors_[it->second].nbytes)
    fail(path_.string(), "tensor '" + name + "': got " + std::to_string(bytes.size()) + " bytes, expected " +
                             std::to_string(tensors_[it->second].nbytes));
  write_part(name, 0, bytes);
}

void GgufWriter::write_part(const std::string& name, uint64_t offset, std::span<const uint8_t> bytes) {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_.string(), "tensor '" + name + "' was not planned");
  const auto& t = tensors_[it->second];
  if (offset > t.nbytes || bytes.size() > t.nbytes - offset)
    fail(path_.string(), "tensor '" + name + "': bytes " + std::to_string(offset) + ".." +
                             std::to_string(offset + bytes.size()) + " are past its " + std::to_string(t.nbytes));
  file_->write_at(data_start_ + t.offset + offset, bytes);
  written_[it->second] += bytes.size();
}

void GgufWriter::commit() {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (written_[i] != tensors_[i].nbytes)
      fail(path_.string(), "tensor '" + tensors_[i].name + "' got " + std::to_string(written_[i].load()) + " of its " +
                               std::to_string(tensors_[i].nbytes) + " bytes");
  file_->commit();
}

}  // namespace anvil::io
