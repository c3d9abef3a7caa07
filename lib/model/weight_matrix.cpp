#include "model/weight_matrix.h"

#include <algorithm>

#include "kernel/row_dot.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::model {
namespace {

class GgmlRows final : public WeightMatrix {
 public:
  GgmlRows(const quant::QuantType& type, const uint8_t* data, int64_t rows, int64_t cols,
           std::shared_ptr<const void> owner, std::vector<int32_t> order)
      : type_(type), data_(data), rows_(rows), cols_(cols), row_bytes_(static_cast<size_t>(type.row_bytes(cols))),
        owner_(std::move(owner)), order_(std::move(order)) {}

  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  std::string format() const override { return std::string(type_.name); }
  uint64_t stored_bytes() const override { return static_cast<uint64_t>(rows_) * row_bytes_; }

  void dequantize_rows(int64_t first, int64_t count, float* out) const override {
    for (int64_t r = 0; r < count; ++r) kernel::decode_row(type_.ggml_type, row(first + r), cols_, out + r * cols_);
  }
  void dot_rows(int64_t first, int64_t count, const float* x, float* y) const override {
    if (order_.empty())
      kernel::dot_rows(type_.ggml_type, row(first), row_bytes_, nullptr, count, cols_, x, y);
    else
      kernel::dot_rows(type_.ggml_type, data_, row_bytes_, order_.data() + first, count, cols_, x, y);
  }

 private:
  const uint8_t* row(int64_t r) const {
    const int64_t stored = order_.empty() ? r : order_[static_cast<size_t>(r)];
    return data_ + static_cast<size_t>(stored) * row_bytes_;
  }
  const quant::QuantType& type_;
  const uint8_t* data_;
  int64_t rows_, cols_;
  size_t row_bytes_;
  std::shared_ptr<const void> owner_;
  std::vector<int32_t> order_;
};

class StackedRows final : public WeightMatrix {
 public:
  explicit StackedRows(std::vector<WeightMatrixPtr> parts) : parts_(std::move(parts)) {
    for (const auto& p : parts_) {
      starts_.push_back(rows_);
      rows_ += p->rows();
    }
  }
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return parts_.front()->cols(); }
  std::string format() const override {
    std::vector<std::string> names;
    for (const auto& p : parts_)
      if (std::find(names.begin(), names.end(), p->format()) == names.end()) names.push_back(p->format());
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : "+") + n;
    return s;
  }
  uint64_t stored_bytes() const override {
    uint64_t n = 0;
    for (const auto& p : parts_) n += p->stored_bytes();
    return n;
  }
  void dequantize_rows(int64_t first, int64_t count, float* out) const override {
    each_part(first, count, [&](const WeightMatrix& p, int64_t from, int64_t n, int64_t done) {
      p.dequantize_rows(from, n, out + done * cols());
    });
  }
  void dot_rows(int64_t first, int64_t count, const float* x, float* y) const override {
    each_part(first, count, [&](const WeightMatrix& p, int64_t from, int64_t n, int64_t done) {
      p.dot_rows(from, n, x, y + done);
    });
  }

 private:
  // Calls fn(part, first row in the part, rows, rows done before) over the parts [first, first+count) covers.
  template <class Fn>
  void each_part(int64_t first, int64_t count, Fn&& fn) const {
    int64_t done = 0;
    for (size_t i = 0; i < parts_.size() && done < count; ++i) {
      const int64_t start = starts_[i], end = start + parts_[i]->rows();
      const int64_t from = std::max(first + done, start);
      if (from >= end) continue;
      const int64_t n = std::min(end, first + count) - from;
      fn(*parts_[i], from - start, n, done);
      done += n;
    }
  }
  std::vector<WeightMatrixPtr> parts_;
  std::vector<int64_t> starts_;
  int64_t rows_ = 0;
};

class RowSlice final : public WeightMatrix {
 public:
  RowSlice(WeightMatrixPtr m, int64_t first, int64_t count) : m_(std::move(m)), first_(first), count_(count) {}
  int64_t rows() const override { return count_; }
  int64_t cols() const override { return m_->cols(); }
  std::string format() const override { return m_->format(); }
  uint64_t stored_bytes() const override { return m_->stored_bytes() / m_->rows() * count_; }
  void dequantize_rows(int64_t first, int64_t count, float* out) const override {
    m_->dequantize_rows(first_ + first, count, out);
  }
  void dot_rows(int64_t first, int64_t count, const float* x, float* y) const override {
    m_->dot_rows(first_ + first, count, x, y);
  }

 private:
  WeightMatrixPtr m_;
  int64_t first_, count_;
};

}  // namespace

WeightMatrixPtr row_slice(WeightMatrixPtr matrix, int64_t first, int64_t count) {
  if (first < 0 || count <= 0 || first + count > matrix->rows()) fail("weights", "row slice outside the matrix");
  if (first == 0 && count == matrix->rows()) return matrix;
  return std::make_shared<RowSlice>(std::move(matrix), first, count);
}

WeightMatrixPtr stored_rows(uint32_t ggml_type, const uint8_t* data, int64_t rows, int64_t cols,
                            std::shared_ptr<const void> owner, std::vector<int32_t> row_order) {
  const quant::QuantType* type = quant::find_quant_type(ggml_type);
  if (!type) fail("weights", "ggml type " + std::to_string(ggml_type) + " cannot be decoded");
  if (rows <= 0 || cols <= 0 || cols % type->block_elements != 0)
    fail("weights", "a " + std::string(type->name) + " matrix needs rows of whole blocks of " +
                        std::to_string(type->block_elements) + " elements, not " + std::to_string(cols));
  if (!row_order.empty()) {
    if (static_cast<int64_t>(row_order.size()) != rows) fail("weights", "row order does not cover every row");
    for (int32_t r : row_order)
      if (r < 0 || r >= rows) fail("weights", "row order points outside the matrix");
  }
  return std::make_shared<GgmlRows>(*type, data, rows, cols, std::move(owner), std::move(row_order));
}

WeightMatrixPtr stacked_rows(std::vector<WeightMatrixPtr> parts) {
  if (parts.empty()) fail("weights", "nothing to stack");
  if (parts.size() == 1) return parts.front();
  for (const auto& p : parts)
    if (p->cols() != parts.front()->cols()) fail("weights", "stacked matrices must have the same number of columns");
  return std::make_shared<StackedRows>(std::move(parts));
}

int ggml_type_of_dtype(io::DType dtype) {
  switch (dtype) {
    case io::DType::F32: return 0;
    case io::DType::F16: return 1;
    case io::DType::BF16: return 30;
    default: return -1;
  }
}

}  // namespace anvil::model
