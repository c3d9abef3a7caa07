#pragma once
// A loss-curve picture (SVG, no dependencies) that a person can open in any browser.
#include <string>
#include <utility>
#include <vector>

namespace anvil::train {

struct CurveSeries {
  std::string label;
  std::string color;  // CSS color
  std::vector<std::pair<double, double>> points;  // (step, loss)
  bool markers = false;                           // dots instead of a line
};

std::string loss_curve_svg(const std::vector<CurveSeries>& series, const std::string& title);

}  // namespace anvil::train
