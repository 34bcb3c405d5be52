#pragma once
/// Loss curve as a self-contained SVG (no scripts, fonts or external references): training loss
/// (line) and held-out loss (line with dots) against the optimizer step, axes with "nice" ticks
/// (1/2/5 x 10^k), axis labels, a title and a legend. Opens in any browser.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "peft/train/metrics.hpp"

namespace peft::train {

/// Tick values covering [lo, hi] with about `target` intervals at 1/2/5 x 10^k spacing.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  if (!(hi > lo)) hi = lo + 1.0;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag * (1 + 1e-9)) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return out;
}

namespace detail {
inline std::string svg_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}
inline std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}
}  // namespace detail

/// SVG text of the loss curves in `records` (train: every record; eval: records with eval_loss).
inline std::string render_loss_svg(const std::vector<MetricsRecord>& records, const std::string& title = "Loss") {
  using detail::svg_num;
  const double W = 720, H = 420, left = 70, right = 20, top = 40, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  std::vector<std::pair<double, double>> train, eval;
  for (const auto& r : records) {
    if (std::isfinite(r.loss)) train.emplace_back(static_cast<double>(r.step), r.loss);
    if (r.eval_loss && std::isfinite(*r.eval_loss)) eval.emplace_back(static_cast<double>(r.step), *r.eval_loss);
  }
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto* s : {&train, &eval})
    for (const auto& [x, y] : *s) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  const auto xt = nice_ticks(x0, x1), yt = nice_ticks(y0, y1);
  x0 = std::min(x0, xt.front()), x1 = std::max(x1, xt.back());
  y0 = std::min(y0, yt.front()), y1 = std::max(y1, yt.back());
  auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + (1.0 - (y - y0) / (y1 - y0)) * ph; };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + svg_num(W) + "\" height=\"" + svg_num(H) +
       "\" viewBox=\"0 0 " + svg_num(W) + " " + svg_num(H) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + svg_num(W / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" +
       detail::xml_escape(title) + "</text>\n";
  // Grid and ticks.
  s += "<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n";
  for (double v : xt) s += "<line x1=\"" + svg_num(X(v)) + "\" y1=\"" + svg_num(top) + "\" x2=\"" + svg_num(X(v)) + "\" y2=\"" + svg_num(top + ph) + "\"/>\n";
  for (double v : yt) s += "<line x1=\"" + svg_num(left) + "\" y1=\"" + svg_num(Y(v)) + "\" x2=\"" + svg_num(left + pw) + "\" y2=\"" + svg_num(Y(v)) + "\"/>\n";
  s += "</g>\n<g stroke=\"black\" stroke-width=\"1\">\n";
  s += "<line x1=\"" + svg_num(left) + "\" y1=\"" + svg_num(top + ph) + "\" x2=\"" + svg_num(left + pw) + "\" y2=\"" + svg_num(top + ph) + "\"/>\n";
  s += "<line x1=\"" + svg_num(left) + "\" y1=\"" + svg_num(top) + "\" x2=\"" + svg_num(left) + "\" y2=\"" + svg_num(top + ph) + "\"/>\n";
  for (double v : xt) s += "<line x1=\"" + svg_num(X(v)) + "\" y1=\"" + svg_num(top + ph) + "\" x2=\"" + svg_num(X(v)) + "\" y2=\"" + svg_num(top + ph + 5) + "\"/>\n";
  for (double v : yt) s += "<line x1=\"" + svg_num(left - 5) + "\" y1=\"" + svg_num(Y(v)) + "\" x2=\"" + svg_num(left) + "\" y2=\"" + svg_num(Y(v)) + "\"/>\n";
  s += "</g>\n<g fill=\"black\">\n";
  for (double v : xt) s += "<text class=\"xtick\" x=\"" + svg_num(X(v)) + "\" y=\"" + svg_num(top + ph + 19) + "\" text-anchor=\"middle\">" + detail::tick_label(v) + "</text>\n";
  for (double v : yt) s += "<text class=\"ytick\" x=\"" + svg_num(left - 8) + "\" y=\"" + svg_num(Y(v) + 4) + "\" text-anchor=\"end\">" + detail::tick_label(v) + "</text>\n";
  s += "<text x=\"" + svg_num(left + pw / 2) + "\" y=\"" + svg_num(H - 15) + "\" text-anchor=\"middle\">step</text>\n";
  s += "<text x=\"18\" y=\"" + svg_num(top + ph / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " +
       svg_num(top + ph / 2) + ")\">loss (cross entropy, nats/token)</text>\n</g>\n";
  auto polyline = [&](const std::vector<std::pair<double, double>>& pts, const char* color, const char* id) {
    if (pts.empty()) return;
    s += std::string("<polyline id=\"") + id + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.8\" points=\"";
    for (const auto& [x, y] : pts) s += svg_num(X(x)) + "," + svg_num(Y(y)) + " ";
    s += "\"/>\n";
  };
  polyline(train, "#1f77b4", "train");
  polyline(eval, "#d62728", "eval");
  for (const auto& [x, y] : eval)
    s += "<circle cx=\"" + svg_num(X(x)) + "\" cy=\"" + svg_num(Y(y)) + "\" r=\"3\" fill=\"#d62728\"/>\n";
  // Legend (top right).
  const double lx = left + pw - 150, ly = top + 12;
  s += "<g><rect x=\"" + svg_num(lx - 8) + "\" y=\"" + svg_num(ly - 12) + "\" width=\"150\" height=\"44\" fill=\"white\" stroke=\"#999\"/>\n";
  s += "<line x1=\"" + svg_num(lx) + "\" y1=\"" + svg_num(ly) + "\" x2=\"" + svg_num(lx + 24) + "\" y2=\"" + svg_num(ly) + "\" stroke=\"#1f77b4\" stroke-width=\"2\"/>";
  s += "<text x=\"" + svg_num(lx + 30) + "\" y=\"" + svg_num(ly + 4) + "\">train loss</text>\n";
  s += "<line x1=\"" + svg_num(lx) + "\" y1=\"" + svg_num(ly + 20) + "\" x2=\"" + svg_num(lx + 24) + "\" y2=\"" + svg_num(ly + 20) + "\" stroke=\"#d62728\" stroke-width=\"2\"/>";
  s += "<circle cx=\"" + svg_num(lx + 12) + "\" cy=\"" + svg_num(ly + 20) + "\" r=\"3\" fill=\"#d62728\"/>";
  s += "<text x=\"" + svg_num(lx + 30) + "\" y=\"" + svg_num(ly + 24) + "\">held-out loss</text></g>\n";
  s += "</svg>\n";
  return s;
}

/// Write render_loss_svg(records, title) to `path` atomically.
inline void write_loss_svg(const std::filesystem::path& path, const std::vector<MetricsRecord>& records,
                           const std::string& title = "Loss") {
  write_file_atomically(path, render_loss_svg(records, title));
}

}  // namespace peft::train
