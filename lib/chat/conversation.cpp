#include "chat/conversation.h"

#include "util/error.h"

namespace anvil::chat {
namespace {

constexpr const char* kProbe = "ANVIL-PROBE-REPLY-7f3a9c";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

}  // namespace

std::string end_of_turn_text(const ChatTemplate& tmpl, const RenderOptions& options) {
  const nlohmann::json messages = nlohmann::json::array(
      {{{"role", "user"}, {"content", "Hello"}}, {{"role", "assistant"}, {"content", kProbe}}});
  RenderOptions o = options;
  o.add_generation_prompt = false;
  std::string text;
  try {
    text = tmpl.render(messages, o);
  } catch (const TemplateRaised&) {
    return "";
  }
  const size_t at = text.rfind(kProbe);
  return at == std::string::npos ? "" : text.substr(at + std::string(kProbe).size());
}

RenderedConversation render_with_turns(const ChatTemplate& tmpl, const nlohmann::json& messages,
                                       const RenderOptions& options) {
  RenderOptions whole = options;
  whole.add_generation_prompt = false;
  RenderedConversation out{tmpl.render(messages, whole), {}};
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || m.value("role", "") != "assistant") continue;
    RenderOptions o = options;
    o.add_generation_prompt = true;
    const std::string prefix =
        tmpl.render(nlohmann::json(std::vector<nlohmann::json>(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i))), o);
    if (out.text.compare(0, prefix.size(), prefix) != 0)
      fail(tmpl.where(), "renders the first " + std::to_string(i) +
                             " messages with the generation prompt as something other than the start of the whole "
                             "conversation, so assistant turn " + std::to_string(i) + " cannot be found");
    const std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
    size_t b = 0, e = content.size();
    while (b < e && is_space(content[b])) ++b;
    while (e > b && is_space(content[e - 1])) --e;
    const std::string core = content.substr(b, e - b);
    size_t content_end = prefix.size();
    if (!core.empty()) {
      const size_t at = out.text.find(core, prefix.size());
      if (at == std::string::npos)
        fail(tmpl.where(), "does not write assistant message " + std::to_string(i) +
                               "'s content as given, so its turn cannot be found");
      content_end = at + core.size();
    }
    out.assistant_turns.push_back({prefix.size(), content_end});
  }
  return out;
}

}  // namespace anvil::chat
