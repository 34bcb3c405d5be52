// Template errors as peft::ConfigError, located at "<template>:<line>".

#include "errors.hpp"

#include "peft/error.hpp"

namespace peft::text::detail {

void throw_template_error(const std::string& template_name, int line, const std::string& field,
                          const std::string& value, const std::string& problem, const std::string& hint) {
  throw ConfigError::about(template_name, field, value, problem, hint).located(template_name + ":" + std::to_string(line));
}

}  // namespace peft::text::detail
