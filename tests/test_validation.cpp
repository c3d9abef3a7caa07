// Validation before use (issue #11), at the library boundary: every value read from a stranger's
// file is checked for type, range and consistency before arithmetic uses it, and the failure is
// an anvil::Error that carries the file, the key or tensor, and the problem. The command-line
// side (one line, exit 2, nothing written) is tests/hostile/hostile_inputs.py.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "model/adapter_config.h"
#include "model/config.h"
#include "model/tensor_shapes.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json_reader.h"
#include "util/yaml_reader.h"

namespace anvil {
namespace {

// The message of the Error `f` throws ("" and a test failure when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no anvil::Error thrown";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

std::string base_config_text() { return test::read_bytes(test::model_dir("base") / "config.json"); }

// base's config.json with `key` set to the JSON `value` (or removed when value is "null").
std::string config_with(const std::string& key, const std::string& value) {
  auto j = nlohmann::json::parse(base_config_text());
  j[key] = nlohmann::json::parse(value);
  return j.dump();
}

TEST(Validation, ErrorsCarryWhereAndProblem) {
  try {
    fail("x/config.json", "\"hidden_size\" must be an integer");
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "x/config.json");
    EXPECT_EQ(e.problem(), "\"hidden_size\" must be an integer");
    EXPECT_STREQ(e.what(), "x/config.json: \"hidden_size\" must be an integer");
  }
}

// A value of the wrong type, out of range or not finite names its key; nothing falls back to a
// default silently.
TEST(Validation, ConfigValuesAreCheckedForTypeRangeAndFiniteness) {
  const std::string where = "m/config.json";
  auto parse = [&](const std::string& text) { return model::ModelConfig::parse(text, where); };
  EXPECT_NO_THROW(parse(base_config_text()));
  struct Case {
    const char* key;
    const char* value;
    const char* needle;
  };
  const Case cases[] = {
      {"hidden_size", "\"64\"", "\"hidden_size\" must be an integer"},
      {"hidden_size", "-64", "\"hidden_size\""},
      {"hidden_size", "1000000000000", "\"hidden_size\""},
      {"hidden_size", "64.5", "\"hidden_size\""},
      {"num_hidden_layers", "0", "\"num_hidden_layers\""},
      {"tie_word_embeddings", "\"yes\"", "\"tie_word_embeddings\" must be true or false"},
      {"rope_theta", "\"10000\"", "\"rope_theta\" must be a finite number"},
      {"rope_theta", "0", "\"rope_theta\""},
      {"rms_norm_eps", "-1e-5", "\"rms_norm_eps\""},
      {"sliding_window", "0", "\"sliding_window\""},
      {"use_sliding_window", "true", ""},  // valid: the next line sets the window
      {"num_key_value_heads", "3", "multiple of the key/value head count"},
      {"bos_token_id", "999999", "bos_token_id 999999 is outside the vocabulary"},
      {"eos_token_id", "[1, \"x\"]", "\"eos_token_id\""},
      {"rope_parameters", "{\"rope_type\": \"llama3\", \"factor\": \"8\"}", "\"rope_parameters.factor\""},
      {"rope_parameters", "{\"rope_theta\": -1}", "\"rope_parameters.rope_theta\""},
      {"head_dim", "7", "head_dim must be a positive even number"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.key) + " = " + c.value);
    if (!*c.needle) {
      EXPECT_NO_THROW(parse(config_with(c.key, c.value)));
      continue;
    }
    const std::string message = error_of([&] { parse(config_with(c.key, c.value)); });
    EXPECT_CONTAINS(message, where);
    EXPECT_CONTAINS(message, c.needle);
  }
  // A hidden size the head count does not divide, with no head_dim to say otherwise.
  auto j = nlohmann::json::parse(base_config_text());
  j.erase("head_dim");
  j["num_attention_heads"] = 7;
  j["num_key_value_heads"] = 7;
  EXPECT_CONTAINS(error_of([&] { parse(j.dump()); }), "not a multiple of num_attention_heads");
}

TEST(Validation, JsonNestingIsBoundedBeforeParsing) {
  std::string deep(50'000, '[');
  deep += std::string(50'000, ']');
  EXPECT_CONTAINS(error_of([&] { util::parse_json(deep, "t.json"); }), "t.json: JSON nests deeper than 128 levels");
  // Brackets inside strings are text, not nesting.
  EXPECT_NO_THROW(util::parse_json("{\"a\": \"" + std::string(1000, '[') + "\"}", "t.json"));
  EXPECT_NO_THROW(util::parse_json(std::string(128, '[') + std::string(128, ']'), "t.json"));
}

TEST(Validation, YamlAliasExpansionAndDepthAreBounded) {
  // A "billion laughs": each level is nine aliases of the one before, 9^9 nodes in all.
  std::string laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    laughs += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
    for (int k = 0; k < 8; ++k) laughs += ", " + prev;
    laughs += "]\n";
  }
  EXPECT_CONTAINS(error_of([&] { util::load_yaml(laughs, "m.yaml"); }), "m.yaml: expands (through anchors and aliases)");
  EXPECT_CONTAINS(error_of([&] { util::load_yaml(std::string(5000, '[') + std::string(5000, ']'), "m.yaml"); }),
                  "m.yaml");
  EXPECT_CONTAINS(error_of([&] { util::load_yaml("a: 1\nb: 2\na: 3\n", "m.yaml"); }),
                  "m.yaml:3: key 'a' is given twice in one mapping");
  // Modest anchors, as people write them, still load.
  const YAML::Node ok = util::load_yaml("p: &p {weight: 0.5}\nmodels: [{params: *p}, {params: *p}]\n", "m.yaml");
  EXPECT_EQ(ok["models"][1]["params"]["weight"].as<double>(), 0.5);
}

TEST(Validation, YamlNumbersMustBeFinite) {
  const util::YamlReader r("r.yaml");
  const YAML::Node n = util::load_yaml("a: .nan\nb: .inf\nc: 1e999\nd: 0.25\ne: lots\nf: 12\n", "r.yaml");
  EXPECT_CONTAINS(error_of([&] { r.number(n["a"], "a"); }), "r.yaml:1: 'a' must be a");
  EXPECT_CONTAINS(error_of([&] { r.number(n["b"], "b"); }), "r.yaml:2:");
  EXPECT_CONTAINS(error_of([&] { r.number(n["c"], "c"); }), "r.yaml:3:");
  EXPECT_EQ(r.number(n["d"], "d"), 0.25);
  EXPECT_CONTAINS(error_of([&] { r.integer(n["e"], "e"); }), "'e' must be an integer, not 'lots'");
  EXPECT_EQ(r.integer(n["f"], "f"), 12);
}

// Findings of the fuzz targets (tests/fuzz), kept as regression tests.
TEST(Validation, FuzzFindingsStayFixed) {
  // A Split pre-tokenizer without "pattern" was read through const operator[] past the end.
  auto tok = nlohmann::json::parse(test::read_bytes(test::model_dir("base") / "tokenizer.json"));
  tok["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Split"}, {"paptern", {{"Regex", "a"}}}}}}};
  EXPECT_CONTAINS(error_of([&] { tokenizer::Tokenizer::from_json(tok.dump(), "t.json"); }),
                  "t.json: \"pre_tokenizer.pretokenizers[0].pattern\" must be");
  // An index naming a shard whose name is too long for the file system (fs::exists threw).
  {
    test::TempDir dir;
    test::write_bytes(dir / "model.safetensors.index.json",
                      "{\"weight_map\": {\"a\": \"" + std::string(300, 'm') + ".safetensors\"}}");
    EXPECT_CONTAINS(error_of([&] { io::Checkpoint c(dir.path()); }), "model.safetensors.index.json");
  }
  // A pre-tokenizer whose type is a number, not a string.
  tok["pre_tokenizer"] = {{"type", 7}};
  EXPECT_CONTAINS(error_of([&] { tokenizer::Tokenizer::from_json(tok.dump(), "t.json"); }),
                  "t.json: \"pre_tokenizer.type\" must be a string");
}

// Shapes the config implies, against the checkpoint, before anything reads a tensor.
TEST(Validation, TensorShapesAreCheckedAgainstTheConfig) {
  const auto dir = test::model_dir("base");
  io::Checkpoint ckpt(dir);
  const std::string where = (dir / "config.json").string();
  EXPECT_NO_THROW(model::check_checkpoint_shapes(model::ModelConfig::load(dir), ckpt, where));
  auto with = [&](const std::string& key, int64_t value) {
    auto j = nlohmann::json::parse(base_config_text());
    j[key] = value;
    return model::ModelConfig::parse(j.dump(), where);
  };
  EXPECT_CONTAINS(error_of([&] { model::check_checkpoint_shapes(with("hidden_size", 512), ckpt, where); }),
                  "tensor 'model.embed_tokens.weight' has shape");
  EXPECT_CONTAINS(error_of([&] { model::check_checkpoint_shapes(with("vocab_size", 4000), ckpt, where); }),
                  "but config.json implies [4000,");
  EXPECT_CONTAINS(error_of([&] { model::check_checkpoint_shapes(with("num_hidden_layers", 40), ckpt, where); }),
                  "is missing");
  EXPECT_CONTAINS(error_of([&] { model::check_checkpoint_shapes(with("intermediate_size", 7), ckpt, where); }),
                  "mlp.gate_proj.weight' has shape");
}

TEST(Validation, AdapterConfigIsCheckedAndTargetsMustExist) {
  const auto peft = test::read_bytes(test::model_dir("lora-random") / "adapter_config.json");
  const auto cfg = model::parse_adapter_config(peft, "a/adapter_config.json");
  const auto base = model::ModelConfig::load(test::model_dir("base"));
  EXPECT_NO_THROW(model::check_adapter_targets(cfg, base, "a/adapter_config.json"));
  auto with = [&](const std::string& key, const std::string& value) {
    auto j = nlohmann::json::parse(peft);
    j[key] = nlohmann::json::parse(value);
    return j.dump();
  };
  EXPECT_CONTAINS(error_of([&] { model::parse_adapter_config(with("r", "\"8\""), "a/adapter_config.json"); }),
                  "a/adapter_config.json: \"r\" must be an integer");
  EXPECT_CONTAINS(error_of([&] { model::parse_adapter_config(with("lora_alpha", "\"16\""), "a/adapter_config.json"); }),
                  "\"lora_alpha\"");
  EXPECT_CONTAINS(error_of([&] { model::parse_adapter_config(with("target_modules", "7"), "a/adapter_config.json"); }),
                  "\"target_modules\"");
  EXPECT_CONTAINS(error_of([&] { model::parse_adapter_config("[1]", "a/adapter_config.json"); }), "a/adapter_config.json");
  const auto missing = model::parse_adapter_config(with("target_modules", "[\"q_proj\", \"nonexistent_proj\"]"), "a/c.json");
  EXPECT_CONTAINS(error_of([&] { model::check_adapter_targets(missing, base, "a/c.json"); }),
                  "a/c.json: target module 'nonexistent_proj' is not in the llama base model");
  const auto regex = model::parse_adapter_config(with("target_modules", "\".*\\\\.(q|v)_proj\""), "a/c.json");
  EXPECT_NO_THROW(model::check_adapter_targets(regex, base, "a/c.json"));
  const auto no_match = model::parse_adapter_config(with("target_modules", "\".*\\\\.w9\""), "a/c.json");
  EXPECT_CONTAINS(error_of([&] { model::check_adapter_targets(no_match, base, "a/c.json"); }), "matches no module");
}

// A killed writer's temporary (its PID gone) is removed by the next writer to the same place; a
// live writer's is left alone.
TEST(Validation, StaleTemporariesOfKilledRunsAreRemoved) {
  test::TempDir dir;
  const auto final_path = dir / "out.gguf";
  pid_t child = fork();
  if (child == 0) {
    io::AtomicFile f(final_path);
    f.append(std::string_view("partial"));
    ::kill(::getpid(), SIGKILL);  // no destructor, no handler: the temporary stays
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::string stale = ".out.gguf.tmp-" + std::to_string(child) + ".";
  int left = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) left += e.path().filename().string().starts_with(stale);
  ASSERT_EQ(left, 1);
  // A live writer's temporary (our own parent's PID stands in for one).
  const auto live = dir / (".out.gguf.tmp-" + std::to_string(getppid()) + ".1");
  test::write_bytes(live, "in progress");
  io::write_text_file(final_path, "complete");
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_FALSE(e.path().filename().string().starts_with(stale)) << e.path();
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_EQ(test::read_bytes(final_path), "complete");
}

// Replacing an existing output directory is one exchange: the final name always holds a
// complete directory.
TEST(Validation, AtomicDirReplacesAnExistingOutputWhole) {
  test::TempDir dir;
  const auto out = dir / "model";
  {
    io::AtomicDir d(out);
    test::write_bytes(d.temp_path() / "a", "old");
    d.commit();
  }
  {
    io::AtomicDir d(out);
    test::write_bytes(d.temp_path() / "b", "new");
    d.commit();
  }
  EXPECT_FALSE(std::filesystem::exists(out / "a"));
  EXPECT_EQ(test::read_bytes(out / "b"), "new");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += 1 + 0 * e.path().empty();
  EXPECT_EQ(entries, 1);  // no temporary left beside it
}

}  // namespace
}  // namespace anvil
