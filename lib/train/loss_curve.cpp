#include "train/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace anvil::train {
namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 100 ? "%.0f" : "%.2g", v);
  return buf;
}

// Escapes text for XML.
std::string xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string loss_curve_svg(const std::vector<CurveSeries>& series, const std::string& title) {
  const double W = 720, H = 420, left = 60, right = 20, top = 40, bottom = 50;
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (y1 - y) / (y1 - y0) * (H - top - bottom); };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(W) + "\" height=\"" + num(H) +
                    "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
                    "fill=\"white\"/>\n<text x=\"" + num(W / 2) + "\" y=\"22\" text-anchor=\"middle\" "
                    "font-size=\"15\">" + xml(title) + "</text>\n";
  for (int i = 0; i <= 5; ++i) {  // grid and tick labels
    const double y = y0 + (y1 - y0) * i / 5, x = x0 + (x1 - x0) * i / 5;
    svg += "<line x1=\"" + num(left) + "\" x2=\"" + num(W - right) + "\" y1=\"" + num(py(y)) + "\" y2=\"" +
           num(py(y)) + "\" stroke=\"#ddd\"/>\n<text x=\"" + num(left - 6) + "\" y=\"" + num(py(y) + 4) +
           "\" text-anchor=\"end\">" + tick_label(y) + "</text>\n";
    svg += "<text x=\"" + num(px(x)) + "\" y=\"" + num(H - bottom + 18) + "\" text-anchor=\"middle\">" +
           tick_label(std::round(x)) + "</text>\n";
  }
  svg += "<text x=\"" + num(W / 2) + "\" y=\"" + num(H - 10) + "\" text-anchor=\"middle\">step</text>\n";
  svg += "<text x=\"16\" y=\"" + num(H / 2) + "\" transform=\"rotate(-90 16 " + num(H / 2) +
         ")\" text-anchor=\"middle\">loss</text>\n";
  double legend_y = top + 10;
  for (const auto& s : series) {
    if (s.markers) {
      for (const auto& [x, y] : s.points)
        if (std::isfinite(y)) svg += "<circle cx=\"" + num(px(x)) + "\" cy=\"" + num(py(y)) + "\" r=\"3.5\" fill=\"" + s.color + "\"/>\n";
    } else {
      std::string pts;
      for (const auto& [x, y] : s.points)
        if (std::isfinite(y)) pts += num(px(x)) + "," + num(py(y)) + " ";
      svg += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"1.5\" points=\"" + pts + "\"/>\n";
    }
    svg += "<rect x=\"" + num(W - right - 150) + "\" y=\"" + num(legend_y - 9) + "\" width=\"12\" height=\"12\" fill=\"" +
           s.color + "\"/><text x=\"" + num(W - right - 132) + "\" y=\"" + num(legend_y + 1) + "\">" + xml(s.label) +
           "</text>\n";
    legend_y += 18;
  }
  return svg + "</svg>\n";
}

}  // namespace anvil::train
