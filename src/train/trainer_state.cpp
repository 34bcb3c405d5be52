// trainer_state.json (peft/train/trainer_state.hpp): written by save_training_checkpoint,
// validated field by field before a resume uses any of it.

#include "peft/train/trainer_state.hpp"

#include <cmath>

#include "peft/error.hpp"

namespace peft::train {

namespace {

constexpr std::int64_t kFormat = 2;  // 1: optimizer.pt era, refused (docs/checkpoints.md)

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += digits[c >> 4], out += digits[c & 15];
  return out;
}
std::string from_hex(const std::string& hex, const std::string& where, const char* field) {
  auto val = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw SerializationError(where + ": `" + field + "`: bad hex digit");
  };
  if (hex.size() % 2) throw SerializationError(where + ": `" + field + "`: odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(val(hex[2 * i]) * 16 + val(hex[2 * i + 1]));
  return out;
}

}  // namespace

JsonValue TrainerState::to_json() const {
  JsonValue o = JsonValue::object();
  o.set("format", kFormat);
  o.set("step", step);
  o.set("tokens_seen", tokens_seen);
  o.set("elapsed_s", elapsed_s);
  o.set("sampler_state", std::to_string(sampler_state));  // a string: JSON readers lose uint64 precision
  o.set("cpu_rng_state", to_hex(cpu_rng_state));
  if (!cuda_rng_state.empty()) {
    o.set("cuda_device", cuda_device);
    o.set("cuda_rng_state", to_hex(cuda_rng_state));
  }
  JsonValue::Array m;
  for (const auto& r : metrics) m.push_back(r.to_json());
  o.set("metrics", JsonValue(std::move(m)));
  if (world_size > 1) {
    o.set("world_size", world_size);
    auto hex_array = [](const std::vector<std::string>& states) {
      JsonValue::Array a;
      for (const auto& st : states) a.push_back(JsonValue(to_hex(st)));
      return JsonValue(std::move(a));
    };
    o.set("rank_cpu_rng_states", hex_array(rank_cpu_rng_states));
    if (!rank_cuda_rng_states.empty()) o.set("rank_cuda_rng_states", hex_array(rank_cuda_rng_states));
  }
  if (!run.empty()) o.set("run", run.to_json());
  return o;
}

TrainerState TrainerState::from_json(const JsonValue& j, const std::string& where) {
  auto need = [&](const char* key) -> const JsonValue& {
    const JsonValue* v = j.find(key);
    if (!v) throw SerializationError(where + ": `" + key + "` missing");
    return *v;
  };
  auto count = [&](const char* key) {
    const std::int64_t v = need(key).as_int();
    if (v < 0) throw SerializationError(where + ": `" + key + "` = " + std::to_string(v) + " is negative");
    return v;
  };
  try {
    if (!j.is_object()) throw SerializationError(where + ": not a JSON object");
    const std::int64_t format = need("format").as_int();
    if (format != kFormat)
      throw SerializationError(where + ": format " + std::to_string(format) + ", this peft-cpp reads format " +
                               std::to_string(kFormat) + " (hint: start a new output_dir)");
    TrainerState s;
    s.step = count("step");
    s.tokens_seen = count("tokens_seen");
    s.elapsed_s = need("elapsed_s").as_double();
    if (!std::isfinite(s.elapsed_s) || s.elapsed_s < 0)
      throw SerializationError(where + ": `elapsed_s` = " + std::to_string(s.elapsed_s) + " is not a time");
    const std::string& sampler = need("sampler_state").as_string();
    if (sampler.empty() || sampler.size() > 20 || sampler.find_first_not_of("0123456789") != std::string::npos)
      throw SerializationError(where + ": `sampler_state` = \"" + sampler + "\" is not a decimal integer");
    s.sampler_state = std::stoull(sampler);  // throws out_of_range above 2^64 - 1
    s.cpu_rng_state = from_hex(need("cpu_rng_state").as_string(), where, "cpu_rng_state");
    if (const JsonValue* c = j.find("cuda_rng_state")) {
      s.cuda_rng_state = from_hex(c->as_string(), where, "cuda_rng_state");
      s.cuda_device = count("cuda_device");
    }
    for (const auto& r : need("metrics").as_array()) s.metrics.push_back(MetricsRecord::from_json(r, where));
    if (const JsonValue* w = j.find("world_size")) {
      s.world_size = w->as_int();
      if (s.world_size < 1) throw SerializationError(where + ": world_size = " + std::to_string(s.world_size) + " < 1");
      auto states = [&](const char* key, std::vector<std::string>& out) {
        const JsonValue* a = j.find(key);
        if (!a) return;
        for (const auto& h : a->as_array()) out.push_back(from_hex(h.as_string(), where, key));
        if (out.size() != static_cast<std::size_t>(s.world_size))
          throw SerializationError(where + ": `" + key + "` holds " + std::to_string(out.size()) +
                                   " states for world_size " + std::to_string(s.world_size));
      };
      states("rank_cpu_rng_states", s.rank_cpu_rng_states);
      if (s.rank_cpu_rng_states.empty()) throw SerializationError(where + ": `rank_cpu_rng_states` missing");
      states("rank_cuda_rng_states", s.rank_cuda_rng_states);
    }
    if (const JsonValue* r = j.find("run")) s.run = RunFingerprint::from_json(*r, where);
    return s;
  } catch (const SerializationError&) {
    throw;
  } catch (const std::exception& e) {
    throw SerializationError(where + ": malformed trainer state (" + e.what() + ")");
  }
}

}  // namespace peft::train
