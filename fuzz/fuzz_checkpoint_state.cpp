// libFuzzer target: the readers of a training checkpoint that see bytes from disk before any
// tensor is built (all torch-free). The first input byte picks the reader, the rest is the file:
//   0  trainer_state.json -> TrainerState::from_json (and, when accepted, write + read back equal)
//   1  checksums.json     -> parse_checkpoint_manifest
//   2  optimizer.safetensors -> parse_safetensors_header + validate_adamw_state against a fixed
//      optimizer (2 groups: F32 [4, 2] and [2, 4]; F32 [3]); every accepted moment must be an
//      entry of the right shape, dtype and byte count
//   3  the run fingerprint object -> RunFingerprint::from_json (and read back equal)
// Rejections must be peft::Error; anything else (a crash, a sanitizer report, another exception,
// an accepted input that breaks an invariant) is a finding.

#include <cstddef>
#include <cstdint>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/format/safetensors_header.hpp"
#include "peft/train/checkpoint_manifest.hpp"
#include "peft/train/detail/adamw_state_layout.hpp"
#include "peft/train/run_fingerprint.hpp"
#include "peft/train/trainer_state.hpp"

namespace {

using namespace peft::train;

void trainer_state(const std::string& text) {
  TrainerState s;
  try {
    s = TrainerState::from_json(peft::JsonValue::parse(text), "trainer_state.json");
  } catch (const peft::Error&) {
    return;
  }
  if (s.step < 0 || s.tokens_seen < 0 || !(s.elapsed_s >= 0) || s.world_size < 1) __builtin_trap();
  if (s.world_size > 1 && s.rank_cpu_rng_states.size() != static_cast<std::size_t>(s.world_size)) __builtin_trap();
  try {
    const std::string again = s.to_json().dump(1);
    if (TrainerState::from_json(peft::JsonValue::parse(again), "again").to_json().dump(1) != again) __builtin_trap();
  } catch (const peft::Error&) {
    __builtin_trap();  // what we write must be readable
  }
}

void manifest(const std::string& text) {
  try {
    const auto entries = parse_checkpoint_manifest(text, "checksums.json", {"a.json", "b.safetensors"});
    if (entries.size() != 2 || entries[0].file != "a.json" || entries[1].file != "b.safetensors") __builtin_trap();
  } catch (const peft::Error&) {
  }
}

void optimizer(const std::string& bytes) {
  const std::vector<detail::AdamWGroupOptions> groups = {{2, 1e-3, 0.9, 0.999, 1e-8, 0.0, false},
                                                         {1, 1e-3, 0.9, 0.999, 1e-8, 0.0, true}};
  const std::vector<detail::ParamSpec> params = {{"F32", {4, 2}}, {"F32", {2, 4}}, {"F32", {3}}};
  try {
    const peft::SafetensorsHeader h = peft::parse_safetensors_header(bytes.data(), bytes.size(), "optimizer.safetensors");
    const detail::AdamWStateLayout l = detail::validate_adamw_state(h, groups, params, "optimizer.safetensors");
    if (l.params.size() != params.size() || l.groups.size() != groups.size()) __builtin_trap();
    for (std::size_t i = 0; i < params.size(); ++i)
      for (int e : {l.params[i].exp_avg, l.params[i].exp_avg_sq, l.params[i].max_exp_avg_sq}) {
        if (e < 0) continue;
        if (static_cast<std::size_t>(e) >= h.entries.size()) __builtin_trap();
        const peft::SafetensorsEntry& en = h.entries[static_cast<std::size_t>(e)];
        if (en.dtype != params[i].dtype || en.shape != params[i].shape || en.end - en.begin != en.numel() * 4 ||
            en.end > h.data_size)
          __builtin_trap();
      }
  } catch (const peft::Error&) {
  }
}

void fingerprint(const std::string& text) {
  try {
    const RunFingerprint r = RunFingerprint::from_json(peft::JsonValue::parse(text), "run");
    if (!RunFingerprint::from_json(r.to_json(), "again").differences(r).empty()) __builtin_trap();
  } catch (const peft::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: trainer_state(rest); break;
    case 1: manifest(rest); break;
    case 2: optimizer(rest); break;
    default: fingerprint(rest); break;
  }
  return 0;
}
