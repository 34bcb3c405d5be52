// safetensors reading: files written by Python PEFT, rejection of every kind of malformed input
// with a SerializationError (docs/file-format.md), memory-mapped loading. (Writing and round
// trips: test_safetensors_writer.cpp.)

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <filesystem>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/safetensors.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/safetensors_bytes.hpp"

namespace fs = std::filesystem;
using Metadata = std::vector<std::pair<std::string, std::string>>;
using peft_test::assemble;
using peft_test::le64;
using peft_test::read_file;

namespace {

const std::string kSource = "hand-made.safetensors";

/// `n` bytes of data (content irrelevant for the validation tests).
std::string zeros(std::size_t n) { return std::string(n, '\0'); }

/// The bytes are rejected with a SerializationError that names the source and contains `fragment`.
testing::AssertionResult Rejected(const std::string& bytes, const std::string& fragment) {
  try {
    auto f = peft::parse_safetensors(bytes, kSource);
    return testing::AssertionFailure() << "accepted (" << f.tensors.size() << " tensors)";
  } catch (const peft::SerializationError& e) {
    const std::string msg = e.what();
    if (msg.find(kSource) == std::string::npos)
      return testing::AssertionFailure() << "message does not name the file: " << msg;
    if (msg.find(fragment) == std::string::npos)
      return testing::AssertionFailure() << "message lacks \"" << fragment << "\": " << msg;
    return testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return testing::AssertionFailure() << "threw a non-SerializationError: " << e.what();
  }
}

/// A header with one tensor entry `t` whose fields are given as raw JSON text.
std::string one_entry(const std::string& dtype, const std::string& shape,
                      const std::string& offsets) {
  return R"({"t":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets +
         "}}";
}

std::int64_t dim(const peft::JsonValue& dims, const std::string& key) {
  const peft::JsonValue* v = dims.find(key);
  EXPECT_TRUE(v && v->is_int()) << key;
  return v && v->is_int() ? v->as_int() : -1;
}

std::vector<fs::path> fixture_safetensors_files() {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(peft_test::fixtures_dir()))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files written by Python PEFT

TEST(SafetensorsFixtures, ReadsAFloat32BaseModel) {
  const fs::path dir = peft_test::fixtures_dir() / "mlp_default";
  const peft::JsonValue case_json = peft_test::read_json(dir / "case.json");
  const peft::JsonValue* dims = case_json.find("model_dims");
  ASSERT_NE(dims, nullptr);
  const std::int64_t d_in = dim(*dims, "d_in"), d_hidden = dim(*dims, "d_hidden"),
                     d_out = dim(*dims, "d_out");
  const auto file = peft::load_safetensors(dir / "base_model.safetensors");
  const torch::Tensor* w = file.find("lin0.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->scalar_type(), torch::kFloat32);
  EXPECT_EQ(w->sizes(), (std::vector<int64_t>{d_hidden, d_in}));
  EXPECT_TRUE(w->is_contiguous());
  EXPECT_TRUE(torch::isfinite(*w).all().item<bool>());
  EXPECT_GT(w->abs().sum().item<float>(), 0.f);
  ASSERT_NE(file.find("lin1.weight"), nullptr);
  EXPECT_EQ(file.find("lin1.weight")->sizes(), (std::vector<int64_t>{d_out, d_hidden}));
  ASSERT_NE(file.find("lin0.bias"), nullptr);
  EXPECT_EQ(file.find("lin0.bias")->sizes(), (std::vector<int64_t>{d_hidden}));
}

TEST(SafetensorsFixtures, ReadsABfloat16BaseModel) {
  const fs::path dir = peft_test::fixtures_dir() / "mlp_bf16";
  const peft::JsonValue case_json = peft_test::read_json(dir / "case.json");
  const peft::JsonValue* dims = case_json.find("model_dims");
  ASSERT_NE(dims, nullptr);
  const auto file = peft::load_safetensors(dir / "base_model.safetensors");
  ASSERT_FALSE(file.tensors.empty());
  for (const auto& kv : file.tensors) EXPECT_EQ(kv.second.scalar_type(), torch::kBFloat16) << kv.first;
  const torch::Tensor* w = file.find("lin0.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->sizes(), (std::vector<int64_t>{dim(*dims, "d_hidden"), dim(*dims, "d_in")}));
  EXPECT_TRUE(torch::isfinite(w->to(torch::kFloat32)).all().item<bool>());
  EXPECT_GT(w->to(torch::kFloat32).abs().sum().item<float>(), 0.f);
}

TEST(SafetensorsFixtures, ReadsInt64TokenIds) {
  const fs::path root = peft_test::fixtures_dir();
  const auto manifest = peft_test::read_json(root / "manifest.json");
  const auto* lm = manifest.find("input_shapes") ? manifest.find("input_shapes")->find("lm") : nullptr;
  ASSERT_TRUE(lm && lm->is_array());
  std::vector<int64_t> want_shape;
  for (const auto& d : lm->as_array()) want_shape.push_back(d.as_int());
  const peft::JsonValue case_json = peft_test::read_json(root / "decoder_default" / "case.json");
  const peft::JsonValue* dims = case_json.find("model_dims");
  ASSERT_NE(dims, nullptr);
  const auto file = peft::load_safetensors(root / "decoder_default" / "input.safetensors");
  const torch::Tensor* ids = file.find("input_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->scalar_type(), torch::kInt64);
  EXPECT_EQ(ids->sizes(), want_shape);
  EXPECT_GE(ids->min().item<int64_t>(), 0);
  EXPECT_LT(ids->max().item<int64_t>(), dim(*dims, "vocab"));
}

TEST(SafetensorsFixtures, ReadsAdapterMetadataAndKeys) {
  const auto file = peft::load_safetensors(peft_test::fixtures_dir() / "mlp_default" / "adapter" /
                                           "adapter_model.safetensors");
  EXPECT_EQ(file.metadata, (Metadata{{"format", "pt"}}));
  ASSERT_FALSE(file.tensors.empty());
  for (const auto& kv : file.tensors)
    EXPECT_EQ(kv.first.rfind("base_model.model.", 0), 0u) << kv.first;
}

TEST(SafetensorsFixtures, ReSavingEveryFixtureFileReproducesItByteForByte) {
  const auto files = fixture_safetensors_files();
  ASSERT_FALSE(files.empty());
  for (const auto& p : files) {
    const std::string original = read_file(p);
    const auto file = peft::parse_safetensors(original, p.string());
    EXPECT_TRUE(peft::serialize_safetensors(file.tensors, file.metadata) == original) << p;
  }
}

TEST(SafetensorsFixtures, EveryTruncationOfARealFileIsRejected) {
  const std::string bytes =
      read_file(peft_test::fixtures_dir() / "mlp_default" / "base_model.safetensors");
  ASSERT_GT(bytes.size(), 200u);
  for (std::size_t n = 0; n <= 200; ++n)
    EXPECT_TRUE(Rejected(bytes.substr(0, n), "")) << "prefix of " << n << " bytes";
  EXPECT_TRUE(Rejected(bytes.substr(0, bytes.size() - 1), "beyond the data buffer"));
}

TEST(SafetensorsFixtures, CorruptedHeaderBytesAreReadOrRejectedNeverCrash) {
  const std::string bytes =
      read_file(peft_test::fixtures_dir() / "mlp_default" / "base_model.safetensors");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  int rejected = 0;
  for (std::size_t i = 0; i < 8 + n; ++i)
    for (unsigned char v : {0x00, 0x01, 0x22, 0x2c, 0x2d, 0x30, 0x39, 0x5b, 0x7b, 0x7d, 0xff}) {
      std::string b = bytes;
      b[i] = static_cast<char>(v);
      try {
        peft::parse_safetensors(b, kSource);
      } catch (const peft::SerializationError&) {
        ++rejected;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " = " << int(v) << ": " << e.what();
      }
    }
  EXPECT_GT(rejected, 0);
}

// ---------------------------------------------------------------------------------------------
// Validation: one malformed input per test

TEST(SafetensorsValidation, RejectsAFileShorterThanEightBytes) {
  EXPECT_TRUE(Rejected("", "shorter than the 8-byte"));
  EXPECT_TRUE(Rejected(std::string("\x02\0\0\0\0\0\0", 7), "shorter than the 8-byte"));
}

TEST(SafetensorsValidation, RejectsAHeaderLengthLargerThanTheFile) {
  EXPECT_TRUE(Rejected(le64(100) + "{}", "larger than the 2 bytes"));
  EXPECT_TRUE(Rejected(le64(1), "larger than the 0 bytes"));
}

TEST(SafetensorsValidation, RejectsAHeaderLengthOverOneHundredMegabytes) {
  EXPECT_TRUE(Rejected(le64(100'000'001) + "{}", "exceeds the limit"));
  EXPECT_TRUE(Rejected(le64(~std::uint64_t{0}) + "{}", "exceeds the limit"));
}

TEST(SafetensorsValidation, RejectsAHeaderThatIsNotJson) {
  EXPECT_TRUE(Rejected(assemble("{not json}"), "not valid JSON"));
  EXPECT_TRUE(Rejected(assemble(""), "not valid JSON"));
  EXPECT_TRUE(Rejected(assemble("{} x"), "not valid JSON"));
  EXPECT_TRUE(Rejected(assemble(std::string("{}\0", 3)), "NUL byte"));
  EXPECT_TRUE(Rejected(assemble(std::string("{}\0garbage", 10)), "NUL byte"));
  EXPECT_TRUE(Rejected(assemble("{\"a\xff\":1}"), "not valid JSON"));
}

TEST(SafetensorsValidation, RejectsAHeaderThatIsNotAnObject) {
  EXPECT_TRUE(Rejected(assemble("[1,2]"), "not an object"));
  EXPECT_TRUE(Rejected(assemble("\"text\""), "not an object"));
  EXPECT_TRUE(Rejected(assemble("null"), "not an object"));
}

TEST(SafetensorsValidation, RejectsDeeplyNestedJsonWithoutRecursing) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_TRUE(Rejected(assemble(deep), "deeper"));
  EXPECT_TRUE(Rejected(assemble(R"({"t":{"shape":[[1]]}})"), "deeper"));
}

TEST(SafetensorsValidation, RejectsAnEntryThatIsNotAnObject) {
  EXPECT_TRUE(Rejected(assemble(R"({"t":5})"), "\"t\" is not an object"));
  EXPECT_TRUE(Rejected(assemble(R"({"t":["F32",[1],[0,4]]})", zeros(4)), "not an object"));
}

TEST(SafetensorsValidation, RejectsAnEntryWithoutDtype) {
  EXPECT_TRUE(Rejected(assemble(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", zeros(4)),
                       "no \"dtype\""));
}

TEST(SafetensorsValidation, RejectsAnEntryWithoutShape) {
  EXPECT_TRUE(Rejected(assemble(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", zeros(4)),
                       "no \"shape\""));
}

TEST(SafetensorsValidation, RejectsAnEntryWithoutDataOffsets) {
  EXPECT_TRUE(
      Rejected(assemble(R"({"t":{"dtype":"F32","shape":[1]}})", zeros(4)), "no \"data_offsets\""));
}

TEST(SafetensorsValidation, RejectsAnUnknownDtype) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F33\"", "[1]", "[0,4]"), zeros(4)), "unknown dtype"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"f32\"", "[1]", "[0,4]"), zeros(4)), "unknown dtype"));
  EXPECT_TRUE(Rejected(assemble(one_entry("32", "[1]", "[0,4]"), zeros(4)), "not a string"));
}

TEST(SafetensorsValidation, RejectsSafetensorsDtypesLibTorchLacks) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"U16\"", "[1]", "[0,2]"), zeros(2)),
                       "does not support"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F8_E4M3\"", "[1]", "[0,1]"), zeros(1)),
                       "does not support"));
}

TEST(SafetensorsValidation, RejectsNegativeShapeDimensions) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[-1]", "[0,4]"), zeros(4)), "negative"));
}

TEST(SafetensorsValidation, RejectsNonIntegerShapeDimensions) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[1.5]", "[0,4]"), zeros(4)), "non-integer"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[1.0]", "[0,4]"), zeros(4)), "non-integer"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[\"1\"]", "[0,4]"), zeros(4)),
                       "not a non-negative integer"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[true]", "[0,4]"), zeros(4)),
                       "not a non-negative integer"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "{}", "[0,4]"), zeros(4)), "not an array"));
}

TEST(SafetensorsValidation, RejectsShapesWhoseElementCountOverflows) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"U8\"", "[4294967296,4294967296]", "[0,0]")),
                       "overflows"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"U8\"", "[18446744073709551615]", "[0,0]")),
                       "overflows"));
  // Fits in int64 as elements, not as bytes.
  EXPECT_TRUE(Rejected(assemble(one_entry("\"I64\"", "[2305843009213693952]", "[0,0]")),
                       "overflows"));
  // Zero elements, but the strides of the other dimensions would overflow int64.
  EXPECT_TRUE(Rejected(assemble(one_entry("\"U8\"", "[0,4294967296,4294967296]", "[0,0]")),
                       "overflows"));
  // Larger than a uint64: nlohmann reads it as a float.
  EXPECT_TRUE(Rejected(assemble(one_entry("\"U8\"", "[99999999999999999999]", "[0,0]")),
                       "non-integer"));
}

TEST(SafetensorsValidation, RejectsDataOffsetsThatAreNotTwoIntegers) {
  const std::string four = zeros(4);
  for (const std::string off : {"[0]", "[0,4,4]", "[]", "4", "\"0,4\"", "[0,4.0]", "[-0.5,4]",
                                "[0,\"4\"]", "[-4,0]", "[null,4]"})
    EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[1]", off), four),
                         "is not two non-negative integers"))
        << off;
}

TEST(SafetensorsValidation, RejectsDecreasingDataOffsets) {
  EXPECT_TRUE(
      Rejected(assemble(one_entry("\"F32\"", "[0]", "[4,0]"), zeros(4)), "end before they begin"));
}

TEST(SafetensorsValidation, RejectsDataOffsetsBeyondTheDataBuffer) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[2]", "[0,8]"), zeros(4)),
                       "beyond the data buffer (4 bytes)"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[0]", "[5,5]"), zeros(4)),
                       "beyond the data buffer"));
  EXPECT_TRUE(Rejected(
      assemble(one_entry("\"U8\"", "[1]", "[18446744073709551614,18446744073709551615]"), zeros(4)),
      "beyond the data buffer"));
}

TEST(SafetensorsValidation, RejectsDataOffsetsThatDoNotMatchDtypeAndShape) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[2]", "[0,4]"), zeros(8)),
                       "span 4 bytes but F32 with shape [2] needs 8"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F16\"", "[3]", "[0,8]"), zeros(8)), "needs 6"));
  EXPECT_TRUE(Rejected(assemble(one_entry("\"F32\"", "[]", "[0,0]"), zeros(8)), "needs 4"));
}

TEST(SafetensorsValidation, RejectsOverlappingTensors) {
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  EXPECT_TRUE(Rejected(
      assemble("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", zeros(12)),
      "\"a\" and \"b\" overlap"));
  EXPECT_TRUE(Rejected(
      assemble("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
      "overlap"));
  // A range inside an earlier, longer one, listed first in the header.
  EXPECT_TRUE(Rejected(assemble(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)" +
                                    std::string(R"("a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})"),
                                zeros(8)),
                       "overlap"));
  // A zero-size range strictly inside another tensor's bytes.
  EXPECT_TRUE(Rejected(
      assemble("{" + a + R"(,"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", zeros(8)),
      "overlap"));
}

TEST(SafetensorsValidation, AcceptsZeroElementTensorsAtRangeBoundaries) {
  const std::string header =
      R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("e1":{"dtype":"I64","shape":[3,0],"data_offsets":[8,8]},)"
      R"("e2":{"dtype":"BF16","shape":[0,5],"data_offsets":[8,8]}})";
  const auto file = peft::parse_safetensors(assemble(header, zeros(8)), kSource);
  ASSERT_EQ(file.tensors.size(), 4u);
  EXPECT_EQ(file.tensors[0].first, "e0");
  EXPECT_EQ(file.tensors[2].second.sizes(), (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(file.tensors[3].second.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(peft_test::equal(file.tensors[1].second, torch::zeros({2})));
}

TEST(SafetensorsValidation, AcceptsAZeroElementTensorInAnEmptyFile) {
  const auto file =
      peft::parse_safetensors(assemble(one_entry("\"F32\"", "[0,3]", "[0,0]")), kSource);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].second.sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(SafetensorsValidation, RejectsDuplicateTensorNames) {
  const std::string e = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  const std::string f = R"({"dtype":"U8","shape":[1],"data_offsets":[1,2]})";
  EXPECT_TRUE(Rejected(assemble(R"({"a":)" + e + R"(,"a":)" + f + "}", zeros(2)),
                       "duplicate tensor name \"a\""));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":{},"__metadata__":{}})"), "duplicate"));
}

TEST(SafetensorsValidation, RejectsDuplicateKeysInsideAnEntry) {
  EXPECT_TRUE(Rejected(
      assemble(R"({"t":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})", zeros(1)),
      "duplicate key \"dtype\""));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate key \"k\""));
}

TEST(SafetensorsValidation, RejectsMetadataThatIsNotAnObject) {
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":"pt"})"), "not an object of strings"));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":["pt"]})"), "not an object of strings"));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":null})"), "not an object of strings"));
}

TEST(SafetensorsValidation, RejectsMetadataValuesThatAreNotStrings) {
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":{"format":"pt","n":1}})"), "not a string"));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":{"m":{}}})"), "not a string"));
  EXPECT_TRUE(Rejected(assemble(R"({"__metadata__":{"m":null}})"), "not a string"));
}

TEST(SafetensorsValidation, RejectsBoolBytesOtherThanZeroAndOne) {
  EXPECT_TRUE(Rejected(assemble(one_entry("\"BOOL\"", "[3]", "[0,3]"), std::string("\x01\x00\x02", 3)),
                       "only 0 and 1"));
}

TEST(SafetensorsValidation, KeepsHeaderOrderForTensorsAndMetadata) {
  const std::string header =
      R"({"z":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
      R"("__metadata__":{"zz":"1","aa":"2"},)"
      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}   )";
  const auto file = peft::parse_safetensors(assemble(header, "AZ"), kSource);
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "z");
  EXPECT_EQ(file.tensors[0].second.item<uint8_t>(), 'Z');
  EXPECT_EQ(file.tensors[1].first, "a");
  EXPECT_EQ(file.tensors[1].second.item<uint8_t>(), 'A');
  EXPECT_EQ(file.metadata, (Metadata{{"zz", "1"}, {"aa", "2"}}));
}

TEST(SafetensorsValidation, IgnoresUnknownFieldsOfAnEntry) {
  const auto file = peft::parse_safetensors(
      assemble(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}})", "x"), kSource);
  ASSERT_EQ(file.tensors.size(), 1u);
}

}  // namespace

TEST(SafetensorsMapped, AlignedTensorsViewTheFileWithoutACopyAndWritesStayPrivate) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "peft_st_mapped";
  fs::remove_all(dir);
  const auto a = torch::arange(16, torch::kFloat32);
  const auto b = torch::arange(8, torch::kFloat64);
  peft::save_safetensors(dir / "m.safetensors", {{"a", a}, {"b", b}});
  const std::string before = peft::read_text_file(dir / "m.safetensors");
  auto f = peft::load_safetensors(dir / "m.safetensors");
  const auto& ta = f.tensors[0].second;
  const auto& tb = f.tensors[1].second;
  EXPECT_TRUE(peft_test::equal(ta, a));
  EXPECT_TRUE(peft_test::equal(tb, b));
  // Both view one mapping: their addresses are exactly the data offsets apart.
  EXPECT_EQ(static_cast<const char*>(tb.data_ptr()) - static_cast<const char*>(ta.data_ptr()), 16 * 4);
  f.tensors[0].second.add_(1.0);  // copy-on-write: the file is untouched
  EXPECT_EQ(peft::read_text_file(dir / "m.safetensors"), before);
  auto again = peft::load_safetensors(dir / "m.safetensors");
  EXPECT_TRUE(peft_test::equal(again.tensors[0].second, a));
}
