#pragma once
/// trainer_state.json of a training checkpoint (training_checkpoint.hpp): everything besides the
/// weights that a resumed run needs to continue exactly, and which run it belongs to.
/// Torch-free (the fuzz target fuzz_checkpoint_state parses it). Bodies: src/train/trainer_state.cpp.

#include <cstdint>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"
#include "peft/train/metrics.hpp"
#include "peft/train/run_fingerprint.hpp"

namespace peft::train {

struct TrainerState {
  std::int64_t step = 0;             ///< optimizer steps done
  std::int64_t tokens_seen = 0;      ///< training tokens consumed (all micro-batches)
  double elapsed_s = 0.0;            ///< training wall time so far (across resumes)
  std::uint64_t sampler_state = 0;   ///< BatchSampler::state()
  std::string cpu_rng_state;         ///< raw bytes of the default CPU generator's state
  std::string cuda_rng_state;        ///< same for the CUDA device used ("" when CPU only)
  std::int64_t cuda_device = -1;
  std::vector<MetricsRecord> metrics;  ///< every record written so far
  /// Data-parallel runs: the number of ranks, and every rank's generator states by rank (the
  /// fields above are rank 0's), so that each rank's dropout continues where it stopped.
  std::int64_t world_size = 1;
  std::vector<std::string> rank_cpu_rng_states;   ///< empty when world_size is 1
  std::vector<std::string> rank_cuda_rng_states;  ///< empty when CPU only or world_size is 1
  /// The run this checkpoint belongs to (run_fingerprint.hpp); empty when the trainer was given none.
  RunFingerprint run;

  JsonValue to_json() const;
  /// Every field checked (types, step / tokens_seen / elapsed_s >= 0 and finite, sampler_state
  /// decimal digits, hex RNG states, one state per rank, the run fingerprint against its fields):
  /// SerializationError naming `where` and the field otherwise.
  static TrainerState from_json(const JsonValue& j, const std::string& where);
};

}  // namespace peft::train
