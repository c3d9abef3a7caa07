#include "chat_session.h"

#include <algorithm>
#include <cstdio>

#include "chat/conversation.h"
#include "common.h"
#include "io/atomic_file.h"
#include "model/transformer.h"
#include "util/json_reader.h"

namespace anvil::cli {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(const std::string& s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    return back < need ? n - back : n;
  }
  return n;
}

// generation_config.json's eos_token_id: one id or a list (Llama-3's instruct models list
// <|eot_id|> there, not in config.json).
std::vector<int64_t> generation_config_eos(const std::filesystem::path& model_path) {
  const auto file = model_path / "generation_config.json";
  if (!std::filesystem::is_directory(model_path) || !io::exists_quietly(file)) return {};
  const nlohmann::json j = util::parse_json(io::read_text_file(file), file.string());
  const util::JsonFields f(j, file.string());
  const nlohmann::json* e = f.find("eos_token_id");
  if (!e) return {};
  std::vector<int64_t> out;
  for (const auto& v : e->is_array() ? *e : nlohmann::json::array({*e})) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) f.error("eos_token_id", "holds " + util::json_brief(v) + ", not a token id");
    out.push_back(v.get<int64_t>());
  }
  return out;
}

}  // namespace

void add_sampling_options(cxxopts::Options& options) {
  options.add_options()
      ("n,max-tokens", "maximum new tokens", cxxopts::value<int64_t>()->default_value("128"))
      ("temperature", "0 = greedy", cxxopts::value<double>()->default_value("0"))
      ("top-p", "nucleus sampling mass", cxxopts::value<double>()->default_value("1"))
      ("top-k", "sample among the k most likely tokens (0 = off)", cxxopts::value<int64_t>()->default_value("0"))
      ("seed", "random seed for sampling", cxxopts::value<uint64_t>()->default_value("0"))
      ("ignore-eos", "keep generating past end-of-sequence tokens");
}

eval::GenerateOptions generate_options(const cxxopts::ParseResult& args) {
  eval::GenerateOptions opts;
  opts.max_new_tokens = args["max-tokens"].as<int64_t>();
  if (opts.max_new_tokens < 1) throw UsageError("--max-tokens must be at least 1");
  opts.sampling.temperature = args["temperature"].as<double>();
  opts.sampling.top_p = args["top-p"].as<double>();
  opts.sampling.top_k = args["top-k"].as<int64_t>();
  opts.sampling.seed = args["seed"].as<uint64_t>();
  if (!(opts.sampling.temperature >= 0)) throw UsageError("--temperature must be at least 0");
  if (!(opts.sampling.top_p > 0 && opts.sampling.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
  if (opts.sampling.top_k < 0) throw UsageError("--top-k must be at least 0");
  return opts;
}

void TextStream::push(int32_t token) {
  tokens_.push_back(token);
  const std::string text = tok_.decode(tokens_);
  const size_t ready = complete_utf8_prefix(text);
  if (ready > printed_) {
    std::fwrite(text.data() + printed_, 1, ready - printed_, stdout);
    std::fflush(stdout);
    printed_ = ready;
  }
}

std::string TextStream::finish() {
  const std::string text = tok_.decode(tokens_);
  if (text.size() > printed_) std::fwrite(text.data() + printed_, 1, text.size() - printed_, stdout);
  std::fflush(stdout);
  printed_ = text.size();
  return text;
}

ChatSession::ChatSession(const std::filesystem::path& model_path, const tokenizer::Tokenizer& tok,
                         const model::Transformer& model, eval::GenerateOptions options, bool ignore_eos)
    : tok_(tok), model_(model), options_(std::move(options)) {
  const auto found = load_chat_template(model_path, tok);
  if (!found)
    fail(model_path.string(), "has no chat template (chat_template.jinja, tokenizer_config.json's chat_template or "
                              "GGUF tokenizer.chat_template); use anvil generate --prompt for plain text");
  template_.emplace(chat::ChatTemplate::parse(found->source, found->where));
  render_.bos_token = found->bos_token;
  render_.eos_token = found->eos_token;
  if (!ignore_eos) {
    std::vector<int64_t> stops = model.config().eos_token_ids;
    for (int64_t id : generation_config_eos(model_path)) stops.push_back(id);
    // The end-of-turn marker: the first special or added token of what follows a reply.
    for (int32_t id : tok.encode(chat::end_of_turn_text(*template_, render_), false))
      if (tok.is_special(id) || tok.is_added(id)) {
        stops.push_back(id);
        break;
      }
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
    options_.stop_tokens = std::move(stops);
  }
}

std::string ChatSession::reply(nlohmann::json& messages, bool stream, eval::GenerateResult* result) {
  chat::RenderOptions o = render_;
  o.add_generation_prompt = true;
  const std::string prompt = template_->render(messages, o);
  // The template writes BOS itself where the model wants it.
  const auto ids = tok_.encode(prompt, false);
  eval::GenerateOptions opts = options_;
  TextStream out(tok_);
  std::vector<int32_t> generated;
  opts.on_token = [&](int32_t token) {
    const bool stop = std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), token) != opts.stop_tokens.end();
    if (!stop) {
      generated.push_back(token);
      if (stream) out.push(token);
    }
    return true;
  };
  auto r = eval::generate(model_, ids, opts);
  std::string text = stream ? out.finish() : tok_.decode(generated);
  if (result) *result = std::move(r);
  messages.push_back({{"role", "assistant"}, {"content", text}});
  return text;
}

}  // namespace anvil::cli
