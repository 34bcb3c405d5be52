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
        paired_[group][variant] = {r.counters.at("x_frozen").value, r.counters.at("x_lora").value};
        continue;
      }
      if (std::find(order_.begin(), order_.end(), group) == order_.end()) order_.push_back(group);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    if (!paired_.empty()) {
      std::printf("\nPaired steps (median of per-iteration ratios, same iterations):\n");
      std::printf("%-40s %-16s %10s %10s\n", "group", "variant", "x frozen", "x lora");
      for (const auto& [g, vs] : paired_)
        for (const auto& [v, ratio] : vs) std::printf("%-40s %-16s %10.3f %10.3f\n", g.c_str(), v.c_str(), ratio.first, ratio.second);
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
  std::map<std::string, std::map<std::string, std::pair<double, double>>> paired_;
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
