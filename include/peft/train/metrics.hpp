#pragma once
/// metrics.jsonl: one JSON object per logged or evaluated step, e.g.
///
///   {"step": 10, "loss": 3.912, "lr": 0.001, "tokens_per_s": 1843.2, "elapsed_s": 4.1}
///   {"step": 50, "loss": 2.871, "lr": 0.0009, "tokens_per_s": 1901.0, "elapsed_s": 19.8, "eval_loss": 2.95}
///
/// `loss` is the mean training loss over the steps since the previous record; `elapsed_s`
/// counts training time across resumes; `eval_loss` is present only when the held-out set was
/// evaluated at that step; `phase` ("pretrain") only for the default run's pre-training records.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"

namespace peft::train {

struct MetricsRecord {
  std::int64_t step = 0;
  double loss = 0.0;
  double lr = 0.0;
  double tokens_per_s = 0.0;
  double elapsed_s = 0.0;
  std::optional<double> eval_loss;
  std::string phase;  ///< "" = the LoRA fine-tune

  JsonValue to_json() const {
    JsonValue o = JsonValue::object();
    o.set("step", step);
    o.set("loss", loss);
    o.set("lr", lr);
    o.set("tokens_per_s", tokens_per_s);
    o.set("elapsed_s", elapsed_s);
    if (eval_loss) o.set("eval_loss", *eval_loss);
    if (!phase.empty()) o.set("phase", phase);
    return o;
  }
  static MetricsRecord from_json(const JsonValue& o, const std::string& where = "metrics") {
    auto num = [&](const char* key) -> double {
      const JsonValue* v = o.find(key);
      if (!v || !v->is_number()) throw SerializationError(where + ": `" + key + "` missing or not a number");
      return v->as_double();
    };
    MetricsRecord r;
    const JsonValue* s = o.find("step");
    if (!s || !s->is_int()) throw SerializationError(where + ": `step` missing or not an integer");
    r.step = s->as_int();
    r.loss = num("loss");
    r.lr = num("lr");
    r.tokens_per_s = num("tokens_per_s");
    r.elapsed_s = num("elapsed_s");
    if (o.find("eval_loss")) r.eval_loss = num("eval_loss");
    if (const JsonValue* p = o.find("phase"); p && p->is_string()) r.phase = p->as_string();
    return r;
  }
};

/// Parse metrics.jsonl text (blank lines skipped). A torn last line (a kill mid-write) is
/// dropped; any other bad line is a SerializationError naming its line number.
inline std::vector<MetricsRecord> parse_metrics_jsonl(const std::string& text, const std::string& source = "metrics.jsonl") {
  std::vector<MetricsRecord> out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  const bool ends_clean = text.empty() || text.back() == '\n';
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = source + ":" + std::to_string(n);
    try {
      out.push_back(MetricsRecord::from_json(JsonValue::parse(line), where));
    } catch (const SerializationError&) {
      if (!ends_clean && in.peek() == std::char_traits<char>::eof()) break;
      throw;
    }
  }
  return out;
}

inline std::string metrics_jsonl(const std::vector<MetricsRecord>& records) {
  std::string out;
  for (const auto& r : records) out += r.to_json().dump() + "\n";
  return out;
}

/// Appends one line per record and flushes it, so a killed run keeps every finished line.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  /// Replace `path` atomically with `existing` (e.g. the records of a resumed checkpoint), then
  /// append from there.
  MetricsWriter(const std::filesystem::path& path, const std::vector<MetricsRecord>& existing) : path_(path) {
    write_file_atomically(path, metrics_jsonl(existing));
    out_.open(path, std::ios::app | std::ios::binary);
    if (!out_) throw SerializationError(path.string() + ": cannot open for appending");
  }
  void write(const MetricsRecord& r) {
    out_ << r.to_json().dump() << '\n' << std::flush;
    if (!out_) throw SerializationError(path_.string() + ": write failed");
  }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace peft::train
