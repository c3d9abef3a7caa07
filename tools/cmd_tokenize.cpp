// anvil tokenize: the token ids (and pieces) a model's tokenizer gives a text, as the Hugging
// Face tokenizers library would; also decoding, whole data sets one JSON line at a time (token
// counts, tokenizer mismatches), and conversations rendered with the model's chat template.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "io/atomic_file.h"
#include "util/json_reader.h"

namespace anvil::cli {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json ids_and_tokens(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids) {
  json out{{"ids", ids}, {"tokens", json::array()}};
  for (int32_t id : ids) out["tokens"].push_back(tok.id_to_token(id));
  return out;
}

// "1 2 3", "1,2,3" or "[1, 2, 3]" -> ids; anything else is a usage error.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& where) {
  std::vector<int32_t> ids;
  std::string number;
  auto flush = [&] {
    if (number.empty()) return;
    if (number.size() > 10 || std::stoll(number) > INT32_MAX) fail(where, "id " + number + " is out of range");
    ids.push_back(static_cast<int32_t>(std::stoll(number)));
    number.clear();
  };
  for (char c : text) {
    if (c >= '0' && c <= '9') number += c;
    else if (c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r' || c == '[' || c == ']') flush();
    else fail(where, std::string("not a list of token ids (found '") + c + "')");
  }
  flush();
  return ids;
}

}  // namespace

int run_tokenize(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Encode text with a model's tokenizer and print the ids (or decode ids, or render "
                                    "conversations with the model's chat template).");
  options.positional_help("PATH (--text TEXT | --file FILE | --jsonl FILE | --chat FILE)");
  options.add_options()
      ("path", "model directory, tokenizer.json, tokenizer.model or .gguf", cxxopts::value<std::string>())
      ("text", "the text to encode (with --decode: ids, e.g. \"1 2 3\")", cxxopts::value<std::string>())
      ("file", "a UTF-8 text file to encode (with --decode: a file of ids)", cxxopts::value<std::string>())
      ("jsonl", "one JSON object per line with a \"text\" field (with --decode: \"ids\"); prints "
                "{\"ids\": [...], \"tokens\": [...]} (or {\"text\": ...}) per line, in order",
       cxxopts::value<std::string>())
      ("chat", "one JSON object per line with \"messages\" (and optional \"add_generation_prompt\"): prints "
               "{\"text\": ..., \"ids\": [...]} rendered with the model's chat template, or {\"error\": ...} "
               "when the template rejects the conversation", cxxopts::value<std::string>())
      ("special", "add the special tokens the tokenizer's post-processor adds (e.g. BOS), as "
                  "add_special_tokens=True; with --decode, keep special tokens in the text")
      ("decode", "read token ids and print their text")
      ("count", "with --file or --jsonl: print only the number of tokens (and the encoding speed)")
      ("json", "print {\"ids\": [...], \"tokens\": [...], \"decoded\": \"...\"} instead of one id per line")
      ("h,help", "show this help");
  options.parse_positional({"path"});
  auto parsed = parse_command(options, argc, argv, {{"path", "PATH"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  if (args.count("text") + args.count("file") + args.count("jsonl") + args.count("chat") != 1)
    throw UsageError("give exactly one of --text, --file, --jsonl and --chat");
  if (args.count("chat") && args.count("decode")) throw UsageError("--chat renders and encodes; it does not decode");
  if (args.count("count") && (args.count("decode") || args.count("chat") || args.count("text")))
    throw UsageError("--count goes with --file or --jsonl");
  const auto path = existing_path(args["path"].as<std::string>(), "tokenizer");
  const auto tok = load_tokenizer(path);
  const bool special = args.count("special") > 0;
  const bool decode = args.count("decode") > 0;

  if (args.count("chat")) {
    const auto file = existing_path(args["chat"].as<std::string>(), "conversations file");
    const auto found = load_chat_template(path, tok);
    if (!found) fail(path.string(), "has no chat template (chat_template.jinja, tokenizer_config.json's chat_template or "
                                    "GGUF tokenizer.chat_template)");
    const auto tmpl = chat::ChatTemplate::parse(found->source, found->where);
    util::for_each_json_line(file, [&](const json& j, const std::string& where) {
      const util::JsonFields f(j, where);
      const json* messages = f.find("messages");
      if (!messages || !messages->is_array()) f.error("messages", "must be a list of {\"role\", \"content\"} objects");
      for (size_t i = 0; i < messages->size(); ++i) {
        const json& m = (*messages)[i];
        const std::string key = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) fail(where, key + " must be an object with \"role\" and \"content\", not " + util::json_brief(m));
        if (!m.contains("role") || !m["role"].is_string()) fail(where, key + ".role must be a string");
      }
      chat::RenderOptions ro;
      ro.add_generation_prompt = f.boolean_or("add_generation_prompt", false);
      ro.bos_token = found->bos_token;
      ro.eos_token = found->eos_token;
      json out;
      try {
        const std::string text = tmpl.render(*messages, ro);
        // apply_chat_template(tokenize=True) encodes without adding special tokens: the
        // template writes them.
        out = {{"text", text}, {"ids", tok.encode(text, false)}};
      } catch (const chat::TemplateRaised& e) {
        out = {{"error", e.problem()}};
      } catch (const Error& e) {
        // The template failed on this conversation (not by its own raise_exception): name both.
        fail(where, "the chat template failed on this conversation: " + e.where() + ": " + e.problem());
      }
      std::printf("%s\n", dump(out).c_str());
    });
    return 0;
  }

  if (args.count("count")) {
    // Texts are read first, so that the time is the tokenizer's alone.
    std::vector<std::string> texts;
    if (args.count("file")) {
      const auto file = existing_path(args["file"].as<std::string>(), "text file");
      if (std::filesystem::is_directory(file)) fail(file.string(), "is a directory, not a text file");
      texts.push_back(io::read_text_file(file));
    } else {
      util::for_each_json_line(existing_path(args["jsonl"].as<std::string>(), "JSON-lines file"),
                         [&](const json& j, const std::string& where) {
                           const util::JsonFields f(j, where);
                           const json* text = f.find("text");
                           if (!text || !text->is_string()) f.error("text", "must be a string");
                           texts.push_back(text->get<std::string>());
                         });
    }
    const auto start = std::chrono::steady_clock::now();
    int64_t tokens = 0, bytes = 0;
    for (const auto& t : texts) {
      tokens += static_cast<int64_t>(tok.encode(t, special).size());
      bytes += static_cast<int64_t>(t.size());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double mb_per_s = seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0;
    if (args.count("json"))
      std::printf("%s\n", dump(json{{"texts", texts.size()}, {"bytes", bytes}, {"tokens", tokens}, {"seconds", seconds},
                                    {"mb_per_s", mb_per_s}}).c_str());
    else
      std::printf("%lld tokens in %zu texts (%s) in %.3f s: %.1f MB/s\n", static_cast<long long>(tokens), texts.size(),
                  human_bytes(static_cast<double>(bytes)).c_str(), seconds, mb_per_s);
    return 0;
  }

  if (args.count("jsonl")) {
    const auto file = existing_path(args["jsonl"].as<std::string>(), "JSON-lines file");
    std::string buffer;
    util::for_each_json_line(file, [&](const json& j, const std::string& where) {
      const util::JsonFields f(j, where);
      if (decode) {
        const json* ids = f.find("ids");
        if (!ids || !ids->is_array()) f.error("ids", "must be a list of token ids");
        std::vector<int32_t> v;
        for (const auto& id : *ids) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
            f.error("ids", "holds " + util::json_brief(id) + ", not a token id");
          v.push_back(id.get<int32_t>());
        }
        buffer += dump(json{{"text", tok.decode(v, !special)}});
      } else {
        const json* text = f.find("text");
        if (!text || !text->is_string()) f.error("text", "must be a string");
        buffer += dump(ids_and_tokens(tok, tok.encode(text->get<std::string>(), special)));
      }
      buffer += '\n';
      if (buffer.size() > (1 << 20)) std::fwrite(buffer.data(), 1, std::exchange(buffer, {}).size(), stdout);
    });
    std::fwrite(buffer.data(), 1, buffer.size(), stdout);
    return 0;
  }

  if (decode) {
    const std::string source = args.count("text") ? args["text"].as<std::string>()
                                                  : io::read_text_file(existing_path(args["file"].as<std::string>(), "ids file"));
    const auto ids = parse_ids(source, args.count("text") ? "--text" : args["file"].as<std::string>());
    const std::string text = tok.decode(ids, !special);
    if (args.count("json")) std::printf("%s\n", dump(json{{"ids", ids}, {"text", text}}).c_str());
    else std::fwrite(text.data(), 1, text.size(), stdout), std::printf("\n");
    return 0;
  }

  const std::vector<int32_t> ids =
      args.count("text") ? tok.encode(args["text"].as<std::string>(), special)
                         : tok.encode_file(existing_path(args["file"].as<std::string>(), "text file"), special);
  if (args.count("json")) {
    json out = ids_and_tokens(tok, ids);
    out["decoded"] = tok.decode(ids, false);
    std::printf("%s\n", dump(out).c_str());
    return 0;
  }
  std::string lines;
  for (int32_t id : ids) lines += std::to_string(id) + '\n';
  std::fwrite(lines.data(), 1, lines.size(), stdout);
  return 0;
}

}  // namespace anvil::cli
