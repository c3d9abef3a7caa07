// anvil merge CONFIG.yaml -o OUT_DIR: runs a mergekit-style config, streaming tensor by tensor;
// -o OUT.gguf [--type Q4_K_M] merges and quantizes in the same pass.
#include <ATen/Parallel.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "merge/merge.h"
#include "merge/merge_method.h"
#include "merge/merge_search.h"
#include "model_cards.h"
#include "progress.h"
#include "quant/quant_mix.h"
#include "quant_progress.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {
namespace {

// One table: a row per model, a column per data file (perplexity); the rows also go to the card.
void print_eval_table(const std::vector<std::pair<std::string, std::filesystem::path>>& models,
                      const std::vector<std::string>& files, const model::LoadOptions& load,
                      std::vector<io::CardMeasurement>* rows) {
  std::printf("\n%-28s", "perplexity");
  for (const auto& f : files) std::printf(" %16s", std::filesystem::path(f).filename().string().c_str());
  std::printf("\n");
  auto tok = load_tokenizer(models.front().second);
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& f : files) tokens.push_back(tok.encode(io::read_text_file(f)));
  for (const auto& [label, dir] : models) {
    auto m = load_model(dir, load);
    std::printf("%-28s", label.c_str());
    std::fflush(stdout);
    for (size_t i = 0; i < tokens.size(); ++i) {
      eval::PerplexityOptions opts;
      opts.threads = at::get_num_threads();
      const double ppl = eval::evaluate_perplexity(*m, tokens[i], opts).perplexity;
      std::printf(" %16.3f", ppl);
      std::fflush(stdout);
      rows->push_back({label, std::filesystem::path(files[i]).filename().string(), ppl, {}, {}});
    }
    std::printf("\n");
  }
}

// --search: the trials as they run (best so far), a table of them, the best config as YAML.
int run_search(const std::filesystem::path& config, const std::string& spec_path, const std::filesystem::path& out,
               const merge::MergeOptions& merge_options) {
  const auto spec = merge::SearchSpec::load(existing_path(spec_path, "search spec"));
  merge::SearchOptions so;
  so.merge = merge_options;
  so.merge.progress = nullptr;
  std::unique_ptr<Progress> bar;
  so.progress = [&](int64_t done, int64_t total, double best) {
    if (!bar) bar = std::make_unique<Progress>("search", total, "trials");
    char extra[64];
    std::snprintf(extra, sizeof extra, "best %.4f", best);
    bar->update(done, extra);
  };
  const auto r = merge::run_merge_search(config, spec, so);
  if (bar) bar->finish();
  // The table: one row per trial, the searched values and each file's perplexity.
  std::string table = "trial\tscore";
  for (const auto& d : r.dimensions) table += "\t" + d;
  for (const auto& f : r.files) table += "\tppl " + f;
  table += "\n";
  for (size_t i = 0; i < r.trials.size(); ++i) {
    const auto& t = r.trials[i];
    char buf[64];
    std::snprintf(buf, sizeof buf, "%zu\t%.5f", i, t.score);
    table += buf;
    for (size_t k = 0; k < t.values.size(); ++k) {
      std::snprintf(buf, sizeof buf, "\t%.4f", t.values[k]);
      table += buf;
    }
    for (double p : t.perplexities) {
      std::snprintf(buf, sizeof buf, "\t%.3f", p);
      table += buf;
    }
    table += "\n";
  }
  std::filesystem::path table_path = out;
  table_path.replace_extension(".trials.tsv");
  io::write_text_file(table_path, table);
  const auto& best = r.trials[r.best];
  std::string header = "# Found by anvil merge " + config.string() + " --search " + spec_path + ": trial " +
                       std::to_string(r.best) + " of " + std::to_string(r.trials.size()) + ", score ";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.5f (%s; trial 0, the config as written: %.5f).\n# Perplexities:", best.score,
                spec.objective == merge::SearchObjective::WorstRatio ? "worst perplexity ratio" : "mean perplexity ratio",
                r.trials[0].score);
  header += buf;
  for (size_t i = 0; i < r.files.size(); ++i) {
    std::snprintf(buf, sizeof buf, " %s %.3f (reference %.3f)", r.files[i].c_str(), best.perplexities[i],
                  r.reference_perplexities[i]);
    header += buf;
  }
  io::write_text_file(out, header + "\n" + r.best_yaml);
  std::printf("search: %zu trials; best %.5f (trial %zu), the config as written %.5f\n", r.trials.size(), best.score,
              r.best, r.trials[0].score);
  for (size_t i = 0; i < r.files.size(); ++i)
    std::printf("  %-24s %10.3f (reference %.3f, as written %.3f)\n", r.files[i].c_str(), best.perplexities[i],
                r.reference_perplexities[i], r.trials[0].perplexities[i]);
  std::printf("wrote %s and %s\n", out.string().c_str(), table_path.string().c_str());
  return 0;
}

}  // namespace

int run_merge(int argc, char** argv) {
  std::string methods;
  for (auto name : merge::merge_method_names()) methods += (methods.empty() ? "" : ", ") + std::string(name);
  cxxopts::Options options(argv[0], "Merge models as a mergekit-style YAML config says (" + methods +
                                        "), tensor by tensor.");
  options.positional_help("CONFIG.yaml -o OUT_DIR|OUT.gguf");
  options.add_options()
      ("config", "merge config (YAML)", cxxopts::value<std::string>())
      ("o,output", "output model directory, or a .gguf file to merge and quantize in one pass (written atomically)",
       cxxopts::value<std::string>())
      ("type", "with -o OUT.gguf: llama.cpp file type (F16, BF16, Q8_0, Q4_K_M, ...; default: the output dtype)",
       cxxopts::value<std::string>())
      ("imatrix", "with -o OUT.gguf: importance matrix for the k-quants (llama-imatrix's GGUF or .dat, or anvil "
       "imatrix's)", cxxopts::value<std::string>())
      ("shard-size", "maximum shard size, e.g. 5GB or 500MB", cxxopts::value<std::string>()->default_value("5GB"))
      ("seed", "seed for the random drops (DARE, DELLA)", cxxopts::value<uint64_t>()->default_value("0"))
      ("gradient-rule", "where a gradient parameter (t: [0, 0.5, 1]) is evaluated for the embeddings, final norm and "
       "LM head: current (t = 0 for all three, as mergekit since 2025-03) or legacy (final norm and LM head at t = 1, "
       "as older mergekit did)", cxxopts::value<std::string>()->default_value("current"))
      ("eval", "after merging, score perplexity on these text files", cxxopts::value<std::vector<std::string>>())
      ("more", "", cxxopts::value<std::vector<std::string>>())
      ("eval-inputs", "with --eval, also score every input model")
      ("search", "search the config's parameters as SPEC.yaml says (ranges, objective over validation files, "
       "budget); -o then names the best config's YAML file", cxxopts::value<std::string>())
      ("h,help", "show this help");
  options.add_options("runtime")
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("device", "cpu or cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("dtype", "output dtype: bf16, f16 or f32 (default: the config's dtype, else the base model's)",
       cxxopts::value<std::string>());
  options.parse_positional({"config", "more"});
  auto parsed = parse_command(options, argc, argv, {{"config", "CONFIG.yaml"}, {"output", "-o OUT_DIR"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  std::vector<std::string> eval_files;
  if (args.count("eval")) eval_files = args["eval"].as<std::vector<std::string>>();
  if (args.count("more")) {
    if (!args.count("eval")) throw UsageError("unexpected argument '" + args["more"].as<std::vector<std::string>>()[0] + "'");
    for (const auto& f : args["more"].as<std::vector<std::string>>()) eval_files.push_back(f);
  }
  for (const auto& f : eval_files) existing_path(f, "eval data file");
  auto config = merge::MergeConfig::load(existing_path(args["config"].as<std::string>(), "merge config"));
  const std::filesystem::path out = args["output"].as<std::string>();
  if (args.count("search")) {
    if (out.extension() != ".yaml" && out.extension() != ".yml")
      throw UsageError("with --search, -o names the best config's YAML file (e.g. -o best.yaml)");
    if (args.count("eval") || args.count("type") || args.count("imatrix"))
      throw UsageError("--search scores with its own spec's data; --eval, --type and --imatrix are for merging");
  }
  const bool to_gguf = out.extension() == ".gguf";
  if (!to_gguf && (args.count("type") || args.count("imatrix")))
    throw UsageError("--type and --imatrix are for a GGUF output (-o OUT.gguf)");

  merge::MergeOptions opts;
  opts.threads = thread_count(args);
  at::set_num_threads(opts.threads);
  opts.device = args["device"].as<std::string>();
  if (opts.device != "cpu" && opts.device != "cuda") throw UsageError("--device must be cpu or cuda");
  if (args.count("dtype")) opts.out_dtype = args["dtype"].as<std::string>();
  opts.seed = args["seed"].as<uint64_t>();
  if (const std::string rule = args["gradient-rule"].as<std::string>(); rule == "legacy")
    opts.gradient_rule = merge::GradientRule::Legacy;
  else if (rule != "current")
    throw UsageError("--gradient-rule must be current or legacy, not '" + rule + "'");
  try {
    opts.max_shard_bytes = io::parse_byte_size(args["shard-size"].as<std::string>());
  } catch (const Error& e) {
    throw UsageError(std::string("--shard-size: ") + e.what());
  }
  std::unique_ptr<Progress> bar;
  opts.progress = [&](int64_t done, int64_t total, uint64_t bytes) {
    if (!bar) bar = std::make_unique<Progress>("merge", total, "tensors");
    bar->update_bytes(done, bytes);
  };
  if (args.count("search")) return run_search(args["config"].as<std::string>(), args["search"].as<std::string>(), out, opts);

  // GGUF output: the type checked now (its name in the table's spelling), the importance read.
  std::optional<ImatrixFileUse> imatrix;
  if (to_gguf) {
    quant::GgufExportOptions g;
    g.type = "";  // no --type: the merge's output dtype (BF16, F16 or F32), as the converter writes floats
    if (args.count("type")) {
      g.type = args["type"].as<std::string>();
      if (!quant::find_quant_mix(g.type)) {
        std::string list;
        for (auto n : quant::quant_mix_names()) list += (list.empty() ? "" : ", ") + std::string(n);
        throw UsageError("--type '" + g.type + "' is not a llama.cpp file type anvil writes (" + list + ")");
      }
    }
    if (args.count("imatrix")) imatrix.emplace(existing_path(args["imatrix"].as<std::string>(), "importance matrix").string(), g);
    opts.to_gguf = std::move(g);
  }

  // The card: the inputs as the config names them, hashed while the merge reads them.
  CardBuilder card(argc, argv);
  std::vector<std::string> models;
  if (config.base_model) card.add_input("base", *config.base_model);
  for (const auto& s : config.slices)
    for (const auto& src : s.sources) {
      card.add_input("model", src.path);
      const std::string name = src.path.filename().string();
      if (std::find(models.begin(), models.end(), name) == models.end() &&
          (!config.base_model || src.path != std::filesystem::path(*config.base_model)))
        models.push_back(name);
    }
  card.start_hashing();
  {
    io::ModelCard& c = card.card();
    std::string list;
    for (size_t i = 0; i < models.size(); ++i)
      list += (i == 0 ? "" : i + 1 == models.size() ? " and " : ", ") + models[i];
    c.title = method_display_name(config.merge_method) + " merge of " + list;
    c.summary = c.title + (config.base_model ? " over base " + std::filesystem::path(*config.base_model).filename().string() : "") +
                ", as the mergekit config below says (" + std::to_string(config.slices.size()) + " slice" +
                (config.slices.size() == 1 ? "" : "s") + "), merged tensor by tensor by anvil.";
    c.config = io::read_text_file(config.source);
    c.config_language = "yaml";
    c.front.base_model_relation = "merge";
    c.front.library_name = "transformers";
    io::inherit_from_inputs(c, {"anvil", "merge", "mergekit", config.merge_method});
  }
  if (to_gguf) {
    // Before the merge: the GGUF's provenance keys (base models, license, tags) come from this card.
    opts.before_commit = [&](const std::filesystem::path& dir, uint64_t) { write_card(dir, card.card()); };
  } else {
    opts.before_commit = [&](const std::filesystem::path& dir, uint64_t bytes) {
      io::ModelCard& c = card.finish();
      c.output_bytes = bytes;
      write_card(dir, c);
    };
  }
  auto summary = merge::run_merge(config, out, opts);
  if (bar) bar->finish();
  for (const auto& note : summary.gguf_notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  // A GGUF's card lies beside it (OUT.gguf.md), as for anvil quantize.
  auto write_out_card = [&] {
    if (!to_gguf) return write_card(out, card.card());
    io::ModelCard& c = card.card();
    c.front.library_name = "gguf";
    c.output_bytes = summary.bytes_written;
    io::write_text_file(out.string() + ".md", io::render_model_card(c));
  };
  if (to_gguf) {
    io::ModelCard& c = card.finish();
    c.title += " (" + summary.gguf_type + " GGUF)";
    c.summary += " Written as a " + summary.gguf_type + " GGUF in the same pass, each tensor rounded to " +
                 summary.out_dtype + " and then encoded as anvil quantize encodes it.";
    write_out_card();
  }
  if (to_gguf)
    std::printf("merged %lld tensors (%lld layers, %s) with %s into %s (%s GGUF, %s) in %.2f s\n",
                static_cast<long long>(summary.tensors), static_cast<long long>(summary.layers), summary.out_dtype.c_str(),
                config.merge_method.c_str(), out.string().c_str(), summary.gguf_type.c_str(),
                human_bytes(static_cast<double>(summary.bytes_written)).c_str(), summary.seconds);
  else
    std::printf("merged %lld tensors (%lld layers, %s, %s in %zu shard%s) with %s into %s in %.2f s\n",
                static_cast<long long>(summary.tensors), static_cast<long long>(summary.layers),
                summary.out_dtype.c_str(), human_bytes(static_cast<double>(summary.bytes_written)).c_str(),
                summary.shards, summary.shards == 1 ? "" : "s", config.merge_method.c_str(), out.string().c_str(),
                summary.seconds);

  if (!eval_files.empty()) {
    model::LoadOptions load;
    std::vector<std::pair<std::string, std::filesystem::path>> rows{{"merged (" + config.merge_method + ")", out}};
    if (args.count("eval-inputs")) {
      std::vector<std::string> seen;
      auto add = [&](const std::string& label, const std::filesystem::path& p) {
        if (std::find(seen.begin(), seen.end(), p.string()) != seen.end()) return;
        seen.push_back(p.string());
        rows.emplace_back(label, p);
      };
      if (config.base_model) add(std::filesystem::path(*config.base_model).filename().string() + " (base)", *config.base_model);
      for (const auto& s : config.slices)
        for (const auto& src : s.sources) add(src.path.filename().string(), src.path);
    }
    print_eval_table(rows, eval_files, load, &card.card().measurements);
    // The measured table joins the card (README.md or OUT.gguf.md, replaced atomically).
    write_out_card();
  }
  return 0;
}

}  // namespace anvil::cli
