#pragma once
// A mergekit-style YAML merge configuration. The schema is mergekit's so that existing configs
// run unchanged when their model paths are local directories. Keys anvil does not support are
// errors that name the key, never silently ignored.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace anvil::merge {

// A parameter's value: a number (bools are 0/1) or a string.
using ParamValue = std::variant<double, std::string>;

// A parameter setting as written in YAML: a scalar, a gradient list interpolated over the layers,
// or a list of {filter: SUBSTRING, value: ...} picked by tensor name (first match; no filter or
// "*" matches everything).
struct Condition;
struct Setting {
  enum class Kind { Scalar, Gradient, Conditional } kind = Kind::Scalar;
  ParamValue scalar = 0.0;
  std::vector<ParamValue> gradient;
  // A vector of a type completed below (allowed since C++17), not of std::pair<..., Setting>:
  // the pair's conditional default constructor needs Setting complete, which clang refuses.
  std::vector<Condition> conditions;
};
struct Condition {
  std::optional<std::string> filter;
  Setting value;
};

// mergekit's evaluate_setting: `t` in [0, 1] is the layer's position within its slice.
std::optional<ParamValue> evaluate_setting(const std::string& tensor_name, const Setting& setting, double t);

using Settings = std::map<std::string, Setting>;

struct InputSlice {
  std::string model;                          // as written in the config
  std::filesystem::path path;                 // resolved local directory
  std::optional<std::pair<int64_t, int64_t>> layer_range;  // absent: all layers (models: form)
  Settings parameters;
};

struct OutputSlice {
  std::vector<InputSlice> sources;
  Settings parameters;
};

struct MergeConfig {
  std::string merge_method;
  std::optional<std::string> base_model;      // resolved path as string, matched against sources
  std::optional<std::string> dtype;
  std::optional<std::string> out_dtype;
  std::optional<std::string> tokenizer_source;
  Settings parameters;
  std::vector<OutputSlice> slices;            // `models:` is normalized into one slice
  bool from_models = false;                   // written with models: rather than slices:
  std::filesystem::path source;               // the YAML file

  static MergeConfig load(const std::filesystem::path& yaml_file);
  static MergeConfig parse(const std::string& yaml_text, const std::filesystem::path& where);
};

// Parameter lookup with mergekit's precedence: the model's own source parameters, then the
// slice's, then the top level.
class ParameterReader {
 public:
  ParameterReader(const MergeConfig& config, const OutputSlice* slice, std::string tensor_name, double t)
      : config_(config), slice_(slice), tensor_(std::move(tensor_name)), t_(t) {}
  std::optional<ParamValue> get(const std::string& name, const std::string* model = nullptr) const;

 private:
  const MergeConfig& config_;
  const OutputSlice* slice_;
  std::string tensor_;
  double t_;
};

}  // namespace anvil::merge
