// Inputs bounded before they are trusted (issue 19, classes 2, 4 and 7): a failed load_adapter or
// a delete_adapter leaves nothing registered, stock layers back in place and the user's
// requires_grad flags as they were; a config cannot ask for more than the bytes behind it (ranks,
// layers, embeddings, tokenizer ids); non-finite adapter weights and data a tokenizer drops are
// refused instead of accepted silently.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "peft/io/adapters.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/train/phases.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/hf_tokenizer_json.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::set<std::string> parameter_names(torch::nn::Module& m) {
  std::set<std::string> out;
  for (const auto& p : m.named_parameters()) out.insert(p.key());
  return out;
}

std::set<std::string> names_with(const std::set<std::string>& names, const std::string& part) {
  std::set<std::string> out;
  for (const auto& n : names)
    if (n.find(part) != std::string::npos) out.insert(n);
  return out;
}

peft::LoraConfig small_config(std::int64_t r = 2) {
  peft::LoraConfig c;
  c.r = r;
  c.lora_alpha = 4;
  c.target_modules = peft::ModuleSpec({"lin0", "lin1"});
  c.init_lora_weights = false;  // B != 0, so a loaded adapter changes the output
  return c;
}

/// An adapter directory for an Mlp({4, 6, 3}) with rank `r`.
fs::path saved_adapter(const std::string& name, std::int64_t r) {
  peft_test::Mlp m(peft_test::MlpOptions({4, 6, 3}));
  peft::LoraModel pm(m.ptr(), small_config(r));
  const fs::path dir = peft_test::scratch_dir(name);
  peft::save_pretrained(pm, dir);
  return dir;
}

/// `dir`'s adapter_config.json with `key` set to the JSON text `value`, in a copy.
fs::path with_config_value(const fs::path& dir, const std::string& copy_name, const std::string& key,
                           const std::string& value) {
  const fs::path out = peft_test::scratch_dir(copy_name);
  fs::copy(dir, out, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  peft::JsonValue cfg = peft::JsonValue::parse(peft::read_text_file(out / "adapter_config.json"));
  cfg.set(key, peft::JsonValue::parse(value));
  std::ofstream(out / "adapter_config.json", std::ios::trunc) << cfg.dump(1);
  return out;
}

/// `dir`'s adapter with every value of its first tensor replaced by `value`, in a copy.
fs::path with_tensor_value(const fs::path& dir, const std::string& copy_name, float value) {
  const fs::path out = peft_test::scratch_dir(copy_name);
  fs::copy(dir, out, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto file = peft::load_safetensors(out / "adapter_model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [k, t] : file.tensors) tensors.emplace_back(k, t.clone());
  tensors.front().second.view(-1)[0] = value;
  peft::save_safetensors(out / "adapter_model.safetensors", tensors);
  return out;
}

}  // namespace

SEEDED_TEST(TransactionalLoad, AFailedLoadBesideAnotherAdapterLeavesNothingRegisteredAndTheNameReusable) {
  const fs::path good = saved_adapter("bounded_good", 2);
  const fs::path wrong_rank = with_config_value(good, "bounded_wrong_rank", "r", "3");
  const fs::path nan = with_tensor_value(good, "bounded_nan", std::nanf(""));
  peft_test::Mlp m(peft_test::MlpOptions({4, 6, 3}));
  peft::LoraModel pm(m.ptr(), small_config(), "default");
  const auto names = parameter_names(*m);
  for (int i = 0; i < 20; ++i)  // repeated failures must not accumulate anything
    for (const fs::path& bad : {wrong_rank, nan}) {
      EXPECT_THROW(peft::load_adapter(pm, bad, "other"), peft::Error) << bad;
      EXPECT_EQ(parameter_names(*m), names) << bad;
      EXPECT_EQ(pm.adapter_names(), std::vector<std::string>{"default"});
    }
  peft::load_adapter(pm, good, "other");  // the name is free again
  EXPECT_EQ(names_with(parameter_names(*m), ".other.").size(), 4u);  // lora_A/B of lin0 and lin1
}

SEEDED_TEST(TransactionalLoad, DeleteAdapterUnregistersEveryModuleOfTheAdapter) {
  peft_test::Mlp m(peft_test::MlpOptions({4, 6, 3}));
  peft::LoraConfig c = small_config();
  c.lora_dropout = 0.1;  // a dropout module per layer too
  peft::LoraModel pm(m.ptr(), c, "a");
  const auto only_a = parameter_names(*m);
  std::set<std::string> modules_a;
  for (const auto& n : m->named_modules()) modules_a.insert(n.key());
  pm.add_adapter("b", c);
  pm.delete_adapter("b");
  EXPECT_EQ(parameter_names(*m), only_a);
  std::set<std::string> modules_after;
  for (const auto& n : m->named_modules()) modules_after.insert(n.key());
  EXPECT_EQ(modules_after, modules_a);
  pm.add_adapter("b", c);  // the same name again: no "already defined" from LibTorch
  EXPECT_EQ(names_with(parameter_names(*m), ".b.").size(), 4u);
}

SEEDED_TEST(TransactionalLoad, AFailedLoadPutsTheStockLayersOfASequentialBackAndKeepsRequiresGrad) {
  torch::nn::Sequential seq(torch::nn::Linear(4, 6), torch::nn::ReLU(), torch::nn::Linear(6, 3));
  peft::LoraConfig c = small_config();
  c.target_modules = peft::ModuleSpec({"0", "2"});
  // An adapter for this Sequential whose lora_B of module 2 has the wrong shape.
  const fs::path bad = peft_test::scratch_dir("bounded_seq_bad");
  {
    torch::nn::Sequential donor(torch::nn::Linear(4, 6), torch::nn::ReLU(), torch::nn::Linear(6, 5));
    peft::LoraModel pm(donor.ptr(), c);
    peft::save_pretrained(pm, bad);
  }
  seq[0]->as<torch::nn::Linear>()->weight.set_requires_grad(false);  // the user's own choice of flags
  const auto x = torch::randn({2, 4});
  const auto y = seq->forward(x);
  peft::LoraModel pm(seq.ptr(), peft::LoraModelOptions{});
  EXPECT_THROW(peft::load_adapter(pm, bad, "default"), peft::SerializationError);
  for (std::size_t i : {0u, 2u}) {
    EXPECT_TRUE(typeid(*seq[i]) == typeid(torch::nn::LinearImpl)) << "element " << i << " is a " << seq[i]->name();
    EXPECT_TRUE(typeid(*seq->named_children()[std::to_string(i)]) == typeid(torch::nn::LinearImpl)) << "registry " << i;
  }
  EXPECT_FALSE(seq[0]->as<torch::nn::Linear>()->weight.requires_grad());
  EXPECT_TRUE(seq[0]->as<torch::nn::Linear>()->bias.requires_grad());
  EXPECT_TRUE(seq[2]->as<torch::nn::Linear>()->weight.requires_grad());
  EXPECT_TRUE(peft_test::equal(seq->forward(x), y));
  EXPECT_TRUE(pm.adapter_names().empty());
}

SEEDED_TEST(BoundedSizes, ARankLargerThanTheFilesFactorsIsRefusedBeforeAnythingIsAllocated) {
  const fs::path good = saved_adapter("bounded_rank_src", 2);
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"r", "8000000"}, {"rank_pattern", R"({"lin1": 8000000})"}}) {
    const fs::path bad = with_config_value(good, "bounded_rank_" + key, key, value);
    peft_test::Mlp m(peft_test::MlpOptions({4, 6, 3}));
    peft::LoraModel pm(m.ptr(), peft::LoraModelOptions{});
    const auto t0 = std::chrono::steady_clock::now();
    try {
      peft::load_adapter(pm, bad, "default");
      ADD_FAILURE() << key << " accepted";
    } catch (const peft::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("8000000"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_TRUE(pm.adapter_names().empty());
  }
}

SEEDED_TEST(BoundedSizes, AConfigJsonAskingForMoreLayersOrAnotherEmbeddingThanItsWeightsIsRefused) {
  const fs::path base = peft_test::hf_models_dir() / "llama" / "base";
  const peft::JsonValue cfg = peft_test::read_json(base / "config.json");
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::int64_t>>{
           {"num_hidden_layers", 1000000000}, {"vocab_size", 160000}, {"hidden_size", 4096}}) {
    const fs::path dir = peft_test::scratch_dir("bounded_config_" + key);
    for (const auto& f : fs::directory_iterator(base)) fs::copy(f.path(), dir / f.path().filename());
    peft::JsonValue c = cfg;
    c.set(key, value);
    fs::remove(dir / "config.json");
    std::ofstream(dir / "config.json") << c.dump(1);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      peft::models::load_causal_lm(dir.string());
      ADD_FAILURE() << key << " = " << value << " accepted";
    } catch (const peft::SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find(key + " = " + std::to_string(value)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("do not belong together"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
  EXPECT_NO_THROW(peft::models::load_causal_lm(base.string()));  // the genuine pair loads
}

TEST(BoundedTokenizer, AnIdFarBeyondItsEntriesIsRefused) {
  using peft_test::bpe_model;
  EXPECT_NO_THROW(peft_test::hf_tokenizer(bpe_model(R"({"a": 0, "b": 1, "c": 5})", "[]")));  // small gaps are fine
  for (const char* vocab : {R"({"a": 0, "b": 80000000})", R"({"a": 0, "b": 70000})"}) {
    try {
      peft_test::hf_tokenizer(bpe_model(vocab, "[]"));
      ADD_FAILURE() << vocab << " accepted";
    } catch (const peft::SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find("far beyond its 2 entries"), std::string::npos) << e.what();
    }
  }
}

SEEDED_TEST(SilentAcceptance, NonFiniteAdapterWeightsAreRefusedNamingTheTensorUnlessAllowed) {
  const fs::path good = saved_adapter("bounded_finite_src", 2);
  for (float v : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    const fs::path bad = with_tensor_value(good, "bounded_nonfinite", v);
    peft_test::Mlp m(peft_test::MlpOptions({4, 6, 3}));
    peft::LoraModel pm(m.ptr(), peft::LoraModelOptions{});
    try {
      peft::load_adapter(pm, bad, "default");
      ADD_FAILURE() << v << " accepted";
    } catch (const peft::SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find("NaN or infinite"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("lora_"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(pm.adapter_names().empty());
    peft::LoadOptions o;
    o.allow_non_finite = true;
    peft::load_adapter(pm, bad, "default", o);  // PEFT's behaviour on request
    EXPECT_EQ(pm.adapter_names(), std::vector<std::string>{"default"});
  }
}

TEST(DroppedCharacters, AreCountedAndTheTrainerRefusesTheData) {
  using peft_test::bpe_model;
  // No token for "c", no unk, no byte fallback: HF drops it, and so do we, but we count it.
  auto tok = peft_test::hf_tokenizer(bpe_model(R"({"a": 0, "b": 1})", "[]"));
  EXPECT_EQ(tok->encode("ab"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(tok->dropped_characters(), 0u);
  EXPECT_EQ(tok->encode("acbc"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(tok->dropped_characters(), 2u);
  EXPECT_NO_THROW(peft::train::check_nothing_dropped(*tok, 2, "data.txt"));
  try {
    peft::train::check_nothing_dropped(*tok, 0, "data.txt");
    ADD_FAILURE() << "dropped characters accepted";
  } catch (const peft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.txt: the tokenizer has no token for 2 character(s)"), std::string::npos)
        << e.what();
  }
  // With an unk token nothing is dropped.
  auto with_unk = peft_test::hf_tokenizer(bpe_model(R"({"a": 0, "b": 1, "<unk>": 2})", "[]", R"("unk_token": "<unk>")"));
  with_unk->encode("acbc");
  EXPECT_EQ(with_unk->dropped_characters(), 0u);
}
