#pragma once
// How the Jinja interpreter reports errors: peft::ConfigError located at `<template>:<line>`.

#include <string>

namespace peft::text::detail {

/// Throws peft::ConfigError "<template>:<line>: <template>.<field> = <value>: <problem> (hint: ...)",
/// e.g. field "filter", value "'wordwrap'", problem "unknown filter".
[[noreturn]] void throw_template_error(const std::string& template_name, int line, const std::string& field,
                                       const std::string& value, const std::string& problem,
                                       const std::string& hint);

}  // namespace peft::text::detail
