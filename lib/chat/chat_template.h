#pragma once
// Hugging Face chat templates: the Jinja2 template a model ships (chat_template.jinja or
// tokenizer_config.json's "chat_template") rendered over a conversation exactly as transformers'
// apply_chat_template renders it: jinja2's ImmutableSandboxedEnvironment with trim_blocks,
// lstrip_blocks and loop controls, plus raise_exception, strftime_now and a json.dumps tojson.
// The interpreter (chat/jinja_*) is anvil's own and supports the subset of Jinja2 that chat
// templates use; what it does not support is an error, never a different rendering.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "util/error.h"

namespace anvil::chat {

namespace jinja {
struct Template;
}

// Thrown when the template itself calls raise_exception(msg): problem() is exactly msg.
class TemplateRaised : public anvil::Error {
 public:
  using Error::Error;
};

// Bounds that make a hostile template fail with an error instead of hanging or exhausting memory.
struct RenderLimits {
  int64_t max_steps = 10'000'000;     // loop iterations, plus list items built, compared or searched
  size_t max_output = 64u << 20;      // bytes of output, and of any one string
  int max_macro_depth = 100;          // nested (recursive) macro calls
  uint64_t max_bytes = 512ull << 20;  // bytes of strings built, compared or scanned, all told
};

struct RenderOptions {
  bool add_generation_prompt = false;
  std::string bos_token, eos_token;
  // More top-level variables (tools, documents, enable_thinking, date_string, ...); they override
  // the ones above. Ordered, so that `tools | tojson` lists keys in the order they were given,
  // as Python's json.dumps does; a plain nlohmann::json converts implicitly (keys then sorted).
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  RenderLimits limits;
};

class ChatTemplate {
 public:
  // Parses once; a syntax error is an anvil::Error whose where() is `where` and whose problem()
  // starts "line L, column C: ...".
  static ChatTemplate parse(const std::string& source, const std::string& where);

  // messages: a JSON array of objects (role, content, and whatever else). The variables are
  // messages, add_generation_prompt, bos_token, eos_token, tools and documents (None unless given,
  // as transformers passes them) and options.extra. Runtime errors (undefined method, type error,
  // runaway recursion or loops) are anvil::Error naming `where` with "line L, column C: ...";
  // raise_exception is TemplateRaised. Objects keep their key order for tojson with ordered_json;
  // nlohmann::json has sorted them already.
  std::string render(const nlohmann::json& messages, const RenderOptions& options) const;
  std::string render(const nlohmann::ordered_json& messages, const RenderOptions& options) const;

  const std::string& where() const { return where_; }

 private:
  ChatTemplate(std::shared_ptr<const jinja::Template> tmpl, std::string where);
  template <typename Json>
  std::string render_json(const Json& messages, const RenderOptions& options) const;

  std::shared_ptr<const jinja::Template> tmpl_;
  std::string where_;
};

// A model's template: `chat_template.jinja` in the directory, else tokenizer_config.json's
// "chat_template" (a string, or a list of {"name", "template"} from which "default" is taken).
// bos_token / eos_token come from tokenizer_config.json (strings or {"content": ...} objects; ""
// when absent). nullopt when neither file has a template; a malformed tokenizer_config.json is an
// anvil::Error naming the file and the key.
struct ModelChatTemplate {
  std::string source, where, bos_token, eos_token;
};
std::optional<ModelChatTemplate> find_chat_template(const std::filesystem::path& model_dir);

}  // namespace anvil::chat
