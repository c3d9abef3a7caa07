// The turns of a rendered conversation (chat/conversation.h) on the six real templates of
// refs/chat_template_cases.json: the end-of-turn text each writes after an assistant reply
// (where anvil chat stops), and where each assistant turn sits in the rendering (what training
// learns). Expected values are read off the templates by hand.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/conversation.h"
#include "test_support.h"

using namespace anvil;

namespace {

std::map<std::string, nlohmann::json> fixture_templates() {
  const auto cases = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "chat_template_cases.json"));
  std::map<std::string, nlohmann::json> out;
  for (const auto& t : cases["templates"]) out[t["name"].get<std::string>()] = t;
  return out;
}

chat::RenderOptions options_of(const nlohmann::json& t) {
  chat::RenderOptions o;
  o.bos_token = t["bos_token"];
  o.eos_token = t["eos_token"];
  return o;
}

}  // namespace

TEST(Conversation, EndOfTurnTextOfRealTemplates) {
  const std::map<std::string, std::string> expected{
      {"chatml", "<|im_end|>\n"},
      // Llama-3's original template always ends with an assistant header.
      {"llama-3", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
      {"qwen3", "<|im_end|>\n"},
      {"gemma-3", "<end_of_turn>\n"},
      {"mistral-instruct-v0.1", "</s>"},
      {"llama-2-chat", " </s>"},
  };
  const auto templates = fixture_templates();
  ASSERT_EQ(templates.size(), expected.size());
  for (const auto& [name, text] : expected) {
    const auto& t = templates.at(name);
    const auto tmpl = chat::ChatTemplate::parse(t["template"], name);
    EXPECT_EQ(chat::end_of_turn_text(tmpl, options_of(t)), text) << name;
  }
}

TEST(Conversation, AssistantTurnsAreFoundInTheRendering) {
  const auto templates = fixture_templates();
  const nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "hi"}},
                                                         {{"role", "assistant"}, {"content", " hello there "}},
                                                         {{"role", "user"}, {"content", "and you?"}},
                                                         {{"role", "assistant"}, {"content", "fine"}}});
  for (const char* name : {"chatml", "llama-3", "gemma-3", "mistral-instruct-v0.1", "llama-2-chat"}) {
    SCOPED_TRACE(name);
    const auto& t = templates.at(name);
    const auto tmpl = chat::ChatTemplate::parse(t["template"], name);
    const auto r = chat::render_with_turns(tmpl, messages, options_of(t));
    ASSERT_EQ(r.assistant_turns.size(), 2u);
    // Each turn starts right after the generation prompt and its content ends where the trimmed
    // content does; the text between them is the content as the template writes it.
    const auto& a = r.assistant_turns[0];
    const std::string first = r.text.substr(a.begin, a.content_end - a.begin);
    EXPECT_NE(first.find("hello there"), std::string::npos) << first;
    EXPECT_EQ(first.substr(first.size() - 11), "hello there");
    const auto& b = r.assistant_turns[1];
    EXPECT_EQ(r.text.substr(b.content_end - 4, 4), "fine");
    EXPECT_LT(a.content_end, b.begin);
  }
  // A template that rewrites earlier turns when more follow cannot be split into turns.
  const auto tmpl = chat::ChatTemplate::parse(
      "{% for m in messages %}{{ m.role }}{% if loop.last %}!{% endif %}:{{ m.content }};{% endfor %}", "rewriting");
  EXPECT_THROW(chat::render_with_turns(tmpl, messages, {}), Error);
}
