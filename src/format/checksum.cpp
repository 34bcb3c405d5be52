// CRC-32 of bytes and files (peft/format/checksum.hpp), by zlib.

#include "peft/format/checksum.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <vector>

#include "peft/error.hpp"

namespace peft {

std::uint32_t crc32_of(const char* data, std::size_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  while (size > 0) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(size, std::numeric_limits<uInt>::max()));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(data), n);
    data += n;
    size -= n;
  }
  return static_cast<std::uint32_t>(crc);
}

FileChecksum checksum_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SerializationError(path.string() + ": cannot open to compute its checksum");
  std::vector<char> buf(1u << 20);
  FileChecksum c;
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    c.size += n;
  }
  if (in.bad()) throw SerializationError(path.string() + ": read error while computing its checksum");
  c.crc32 = static_cast<std::uint32_t>(crc);
  return c;
}

std::string crc32_hex(std::uint32_t crc) {
  char s[9];
  std::snprintf(s, sizeof s, "%08x", static_cast<unsigned>(crc));
  return s;
}

bool parse_crc32_hex(const std::string& text, std::uint32_t& crc) {
  if (text.size() != 8) return false;
  std::uint32_t v = 0;
  for (char ch : text) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else return false;
    v = v << 4 | static_cast<std::uint32_t>(d);
  }
  crc = v;
  return true;
}

}  // namespace peft
