// peft-generate: text generation with a causal LM, optionally through LoRA adapters.
//
//   peft-generate --model DIR|builtin:tiny-gpt2 [--adapter [NAME=]DIR ...] --prompt TEXT
//   peft-generate --model DIR --adapter a=DIR_A --adapter b=DIR_B --prompts prompts.jsonl
//
// --prompt: one prompt; the completion is streamed to stdout as the tokens come (only whole
// UTF-8 characters are printed), then a newline. --prompts FILE.jsonl: one JSON object per line,
// {"prompt": "...", "adapter": "b"} ("adapter" optional: an adapter's name or "__base__"); the
// prompts run in batches of --batch-size rows (left-padded), a batch with several adapters as a
// mixed batch (LoraModel::mixed_batch), and each prompt's result is printed as one JSON line
// {"index", "adapter", "prompt", "completion", "new_tokens"} in input order.
// Adapters: the first --adapter is active and is the adapter of --prompt and of JSONL lines
// without "adapter"; one --adapter DIR is named "default", several need NAME=DIR.
// --merge folds the (single) adapter into the weights first (merge_and_unload).
// Generation settings start from the model's generation_config.json / config.json
// (load_generation_config); the flags override them; max_new_tokens defaults to 64 when neither
// sets it. The tokenizer is the model directory's (load_tokenizer; a ByteTokenizer for builtin
// models and directories without tokenizer files).
// stderr: token counts and speed. Exit codes: 0 done; 1 failure while running (loading,
// generating); 2 bad arguments, settings or prompt file.

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "peft/detail/threads.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/adapters.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/generate.hpp"
#include "peft/models/load_4bit.hpp"
#include "peft/text/chat_template.hpp"
#include "peft/text/tokenizer.hpp"
#include "peft/text/utf8_stream.hpp"
#include "peft/warnings.hpp"

namespace fs = std::filesystem;
using namespace peft;

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: peft-generate --model DIR|builtin:NAME [--adapter [NAME=]DIR ...] (--prompt TEXT | --prompts FILE.jsonl)\n"
    "         [--max-new-tokens N] [--do-sample] [--greedy] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "         [--repetition-penalty R] [--merge] [--dtype float32|bfloat16|float16] [--device cpu|cuda[:N]]\n"
    "         [--batch-size N] [--threads N] [--bos] [--chat [--system TEXT]] [--load-in-4bit nf4|fp4]\n"
    "--prompt streams the completion to stdout; --prompts prints one JSON line per prompt\n"
    "({\"prompt\": ..., \"adapter\": NAME} per input line; rows of different adapters run as a mixed batch).\n"
    "--chat renders each prompt as a user message (after --system's, if given) with the model's chat template\n"
    "and add_generation_prompt, as transformers' apply_chat_template does.\n"
    "--load-in-4bit quantises the base's Linear layers (not lm_head) to bitsandbytes 4-bit while loading\n"
    "(double quantisation, compute in --dtype); a *-bnb-4bit directory loads 4-bit without it.\n";

struct AdapterArg {
  std::string name;
  fs::path dir;
};

struct Args {
  std::string model;
  std::vector<AdapterArg> adapters;
  std::optional<std::string> prompt;
  std::optional<fs::path> prompts;
  std::optional<std::int64_t> max_new_tokens, top_k, batch_size, threads;
  std::optional<std::uint64_t> seed;
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<bool> do_sample;
  bool merge = false, bos = false, chat = false;
  std::optional<std::string> system;
  torch::Dtype dtype = torch::kFloat32;
  std::string device = "cpu";
  std::optional<std::string> load_in_4bit;  ///< "nf4" | "fp4"
};

std::int64_t parse_int(const std::string& flag, const std::string& v, std::int64_t min) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || n < min)
    throw UsageError(flag + " wants an integer >= " + std::to_string(min) + ", got `" + v + "`");
  return n;
}

double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) throw UsageError(flag + " wants a number, got `" + v + "`");
  return d;
}

torch::Dtype parse_dtype(const std::string& v) {
  if (v == "float32" || v == "fp32") return torch::kFloat32;
  if (v == "bfloat16" || v == "bf16") return torch::kBFloat16;
  if (v == "float16" || v == "fp16") return torch::kFloat16;
  throw UsageError("--dtype wants float32, bfloat16 or float16, got `" + v + "`");
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      return argv[++i];
    };
    if (s == "--help" || s == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (s == "--model" || s == "-m") {
      a.model = value();
    } else if (s == "--adapter") {
      const std::string v = value();
      const auto eq = v.find('=');
      // NAME=DIR unless what precedes '=' looks like a path.
      if (eq != std::string::npos && eq > 0 && v.substr(0, eq).find('/') == std::string::npos)
        a.adapters.push_back({v.substr(0, eq), v.substr(eq + 1)});
      else
        a.adapters.push_back({"", v});
    } else if (s == "--prompt" || s == "-p") {
      a.prompt = value();
    } else if (s == "--prompts") {
      a.prompts = value();
    } else if (s == "--max-new-tokens") {
      a.max_new_tokens = parse_int(s, value(), 1);
    } else if (s == "--do-sample") {
      a.do_sample = true;
    } else if (s == "--greedy") {
      a.do_sample = false;
    } else if (s == "--temperature") {
      a.temperature = parse_double(s, value());
    } else if (s == "--top-k") {
      a.top_k = parse_int(s, value(), 0);
    } else if (s == "--top-p") {
      a.top_p = parse_double(s, value());
    } else if (s == "--seed") {
      a.seed = static_cast<std::uint64_t>(parse_int(s, value(), 0));
    } else if (s == "--repetition-penalty") {
      a.repetition_penalty = parse_double(s, value());
    } else if (s == "--merge") {
      a.merge = true;
    } else if (s == "--bos") {
      a.bos = true;
    } else if (s == "--chat") {
      a.chat = true;
    } else if (s == "--system") {
      a.system = value();
    } else if (s == "--load-in-4bit") {
      a.load_in_4bit = value();
      if (*a.load_in_4bit != "nf4" && *a.load_in_4bit != "fp4")
        throw UsageError("--load-in-4bit wants nf4 or fp4, got `" + *a.load_in_4bit + "`");
    } else if (s == "--dtype") {
      a.dtype = parse_dtype(value());
    } else if (s == "--device") {
      a.device = value();
    } else if (s == "--batch-size") {
      a.batch_size = parse_int(s, value(), 1);
    } else if (s == "--threads") {
      a.threads = parse_int(s, value(), 1);
      if (*a.threads > peft::detail::max_cpu_threads())
        throw UsageError("--threads wants at most " + std::to_string(peft::detail::max_cpu_threads()) +
                         " (4 per CPU core, at most 1024), got " + std::to_string(*a.threads));
    } else {
      throw UsageError("unknown argument `" + s + "`");
    }
  }
  if (a.model.empty()) throw UsageError("--model is required (a model directory or builtin:tiny-gpt2 / builtin:tiny-llama)");
  if (a.prompt.has_value() == a.prompts.has_value()) throw UsageError("give exactly one of --prompt TEXT and --prompts FILE.jsonl");
  if (a.adapters.size() > 1)
    for (const auto& ad : a.adapters)
      if (ad.name.empty()) throw UsageError("several adapters need names: --adapter NAME=DIR (got `" + ad.dir.string() + "`)");
  for (std::size_t i = 0; i < a.adapters.size(); ++i) {
    if (a.adapters[i].name.empty()) a.adapters[i].name = "default";
    if (a.adapters[i].name == "__base__") throw UsageError("--adapter: `__base__` is reserved for the base model");
    for (std::size_t j = 0; j < i; ++j)
      if (a.adapters[j].name == a.adapters[i].name) throw UsageError("--adapter: the name `" + a.adapters[i].name + "` is used twice");
  }
  if (a.merge && a.adapters.size() != 1) throw UsageError("--merge needs exactly one --adapter");
  return a;
}

struct Prompt {
  std::string text;
  std::string adapter;  // an adapter name or "__base__"
};

/// The prompts of --prompt / --prompts, each with its adapter (checked against the loaded ones).
std::vector<Prompt> read_prompts(const Args& a) {
  const std::string fallback = a.adapters.empty() ? "__base__" : a.adapters[0].name;
  if (a.prompt) return {{*a.prompt, fallback}};
  const std::string text = read_text_file(*a.prompts);
  std::vector<Prompt> out;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = a.prompts->string() + ":" + std::to_string(n);
    JsonValue j;
    try {
      j = JsonValue::parse(line);
    } catch (const Error& e) {
      throw UsageError(where + ": not JSON: " + e.what());
    }
    const JsonValue* p = j.find("prompt");
    if (!p || !p->is_string()) throw UsageError(where + ": each line must be an object with a string \"prompt\"");
    Prompt pr{p->as_string(), fallback};
    if (const JsonValue* ad = j.find("adapter"); ad && !ad->is_null()) {
      if (!ad->is_string()) throw UsageError(where + ": \"adapter\" must be a string");
      pr.adapter = ad->as_string();
      bool known = pr.adapter == "__base__";
      for (const auto& x : a.adapters) known = known || x.name == pr.adapter;
      if (!known) throw UsageError(where + ": adapter `" + pr.adapter + "` was not loaded (hint: --adapter " + pr.adapter + "=DIR)");
      if (a.merge && pr.adapter != a.adapters[0].name)
        throw UsageError(where + ": adapter `" + pr.adapter + "` cannot be chosen per prompt with --merge");
    }
    out.push_back(std::move(pr));
  }
  if (out.empty()) throw UsageError(a.prompts->string() + ": no prompts");
  return out;
}

models::GenerationConfig generation_config(const Args& a) {
  auto c = models::load_generation_config(a.model);
  if (a.max_new_tokens) c.max_new_tokens = a.max_new_tokens;
  if (!c.max_new_tokens) c.max_new_tokens = 64;
  if (a.do_sample) c.do_sample = *a.do_sample;
  if (a.temperature) c.temperature = *a.temperature;
  if (a.top_k) c.top_k = *a.top_k;
  if (a.top_p) c.top_p = *a.top_p;
  if (a.seed) c.seed = a.seed;
  if (a.repetition_penalty) c.repetition_penalty = *a.repetition_penalty;
  c.validate();
  return c;
}

/// Decodes the generated ids of each row for printing, incrementally as HF's TextStreamer does:
/// the row's ids so far are decoded together (skip_special_tokens, so EOS and other special tokens
/// are not shown) and the text past what was already returned is the new piece. Decoding the
/// whole row, not token by token, keeps Metaspace spaces and byte-fallback characters right; a
/// decode ending in U+FFFD (a character still incomplete) is held back until it completes. Ids
/// outside the tokenizer's vocabulary are dropped with one warning.
class TokenText {
 public:
  TokenText(const text::Tokenizer& tok, std::int64_t rows) : tok_(tok), ids_(static_cast<std::size_t>(rows)),
                                                             shown_(static_cast<std::size_t>(rows)) {}
  /// Records a generated id of `row`.
  void add(std::int64_t row, std::int64_t id) {
    if (id < 0 || id >= tok_.vocab_size()) {
      if (!warned_) warn("token id " + std::to_string(id) + " is outside the tokenizer's vocabulary of " +
                         std::to_string(tok_.vocab_size()) + " (not shown)");
      warned_ = true;
      return;
    }
    ids_[static_cast<std::size_t>(row)].push_back(id);
  }
  /// The row's text past what was taken before; unless `final`, a trailing U+FFFD (a character
  /// still incomplete) holds the new text back. Only the streamed row calls this, so the other
  /// rows are decoded once, at the end.
  std::string take(std::int64_t row, bool final) {
    const std::string all = text(row);
    auto& shown = shown_[static_cast<std::size_t>(row)];
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    const bool incomplete = all.size() >= kReplacement.size() &&
                            all.compare(all.size() - kReplacement.size(), kReplacement.size(), kReplacement.data(),
                                        kReplacement.size()) == 0;
    if ((incomplete && !final) || all.size() <= shown.size()) return "";
    // A decoder may rewrite earlier text (rare): nothing is shown again, the text goes on from here.
    std::string piece = all.compare(0, shown.size(), shown) == 0 ? all.substr(shown.size()) : "";
    shown = all;
    return piece;
  }
  /// The whole decoded row (held-back characters included).
  std::string text(std::int64_t row) const {
    return tok_.decode(ids_[static_cast<std::size_t>(row)], /*skip_special_tokens=*/true);
  }

 private:
  const text::Tokenizer& tok_;
  std::vector<std::vector<std::int64_t>> ids_;
  std::vector<std::string> shown_;
  bool warned_ = false;
};

struct Totals {
  std::int64_t prompt_tokens = 0, new_tokens = 0;
  double seconds = 0.0, first_token_s = -1.0;
};

/// Generates one batch of prompts; `stream` prints row 0 as it comes (a single prompt).
std::vector<std::pair<std::string, std::int64_t>> run_batch(models::CausalLMImpl& model, LoraModel* pm,
                                                           const std::vector<Prompt>& batch, const Args& a,
                                                           const text::Tokenizer& tok, const models::GenerationConfig& c,
                                                           bool stream, Totals& totals) {
  std::vector<std::vector<std::int64_t>> ids;
  std::int64_t T = 0;
  for (const auto& p : batch) {
    // add_special_tokens as HF's tokenizer(prompt) does (e.g. Llama's BOS); --bos adds one where
    // the tokenizer has no post-processor that does.
    // A rendered chat template already holds its special tokens (apply_chat_template encodes
    // with add_special_tokens=False).
    auto e = tok.encode(p.text, /*add_special_tokens=*/!a.chat);
    const bool has_bos = !e.empty() && c.bos_token_id && e.front() == *c.bos_token_id;
    if ((a.bos || e.empty()) && c.bos_token_id && !has_bos) e.insert(e.begin(), *c.bos_token_id);
    if (e.empty()) throw UsageError("an empty prompt needs a bos_token_id in the model's config (none found)");
    T = std::max<std::int64_t>(T, static_cast<std::int64_t>(e.size()));
    totals.prompt_tokens += static_cast<std::int64_t>(e.size());
    ids.push_back(std::move(e));
  }
  const auto B = static_cast<std::int64_t>(batch.size());
  const std::int64_t pad = c.pad_token_id.value_or(c.eos_token_id.empty() ? 0 : c.eos_token_id[0]);
  auto input = torch::full({B, T}, pad, torch::kInt64);
  auto mask = torch::zeros({B, T}, torch::kInt64);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& e = ids[static_cast<std::size_t>(b)];
    const auto n = static_cast<std::int64_t>(e.size());
    input[b].narrow(0, T - n, n).copy_(torch::tensor(e, torch::kInt64));
    mask[b].narrow(0, T - n, n).fill_(1);
  }
  // One adapter for the whole batch: make it the active one; several: a mixed batch.
  std::vector<std::string> names;
  for (const auto& p : batch) names.push_back(p.adapter);
  bool same = true;
  for (const auto& n : names) same = same && n == names[0];
  std::optional<LoraModel::MixedBatch> scope;
  std::optional<LoraModel::DisabledAdapters> off;
  if (pm && same && names[0] == "__base__") off.emplace(pm->disable_adapter());
  else if (pm && same) pm->set_adapter(names[0]);
  else if (pm) scope.emplace(pm->mixed_batch(names));

  std::vector<std::int64_t> count(static_cast<std::size_t>(B), 0);
  TokenText decoder(tok, B);
  text::Utf8Stream out;
  const auto start = std::chrono::steady_clock::now();
  auto on_step = [&](const models::GenerationStep& s) {
    if (s.step == 0 && totals.first_token_s < 0)
      totals.first_token_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (std::int64_t b = 0; b < B; ++b) {
      if (!s.active[b].item<bool>()) continue;
      const auto id = s.tokens[b].item<std::int64_t>();
      ++count[static_cast<std::size_t>(b)];
      decoder.add(b, id);
      if (stream && b == 0) std::cout << out.push(decoder.take(0, /*final=*/false)) << std::flush;
    }
  };
  models::generate(model, input, c, mask, on_step);
  totals.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stream) std::cout << out.push(decoder.take(0, /*final=*/true)) << out.finish() << "\n" << std::flush;
  std::vector<std::pair<std::string, std::int64_t>> results;
  for (std::int64_t b = 0; b < B; ++b) {
    totals.new_tokens += count[static_cast<std::size_t>(b)];
    results.emplace_back(decoder.text(b), count[static_cast<std::size_t>(b)]);
  }
  return results;
}

int run(const Args& a) {
  if (a.threads) torch::set_num_threads(static_cast<int>(*a.threads));
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(a.device);
  } catch (const std::exception&) {
    throw UsageError("--device wants cpu or cuda[:N], got `" + a.device + "`");
  }
  if (device.is_cuda() && !torch::cuda::is_available()) throw UsageError("--device " + a.device + ": no CUDA device available");
  const auto config = generation_config(a);
  auto prompts = read_prompts(a);
  if (a.system && !a.chat) throw UsageError("--system needs --chat");
  if (a.chat) {
    const auto tmpl = a.model.rfind("builtin:", 0) == 0 ? std::nullopt : text::load_chat_template(a.model);
    if (!tmpl) throw UsageError("--chat: " + a.model + " has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    for (auto& p : prompts) {
      std::vector<text::ChatMessage> messages;
      if (a.system) messages.push_back({"system", *a.system});
      messages.push_back({"user", p.text});
      p.text = tmpl->apply_chat_template(messages, /*add_generation_prompt=*/true);
    }
  }
  const auto tokenizer = text::load_tokenizer(a.model.rfind("builtin:", 0) == 0 ? fs::path() : fs::path(a.model));

  models::CausalLM model;
  if (a.load_in_4bit) {
    BitsAndBytesConfig q;
    q.load_in_4bit = true;
    q.bnb_4bit_quant_type = *a.load_in_4bit;
    q.bnb_4bit_use_double_quant = true;
    q.bnb_4bit_compute_dtype = a.dtype == torch::kBFloat16 ? "bfloat16" : a.dtype == torch::kFloat16 ? "float16" : "float32";
    model = models::load_causal_lm_4bit(a.model, q, device, a.dtype);
  } else {
    model = models::load_causal_lm(a.model, device, a.dtype);
  }
  model->eval();
  std::optional<LoraModel> pm;
  if (!a.adapters.empty()) {
    pm.emplace(from_pretrained(std::shared_ptr<torch::nn::Module>(model), a.adapters[0].dir, a.adapters[0].name));
    for (std::size_t i = 1; i < a.adapters.size(); ++i) load_adapter(*pm, a.adapters[i].dir, a.adapters[i].name);
    pm->set_adapter(a.adapters[0].name);
    if (a.merge) {
      pm->merge_and_unload();
      pm.reset();
    }
  }
  model->eval();

  Totals totals;
  const bool stream = a.prompt.has_value();
  const std::size_t batch_size = a.batch_size ? static_cast<std::size_t>(*a.batch_size) : 8;
  for (std::size_t start = 0; start < prompts.size(); start += batch_size) {
    const std::vector<Prompt> batch(prompts.begin() + static_cast<std::ptrdiff_t>(start),
                                    prompts.begin() + static_cast<std::ptrdiff_t>(std::min(prompts.size(), start + batch_size)));
    const auto results = run_batch(*model, pm ? &*pm : nullptr, batch, a, *tokenizer, config, stream, totals);
    if (stream) continue;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      JsonValue j = JsonValue::object();
      j.set("index", static_cast<std::int64_t>(start + i));
      j.set("adapter", batch[i].adapter);
      j.set("prompt", text::utf8_sanitize(batch[i].text));
      j.set("completion", text::utf8_sanitize(results[i].first));
      j.set("new_tokens", results[i].second);
      std::cout << j.dump() << "\n" << std::flush;
    }
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << "peft-generate: " << prompts.size() << " prompt(s), " << totals.prompt_tokens
    << " prompt tokens, " << totals.new_tokens << " generated tokens in " << totals.seconds << " s ("
    << std::setprecision(1) << (totals.seconds > 0 ? static_cast<double>(totals.new_tokens) / totals.seconds : 0.0)
    << " tokens/s; first token after " << std::setprecision(3) << totals.first_token_s << " s)";
  std::cerr << s.str() << "\n";
  return 0;
}

int fail(int code, const std::string& message) {
  std::cerr << "peft-generate: " << message.substr(0, message.find('\n')) << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  peft::set_warning_handler([](const std::string& m) { std::cerr << "peft-generate: warning: " << m << "\n"; });
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    fail(kExitUsage, e.what());
    std::cerr << kUsage;
    return kExitUsage;
  }
  try {
    return run(args);
  } catch (const UsageError& e) {
    return fail(kExitUsage, e.what());
  } catch (const ConfigError& e) {
    return fail(kExitUsage, e.what());
  } catch (const std::exception& e) {
    return fail(kExitFailure, e.what());  // loading (SerializationError, ...), generating
  }
}
