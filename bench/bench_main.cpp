// peft_bench: Google Benchmark's console output, then a table of ratios against the plain
// LibTorch baseline measured in the same run (benchmark names are "<group>/<variant>"; each group
// has a "frozen" baseline and, for adapter variants, a "lora" reference).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      // With repetitions, keep the median; otherwise the single run.
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      const std::string& name = r.run_name.function_name;
      const auto cut = name.rfind('/');
      if (cut == std::string::npos) continue;
      const std::string group = name.substr(0, cut), variant = name.substr(cut + 1);
      times_[group][variant] = r.GetAdjustedRealTime();
      if (r.counters.count("x_frozen")) {
        auto counter = [&](const char* k) { return r.counters.count(k) ? r.counters.at(k).value : -1.0; };
        paired_[group][variant] = {counter("x_frozen"), counter("x_lora"), counter("extra_saved_MB"),
                                   counter("peak_x_frozen")};
        continue;
      }
      if (std::find(order_.begin(), order_.end(), group) == order_.end()) order_.push_back(group);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    if (!paired_.empty()) {
      std::printf("\nPaired steps (median of per-iteration ratios, same iterations):\n");
      std::printf("(extra saved MB: bytes the forward keeps beyond the frozen layer's; peak: step peak bytes vs frozen)\n");
      std::printf("%-40s %-26s %9s %9s %15s %12s\n", "group", "variant", "x frozen", "x lora", "extra saved MB",
                  "peak x frz");
      auto cell = [](double v, int width, int precision) {
        if (v < 0) std::printf(" %*s", width, "-"); else std::printf(" %*.*f", width, precision, v);
      };
      for (const auto& [g, vs] : paired_)
        for (const auto& [v, p] : vs) {
          std::printf("%-40s %-26s", g.c_str(), v.c_str());
          cell(p.x_frozen, 9, 3);
          cell(p.x_lora, 9, 3);
          cell(p.extra_saved_mb, 15, 1);
          cell(p.peak_x_frozen, 12, 3);
          std::printf("\n");
        }
    }
    std::printf("\n%-34s %-16s %12s %10s %10s\n", "group", "variant", "time (ms)", "x frozen", "x lora");
    for (const auto& g : order_) {
      const auto& t = times_[g];
      const double frozen = t.count("frozen") ? t.at("frozen") : 0, lora = t.count("lora") ? t.at("lora") : 0;
      for (const auto& [v, ms] : t) {
        std::printf("%-34s %-16s %12.3f", g.c_str(), v.c_str(), ms);
        if (frozen > 0) std::printf(" %10.3f", ms / frozen); else std::printf(" %10s", "-");
        if (lora > 0 && v != "frozen") std::printf(" %10.3f", ms / lora); else std::printf(" %10s", "-");
        std::printf("\n");
      }
    }
  }

 private:
  std::map<std::string, std::map<std::string, double>> times_;
  struct Paired {
    double x_frozen, x_lora, extra_saved_mb, peak_x_frozen;  // -1: not measured
  };
  std::map<std::string, std::map<std::string, Paired>> paired_;
  std::vector<std::string> order_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
