#include "quant/imatrix_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "io/atomic_file.h"
#include "io/gguf.h"
#include "io/mapped_file.h"
#include "quant/quant_mix.h"  // ggml_dimension_count
#include "util/error.h"

namespace anvil::quant {
namespace fs = std::filesystem;
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;
constexpr int kF32 = 0;  // ggml_type
const std::string kSums = ".in_sum2", kCounts = ".counts";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Statistics from a stranger's file: squares summed, so finite and never negative.
void check_values(const fs::path& path, const std::string& name, const ImatrixEntry& e) {
  for (float v : e.sums)
    if (!std::isfinite(v) || v < 0)
      fail(path.string(), "entry '" + name + "': a sum of squared activations is " + std::to_string(v));
  for (double c : e.counts)
    if (!std::isfinite(c) || c < 0 || c > 9.0e15)
      fail(path.string(), "entry '" + name + "': token count " + std::to_string(c) + " is not a count");
}

Imatrix read_gguf(const fs::path& path) {
  io::GgufFile f(path);
  const std::string where = path.string();
  if (const auto* type = f.find("general.type"); type && type->as_string() && *type->as_string() != "imatrix")
    fail(where, "general.type is '" + *type->as_string() + "', not an importance matrix ('imatrix')");
  if (const auto* arch = f.find("general.architecture"); arch && arch->as_string())
    fail(where, "is a model (general.architecture '" + *arch->as_string() + "'), not an importance matrix");
  Imatrix m;
  const auto* datasets = f.find("imatrix.datasets");
  const auto* chunk_count = f.find("imatrix.chunk_count");
  const auto* chunk_size = f.find("imatrix.chunk_size");
  // llama-quantize refuses a GGUF imatrix without these three keys; so does anvil.
  if (!datasets || !chunk_count || !chunk_size)
    fail(where, "missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)");
  const auto* list = datasets->as_array();
  if (!list || list->type != io::GgufType::STRING) fail(where, "imatrix.datasets must be an array of strings");
  for (const auto& v : list->values) m.datasets.push_back(*v.as_string());
  for (auto [key, value, out] : {std::tuple{"imatrix.chunk_count", chunk_count, &m.chunk_count},
                                 std::tuple{"imatrix.chunk_size", chunk_size, &m.chunk_size}}) {
    const auto n = value->as_int();
    if (!n || *n < 0 || *n > INT32_MAX) fail(where, std::string(key) + " must be a non-negative integer");
    *out = *n;
  }
  std::map<std::string, std::pair<const io::GgufTensorInfo*, const io::GgufTensorInfo*>> pairs;
  for (const auto& t : f.tensors()) {
    if (ends_with(t.name, kSums)) pairs[t.name.substr(0, t.name.size() - kSums.size())].first = &t;
    else if (ends_with(t.name, kCounts)) pairs[t.name.substr(0, t.name.size() - kCounts.size())].second = &t;
  }
  for (const auto& [name, p] : pairs) {
    const auto [sums, counts] = p;
    if (!sums || !counts) fail(where, "entry '" + name + "' has " + (sums ? "sums but no counts" : "counts but no sums"));
    if (sums->type != kF32 || counts->type != kF32) fail(where, "entry '" + name + "': sums and counts must be F32");
    const uint64_t nval = sums->numel(), nmat = counts->numel();
    if (nval == 0 || nmat == 0 || nval % nmat != 0)
      fail(where, "entry '" + name + "': " + std::to_string(nval) + " sums do not split into " + std::to_string(nmat) +
                      " matrices");
    ImatrixEntry e;
    e.sums.resize(nval);
    std::memcpy(e.sums.data(), sums->data.data(), nval * sizeof(float));
    std::vector<float> c(nmat);
    std::memcpy(c.data(), counts->data.data(), nmat * sizeof(float));
    e.counts.assign(c.begin(), c.end());
    check_values(path, name, e);
    for (double& v : e.counts) v = std::round(v);  // llama.cpp reads them with lround
    m.entries.emplace(name, std::move(e));
  }
  if (m.entries.empty()) fail(where, "has no importance entries (<name>.in_sum2 / <name>.counts tensors)");
  return m;
}

// The legacy layout is native-endian int32/float32 as llama-imatrix wrote it (little-endian on
// every machine it runs on).
class Reader {
 public:
  explicit Reader(const io::MappedFile& f) : f_(f) {}
  size_t remaining() const { return f_.size() - pos_; }
  template <typename T>
  T read(const std::string& what) {
    if (remaining() < sizeof(T)) fail(f_.path().string(), "truncated while reading " + what);
    T v;
    std::memcpy(&v, f_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  const uint8_t* take(size_t n, const std::string& what) {
    if (remaining() < n) fail(f_.path().string(), what + " runs past the end of the file");
    const uint8_t* p = f_.data() + pos_;
    pos_ += n;
    return p;
  }

 private:
  const io::MappedFile& f_;
  size_t pos_ = 0;
};

Imatrix read_dat(const fs::path& path) {
  io::MappedFile f(path);
  const std::string where = path.string();
  Reader r(f);
  Imatrix m;
  m.legacy = true;
  const int32_t n = r.read<int32_t>("the entry count");
  // Each entry takes at least 16 bytes (name length, ncall, value count, one value).
  if (n < 1 || static_cast<size_t>(n) > r.remaining() / 16)
    fail(where, "entry count " + std::to_string(n) + " is impossible for a file of " + std::to_string(f.size()) +
                    " bytes (not an importance matrix?)");
  for (int32_t i = 0; i < n; ++i) {
    const std::string entry = "entry " + std::to_string(i + 1);
    const int32_t len = r.read<int32_t>(entry + "'s name length");
    if (len < 1 || len > 1024) fail(where, entry + ": name length " + std::to_string(len) + " (not an importance matrix?)");
    std::string name(reinterpret_cast<const char*>(r.take(static_cast<size_t>(len), entry + "'s name")), static_cast<size_t>(len));
    const int32_t ncall = r.read<int32_t>("entry '" + name + "' call count");
    const int32_t nval = r.read<int32_t>("entry '" + name + "' value count");
    if (nval < 1 || static_cast<size_t>(nval) > r.remaining() / sizeof(float))
      fail(where, "entry '" + name + "': " + std::to_string(nval) + " values do not fit in the file");
    ImatrixEntry e;
    e.sums.resize(static_cast<size_t>(nval));
    std::memcpy(e.sums.data(), r.take(e.sums.size() * sizeof(float), "entry '" + name + "' values"), e.sums.size() * sizeof(float));
    e.counts = {static_cast<double>(ncall)};
    check_values(path, name, e);
    if (!m.entries.emplace(name, std::move(e)).second) fail(where, "entry '" + name + "' appears twice");
  }
  // The trailer (chunk count, dataset name) is optional, as llama.cpp reads it.
  if (r.remaining() >= sizeof(int32_t)) {
    m.chunk_count = std::max(0, r.read<int32_t>("the chunk count"));
    if (r.remaining() >= sizeof(int32_t)) {
      const int32_t len = r.read<int32_t>("the dataset name length");
      if (len > 0 && static_cast<size_t>(len) <= r.remaining())
        m.datasets.emplace_back(reinterpret_cast<const char*>(r.take(static_cast<size_t>(len), "the dataset name")),
                                static_cast<size_t>(len));
    }
  }
  return m;
}

std::vector<uint8_t> float_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

std::map<std::string, std::vector<float>> Imatrix::importance() const {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, e] : entries) {
    std::vector<float> v(e.sums.size());
    const size_t nmat = e.counts.size(), cols = nmat ? e.sums.size() / nmat : 0;
    for (size_t j = 0; j < nmat; ++j)
      for (size_t i = 0; i < cols; ++i) {
        const float s = e.sums[j * cols + i], c = static_cast<float>(e.counts[j]);
        v[j * cols + i] = legacy ? (c > 0 ? s / c : s) : (c > 0 ? s / c : 1.f);
      }
    out.emplace(name, std::move(v));
  }
  return out;
}

Imatrix read_imatrix(const fs::path& path) {
  if (!fs::is_regular_file(path)) fail(path.string(), "no such importance matrix file");
  uint32_t magic = 0;
  {
    io::MappedFile f(path);
    if (f.size() >= 4) std::memcpy(&magic, f.data(), 4);
  }
  return magic == kGgufMagic ? read_gguf(path) : read_dat(path);
}

void write_imatrix_gguf(const fs::path& path, const Imatrix& m) {
  std::vector<io::GgufValue> datasets;
  for (const auto& d : m.datasets) datasets.push_back(io::GgufValue::str(d));
  std::vector<std::pair<std::string, io::GgufValue>> meta{
      {"general.type", io::GgufValue::str("imatrix")},
      {"imatrix.datasets", io::GgufValue::array(io::GgufType::STRING, std::move(datasets))},
      {"imatrix.chunk_count", io::GgufValue::u32(static_cast<uint32_t>(m.chunk_count))},
      {"imatrix.chunk_size", io::GgufValue::u32(static_cast<uint32_t>(m.chunk_size))},
  };
  std::vector<io::GgufTensorInfo> infos;
  for (const auto& [name, e] : m.entries) {  // std::map: name order
    if (e.sums.empty() || e.counts.empty()) continue;
    const uint64_t nmat = e.counts.size();
    // 2-D tensors as ggml writes them: trailing dimensions of one dropped ([cols] for a dense
    // weight, [1] for its count).
    io::GgufTensorInfo sums, counts;
    sums.name = name + kSums, sums.dims = {e.sums.size() / nmat, nmat}, sums.type = kF32;
    counts.name = name + kCounts, counts.dims = {1, nmat}, counts.type = kF32;
    sums.dims.resize(ggml_dimension_count(sums.dims));
    counts.dims.resize(ggml_dimension_count(counts.dims));
    infos.push_back(std::move(sums));
    infos.push_back(std::move(counts));
  }
  io::GgufWriter w(path, std::move(meta), infos);
  for (const auto& [name, e] : m.entries) {
    if (e.sums.empty() || e.counts.empty()) continue;
    w.write(name + kSums, float_bytes(e.sums));
    w.write(name + kCounts, float_bytes(std::vector<float>(e.counts.begin(), e.counts.end())));
  }
  w.commit();
}

void write_imatrix_dat(const fs::path& path, const Imatrix& m) {
  if (m.chunk_size <= 0) fail(path.string(), "the legacy format needs the chunk size the statistics were taken in");
  std::string out;
  auto put = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  std::vector<const std::pair<const std::string, ImatrixEntry>*> kept;
  for (const auto& kv : m.entries)  // llama-imatrix leaves out entries that saw no tokens at all
    if (!kv.second.sums.empty() && std::any_of(kv.second.counts.begin(), kv.second.counts.end(), [](double c) { return c > 0; }))
      kept.push_back(&kv);
  put(static_cast<int32_t>(kept.size()));
  for (const auto* kv : kept) {
    const auto& [name, e] = *kv;
    put(static_cast<int32_t>(name.size()));
    out += name;
    // As llama-imatrix: ncall = ceil(max count / chunk size); values are mean * ncall, 1 for a
    // matrix with no tokens.
    const double max_count = *std::max_element(e.counts.begin(), e.counts.end());
    const auto ncall = static_cast<int32_t>((static_cast<int64_t>(max_count) + m.chunk_size - 1) / m.chunk_size);
    put(ncall);
    put(static_cast<int32_t>(e.sums.size()));
    const size_t cols = e.sums.size() / e.counts.size();
    for (size_t i = 0; i < e.sums.size(); ++i) {
      float count = static_cast<float>(e.counts[i / cols]), value = e.sums[i];
      if (count == 0) value = count = 1;
      put(value / count * static_cast<float>(ncall));
    }
  }
  put(static_cast<int32_t>(m.chunk_count));
  const std::string dataset = m.datasets.empty() ? "" : m.datasets.back();
  put(static_cast<int32_t>(dataset.size()));
  out += dataset;
  io::AtomicFile f(path);
  f.append(std::string_view(out));
  f.commit();
}

}  // namespace anvil::quant
