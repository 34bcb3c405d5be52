#pragma once
/// The one way the YAML readers (train_config.cpp, lora_yaml.cpp) turn text into a yaml-cpp
/// node: bounded before yaml-cpp builds anything, because yaml-cpp expands aliases without limit
/// (a 600-byte "billion laughs" document becomes gigabytes) and lets an alias sit inside the node
/// its anchor names (a cycle that recursive readers follow until the stack overflows).
///
///   size        at most kMaxYamlBytes of text, valid UTF-8
///   nesting     at most kMaxYamlDepth levels of mappings / sequences
///   expansion   at most kMaxYamlNodes nodes and kMaxYamlScalarBytes scalar bytes once every
///               alias is replaced by a copy of its anchor's node (counted, never built)
///   cycles      an alias inside its own anchor's node is refused
///
/// Violations are ConfigErrors (subject "YAML") located at `<source>:<line>:<column>`; malformed
/// YAML and invalid UTF-8 stay SerializationErrors.

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace peft::detail {

constexpr std::size_t kMaxYamlBytes = 4u << 20;
constexpr std::size_t kMaxYamlDepth = 64;
constexpr std::uint64_t kMaxYamlNodes = 250000;
constexpr std::uint64_t kMaxYamlScalarBytes = 16u << 20;

/// `source:line:column` (1-based) for messages; `source` alone when the mark is unknown.
std::string yaml_where(const std::string& source, const YAML::Mark& mark);

/// The first document of `text` as a yaml-cpp node, within the bounds above.
YAML::Node load_bounded_yaml(const std::string& text, const std::string& source);

/// YAML 1.2 core-schema plain scalars, checked by hand (std::regex recurses per character and
/// overflows the stack on a long enough value): `[-+]?[0-9]+` and
/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
bool is_yaml_int(const std::string& s);
bool is_yaml_float(const std::string& s);

/// The value of an is_yaml_float scalar; out of range is ±inf or a (sub)normal near 0, as in
/// Python's float(), where std::stod would throw std::out_of_range (found by the YAML fuzzer: 1e3090).
double yaml_float_value(const std::string& s);

}  // namespace peft::detail
