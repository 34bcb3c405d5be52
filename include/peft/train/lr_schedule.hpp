#pragma once
/// Learning rate of optimizer step `step` (0-based): linear warm-up from lr/warmup to lr over
/// `warmup` steps, then cosine, linear or no decay down to lr * min_ratio at step `total`-1.
///
///   warm-up   (step < warmup):   lr * (step + 1) / warmup
///   cosine    (after):           lr * (m + (1 - m) * 0.5 * (1 + cos(pi * p)))
///   linear    (after):           lr * (m + (1 - m) * (1 - p))
///   where p = (step - warmup) / max(1, total - 1 - warmup) in [0, 1], m = min_ratio.
///
/// Decision: warm-up starts at lr/warmup (not 0, as Hugging Face's get_cosine_schedule_with_warmup
/// does) so that no step is wasted on lr = 0, and decay reaches its floor exactly on the last step.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "peft/train/train_config.hpp"

namespace peft::train {

inline double lr_at(std::int64_t step, std::int64_t total, double lr, std::int64_t warmup,
                    DecayKind kind = DecayKind::Cosine, double min_ratio = 0.0) {
  if (step < 0) step = 0;
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (kind == DecayKind::Constant) return lr;
  const double span = static_cast<double>(std::max<std::int64_t>(1, total - 1 - warmup));
  const double p = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  const double shape = kind == DecayKind::Cosine ? 0.5 * (1.0 + std::cos(M_PI * p)) : 1.0 - p;
  return lr * (min_ratio + (1.0 - min_ratio) * shape);
}

inline double lr_at(std::int64_t step, const TrainingConfig& t) {
  return lr_at(step, t.steps, t.lr, t.warmup_steps, t.schedule, t.min_lr_ratio);
}

}  // namespace peft::train
