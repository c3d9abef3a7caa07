#pragma once
// What a chat template writes around the turns of a conversation, found by rendering it: the
// end-of-turn text that follows an assistant message (where generation should stop), and the
// stretch of the rendered text each assistant message occupies (what training learns).
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace anvil::chat {

// The text the template puts after an assistant message's content (e.g. "<|im_end|>\n",
// "<|eot_id|>", "<end_of_turn>\n", "</s>"); "" when the template writes nothing after it or
// rejects the probe conversation.
std::string end_of_turn_text(const ChatTemplate& tmpl, const RenderOptions& options);

// Byte offsets into render(messages) of each assistant message's turn: `begin` is right after
// what add_generation_prompt writes before it, `content_end` right after its content (found as
// the content less surrounding whitespace, which templates often trim). What follows the content
// (the end-of-turn token) is the caller's to find, in tokens: templates such as Llama-3's always
// end with a generation prompt, so the text of the next turn's start cannot be rendered apart.
struct TurnSpan {
  size_t begin, content_end;
};
struct RenderedConversation {
  std::string text;
  std::vector<TurnSpan> assistant_turns;
};
// A template whose rendering of a conversation's first messages (with the generation prompt) is
// not the start of the whole conversation's, or that does not write an assistant message's
// content as given, is an anvil::Error naming the template: the turns could not be told apart.
RenderedConversation render_with_turns(const ChatTemplate& tmpl, const nlohmann::json& messages,
                                       const RenderOptions& options);

}  // namespace anvil::chat
