// peft_tokenize: encode text with peft::text::load_tokenizer, for comparisons with HF tokenizers
// (tests/python/compare_tokenizer.py) and for measuring encode speed. Not a ctest entry.
//
//   peft_tokenize TOKENIZER_DIR TEXT_FILE         one JSON array of ids per line of TEXT_FILE
//   peft_tokenize TOKENIZER_DIR STRINGS.jsonl     each line is a JSON string (so it may hold \n)
//   peft_tokenize --pretokenize STRINGS.jsonl     GPT-2 pre-token pieces (JSON array of strings)
//   peft_tokenize --bench TOKENIZER_DIR TEXT_FILE encode the whole file, print MB/s and tokens/s
//   peft_tokenize --bench-lines TOKENIZER_DIR STRINGS.jsonl REPEATS
//                                                 one encode call per string (REPEATS passes), MB/s
//   peft_tokenize --full TOKENIZER_DIR STRINGS.jsonl   one JSON object per string: ids and
//       ids_special (add_special_tokens false/true), and decode of each with skip_special_tokens
//       false/true: dec, dec_skip, dec_special, dec_special_skip (tests/tools/compare_hf_tokenizers.sh)
// A TOKENIZER_DIR without tokenizer files gives the byte tokenizer (load_tokenizer's fallback).

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/text/pretokenizer.hpp"
#include "peft/text/tokenizer.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw peft::SerializationError(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The inputs: raw lines, or JSON string literals when the file ends in .jsonl.
std::vector<std::string> inputs(const std::string& path) {
  const std::string text = read_file(path);
  const bool json = path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  std::vector<std::string> out;
  std::istringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    if (!json) {
      out.push_back(line);
      continue;
    }
    if (line.empty()) continue;
    peft::JsonValue v = peft::JsonValue::parse(line);
    if (v.is_object() && v.find("text")) v = *v.find("text");
    if (!v.is_string()) throw peft::SerializationError(path + ": each line must be a JSON string");
    out.push_back(v.as_string());
  }
  return out;
}

void print_ids(const std::vector<int64_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ids[i]);
  }
  s += "]\n";
  std::fwrite(s.data(), 1, s.size(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string first = argc > 1 ? argv[1] : "";
    if (first == "--pretokenize" && argc == 3) {
      for (const auto& s : inputs(argv[2])) {
        peft::JsonValue arr = peft::JsonValue::array();
        for (auto p : peft::text::gpt2_pretokenize(s)) arr.as_array().emplace_back(std::string(p));
        std::cout << arr.dump() << "\n";
      }
      return 0;
    }
    if (first == "--bench" && argc == 4) {
      auto tok = peft::text::load_tokenizer(argv[2]);
      const std::string text = read_file(argv[3]);
      for (int pass = 0; pass < 2; ++pass) {  // pass 0: cold word cache, pass 1: warm
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = tok->encode(text);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const bool ok = tok->decode(ids) == text;
        std::printf("%s pass %d: %zu bytes -> %zu tokens in %.3f s: %.2f MB/s, %.0f tokens/s, round trip %s\n",
                    tok->kind().c_str(), pass, text.size(), ids.size(), s, text.size() / s / 1e6, ids.size() / s,
                    ok ? "ok" : "FAILED");
      }
      return 0;
    }
    if (first == "--full" && argc == 4) {
      auto tok = peft::text::load_tokenizer(argv[2]);
      for (const auto& s : inputs(argv[3])) {
        peft::JsonValue row = peft::JsonValue::object();
        for (const bool special : {false, true}) {
          const auto ids = tok->encode(s, special);
          peft::JsonValue arr = peft::JsonValue::array();
          for (auto id : ids) arr.as_array().emplace_back(id);
          const std::string suffix = special ? "_special" : "";
          row.set("ids" + suffix, std::move(arr));
          row.set("dec" + suffix, tok->decode(ids, false));
          row.set("dec" + suffix + "_skip", tok->decode(ids, true));
        }
        std::cout << row.dump() << "\n";
      }
      return 0;
    }
    if (first == "--bench-lines" && argc == 5) {
      auto tok = peft::text::load_tokenizer(argv[2]);
      const auto strings = inputs(argv[3]);
      const int repeats = std::max(1, std::atoi(argv[4]));
      std::size_t bytes = 0, tokens = 0;
      const std::clock_t c0 = std::clock();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < repeats; ++r)
        for (const auto& s : strings) {
          bytes += s.size();
          tokens += tok->encode(s).size();
        }
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      std::printf("peft %s: %zu strings x %d: %zu bytes -> %zu tokens: %.2f MB/s (%.2f MB per CPU-s)\n",
                  tok->kind().c_str(), strings.size(), repeats, bytes, tokens, bytes / sec / 1e6, bytes / cpu / 1e6);
      return 0;
    }
    if (argc != 3) {
      std::fprintf(stderr,
                   "usage: peft_tokenize TOKENIZER_DIR TEXT_FILE|STRINGS.jsonl\n"
                   "       peft_tokenize --pretokenize STRINGS.jsonl\n"
                   "       peft_tokenize --bench TOKENIZER_DIR TEXT_FILE\n"
                   "       peft_tokenize --bench-lines TOKENIZER_DIR STRINGS.jsonl REPEATS\n"
                   "       peft_tokenize --full TOKENIZER_DIR STRINGS.jsonl\n");
      return 2;
    }
    auto tok = peft::text::load_tokenizer(argv[1]);
    for (const auto& s : inputs(argv[2])) print_ids(tok->encode(s));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peft_tokenize: %s\n", e.what());
    return 1;
  }
}
