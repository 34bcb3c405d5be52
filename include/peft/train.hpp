#pragma once
/// The trainer: YAML training config, phases, loop, checkpoints, metrics (CMake target peft::train; needs yaml-cpp).

#include "peft/train/data_parallel.hpp"
#include "peft/train/distributed.hpp"
#include "peft/train/launcher.hpp"
#include "peft/train/lora_yaml.hpp"
#include "peft/train/loraplus.hpp"
#include "peft/train/loss_svg.hpp"
#include "peft/train/lr_schedule.hpp"
#include "peft/train/metrics.hpp"
#include "peft/train/phases.hpp"
#include "peft/train/progress.hpp"
#include "peft/train/signals.hpp"
#include "peft/train/train_config.hpp"
#include "peft/train/trainer.hpp"
#include "peft/train/training_checkpoint.hpp"
