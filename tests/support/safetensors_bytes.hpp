#pragma once
// Building and reading raw safetensors bytes in the safetensors unit tests.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace peft_test {

/// `n` as 8 little-endian bytes (the safetensors header length).
inline std::string le64(std::uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

/// A safetensors file from its parts: 8-byte little-endian header length, header, data.
inline std::string assemble(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

/// The bytes of the file at `p`.
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace peft_test
