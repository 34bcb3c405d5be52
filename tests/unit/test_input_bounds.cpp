// Issue 19, class 3: every input that could expand, backtrack or loop without bound ends with a
// clear error, fast and in bounded memory: YAML alias bombs and cycles, deep nesting, huge
// documents and scalars, catastrophic regexes and very long module keys, 100k-name target lists,
// absurd thread counts.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "peft/config/config_json.hpp"
#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/targeting/matching.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/train/lora_yaml.hpp"
#include "peft/train/train_config.hpp"
#include "peft/warnings.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// The ConfigError `f` throws (its message), timed; a failure when it throws nothing or another type.
std::string config_error_of(const std::function<void()>& f, double* secs = nullptr) {
  std::string msg;
  const double s = seconds_of([&] {
    try {
      f();
      ADD_FAILURE() << "no exception thrown";
    } catch (const peft::ConfigError& e) {
      msg = e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "wrong exception type: " << e.what();
    }
  });
  if (secs) *secs = s;
  return msg;
}

/// Runs `f` in a child process whose address space may grow by at most `extra_mb`; the child's
/// exit code: 0 when `f` threw ConfigError, 1 another exception or none, 2 out of memory.
int in_bounded_child(const std::function<void()>& f, long extra_mb) {
  long vm_kb = 0;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stol(line.substr(7));
  const pid_t pid = ::fork();
  if (pid == 0) {
    const rlim_t limit = static_cast<rlim_t>(vm_kb + extra_mb * 1024) * 1024;
    const rlimit rl{limit, limit};
    ::setrlimit(RLIMIT_AS, &rl);
    try {
      f();
    } catch (const peft::ConfigError&) {
      ::_exit(0);
    } catch (const std::bad_alloc&) {
      ::_exit(2);
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(1);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The classic: 9 levels of 10 aliases each, 10^9 strings once expanded (573 bytes).
std::string billion_laughs(const std::string& indent_key) {
  std::string y = indent_key + "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string p = "*a" + std::to_string(i - 1);
    y += indent_key + "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p + "," + p + "," + p + "," + p +
         "," + p + "," + p + "," + p + "," + p + "," + p + "," + p + "]\n";
  }
  return y;
}

const std::string kTrainHead = "base_model: builtin:tiny-gpt2\n";

}  // namespace

// ---- YAML ---------------------------------------------------------------------------------------

TEST(YamlBounds, BillionLaughsIsAConfigErrorInMillisecondsAndBoundedMemory) {
  const std::string lora = "lora:\n  r: 8\n  target_modules: [q]\n  rank_pattern:\n" + billion_laughs("    ");
  double secs = 0;
  std::string msg = config_error_of([&] { peft::lora_config_from_yaml(lora, "lora", "bomb.yaml"); }, &secs);
  EXPECT_NE(msg.find("bomb.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("YAML.aliases"), std::string::npos) << msg;
  EXPECT_NE(msg.find("250000 nodes"), std::string::npos) << msg;
  EXPECT_LT(secs, 1.0);
  // The training config reader refuses it too, anywhere in the document.
  msg = config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + "data:\n" + billion_laughs("  "), "t.yaml"); });
  EXPECT_NE(msg.find("YAML.aliases"), std::string::npos) << msg;
  // Within 200 MiB of address space: nothing is expanded before the count says no.
  EXPECT_EQ(in_bounded_child([&] { peft::lora_config_from_yaml(lora, "lora", "bomb.yaml"); }, 200), 0);
}

TEST(YamlBounds, FewLongAliasedScalarsHitTheByteBudget) {
  // 1 MiB value, aliased 20 times: few nodes, 20 MiB of expanded text.
  std::string y = "lora:\n  r: 8\n  target_modules: [q]\n  rank_pattern: {}\n  x: &v \"" + std::string(1u << 20, 'x') +
                  "\"\n  y: [";
  for (int i = 0; i < 20; ++i) y += std::string(i ? "," : "") + "*v";
  y += "]\n";
  const std::string msg = config_error_of([&] { peft::lora_config_from_yaml(y); });
  EXPECT_NE(msg.find("bytes of scalars"), std::string::npos) << msg;
}

TEST(YamlBounds, AnAliasInsideItsOwnAnchorIsACleanError) {
  for (const std::string& y : {std::string("lora: &a\n  r: 8\n  self: *a\n"), std::string("lora:\n  target_modules: &t [q, *t]\n"),
                                std::string("a: &x {b: [1, {c: *x}]}\n")}) {
    double secs = 0;
    const std::string msg = config_error_of([&] { peft::lora_config_from_yaml(y, "lora", "cycle.yaml"); }, &secs);
    EXPECT_NE(msg.find("refers to the node that contains it"), std::string::npos) << y << " -> " << msg;
    EXPECT_NE(msg.find("cycle.yaml:"), std::string::npos) << msg;
    EXPECT_LT(secs, 1.0);
    const std::string train_msg = config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + y, "t.yaml"); });
    EXPECT_NE(train_msg.find("refers to the node that contains it"), std::string::npos) << train_msg;
  }
}

TEST(YamlBounds, OrdinaryAnchorsAndAliasesStillWork) {
  const auto cfg = peft::lora_config_from_yaml(
      "shared: &targets [q_proj, v_proj]\nlora:\n  r: 4\n  target_modules: *targets\n  layers_to_transform: &l [0]\n");
  EXPECT_EQ(cfg.target_modules, peft::ModuleSpec({"q_proj", "v_proj"}));
  EXPECT_EQ(cfg.r, 4);
}

TEST(YamlBounds, DeepNestingAndHugeDocumentsAreRefused) {
  std::string deep = "lora:\n  r: 8\n  x: ";
  for (int i = 0; i < 200; ++i) deep += "[";
  for (int i = 0; i < 200; ++i) deep += "]";
  std::string msg = config_error_of([&] { peft::lora_config_from_yaml(deep + "\n"); });
  EXPECT_NE(msg.find("YAML.nesting"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64 levels"), std::string::npos) << msg;
  msg = config_error_of([&] { peft::lora_config_from_yaml("# " + std::string(5u << 20, 'x') + "\nlora: {r: 8}\n"); });
  EXPECT_NE(msg.find("YAML.size"), std::string::npos) << msg;
}

TEST(YamlBounds, AHundredThousandDigitScalarIsATypeErrorNotAStackOverflow) {
  // std::regex recursed once per character on these; the readers now scan them by hand.
  const std::string digits(100000, '7');
  double secs = 0;
  std::string msg = config_error_of([&] { peft::lora_config_from_yaml("lora:\n  r: " + digits + "\n"); }, &secs);
  EXPECT_NE(msg.find("LoraConfig.r"), std::string::npos) << msg.substr(0, 200);
  msg = config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  steps: " + digits + "\n"); });
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg.substr(0, 200);
  msg = config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  lr: 1." + digits + "x\n"); });
  EXPECT_NE(msg.find("expected a number"), std::string::npos) << msg.substr(0, 200);
  msg = config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  device: cuda:" + digits + "x\n"); });
  EXPECT_NE(msg.find("unknown device"), std::string::npos) << msg.substr(0, 200);
  EXPECT_LT(secs, 1.0);
  // The hand-written scanners accept what the regexes accepted.
  const auto t = peft::train::train_config_from_yaml(
      kTrainHead + "training:\n  lr: .5e-3\n  device: cuda:1\n  steps: +12\n  max_grad_norm: 1.\n", "t.yaml");
  EXPECT_DOUBLE_EQ(t.training.lr, 0.5e-3);
  EXPECT_EQ(t.training.device, "cuda:1");
  EXPECT_EQ(t.training.steps, 12);
  EXPECT_DOUBLE_EQ(t.training.max_grad_norm, 1.0);
  EXPECT_THROW(peft::train::train_config_from_yaml(kTrainHead + "training:\n  lr: 1e\n", "t.yaml"), peft::ConfigError);
  EXPECT_THROW(peft::train::train_config_from_yaml(kTrainHead + "training:\n  lr: .\n", "t.yaml"), peft::ConfigError);
}

TEST(YamlBounds, TrainingThreadsHaveAnUpperBound) {
  const std::string msg =
      config_error_of([&] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  threads: 100000\n", "t.yaml"); });
  EXPECT_NE(msg.find("training.threads = 100000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t.yaml:3:"), std::string::npos) << msg;
  const std::int64_t cap = peft::train::max_threads();
  EXPECT_EQ(cap, std::min<std::int64_t>(1024, 4 * std::max(1u, std::thread::hardware_concurrency())));
  const auto ok = peft::train::train_config_from_yaml(kTrainHead + "training:\n  threads: " + std::to_string(cap) + "\n", "t.yaml");
  EXPECT_EQ(ok.training.threads, cap);
  EXPECT_THROW(peft::train::train_config_from_yaml(
                   kTrainHead + "training:\n  threads: " + std::to_string(cap + 1) + "\n", "t.yaml"),
               peft::ConfigError);
}

// ---- regexes and long keys ------------------------------------------------------------------------

TEST(RegexBounds, CatastrophicPatternsEndWithAConfigErrorWellUnderASecond) {
  // Keys that hold the pattern's last literal, so PCRE2's quick "no Z at all" rejection does
  // not apply and the backtracking really starts.
  const std::string key = std::string(5000, 'a') + "Zb";
  for (const std::string& pattern : {std::string("(.|.)*Z"), std::string("(a+)+Z"), std::string("(a|aa)*Z")}) {
    peft::LoraConfig cfg;
    cfg.target_modules = peft::ModuleSpec::regex(pattern);
    const peft::TargetMatcher matcher(cfg);
    double secs = 0;
    const std::string msg = config_error_of([&] { matcher(key); }, &secs);
    EXPECT_NE(msg.find("catastrophic backtracking"), std::string::npos) << pattern << ": " << msg.substr(0, 300);
    EXPECT_NE(msg.find("(5002 characters)"), std::string::npos) << "the key is shortened: " << msg.substr(0, 300);
    EXPECT_LT(secs, 1.0) << pattern;
    // A 100k-character key: the same error, as fast (the match limit counts steps, not length).
    const std::string long_msg = config_error_of([&] { matcher(std::string(100000, 'a')); }, &secs);
    EXPECT_NE(long_msg.find("(100000 characters)"), std::string::npos) << long_msg.substr(0, 300);
    EXPECT_LT(secs, 1.0) << pattern;
  }
}

TEST(RegexBounds, AHundredThousandCharacterKeyWithRankPatternIsFast) {
  peft::LoraConfig cfg;
  cfg.r = 8;
  cfg.target_modules = peft::ModuleSpec({"q"});
  cfg.rank_pattern.set("q", 4);
  cfg.rank_pattern.set("(.|.)*Z", 2);
  const peft::LayerSettingsResolver settings(cfg);
  std::string key;
  for (int i = 0; i < 20000; ++i) key += "m.";
  key += "Zq";
  key += std::string(100000 - key.size(), 'x');
  // No pattern matches quickly; the catastrophic one gives up at the match limit.
  double secs = 0;
  const std::string msg = config_error_of([&] { settings(key); }, &secs);
  EXPECT_NE(msg.find("rank_pattern"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(secs, 1.0);
  // A plain pattern on a long key: answered, no recursion into the stack.
  peft::LoraConfig plain = cfg;
  plain.rank_pattern = {};
  plain.rank_pattern.set("q", 4);
  const peft::LayerSettingsResolver plain_settings(plain);
  EXPECT_LT(seconds_of([&] { EXPECT_EQ(plain_settings(key).r, 8); }), 1.0);
  EXPECT_EQ(plain_settings(std::string(100000, 'm') + ".q").r, 4);
}

// ---- long lists ---------------------------------------------------------------------------------

TEST(ListBounds, AHundredThousandTargetNamesTakeWellUnderASecond) {
  std::vector<std::string> names;
  for (int i = 0; i < 100000; ++i) names.push_back("layer_" + std::to_string(i) + ".proj");
  names.push_back("layer_7.proj");  // a duplicate: dropped, first position kept
  // A list as big again, reversed, compares equal (lists are sets); 54 s before hashing.
  EXPECT_LT(seconds_of([&] {
              EXPECT_TRUE(peft::ModuleSpec(names) == peft::ModuleSpec(std::vector<std::string>(names.rbegin(), names.rend())));
            }),
            1.0);
  double secs = seconds_of([&] {
    peft::LoraConfig cfg;
    cfg.target_modules = peft::ModuleSpec(names);
    EXPECT_EQ(cfg.target_modules.names().size(), 100000u);
    const peft::TargetMatcher matcher(cfg);
    for (int i = 0; i < 1000; ++i) {
      EXPECT_EQ(matcher("model.layer_" + std::to_string(i * 97) + ".proj"), peft::MatchResult::Match);
      EXPECT_EQ(matcher("model.xlayer_" + std::to_string(i) + ".proj"), peft::MatchResult::NoMatch);
    }
    EXPECT_EQ(matcher("layer_99999.proj"), peft::MatchResult::Match);
  });
  EXPECT_LT(secs, 1.0);
  // Through adapter_config.json, as peft-merge and peft-inspect read it.
  peft::JsonValue::Array list;
  for (const auto& n : names) list.emplace_back(n);
  peft::JsonValue j = peft::JsonValue::object();
  j.set("peft_type", peft::JsonValue(std::string("LORA")));
  j.set("target_modules", peft::JsonValue(list));
  const std::string text = j.dump();
  secs = seconds_of([&] {
    peft::ScopedWarningCapture quiet;
    EXPECT_EQ(peft::lora_config_from_json(text).target_modules.names().size(), 100000u);
  });
  EXPECT_LT(secs, 1.0);
  // And through YAML (100k nodes are within the node budget).
  std::string y = "lora:\n  target_modules: [";
  for (std::size_t i = 0; i < names.size(); ++i) y += (i ? "," : "") + names[i];
  y += "]\n";
  secs = seconds_of([&] { EXPECT_EQ(peft::lora_config_from_yaml(y).target_modules.names().size(), 100000u); });
  EXPECT_LT(secs, 5.0);  // yaml-cpp parses twice (bounds, then the node): ~1 s, linear
}

TEST(ListBounds, SuffixMatchingAgreesWithThePerNameRule) {
  peft::LoraConfig cfg;
  cfg.target_modules = peft::ModuleSpec({"attn.q", "v", "model.layers.0.mlp"});
  cfg.exclude_modules = peft::ModuleSpec({"layers.1.v"});
  const peft::TargetMatcher matcher(cfg);
  EXPECT_EQ(matcher("attn.q"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("model.attn.q"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("model.xattn.q"), peft::MatchResult::NoMatch);
  EXPECT_EQ(matcher("model.layers.0.v"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("model.layers.1.v"), peft::MatchResult::Excluded);
  EXPECT_EQ(matcher("model.layers.11.v"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("model.layers.0.mlp"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("x.model.layers.0.mlp"), peft::MatchResult::Match);
  EXPECT_EQ(matcher("model.layers.0.mlp.fc"), peft::MatchResult::NoMatch);
  EXPECT_EQ(matcher("v.w"), peft::MatchResult::NoMatch);
  EXPECT_EQ(matcher(".v"), peft::MatchResult::Match);  // "" + "." + name, as key.endswith(".v")
}

TEST(YamlBounds, OutOfRangeFloatsAreValuesNotUncaughtExceptions) {
  // Found by the YAML fuzzer (fuzz/seeds/config_yaml/crash_float_overflow.yaml): std::stod threw
  // std::out_of_range past every catch and terminated the process.
  std::string msg = config_error_of([] { peft::lora_config_from_yaml("lora:\n  lora_dropout: 1e3090\n"); });
  EXPECT_NE(msg.find("lora_dropout"), std::string::npos) << msg;
  EXPECT_THROW(peft::lora_config_from_yaml("bbae_dsmoel: builxin:tiny-gpt2\ntraining:\n  thread: 1e3090\n", ""),
               peft::ConfigError);
  msg = config_error_of([] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  lr: 1e3090\n", "t.yaml"); });
  EXPECT_NE(msg.find("must be finite"), std::string::npos) << msg;
  msg = config_error_of([] { peft::train::train_config_from_yaml(kTrainHead + "training:\n  lr: -1e-400\n", "t.yaml"); });
  EXPECT_NE(msg.find("must be > 0"), std::string::npos) << msg;
}
