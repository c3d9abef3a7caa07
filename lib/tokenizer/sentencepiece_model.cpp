#include "tokenizer/sentencepiece_model.h"

#include <sentencepiece_processor.h>

#include "io/atomic_file.h"
#include "util/error.h"

namespace anvil::tokenizer {

struct SentencePieceModel::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SentencePieceModel::SentencePieceModel() : impl_(std::make_unique<Impl>()) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::load(const std::filesystem::path& file) {
  std::unique_ptr<SentencePieceModel> m(new SentencePieceModel());
  m->where_ = file.string();
  // Read through anvil's checked reader (regular file, size) and hand libsentencepiece the bytes.
  const std::string bytes = io::read_text_file(file);
  const auto status = m->impl_->sp.LoadFromSerializedProto(bytes);
  if (!status.ok()) fail(m->where_, std::string("not a SentencePiece model (") + status.message() + ")");
  if (m->impl_->sp.GetPieceSize() <= 0) fail(m->where_, "SentencePiece model has no pieces");
  return m;
}

std::vector<int32_t> SentencePieceModel::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = impl_->sp.Encode(absl::string_view(text.data(), text.size()), &ids);
  if (!status.ok()) fail(where_, std::string("SentencePiece could not encode the text (") + status.message() + ")");
  return {ids.begin(), ids.end()};
}

std::string SentencePieceModel::decode(std::span<const int32_t> ids, bool skip_control) const {
  // Control pieces decode to nothing in SentencePiece; shown, they stand as their own text.
  std::string out;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    std::string text;
    const auto status = impl_->sp.Decode(run, &text);
    if (!status.ok()) fail(where_, std::string("SentencePiece could not decode (") + status.message() + ")");
    out += text;
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

int32_t SentencePieceModel::size() const { return impl_->sp.GetPieceSize(); }
std::string SentencePieceModel::piece(int32_t id) const { return impl_->sp.IdToPiece(id); }
float SentencePieceModel::score(int32_t id) const { return impl_->sp.GetScore(id); }
int32_t SentencePieceModel::piece_to_id(std::string_view p) const {
  const int id = impl_->sp.PieceToId(absl::string_view(p.data(), p.size()));
  // Unknown pieces map to the unknown id; only the unknown piece itself names it.
  return id == impl_->sp.unk_id() && impl_->sp.IdToPiece(id) != p ? -1 : id;
}
bool SentencePieceModel::is_control(int32_t id) const { return impl_->sp.IsControl(id); }
bool SentencePieceModel::is_unknown(int32_t id) const { return impl_->sp.IsUnknown(id); }
bool SentencePieceModel::is_byte(int32_t id) const { return impl_->sp.IsByte(id); }
bool SentencePieceModel::is_unused(int32_t id) const { return impl_->sp.IsUnused(id); }
int32_t SentencePieceModel::bos_id() const { return impl_->sp.bos_id(); }
int32_t SentencePieceModel::eos_id() const { return impl_->sp.eos_id(); }
int32_t SentencePieceModel::unk_id() const { return impl_->sp.unk_id(); }
int32_t SentencePieceModel::pad_id() const { return impl_->sp.pad_id(); }

bool SentencePieceModel::adds_dummy_prefix() const {
  std::vector<std::string> pieces;
  if (!impl_->sp.Encode("a", &pieces).ok() || pieces.empty()) return false;
  return pieces[0].rfind("\xE2\x96\x81", 0) == 0;
}

}  // namespace anvil::tokenizer
