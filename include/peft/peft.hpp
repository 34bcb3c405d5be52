#pragma once
/// Umbrella header: everything peft-cpp offers.

#include "peft/config.hpp"
#include "peft/error.hpp"
#include "peft/functional.hpp"
#include "peft/injection.hpp"
#include "peft/io/config_json.hpp"
#include "peft/io/config_yaml.hpp"
#include "peft/json_value.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/matching.hpp"
#include "peft/model.hpp"
#include "peft/patterns.hpp"
#include "peft/targeting.hpp"
#include "peft/version.hpp"
#include "peft/warnings.hpp"
