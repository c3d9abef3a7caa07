// The anvil binary as a user runs it: exit codes, one-line errors, --json output.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <yaml-cpp/yaml.h>
#include <sys/wait.h>

#include "test_support.h"

using namespace anvil;

namespace {

struct Run {
  int status;
  std::string out;  // stdout and stderr together
};

Run shell(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

Run run(const std::string& args) { return shell(std::string(ANVIL_BINARY) + " " + args); }

std::string models() { return test::shared_dir().string() + "/models"; }

}  // namespace

TEST(Cli, HelpListsCommandsAndFlags) {
  auto r = run("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* c : {"inspect", "eval", "generate", "env"}) EXPECT_NE(r.out.find(c), std::string::npos) << c;
  auto e = run("eval --help");
  EXPECT_EQ(e.status, 0);
  for (const char* f : {"--data", "--compare", "--json", "--threads", "--window"})
    EXPECT_NE(e.out.find(f), std::string::npos) << f;
}

// The front end must not load LibTorch (its start-up costs ~0.45 s, four times llama-quantize's
// whole Q8_0 run); commands that need it run in anvil-torch, found next to the front end.
TEST(Cli, FrontEndLinksNoLibTorchAndDelegates) {
  const std::string libs = shell("ldd " + std::string(ANVIL_BINARY)).out;
  EXPECT_NE(libs.find("libc.so"), std::string::npos) << libs;
  EXPECT_EQ(libs.find("libtorch"), std::string::npos) << libs;
  EXPECT_EQ(libs.find("libc10"), std::string::npos) << libs;
  EXPECT_NE(run("env").out.find("libtorch"), std::string::npos);  // ran in anvil-torch

  // Alone, the front end still does its own commands and says what is missing for the others.
  test::TempDir dir;
  std::filesystem::copy_file(ANVIL_BINARY, dir / "anvil");
  auto alone = [&](const std::string& args) { return shell((dir / "anvil").string() + " " + args); };
  EXPECT_EQ(alone("inspect " + models() + "/base").status, 0);
  auto e = alone("eval " + models() + "/base --data x");
  EXPECT_EQ(e.status, 127);
  EXPECT_NE(e.out.find("anvil-torch"), std::string::npos) << e.out;
  EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << e.out;
}

TEST(Cli, UnknownFlagAndCommandExitTwoWithOneLine) {
  auto r = run("eval " + models() + "/base --data x --frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("frobnicate"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(run("transmogrify").status, 2);
}

TEST(Cli, MissingFilesExitTwoNamingTheFile) {
  auto r = run("eval " + models() + "/base --data /nonexistent/val.txt");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("/nonexistent/val.txt"), std::string::npos) << r.out;
  auto g = run("generate /nonexistent/model --prompt hi");
  EXPECT_EQ(g.status, 2);
  EXPECT_NE(g.out.find("/nonexistent/model"), std::string::npos) << g.out;
}

TEST(Cli, UnknownArchitectureExitsTwo) {
  test::TempDir dir;
  std::filesystem::copy(test::model_dir("tiny-llama"), dir.path(), std::filesystem::copy_options::recursive);
  auto cfg = nlohmann::json::parse(test::read_bytes(dir / "config.json"));
  cfg["model_type"] = "bloom";
  test::write_bytes(dir / "config.json", cfg.dump());
  test::write_bytes(dir / "val.txt", "hello world, this is a test. " + std::string(2000, 'a'));
  auto r = run("eval " + dir.path().string() + " --data " + (dir / "val.txt").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("unsupported architecture 'bloom'"), std::string::npos) << r.out;
}

TEST(Cli, InspectShowsArchitectureAndFilteredTensors) {
  auto r = run("inspect " + models() + "/base --filter '*layers.7.mlp*'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("8,392,960"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("llama"), std::string::npos);
  EXPECT_NE(r.out.find("model.layers.7.mlp.up_proj.weight"), std::string::npos);
  EXPECT_EQ(r.out.find("model.layers.6."), std::string::npos);
  auto j = run("inspect " + models() + "/tiny-qwen2/model.safetensors --json");
  EXPECT_EQ(j.status, 0) << j.out;
  auto parsed = nlohmann::json::parse(j.out);
  EXPECT_EQ(parsed["shards"], 1);
}

// The summary names what sets a family apart, from the Hugging Face directory and from llama.cpp's
// GGUF alike (the fixtures' features as ../shared/README.md lists them).
TEST(Cli, InspectNamesTheFamilysFeatures) {
  auto g3 = run("inspect " + models() + "/tiny-gemma3 --no-tensors");
  EXPECT_EQ(g3.status, 0) << g3.out;
  for (const char* f : {"sliding window 16 on 5 of 6 layers", "q/k norms", "(1 + w) RMSNorm", "windowed layers' rope theta 10000"})
    EXPECT_NE(g3.out.find(f), std::string::npos) << f << "\n" << g3.out;
  auto g2 = run("inspect " + models() + "/tiny-gemma2/model-f32.gguf --no-tensors");
  for (const char* f : {"sliding window 16 on 1 of 2 layers", "attention softcap 50", "logit softcap 30"})
    EXPECT_NE(g2.out.find(f), std::string::npos) << f << "\n" << g2.out;
  auto moe = nlohmann::json::parse(run("inspect " + models() + "/tiny-deepseek-moe --json --no-tensors").out);
  EXPECT_EQ(moe["features"][0], "4 experts (top 2, 32 wide) + shared 64 wide, 1 dense layer");
  auto phi2 = run("inspect " + models() + "/tiny-phi2 --no-tensors");
  for (const char* f : {"partial rotary (8 of 16 dims)", "parallel attention + MLP", "LayerNorm with bias"})
    EXPECT_NE(phi2.out.find(f), std::string::npos) << f << "\n" << phi2.out;
  auto minicpm = run("inspect " + models() + "/tiny-minicpm --no-tensors");
  EXPECT_NE(minicpm.out.find("logits of h / 4"), std::string::npos) << minicpm.out;
  auto llama = run("inspect " + models() + "/base --no-tensors");
  EXPECT_EQ(llama.out.find("features:"), std::string::npos) << "plain Llama has nothing to list";
}

TEST(Cli, InspectRejectsCorruptFile) {
  test::TempDir dir;
  auto bytes = test::read_bytes(test::model_dir("tiny-llama") / "model.safetensors");
  test::write_bytes(dir / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  auto r = run("inspect " + (dir / "model.safetensors").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("past the data area"), std::string::npos) << r.out;
}

TEST(Cli, EvalJsonAndCompare) {
  test::TempDir dir;
  auto text = test::read_bytes(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 12000);
  test::write_bytes(dir / "f.txt", text);
  auto r = run("eval " + models() + "/ft-fortune --data " + (dir / "f.txt").string() + " --compare " + models() +
               "/base --json --threads 2");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  const auto& row = j["results"][0];
  EXPECT_GT(row["tokens_scored"].get<int64_t>(), 1000);
  EXPECT_LT(row["perplexity"].get<double>(), row["reference_perplexity"].get<double>());
  EXPECT_GT(row["mean_kl"].get<double>(), 0.0);
  EXPECT_GT(row["tokens_per_second"].get<double>(), 0.0);
}

TEST(Cli, GenerateStreamsText) {
  auto r = run("generate " + models() + "/base --prompt 'The package' -n 12");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("The package", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("tok/s"), std::string::npos) << r.out;
}

// anvil bench computes from the stored bytes: the weights it reports are the file's (bf16 for base,
// llama-quantize's Q4_K/Q6_K blocks for its Q4_K_M), and it measures what llama-bench measures.
TEST(Cli, BenchReportsSpeedMemoryAndTheStoredFormats) {
  const auto gguf = test::shared_dir() / "refs" / "gguf" / "base-Q4_K_M.gguf";
  for (const std::string model : {models() + "/base", gguf.string()}) {
    auto r = run("bench " + model + " -p 32 -n 8 -r 2 --threads 2 --json");
    ASSERT_EQ(r.status, 0) << r.out;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_GT(j["prompt"]["tokens_per_second"].get<double>(), 0.0);
    EXPECT_EQ(j["prompt"]["runs"].size(), 2u);
    EXPECT_GT(j["generation"]["tokens_per_second"].get<double>(), 0.0);
    std::string formats;
    for (const auto& f : j["weights"]) formats += f["format"].get<std::string>() + " ";
    EXPECT_EQ(formats.find("expanded"), std::string::npos) << formats;
    EXPECT_NE(formats.find(model == gguf.string() ? "Q4_K" : "BF16"), std::string::npos) << formats;
    // The matrices are (nearly) all of the file; the process holds them once.
    uint64_t file_bytes = 0;
    if (model == gguf.string()) file_bytes = std::filesystem::file_size(gguf);
    else
      for (const auto& e : std::filesystem::directory_iterator(model))
        if (e.path().extension() == ".safetensors") file_bytes += e.file_size();
    const auto weights = j["weight_bytes"].get<uint64_t>();
    EXPECT_LE(weights, file_bytes);
    EXPECT_GT(weights, file_bytes * 9 / 10);
    EXPECT_GT(j["peak_rss_bytes"].get<uint64_t>(), weights);
  }
  auto text = run("bench " + models() + "/base -p 16 -n 4 -r 1");
  EXPECT_EQ(text.status, 0) << text.out;
  EXPECT_NE(text.out.find("pp16"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("peak RSS"), std::string::npos) << text.out;
  EXPECT_EQ(run("bench " + models() + "/base -r 0").status, 2);
}

TEST(Cli, EnvReportsBlasAndThreads) {
  auto r = run("env --threads 1");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("blas: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu threads: 1"), std::string::npos) << r.out;
}

TEST(Cli, MergeWithEvalTable) {
  test::TempDir dir;
  test::write_bytes(dir / "c.yaml", "merge_method: linear\nmodels:\n  - model: " + models() +
                                        "/ft-fortune\n    parameters: {weight: 0.5}\n  - model: " + models() +
                                        "/ft-changelog\n    parameters: {weight: 0.5}\n");
  test::write_bytes(dir / "f.txt", test::read_bytes(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 8000));
  auto r = run("merge " + (dir / "c.yaml").string() + " -o " + (dir / "out").string() + " --eval " +
               (dir / "f.txt").string() + " --eval-inputs --threads 2");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* s : {"merged 75 tensors", "merged (linear)", "ft-fortune", "ft-changelog", "f.txt"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "config.json"));
}

TEST(Cli, MergeBadConfigExitsTwoAndWritesNothing) {
  test::TempDir dir;
  test::write_bytes(dir / "c.yaml", "merge_method: linear\nweights: [1, 2]\nmodels:\n  - model: " + models() + "/base\n");
  auto r = run("merge " + (dir / "c.yaml").string() + " -o " + (dir / "out").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("unsupported key 'weights'"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
}

TEST(Cli, QuantizeAndInspectGguf) {
  test::TempDir dir;
  auto out = (dir / "b.gguf").string();
  auto r = run("quantize " + models() + "/base -o " + out + " --type Q4_K_M --threads 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("5.00 bits/weight"), std::string::npos) << r.out;
  auto i = run("inspect " + out + " --filter 'blk.0.attn_v*'");
  EXPECT_EQ(i.status, 0) << i.out;
  EXPECT_NE(i.out.find("Q6_K"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("llama.block_count"), std::string::npos) << i.out;
  auto g = run("generate " + out + " --prompt 'The package' -n 5");
  EXPECT_EQ(g.status, 0) << g.out;
}

// anvil imatrix measures llama-imatrix's statistics (chunks of --chunk tokens, whole chunks only)
// into llama.cpp's GGUF layout, and quantize --imatrix takes them with llama-quantize's keys; the
// file's metadata and the card name what calibrated the model.
TEST(Cli, ImatrixFileFeedsQuantize) {
  test::TempDir dir;
  const std::string data = test::shared_dir().string() + "/data/fortune.val.txt";
  const std::string imatrix = (dir / "base.imatrix.gguf").string(), out = (dir / "q.gguf").string();
  auto m = run("imatrix " + models() + "/base --calib " + data + " -o " + imatrix + " --chunk 128 --chunks 6 --threads 2");
  ASSERT_EQ(m.status, 0) << m.out;
  EXPECT_NE(m.out.find("56 entries, 6 chunks of 128 tokens"), std::string::npos) << m.out;  // 8 layers x 7 weights
  auto i = nlohmann::json::parse(run("inspect " + imatrix + " --json").out);
  ASSERT_EQ(i["tensors"].size(), 112u) << i;  // in_sum2 + counts per weight
  auto q = run("quantize " + models() + "/base -o " + out + " --type Q4_K_M --imatrix " + imatrix + " --threads 2");
  ASSERT_EQ(q.status, 0) << q.out;
  EXPECT_NE(q.out.find("imatrix: 56 entries from " + imatrix + ", computed on 6 chunks"), std::string::npos) << q.out;
  const auto p = nlohmann::json::parse(run("inspect " + out + " --json --no-tensors").out)["provenance"];
  EXPECT_EQ(p["quantize.imatrix.file"], imatrix) << p;
  EXPECT_EQ(p["quantize.imatrix.dataset"], data) << p;
  EXPECT_EQ(p["quantize.imatrix.entries_count"], 56) << p;
  EXPECT_EQ(p["quantize.imatrix.chunks_count"], 6) << p;
  EXPECT_NE(test::read_bytes(out + ".md").find("importance matrix " + imatrix), std::string::npos);
  // The legacy .dat (chosen by the name) goes the same way.
  auto dat = run("imatrix " + models() + "/base --calib " + data + " -o " + (dir / "m.dat").string() +
                 " --chunk 128 --chunks 6 --threads 2");
  ASSERT_EQ(dat.status, 0) << dat.out;
  auto qd = run("quantize " + models() + "/base -o " + (dir / "qd.gguf").string() + " --type Q4_K_M --imatrix " +
                (dir / "m.dat").string());
  ASSERT_EQ(qd.status, 0) << qd.out;
  EXPECT_NE(qd.out.find("computed on 6 chunks (legacy .dat)"), std::string::npos) << qd.out;
  // An imatrix replaces --calib's measurement; using both is an error, nothing written.
  auto both = run("quantize " + models() + "/base -o " + (dir / "both.gguf").string() + " --type Q4_K_M --imatrix " +
                  imatrix + " --calib " + data);
  EXPECT_EQ(both.status, 2) << both.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "both.gguf"));
}

// --calib takes several files (repeated or comma-separated) and says how many tokens of which
// it used; a missing one is an error naming it, with nothing written.
TEST(Cli, QuantizeCalibratesOnSeveralFiles) {
  test::TempDir dir;
  const std::string data = test::shared_dir().string() + "/data/";
  auto out = (dir / "c.gguf").string();
  auto r = run("quantize " + models() + "/base -o " + out + " --type Q4_K_M --threads 2 --calib " + data +
               "fortune.val.txt," + data + "changelog.val.txt --calib-tokens 2048");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("calibration: 2,048 tokens of " + data + "fortune.val.txt, " + data + "changelog.val.txt"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5.00 bits/weight"), std::string::npos) << r.out;
  // A second pass measures again on the model the first one quantized; its draft is removed.
  auto two = run("quantize " + models() + "/base -o " + (dir / "two.gguf").string() +
                 " --type Q4_K_M --threads 2 --calib-passes 2 --calib-tokens 2048 --calib " + data + "fortune.val.txt");
  ASSERT_EQ(two.status, 0) << two.out;
  EXPECT_NE(two.out.find("calibration pass 2: 2,048 tokens"), std::string::npos) << two.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "two.gguf"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {  // no draft left behind, the cards beside
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "c.gguf" || name == "two.gguf" || name == "c.gguf.md" || name == "two.gguf.md") << e.path();
  }
  // The card says what calibrated it, and the GGUF carries llama-quantize's imatrix keys.
  EXPECT_NE(test::read_bytes(out + ".md").find("calibrated on " + data + "fortune.val.txt"), std::string::npos);
  const auto p = nlohmann::json::parse(run("inspect " + out + " --json --no-tensors").out)["provenance"];
  EXPECT_EQ(p["quantize.imatrix.chunks_count"], 2048 / 256) << p;  // windows of --calib-window 256
  EXPECT_GT(p["quantize.imatrix.entries_count"].get<int>(), 50) << p;
  auto three = run("quantize " + models() + "/base -o " + (dir / "three.gguf").string() +
                   " --type Q4_K_M --calib-passes 3 --calib " + data + "fortune.val.txt");
  EXPECT_EQ(three.status, 2) << three.out;
  EXPECT_NE(three.out.find("--calib-passes must be 1 or 2"), std::string::npos) << three.out;
  auto bad = run("quantize " + models() + "/base -o " + (dir / "d.gguf").string() + " --type Q4_K_M --calib " + data +
                 "fortune.val.txt --calib " + (dir / "nope.txt").string());
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_NE(bad.out.find("nope.txt"), std::string::npos) << bad.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "d.gguf"));
}

TEST(Cli, BadGgufAndBadTypeExitTwo) {
  test::TempDir dir;
  auto bytes = test::read_bytes(test::shared_dir() / "refs" / "gguf" / "base-Q8_0.gguf");
  test::write_bytes(dir / "cut.gguf", bytes.substr(0, bytes.size() / 3));
  auto r = run("eval " + (dir / "cut.gguf").string() + " --data " + (test::shared_dir() / "data" / "pkg.val.txt").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("cut.gguf"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("runs past the end"), std::string::npos) << r.out;
  auto q = run("quantize " + models() + "/base -o " + (dir / "x.gguf").string() + " --type Q9_K");
  EXPECT_EQ(q.status, 2);
  EXPECT_NE(q.out.find("unknown --type 'Q9_K'"), std::string::npos) << q.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
}

TEST(Cli, AdapterForEvalAndMergeAdapterForConvert) {
  test::TempDir dir;
  test::write_bytes(dir / "f.txt", test::read_bytes(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 6000));
  auto with = run("eval " + models() + "/base --adapter " + models() + "/lora-random --data " + (dir / "f.txt").string() + " --json");
  ASSERT_EQ(with.status, 0) << with.out;
  auto c = run("convert " + models() + "/base --merge-adapter " + models() + "/lora-random -o " + (dir / "m").string() +
               " --out-dtype f32");
  ASSERT_EQ(c.status, 0) << c.out;
  auto merged = run("eval " + (dir / "m").string() + " --data " + (dir / "f.txt").string() + " --json");
  ASSERT_EQ(merged.status, 0) << merged.out;
  double a = nlohmann::json::parse(with.out)["results"][0]["perplexity"];
  double b = nlohmann::json::parse(merged.out)["results"][0]["perplexity"];
  // Same model up to the rotary rounding of a bf16 vs f32 config (perplexity moves in the 5th digit).
  EXPECT_NEAR(a, b, 1e-3 * a);
  // Its card: a fine-tune of base, made from base and the adapter (both listed and hashed).
  const auto p = nlohmann::json::parse(run("inspect " + (dir / "m").string() + " --json --no-tensors").out)["provenance"];
  EXPECT_EQ(p["base_model_relation"], "finetune") << p;
  EXPECT_EQ(p["base_model"], nlohmann::json::parse("[\"" + models() + "/base\", \"" + models() + "/lora-random\"]")) << p;
  EXPECT_NE(test::read_bytes(dir / "m" / "README.md")
                .find("`" + shell("sha256sum " + models() + "/lora-random/adapter_model.safetensors").out.substr(0, 64) + "`"),
            std::string::npos);
  // GGUF -> HF: a format conversion (no relation), of the GGUF.
  ASSERT_EQ(run("convert " + (test::shared_dir() / "refs" / "gguf" / "base-Q8_0.gguf").string() + " -o " + (dir / "h").string())
                .status, 0);
  const auto h = nlohmann::json::parse(run("inspect " + (dir / "h").string() + " --json --no-tensors").out)["provenance"];
  EXPECT_FALSE(h.contains("base_model_relation")) << h;
  EXPECT_EQ(h["base_model"][0], (test::shared_dir() / "refs" / "gguf" / "base-Q8_0.gguf").string()) << h;
  auto bad = run("eval " + models() + "/base --adapter " + models() + "/tiny-llama --data " + (dir / "f.txt").string());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("adapter_config.json"), std::string::npos) << bad.out;
}

// anvil train end to end: a tiny run writes a PEFT adapter that eval --adapter applies; a bad
// recipe is refused before training with one line naming the file.
TEST(Cli, TrainWritesAnAdapterThatEvalApplies) {
  test::TempDir dir;
  const std::string shared = test::shared_dir().string();
  std::ofstream(dir / "r.yaml") << "base_model: " << models() << "/base\noutput_dir: " << (dir / "out").string()
                                << "\ndatasets: [{path: " << shared << "/data/fortune.train.txt, type: raw}]\n"
                                << "sequence_len: 32\nmicro_batch_size: 4\nmax_steps: 3\nthreads: 1\nval_split: 0.01\n"
                                << "val_max_examples: 8\nlora: {r: 4, target_modules: [q_proj, v_proj]}\n";
  auto r = run("train " + (dir / "r.yaml").string() + " --set optimizer.lr=1e-3");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("trainable parameters"), std::string::npos) << r.out;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "log.jsonl", "loss.svg", "README.md"})
    EXPECT_TRUE(std::filesystem::exists(dir / "out" / f)) << f;
  // Its card: an adapter of base (PEFT), trained on the data file, whose digest is sha256sum's.
  const std::string card = test::read_bytes(dir / "out" / "README.md");
  const YAML::Node front = YAML::Load(card.substr(4, card.find("\n---\n", 4) - 4));
  EXPECT_EQ(front["base_model_relation"].as<std::string>(), "adapter");
  EXPECT_EQ(front["library_name"].as<std::string>(), "peft");
  ASSERT_EQ(front["base_model"].size(), 1u);
  EXPECT_EQ(front["base_model"][0].as<std::string>(), models() + "/base");
  EXPECT_EQ(front["datasets"][0].as<std::string>(), shared + "/data/fortune.train.txt");
  EXPECT_NE(card.find("`" + shell("sha256sum " + shared + "/data/fortune.train.txt").out.substr(0, 64) + "`"), std::string::npos)
      << card;
  EXPECT_NE(card.find("lora: {r: 4"), std::string::npos) << card;  // the recipe itself
  // Validation was asked for (val_split): its perplexity before and after is the measured table.
  EXPECT_NE(card.find("| base (before) | validation |"), std::string::npos) << card;
  EXPECT_NE(card.find("| with this adapter | validation |"), std::string::npos) << card;
  auto e = run("eval " + models() + "/base --adapter " + (dir / "out").string() + " --data " + shared +
               "/data/fortune.val.txt --json");
  ASSERT_EQ(e.status, 0) << e.out;
  EXPECT_GT(nlohmann::json::parse(e.out)["results"][0]["perplexity"].get<double>(), 1.0);

  std::ofstream(dir / "bad.yaml") << "base_model: " << models() << "/base\noutput_dir: x\nmax_steps: 1\n"
                                  << "datasets: [{path: " << shared << "/data/fortune.train.txt}]\nlearning_rate: 1\n";
  auto bad = run("train " + (dir / "bad.yaml").string());
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("bad.yaml:5"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("learning_rate"), std::string::npos) << bad.out;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 1) << bad.out;
}

// precision: bf16 on a CPU without bf16 instructions (ANVIL_SIMD=avx2 stands for one) computes in
// fp32 and says so once: the run is the fp32 run, loss for loss.
TEST(Cli, TrainInBf16WithoutNativeBf16RunsTheFp32Run) {
  test::TempDir dir;
  const std::string shared = test::shared_dir().string();
  auto recipe = [&](const std::string& name, const std::string& precision) {
    std::ofstream(dir / (name + ".yaml")) << "base_model: " << models() << "/base\noutput_dir: " << (dir / name).string()
                                          << "\ndatasets: [{path: " << shared << "/data/fortune.train.txt, type: raw}]\n"
                                          << "sequence_len: 32\nmicro_batch_size: 4\nmax_steps: 2\nthreads: 1\n"
                                          << "precision: " << precision << "\nlora: {r: 4, target_modules: [q_proj, v_proj]}\n";
    return (dir / (name + ".yaml")).string();
  };
  auto emulated = shell("ANVIL_SIMD=avx2 " + std::string(ANVIL_BINARY) + " train " + recipe("bf16", "bf16"));
  ASSERT_EQ(emulated.status, 0) << emulated.out;
  EXPECT_NE(emulated.out.find("no native bf16"), std::string::npos) << emulated.out;
  auto fp32 = run("train " + recipe("fp32", "fp32"));
  ASSERT_EQ(fp32.status, 0) << fp32.out;
  EXPECT_EQ(fp32.out.find("no native bf16"), std::string::npos) << fp32.out;
  auto losses = [&](const std::string& name) {
    std::vector<double> out;
    std::ifstream in(dir / name / "log.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) out.push_back(j["loss"].get<double>());
    }
    return out;
  };
  ASSERT_EQ(losses("bf16").size(), 2u);
  EXPECT_EQ(losses("bf16"), losses("fp32"));
}

// anvil tokenize against the tokenizers library's ids: the first 4 texts of the real Llama-3 and
// Qwen3 cases (byte-level BPE; all 200 of each: Tokenizer.RealByteLevelTokenizersGiveTheLibrarysIds), with
// and without special tokens, and a case of base's tokenizer.
TEST(Cli, TokenizeGivesTheTokenizersLibrarysIds) {
  const auto real = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_real_cases.json"));
  test::TempDir dir;
  for (const char* name : {"llama-3", "qwen3"}) {
    const auto& cases = real["tokenizers"][name];
    for (size_t i = 0; i < 4 && i < cases.size(); ++i) {
      test::write_bytes(dir / "t.txt", cases[i]["text"].get<std::string>());
      const std::string tok = (test::shared_dir() / "tokenizers" / name).string();
      auto r = run("tokenize " + tok + " --file " + (dir / "t.txt").string() + " --json");
      ASSERT_EQ(r.status, 0) << r.out;
      EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], cases[i]["ids"]) << name << " case " << i;
      auto s = run("tokenize " + tok + " --file " + (dir / "t.txt").string() + " --json --special");
      EXPECT_EQ(nlohmann::json::parse(s.out)["ids"], cases[i]["ids_with_special"]) << name << " case " << i;
    }
  }
  const auto base = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_cases.json"))[0];
  auto r = run("tokenize " + models() + "/base --text '" + base["text"].get<std::string>() + "' --special --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], base["ids_with_bos"]);
  const auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["decoded"], out["tokens"][0].get<std::string>() + base["decoded"].get<std::string>()) << r.out;
  auto bad = run("tokenize " + models() + "/base");
  EXPECT_EQ(bad.status, 2) << bad.out;
}

// anvil tokenize takes a model directory, a tokenizer.json, a tokenizer.model or a GGUF; --jsonl
// gives one line per record in order, --decode inverts, and --chat renders each conversation with
// the model's own template: the tokenizers library's ids and Jinja2's renderings, error cases
// as the template's own error.
TEST(Cli, TokenizeReadsEveryKindOfInput) {
  const auto real = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_real_cases.json"));
  test::TempDir dir;
  const auto gemma = test::shared_dir() / "tokenizers" / "gemma-3";
  const auto& cases = real["tokenizers"]["gemma-3"];
  std::string jsonl;
  for (size_t i = 0; i < 6; ++i) jsonl += nlohmann::json{{"text", cases[i]["text"]}}.dump() + "\n";
  test::write_bytes(dir / "texts.jsonl", jsonl);
  for (const std::string path : {gemma.string(), (gemma / "tokenizer.json").string()}) {
    auto r = run("tokenize " + path + " --jsonl " + (dir / "texts.jsonl").string());
    ASSERT_EQ(r.status, 0) << r.out;
    std::istringstream lines(r.out);
    std::string line;
    for (size_t i = 0; i < 6; ++i) {
      ASSERT_TRUE(std::getline(lines, line));
      const auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["ids"], cases[i]["ids"]) << i;
      EXPECT_EQ(j["tokens"].size(), j["ids"].size());
    }
    auto d = run("tokenize " + path + " --decode --text '" + cases[3]["ids"].dump() + "'");
    EXPECT_EQ(d.out, cases[3]["decoded"].get<std::string>() + "\n");
  }
  // tokenizer.model (SentencePiece) and a GGUF's vocabulary.
  const auto spm = nlohmann::json::parse(test::read_bytes(test::data_dir() / "sentencepiece" / "cases.json"));
  const auto& sp_case = spm["models"]["tiny_bpe.model"][0];
  auto s = run("tokenize " + (test::data_dir() / "sentencepiece" / "tiny_bpe.model").string() + " --text '" +
               sp_case["text"].get<std::string>() + "' --json");
  ASSERT_EQ(s.status, 0) << s.out;
  EXPECT_EQ(nlohmann::json::parse(s.out)["ids"], sp_case["ids"]);
  ASSERT_EQ(run("convert " + models() + "/base -o " + (dir / "base.gguf").string() + " --type f16").status, 0);
  const auto base_case = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_cases.json"))[0];
  auto g = run("tokenize " + (dir / "base.gguf").string() + " --text '" + base_case["text"].get<std::string>() +
               "' --special --json");
  ASSERT_EQ(g.status, 0) << g.out;
  EXPECT_EQ(nlohmann::json::parse(g.out)["ids"], base_case["ids_with_bos"]);
  // A format conversion's card beside the GGUF: library gguf, no relation (nothing was changed).
  const std::string gcard = test::read_bytes(dir / "base.gguf.md");
  const YAML::Node gfront = YAML::Load(gcard.substr(4, gcard.find("\n---\n", 4) - 4));
  EXPECT_EQ(gfront["library_name"].as<std::string>(), "gguf");
  EXPECT_FALSE(gfront["base_model_relation"]) << gcard;
  EXPECT_EQ(gfront["base_model"][0].as<std::string>(), models() + "/base");

  // --chat with Gemma-3's and Llama-2's templates from the fixture (Jinja2's renderings).
  const auto chats = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "chat_template_cases.json"));
  for (const auto& t : chats["templates"]) {
    if (t["name"] != "gemma-3" && t["name"] != "llama-2-chat") continue;
    SCOPED_TRACE(t["name"].get<std::string>());
    const auto model = dir / t["name"].get<std::string>();
    std::filesystem::create_directories(model);
    std::filesystem::copy_file(t["name"] == "gemma-3" ? gemma / "tokenizer.json"
                                                      : test::shared_dir() / "tokenizers" / "mistral-7b" / "tokenizer.json",
                               model / "tokenizer.json");
    test::write_bytes(model / "tokenizer_config.json",
                      nlohmann::json{{"chat_template", t["template"]}, {"bos_token", t["bos_token"]}, {"eos_token", t["eos_token"]}}.dump());
    std::string conversations;
    for (const auto& c : t["cases"])
      conversations += nlohmann::json{{"messages", c["messages"]}, {"add_generation_prompt", c["add_generation_prompt"]}}.dump() + "\n";
    test::write_bytes(dir / "chats.jsonl", conversations);
    auto r = run("tokenize " + model.string() + " --chat " + (dir / "chats.jsonl").string());
    ASSERT_EQ(r.status, 0) << r.out;
    std::istringstream lines(r.out);
    std::string line;
    for (const auto& c : t["cases"]) {
      ASSERT_TRUE(std::getline(lines, line));
      const auto j = nlohmann::json::parse(line);
      if (c.contains("error")) {
        EXPECT_EQ(j["error"], c["error"]);
        continue;
      }
      EXPECT_EQ(j["text"], c["rendered"]);
      EXPECT_FALSE(j["ids"].empty());
    }
  }
  // Bad input: one line, exit 2.
  test::write_bytes(dir / "bad.jsonl", "{\"text\": 5}\n");
  auto bad = run("tokenize " + gemma.string() + " --jsonl " + (dir / "bad.jsonl").string());
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_NE(bad.out.find("bad.jsonl:1"), std::string::npos) << bad.out;
}

// anvil chat keeps the history and renders it with the model's template each turn: driven through
// piped stdin, each reply is what plain greedy generation gives on the ChatML text of the
// conversation so far (written out by hand here; base says no end-of-turn within 12 tokens).
TEST(Cli, ChatKeepsTheHistoryAcrossTurns) {
  test::TempDir dir;
  const std::string base = models() + "/base";
  const std::string q1 = "What does the package fortune-mod provide?", q2 = "Anything else?";
  test::write_bytes(dir / "in.txt", q1 + "\n" + q2 + "\n");
  const std::string out = (dir / "out.txt").string();
  ASSERT_EQ(shell("(" + std::string(ANVIL_BINARY) + " chat " + base + " -n 12 --system 'Be terse.' < " +
                  (dir / "in.txt").string() + " 2>/dev/null > " + out + ")").status, 0);
  const std::string chat = test::read_bytes(out);
  // generate prints the prompt, the continuation and a newline; the prompt travels in a file so
  // that its trailing newline survives the shell.
  auto plain = [&](const std::string& prompt) {
    test::write_bytes(dir / "p.txt", prompt + "x");
    EXPECT_EQ(shell("(p=\"$(cat " + (dir / "p.txt").string() + ")\"; " + std::string(ANVIL_BINARY) + " generate " + base +
                    " --no-bos -n 12 -p \"${p%x}\" 2>/dev/null > " + out + ")").status, 0);
    const std::string text = test::read_bytes(out);
    EXPECT_EQ(text.compare(0, prompt.size(), prompt), 0) << text;
    return text.substr(prompt.size(), text.size() - prompt.size() - 1);
  };
  const std::string turn1 = "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n" + q1 +
                            "<|im_end|>\n<|im_start|>assistant\n";
  const std::string reply1 = plain(turn1);
  const std::string reply2 = plain(turn1 + reply1 + "<|im_end|>\n<|im_start|>user\n" + q2 + "<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chat, reply1 + "\n" + reply2 + "\n");
}

// anvil merge writes a model card: YAML front matter in the Hub's spellings (relation merge, the
// inputs as base models), the config, the command, and each input file's SHA-256, which must be
// what sha256sum computes; with --eval the measured perplexity table joins it.
TEST(Cli, MergeWritesAModelCardAndInspectShowsProvenance) {
  test::TempDir dir;
  const std::string cfg = (dir / "ties.yaml").string();
  test::write_bytes(cfg, "merge_method: ties\nbase_model: " + models() + "/base\nmodels:\n  - model: " + models() +
                             "/ft-fortune\n    parameters: {weight: 0.7, density: 0.7}\n  - model: " + models() +
                             "/ft-changelog\n    parameters: {weight: 0.7, density: 0.7}\ndtype: bfloat16\n");
  const auto fortune = test::shared_dir() / "data" / "fortune.val.txt";
  for (bool measured : {false, true}) {
    const auto out = dir / (measured ? "measured" : "plain");
    auto r = run("merge " + cfg + " -o " + out.string() + (measured ? " --eval " + fortune.string() : ""));
    ASSERT_EQ(r.status, 0) << r.out;
    const std::string card = test::read_bytes(out / "README.md");
    ASSERT_EQ(card.rfind("---\n", 0), 0u) << card;
    const size_t end = card.find("\n---\n", 4);
    ASSERT_NE(end, std::string::npos);
    const YAML::Node front = YAML::Load(card.substr(4, end - 4));
    EXPECT_EQ(front["base_model_relation"].as<std::string>(), "merge");
    EXPECT_EQ(front["library_name"].as<std::string>(), "transformers");
    EXPECT_EQ(front["pipeline_tag"].as<std::string>(), "text-generation");
    ASSERT_EQ(front["base_model"].size(), 3u);
    EXPECT_EQ(front["base_model"][0].as<std::string>(), models() + "/base");
    EXPECT_EQ(front["base_model"][1].as<std::string>(), models() + "/ft-fortune");
    std::vector<std::string> tags;
    for (const auto& t : front["tags"]) tags.push_back(t.as<std::string>());
    for (const char* t : {"anvil", "merge", "mergekit", "ties"})
      EXPECT_NE(std::find(tags.begin(), tags.end(), t), tags.end()) << t;
    EXPECT_NE(card.find("TIES merge of ft-fortune and ft-changelog"), std::string::npos) << card;
    EXPECT_NE(card.find("density: 0.7"), std::string::npos);  // the config itself
    EXPECT_NE(card.find("anvil merge " + cfg), std::string::npos);
    // Every input file's digest is sha256sum's.
    for (const char* m : {"base", "ft-fortune"})
      for (const char* f : {"config.json", "model-00001-of-00002.safetensors"}) {
        const auto sum = shell("sha256sum " + models() + "/" + m + "/" + f).out.substr(0, 64);
        EXPECT_NE(card.find("`" + sum + "`"), std::string::npos) << m << "/" << f;
      }
    EXPECT_EQ(card.find("## Measured") != std::string::npos, measured) << card;
    if (measured) {
      EXPECT_NE(card.find("| merged (ties) | fortune.val.txt |"), std::string::npos) << card;
    }
    // inspect shows the card's front matter and its measured table.
    auto i = run("inspect " + out.string() + " --json --no-tensors");
    ASSERT_EQ(i.status, 0) << i.out;
    const auto p = nlohmann::json::parse(i.out)["provenance"];
    EXPECT_EQ(p["base_model_relation"], "merge");
    EXPECT_EQ(p["base_model"].size(), 3u);
    EXPECT_EQ(p.contains("measured"), measured) << i.out;
  }
  // A GGUF's general.* keys.
  ASSERT_EQ(run("quantize " + models() + "/base -o " + (dir / "q.gguf").string() + " --type Q4_K_M").status, 0);
  auto g = run("inspect " + (dir / "q.gguf").string() + " --json --no-tensors");
  ASSERT_EQ(g.status, 0) << g.out;
  const auto p = nlohmann::json::parse(g.out)["provenance"];
  EXPECT_EQ(p["general.quantized_by"], "anvil");
  EXPECT_EQ(p["general.size_label"], "8.4M");
  EXPECT_EQ(p["tags"], nlohmann::json::parse(R"(["anvil", "Q4_K_M"])"));
}

// INT4/INT8 safetensors outputs carry a card too: quantized from their source.
TEST(Cli, IntegerQuantizationWritesACard) {
  test::TempDir dir;
  auto r = run("quantize " + models() + "/tiny-llama -o " + (dir / "q").string() + " --format compressed-tensors --bits 8");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto p = nlohmann::json::parse(run("inspect " + (dir / "q").string() + " --json --no-tensors").out)["provenance"];
  EXPECT_EQ(p["base_model_relation"], "quantized") << p;
  EXPECT_EQ(p["base_model"][0], models() + "/tiny-llama") << p;
  EXPECT_EQ(p["tags"], nlohmann::json::parse(R"(["anvil", "compressed-tensors", "int8"])")) << p;
}

// quantize --eval scores the result against its source and puts the table in the card: the same
// numbers anvil eval --compare gives for the file.
TEST(Cli, QuantizeEvalPutsTheMeasuredTableInTheCard) {
  test::TempDir dir;
  test::write_bytes(dir / "f.txt", test::read_bytes(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 12000));
  const std::string out = (dir / "q.gguf").string();
  auto r = run("quantize " + models() + "/base -o " + out + " --type Q4_K_M --eval " + (dir / "f.txt").string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto e = run("eval " + out + " --compare " + models() + "/base --data " + (dir / "f.txt").string() + " --json");
  ASSERT_EQ(e.status, 0) << e.out;
  const auto row = nlohmann::json::parse(e.out)["results"][0];
  char expected[160];
  std::snprintf(expected, sizeof expected, "| this file | f.txt | %.4f | %.5f | %.2f%% |", row["perplexity"].get<double>(),
                row["mean_kl"].get<double>(), 100 * row["top1_agreement"].get<double>());
  const std::string card = test::read_bytes(out + ".md");
  EXPECT_NE(card.find(expected), std::string::npos) << expected << "\n" << card;
  std::snprintf(expected, sizeof expected, "| source (base) | f.txt | %.4f |", row["reference_perplexity"].get<double>());
  EXPECT_NE(card.find(expected), std::string::npos) << expected << "\n" << card;
}
