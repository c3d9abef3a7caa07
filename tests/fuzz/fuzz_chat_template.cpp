// Chat templates (chat_template.jinja, tokenizer_config.json's chat_template, GGUF
// tokenizer.chat_template come from strangers): ChatTemplate::parse, then a render of a short
// conversation with and without the generation prompt under small limits, which runs the lexer,
// the parser, expressions, filters, methods, loops and macros. The template's own
// raise_exception is an anvil::Error too (TemplateRaised).
#include <cstdint>

#include "chat/chat_template.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tmpl = anvil::chat::ChatTemplate::parse(std::string(anvil::fuzz::as_text(data, size)), "chat_template.jinja");
    static const nlohmann::json messages = nlohmann::json::parse(R"([
      {"role": "system", "content": "Be terse."},
      {"role": "user", "content": "Hi <b>there</b> 日本語"},
      {"role": "assistant", "content": "  Hello!  ", "reasoning_content": "think"},
      {"role": "user", "content": "and then?\n"}])");
    for (bool prompt : {false, true}) {
      anvil::chat::RenderOptions options;
      options.add_generation_prompt = prompt;
      options.bos_token = "<s>";
      options.eos_token = "</s>";
      // Small limits keep each input fast; the limits themselves are what is being tested.
      options.limits.max_steps = 20'000;
      options.limits.max_output = 1 << 20;
      options.limits.max_macro_depth = 20;
      try {
        (void)tmpl.render(messages, options);
      } catch (const anvil::Error&) {
      }
    }
  } catch (const anvil::Error&) {
  }
  return 0;
}
