#include "chat/chat_template.h"

#include <algorithm>

#include "chat/jinja_eval.h"
#include "chat/jinja_json.h"
#include "chat/jinja_parser.h"
#include "io/atomic_file.h"
#include "util/json_reader.h"

namespace anvil::chat {

ChatTemplate::ChatTemplate(std::shared_ptr<const jinja::Template> tmpl, std::string where)
    : tmpl_(std::move(tmpl)), where_(std::move(where)) {}

ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& where) {
  return ChatTemplate(jinja::parse_template(source, where), where);
}

template <typename Json>
std::string ChatTemplate::render_json(const Json& messages, const RenderOptions& options) const {
  if (!messages.is_array()) fail(where_, "the messages must be a JSON array, not " + std::string(messages.type_name()));
  for (size_t i = 0; i < messages.size(); ++i)
    if (!messages[i].is_object())
      fail(where_, "messages[" + std::to_string(i) + "] must be a JSON object, not " + messages[i].type_name());
  if (!options.extra.is_object()) fail(where_, "the extra template variables must be a JSON object");

  std::vector<std::pair<std::string, jinja::Value>> vars;
  try {
    vars.emplace_back("messages", jinja::from_json(messages));
    // transformers passes these two even when there are none.
    vars.emplace_back("tools", jinja::Value::none());
    vars.emplace_back("documents", jinja::Value::none());
    vars.emplace_back("add_generation_prompt", jinja::Value::boolean(options.add_generation_prompt));
    vars.emplace_back("bos_token", jinja::Value::string(options.bos_token));
    vars.emplace_back("eos_token", jinja::Value::string(options.eos_token));
    for (auto it = options.extra.begin(); it != options.extra.end(); ++it) {
      jinja::Value v = jinja::from_json(it.value());
      auto same = std::find_if(vars.begin(), vars.end(), [&](const auto& kv) { return kv.first == it.key(); });
      if (same != vars.end()) same->second = std::move(v);
      else vars.emplace_back(it.key(), std::move(v));
    }
  } catch (const jinja::Failure& f) {
    fail(where_, std::string("the template variables: ") + f.what());
  }

  jinja::Limits limits;
  limits.max_steps = options.limits.max_steps;
  limits.max_output = options.limits.max_output;
  limits.max_macro_depth = options.limits.max_macro_depth;
  limits.max_bytes = options.limits.max_bytes;
  jinja::Interpreter in(*tmpl_, where_, limits);
  try {
    return in.render(std::move(vars));
  } catch (const jinja::Raised& r) {
    throw TemplateRaised(where_, r.message);
  } catch (const jinja::Failure& f) {  // every Failure should have been given a position
    fail(where_, f.what());
  }
}

std::string ChatTemplate::render(const nlohmann::json& messages, const RenderOptions& options) const {
  return render_json(messages, options);
}
std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const RenderOptions& options) const {
  return render_json(messages, options);
}

namespace {

// A special token as tokenizer_config.json writes it: "<s>", or an AddedToken {"content": "<s>", ...}.
std::string token_text(const util::JsonFields& f, const char* key) {
  const nlohmann::json* v = f.find(key);
  if (!v) return "";
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) {
    const util::JsonFields token(*v, f.where(), std::string(key) + ".");
    const nlohmann::json* content = token.find("content");
    if (content && content->is_string()) return content->get<std::string>();
    token.error("content", "must be a string");
  }
  f.error(key, "must be a string or an object with \"content\", not " + util::json_brief(*v));
}

}  // namespace

std::optional<ModelChatTemplate> find_chat_template(const std::filesystem::path& model_dir) {
  ModelChatTemplate out;
  const auto config_path = model_dir / "tokenizer_config.json";
  std::optional<nlohmann::json> config;
  if (io::exists_quietly(config_path)) {
    config = util::parse_json(io::read_text_file(config_path), config_path.string());
    const util::JsonFields f(*config, config_path.string());
    out.bos_token = token_text(f, "bos_token");
    out.eos_token = token_text(f, "eos_token");
  }

  // transformers prefers the standalone file to the copy in tokenizer_config.json.
  const auto jinja_path = model_dir / "chat_template.jinja";
  if (io::exists_quietly(jinja_path)) {
    out.source = io::read_text_file(jinja_path);
    out.where = jinja_path.string();
    return out;
  }
  if (!config) return std::nullopt;
  const util::JsonFields f(*config, config_path.string());
  const nlohmann::json* t = f.find("chat_template");
  if (!t) return std::nullopt;
  if (t->is_string()) {
    out.source = t->get<std::string>();
    out.where = config_path.string() + ": \"chat_template\"";
    return out;
  }
  if (!t->is_array())
    f.error("chat_template", "must be a string or a list of {\"name\", \"template\"}, not " + util::json_brief(*t));
  std::string names;
  for (size_t i = 0; i < t->size(); ++i) {
    const util::JsonFields entry((*t)[i], config_path.string(), "chat_template[" + std::to_string(i) + "].");
    const nlohmann::json* name = entry.find("name");
    const nlohmann::json* source = entry.find("template");
    if (!name || !name->is_string()) entry.error("name", "must be a string");
    if (!source || !source->is_string()) entry.error("template", "must be a string");
    if (name->get<std::string>() == "default") {
      out.source = source->get<std::string>();
      out.where = config_path.string() + ": \"chat_template\" (default)";
      return out;
    }
    names += (names.empty() ? "" : ", ") + name->get<std::string>();
  }
  f.error("chat_template", "has no template named \"default\" (it has: " + (names.empty() ? "none" : names) + ")");
}

}  // namespace anvil::chat
