// Model cards (io/model_card.h): the front matter parses as YAML with the Hub's keys and
// spellings (https://huggingface.co/docs/hub/model-cards: base_model, base_model_relation,
// library_name, license, datasets, tags, pipeline_tag), inputs' cards flow on, and SHA-256 is
// the published test vectors' and sha256sum's.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "io/file_digests.h"
#include "io/model_card.h"
#include "test_support.h"
#include "util/error.h"
#include "util/sha256.h"

using namespace anvil;

TEST(ModelCard, Sha256IsTheStandardsAndSha256sums) {
  // FIPS 180-2's examples.
  const std::string abc = "abc";
  EXPECT_EQ(util::sha256_hex({reinterpret_cast<const uint8_t*>(abc.data()), abc.size()}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(util::sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string long_one = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(util::sha256_hex({reinterpret_cast<const uint8_t*>(long_one.data()), long_one.size()}),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // A file hashed in the background, as the commands do: sha256sum's digest of tokenizer.json.
  io::FileDigests d({test::model_dir("base") / "tokenizer.json"});
  const auto& got = d.get();
  ASSERT_EQ(got.size(), 1u);
  FILE* p = popen(("sha256sum " + (test::model_dir("base") / "tokenizer.json").string()).c_str(), "r");
  char buf[65] = {};
  ASSERT_EQ(fread(buf, 1, 64, p), 64u);
  pclose(p);
  EXPECT_EQ(got[0].sha256, std::string(buf));
  EXPECT_EQ(got[0].bytes, std::filesystem::file_size(test::model_dir("base") / "tokenizer.json"));
}

TEST(ModelCard, FrontMatterParsesAndInputsCardsFlowOn) {
  test::TempDir dir;
  auto model = [&](const std::string& name, const std::string& card) {
    std::filesystem::create_directories(dir / name);
    test::write_bytes(dir / name / "config.json", "{}");
    if (!card.empty()) test::write_bytes(dir / name / "README.md", card);
    return dir / name;
  };
  const auto a = model("a", "---\nlicense: apache-2.0\nbase_model: meta-llama/Llama-3.2-1B\nbase_model_relation: finetune\ntags: [chat]\n---\n# a\n");
  const auto b = model("b", "---\nlicense: apache-2.0\nbase_model:\n- meta-llama/Llama-3.2-1B\ntags:\n- code\n---\n");
  const auto c = model("c", "");
  io::ModelCard card;
  card.title = "TIES merge of a and b";
  card.summary = "with a \"quote\", a colon: and yes";
  card.command = "anvil merge x.yaml -o out";
  card.version = "0.1.0";
  for (const auto& p : {a, b})
    card.inputs.push_back({"model", io::card_name_of(p), p, io::read_card_front(p), {}});
  card.front.base_model_relation = "merge";
  card.front.library_name = "transformers";
  io::inherit_from_inputs(card, {"anvil", "merge"});
  EXPECT_EQ(card.front.license, "apache-2.0");  // both inputs say so
  const std::string text = io::render_model_card(card);
  ASSERT_EQ(text.rfind("---\n", 0), 0u);
  const YAML::Node n = YAML::Load(text.substr(4, text.find("\n---\n", 4) - 4));
  EXPECT_EQ(n["base_model"].size(), 2u);
  EXPECT_EQ(n["base_model"][0].as<std::string>(), a.string());
  EXPECT_EQ(n["base_model_relation"].as<std::string>(), "merge");
  EXPECT_EQ(n["library_name"].as<std::string>(), "transformers");
  EXPECT_EQ(n["license"].as<std::string>(), "apache-2.0");
  EXPECT_EQ(n["pipeline_tag"].as<std::string>(), "text-generation");
  std::vector<std::string> tags;
  for (const auto& t : n["tags"]) tags.push_back(t.as<std::string>());
  EXPECT_EQ(tags, (std::vector<std::string>{"anvil", "merge", "chat", "code"}));
  // The lineage past the inputs stays in the card ("a merge of two Llama-3.2 fine-tunes still says
  // Llama-3.2").
  EXPECT_NE(text.find(a.string() + " was made from meta-llama/Llama-3.2-1B (finetune)"), std::string::npos) << text;
  // Read back: the same front matter.
  test::write_bytes(dir / "out.md", text);
  std::filesystem::create_directories(dir / "out");
  test::write_bytes(dir / "out" / "README.md", text);
  const auto back = io::read_card_front(dir / "out");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->base_model_relation, "merge");
  EXPECT_EQ(back->license, "apache-2.0");

  // Inputs that disagree, or do not all state one: no license, and a note saying so.
  io::ModelCard mixed;
  for (const auto& p : {a, c}) mixed.inputs.push_back({"model", io::card_name_of(p), p, io::read_card_front(p), {}});
  io::inherit_from_inputs(mixed, {"anvil"});
  EXPECT_FALSE(mixed.front.license);
  ASSERT_EQ(mixed.notes.size(), 1u);
  // A card whose front matter is not YAML is an error naming it.
  const auto bad = model("bad", "---\nlicense: [unclosed\n---\n");
  EXPECT_THROW(io::read_card_front(bad), Error);
}
