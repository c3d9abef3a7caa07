#include "quant/int_matrix.h"

#include <vector>

namespace anvil::quant {
namespace {

template <class Level>
class IntGroupRows final : public model::WeightMatrix {
 public:
  IntGroupRows(const IntLevels& l, int bits) : rows_(l.levels.size(0)), cols_(l.levels.size(1)), groups_(l.scales.size(1)), bits_(bits) {
    const Level* lv = l.levels.data_ptr<Level>();
    levels_.assign(lv, lv + rows_ * cols_);
    const float* sc = l.scales.data_ptr<float>();
    scales_.assign(sc, sc + rows_ * groups_);
    const int64_t* g = l.group_of_column.data_ptr<int64_t>();
    group_.assign(g, g + cols_);
    // Contiguous equal groups (no act-order): the scale factors out of each group's sum.
    contiguous_ = cols_ % groups_ == 0;
    for (int64_t k = 0; k < cols_ && contiguous_; ++k) contiguous_ = group_[k] == k / (cols_ / groups_);
  }
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  std::string format() const override { return "INT" + std::to_string(bits_) + " groups"; }
  uint64_t stored_bytes() const override {
    return levels_.size() * sizeof(Level) + scales_.size() * sizeof(float);
  }
  void dequantize_rows(int64_t first, int64_t count, float* out) const override {
    for (int64_t r = first; r < first + count; ++r, out += cols_) {
      const Level* l = &levels_[r * cols_];
      const float* s = &scales_[r * groups_];
      for (int64_t k = 0; k < cols_; ++k) out[k] = static_cast<float>(l[k]) * s[group_[k]];
    }
  }
  void dot_rows(int64_t first, int64_t count, const float* x, float* y) const override {
    constexpr int kLanes = 8;
    for (int64_t r = first; r < first + count; ++r) {
      const Level* l = &levels_[r * cols_];
      const float* s = &scales_[r * groups_];
      float total = 0;
      if (contiguous_) {
        const int64_t size = cols_ / groups_;
        for (int64_t g = 0; g < groups_; ++g) {
          float acc[kLanes] = {};
          int64_t k = g * size;
          for (; k + kLanes <= (g + 1) * size; k += kLanes)
            for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<float>(l[k + j]) * x[k + j];
          float sum = 0;
          for (; k < (g + 1) * size; ++k) sum += static_cast<float>(l[k]) * x[k];
          for (float a : acc) sum += a;
          total += s[g] * sum;
        }
      } else {
        for (int64_t k = 0; k < cols_; ++k) total += static_cast<float>(l[k]) * s[group_[k]] * x[k];
      }
      y[r - first] = total;
    }
  }

 private:
  int64_t rows_, cols_, groups_;
  int bits_;
  bool contiguous_ = true;
  std::vector<Level> levels_;
  std::vector<float> scales_;
  std::vector<int64_t> group_;
};

}  // namespace

model::WeightMatrixPtr int_matrix(IntLevels levels, int bits) {
  if (levels.levels.scalar_type() == at::kShort) return std::make_shared<IntGroupRows<int16_t>>(levels, bits);
  return std::make_shared<IntGroupRows<int8_t>>(levels, bits);
}

}  // namespace anvil::quant
