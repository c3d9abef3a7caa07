#include "merge/merge_config.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

#include "io/atomic_file.h"
#include "util/error.h"
#include "util/yaml_reader.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

struct Parser : util::YamlReader {
  fs::path config_dir;

  Parser(const fs::path& where, fs::path dir) : YamlReader(where), config_dir(std::move(dir)) {}

  ParamValue scalar(const YAML::Node& n) const {
    if (!n.IsScalar()) error(n, "expected a number, boolean or string");
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True") return 1.0;
    if (s == "false" || s == "False") return 0.0;
    // NaN and infinities pass range checks written as `x < lo || x > hi` and poison every
    // tensor they touch, so they are refused here, in every spelling (YAML's .nan, .inf too).
    std::string lower;
    for (char ch : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (const char* bad : {"nan", ".nan", "inf", ".inf", "-.inf", "+.inf", "-inf", "+inf", "infinity", "-infinity"})
      if (lower == bad) error(n, "a parameter must be a finite number, not '" + s + "'");
    double v = 0;
    const char* begin = s.data() + (s.starts_with('+') ? 1 : 0);
    auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc::result_out_of_range) error(n, "number '" + s + "' is out of range");
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) {
      if (!std::isfinite(v)) error(n, "a parameter must be a finite number, not '" + s + "'");
      return v;
    }
    return s;
  }

  Setting setting(const YAML::Node& n) const {
    Setting s;
    if (n.IsScalar()) {
      s.kind = Setting::Kind::Scalar;
      s.scalar = scalar(n);
    } else if (n.IsSequence() && n.size() > 0 && n[0].IsMap()) {
      s.kind = Setting::Kind::Conditional;
      for (const auto& c : n) {
        only_keys(c, {"filter", "value"}, "a conditional parameter");
        if (!c["value"]) error(c, "conditional parameter without 'value'");
        std::optional<std::string> filter;
        if (c["filter"] && !c["filter"].IsNull()) filter = string(c["filter"], "filter");
        s.conditions.push_back({filter, setting(c["value"])});
      }
    } else if (n.IsSequence() && n.size() > 0) {
      s.kind = Setting::Kind::Gradient;
      for (const auto& e : n) s.gradient.push_back(scalar(e));
    } else {
      error(n, "a parameter must be a scalar, a non-empty list of values, or a list of {filter, value}");
    }
    return s;
  }

  Settings settings(const YAML::Node& n) const {
    Settings out;
    if (!n || n.IsNull()) return out;
    if (!n.IsMap()) error(n, "parameters must be a mapping");
    for (const auto& kv : n) out[string(kv.first, "a parameter name")] = setting(kv.second);
    return out;
  }

  fs::path resolve_model(const YAML::Node& n) const {
    if (!n.IsScalar()) error(n, "model must be a path");
    std::string m = n.Scalar();
    // mergekit's "path+lora_path" syntax and hub ids are not local directories.
    fs::path p(m);
    // A model is a directory (safetensors, plain or INT-quantized) or a GGUF file.
    auto usable = [](const fs::path& q) { return io::is_directory_quietly(q) || io::is_regular_file_quietly(q); };
    if (usable(p)) return fs::absolute(p).lexically_normal();
    if (p.is_relative() && usable(config_dir / p)) return fs::absolute(config_dir / p).lexically_normal();
    error(n, "model '" + m + "' is not a local directory or GGUF file (looked in the current directory and next to the config)");
  }

  InputSlice input(const YAML::Node& n, bool with_range) const {
    if (with_range) only_keys(n, {"model", "layer_range", "parameters"}, "a slice source");
    else only_keys(n, {"model", "parameters"}, "a model entry");
    if (!n["model"]) error(n, "missing 'model'");
    InputSlice s;
    s.model = string(n["model"], "model");
    s.path = resolve_model(n["model"]);
    s.parameters = settings(n["parameters"]);
    if (with_range) {
      const auto& r = n["layer_range"];
      if (!r || !r.IsSequence() || r.size() != 2) error(n, "slice source needs layer_range: [start, end]");
      s.layer_range = std::make_pair(integer(r[0], "layer_range"), integer(r[1], "layer_range"));
      if (s.layer_range->first < 0 || s.layer_range->second <= s.layer_range->first)
        error(r, "layer_range must be [start, end) with 0 <= start < end");
    }
    return s;
  }
};

double as_number(const ParamValue& v) { return std::holds_alternative<double>(v) ? std::get<double>(v) : 0.0; }

}  // namespace

std::optional<ParamValue> evaluate_setting(const std::string& tensor_name, const Setting& s, double t) {
  switch (s.kind) {
    case Setting::Kind::Scalar:
      return s.scalar;
    case Setting::Kind::Gradient: {
      bool numeric = true;
      for (const auto& v : s.gradient) numeric &= std::holds_alternative<double>(v);
      const size_t n = s.gradient.size();
      double scaled = t * static_cast<double>(n - 1);
      size_t i0 = static_cast<size_t>(scaled);
      if (!numeric) return s.gradient[std::min(i0, n - 1)];
      size_t i1 = std::min(n - 1, i0 + 1);
      double frac = scaled - static_cast<double>(i0);
      return (1 - frac) * as_number(s.gradient[std::min(i0, n - 1)]) + frac * as_number(s.gradient[i1]);
    }
    case Setting::Kind::Conditional:
      for (const auto& [filter, value] : s.conditions)
        if (!filter || *filter == "*" || (!tensor_name.empty() && tensor_name.find(*filter) != std::string::npos))
          return evaluate_setting(tensor_name, value, t);
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<ParamValue> ParameterReader::get(const std::string& name, const std::string* model) const {
  auto lookup = [&](const Settings& s) -> std::optional<ParamValue> {
    auto it = s.find(name);
    if (it == s.end()) return std::nullopt;
    return evaluate_setting(tensor_, it->second, t_);
  };
  if (slice_) {
    if (model)
      for (const auto& src : slice_->sources)
        if (src.path.string() == *model)
          if (auto v = lookup(src.parameters)) return v;
    if (auto v = lookup(slice_->parameters)) return v;
  }
  return lookup(config_.parameters);
}

MergeConfig MergeConfig::parse(const std::string& text, const fs::path& where) {
  Parser p(where, where.has_parent_path() ? where.parent_path() : fs::path("."));
  YAML::Node root = util::load_yaml(text, where.string());
  if (!root.IsMap()) fail(where.string(), "the config must be a YAML mapping");
  try {
    p.only_keys(root, {"merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
                       "tokenizer_source"},
                "the merge config");
    MergeConfig c;
    c.source = where;
    if (!root["merge_method"]) p.error(root, "missing 'merge_method'");
    c.merge_method = p.string(root["merge_method"], "merge_method");
    if (root["base_model"] && !root["base_model"].IsNull())
      c.base_model = p.resolve_model(root["base_model"]).string();
    if (root["dtype"]) c.dtype = p.string(root["dtype"], "dtype");
    if (root["out_dtype"]) c.out_dtype = p.string(root["out_dtype"], "out_dtype");
    if (root["tokenizer_source"]) c.tokenizer_source = p.string(root["tokenizer_source"], "tokenizer_source");
    c.parameters = p.settings(root["parameters"]);
    const bool has_models = root["models"] && !root["models"].IsNull();
    const bool has_slices = root["slices"] && !root["slices"].IsNull();
    if (has_models == has_slices) p.error(root, "exactly one of 'models' or 'slices' must be given");
    if (has_models) {
      if (!root["models"].IsSequence() || root["models"].size() == 0) p.error(root["models"], "'models' must be a non-empty list");
      OutputSlice slice;
      for (const auto& m : root["models"]) slice.sources.push_back(p.input(m, false));
      c.slices.push_back(std::move(slice));
      c.from_models = true;
    } else {
      if (!root["slices"].IsSequence() || root["slices"].size() == 0) p.error(root["slices"], "'slices' must be a non-empty list");
      for (const auto& s : root["slices"]) {
        p.only_keys(s, {"sources", "parameters"}, "a slice");
        if (!s["sources"] || !s["sources"].IsSequence() || s["sources"].size() == 0)
          p.error(s, "a slice needs a non-empty 'sources' list");
        OutputSlice slice;
        slice.parameters = p.settings(s["parameters"]);
        for (const auto& src : s["sources"]) slice.sources.push_back(p.input(src, true));
        c.slices.push_back(std::move(slice));
      }
    }
    return c;
  } catch (const YAML::Exception& e) {
    fail(where.string() + ":" + std::to_string(e.mark.line + 1), "unexpected value (" + e.msg + ")");
  }
}

MergeConfig MergeConfig::load(const fs::path& yaml_file) {
  if (!fs::exists(yaml_file)) fail(yaml_file.string(), "not found");
  return parse(io::read_text_file(yaml_file), yaml_file);
}

}  // namespace anvil::merge
