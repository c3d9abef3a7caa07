#include "tokenizer/sentencepiece_model.h"

#include <dlfcn.h>
#include <unistd.h>

#include <mutex>

#include "io/atomic_file.h"
#include "tokenizer/sentencepiece_shim.h"
#include "util/error.h"

namespace anvil::tokenizer {
namespace {

// The module's functions, resolved once (see sentencepiece_shim.h for why it is dlopen'ed).
struct Shim {
  decltype(&anvil_spm_load) load;
  decltype(&anvil_spm_free) free;
  decltype(&anvil_spm_encode) encode;
  decltype(&anvil_spm_decode) decode;
  decltype(&anvil_spm_release) release;
  decltype(&anvil_spm_size) size;
  decltype(&anvil_spm_piece) piece;
  decltype(&anvil_spm_score) score;
  decltype(&anvil_spm_piece_to_id) piece_to_id;
  decltype(&anvil_spm_flags) flags;
  decltype(&anvil_spm_special_id) special_id;
  decltype(&anvil_spm_adds_dummy_prefix) adds_dummy_prefix;
  std::string error;  // why it could not be loaded
};

std::string executable_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  return std::filesystem::path(std::string(buf, static_cast<size_t>(n))).parent_path().string();
}

const Shim& shim() {
  static Shim s{};
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("ANVIL_SENTENCEPIECE_MODULE")) candidates.emplace_back(env);
#ifdef ANVIL_SENTENCEPIECE_MODULE
    candidates.emplace_back(ANVIL_SENTENCEPIECE_MODULE);
#endif
    candidates.push_back(executable_dir() + "/libanvil_sentencepiece.so");
    candidates.push_back(executable_dir() + "/../lib/libanvil_sentencepiece.so");
    void* handle = nullptr;
    for (const auto& c : candidates) {
#if defined(__SANITIZE_ADDRESS__)
      handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
#else
      handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
      if (handle) break;
    }
    if (!handle) {
      s.error = "anvil's SentencePiece module (libanvil_sentencepiece.so) was not found beside the executable";
      return;
    }
    auto get = [&](auto& fn, const char* name) { fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name)); };
    get(s.load, "anvil_spm_load");
    get(s.free, "anvil_spm_free");
    get(s.encode, "anvil_spm_encode");
    get(s.decode, "anvil_spm_decode");
    get(s.release, "anvil_spm_release");
    get(s.size, "anvil_spm_size");
    get(s.piece, "anvil_spm_piece");
    get(s.score, "anvil_spm_score");
    get(s.piece_to_id, "anvil_spm_piece_to_id");
    get(s.flags, "anvil_spm_flags");
    get(s.special_id, "anvil_spm_special_id");
    get(s.adds_dummy_prefix, "anvil_spm_adds_dummy_prefix");
    if (!s.load || !s.free || !s.encode || !s.decode || !s.release || !s.size || !s.piece || !s.score ||
        !s.piece_to_id || !s.flags || !s.special_id || !s.adds_dummy_prefix)
      s.error = "anvil's SentencePiece module lacks a function (a stale build?)";
  });
  return s;
}

}  // namespace

struct SentencePieceModel::Impl {
  void* model = nullptr;
  ~Impl() {
    if (model) shim().free(model);
  }
};

SentencePieceModel::SentencePieceModel() : impl_(std::make_unique<Impl>()) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::load(const std::filesystem::path& file) {
  std::unique_ptr<SentencePieceModel> m(new SentencePieceModel());
  m->where_ = file.string();
  const Shim& s = shim();
  if (!s.error.empty()) fail(m->where_, s.error);
  // Read through anvil's checked reader (regular file, size) and hand libsentencepiece the bytes.
  const std::string bytes = io::read_text_file(file);
  char error[512];
  if (s.load(bytes.data(), bytes.size(), &m->impl_->model, error, sizeof error) != 0) {
    // libsentencepiece's messages name its own source lines; the user needs what is wrong.
    const std::string why = std::string(error).find("ParseFromArray") != std::string::npos ? "its protobuf does not parse"
                                                                                             : std::string(error);
    fail(m->where_, "not a SentencePiece model (" + why + ")");
  }
  if (m->size() <= 0) fail(m->where_, "SentencePiece model has no pieces");
  return m;
}

std::vector<int32_t> SentencePieceModel::encode(std::string_view text) const {
  int* ids = nullptr;
  size_t count = 0;
  char error[512];
  if (shim().encode(impl_->model, text.data(), text.size(), &ids, &count, error, sizeof error) != 0)
    fail(where_, std::string("SentencePiece could not encode the text (") + error + ")");
  std::vector<int32_t> out(ids, ids + count);
  shim().release(ids);
  return out;
}

std::string SentencePieceModel::decode(std::span<const int32_t> ids, bool skip_control) const {
  // Control pieces decode to nothing in SentencePiece; shown, they stand as their own text.
  std::string out;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    char* text = nullptr;
    size_t size = 0;
    char error[512];
    if (shim().decode(impl_->model, run.data(), run.size(), &text, &size, error, sizeof error) != 0)
      fail(where_, std::string("SentencePiece could not decode (") + error + ")");
    out.append(text, size);
    shim().release(text);
    run.clear();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= size()) continue;
    if (is_control(id)) {
      if (skip_control) continue;
      flush();
      out += piece(id);
      continue;
    }
    run.push_back(id);
  }
  flush();
  return out;
}

int32_t SentencePieceModel::size() const { return shim().size(impl_->model); }
std::string SentencePieceModel::piece(int32_t id) const {
  size_t n = 0;
  const char* p = shim().piece(impl_->model, id, &n);
  return std::string(p, n);
}
float SentencePieceModel::score(int32_t id) const { return shim().score(impl_->model, id); }
int32_t SentencePieceModel::piece_to_id(std::string_view p) const {
  const int id = shim().piece_to_id(impl_->model, p.data(), p.size());
  // Unknown pieces map to the unknown id; only the unknown piece itself names it.
  return id == unk_id() && piece(id) != p ? -1 : id;
}
bool SentencePieceModel::is_control(int32_t id) const { return shim().flags(impl_->model, id) & 1; }
bool SentencePieceModel::is_unknown(int32_t id) const { return shim().flags(impl_->model, id) & 2; }
bool SentencePieceModel::is_byte(int32_t id) const { return shim().flags(impl_->model, id) & 4; }
bool SentencePieceModel::is_unused(int32_t id) const { return shim().flags(impl_->model, id) & 8; }
int32_t SentencePieceModel::bos_id() const { return shim().special_id(impl_->model, 0); }
int32_t SentencePieceModel::eos_id() const { return shim().special_id(impl_->model, 1); }
int32_t SentencePieceModel::unk_id() const { return shim().special_id(impl_->model, 2); }
bool SentencePieceModel::adds_dummy_prefix() const { return shim().adds_dummy_prefix(impl_->model) != 0; }

}  // namespace anvil::tokenizer
