// safetensors writing: round trips of every dtype, the byte layout Python writes, and what
// the writer refuses. (Reading files and rejecting malformed ones: test_safetensors_reader.cpp.)

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>

#include "peft/error.hpp"
#include "peft/io/safetensors.hpp"
#include "support/expect_close.hpp"
#include "support/safetensors_bytes.hpp"

namespace fs = std::filesystem;
using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;
using Metadata = std::vector<std::pair<std::string, std::string>>;
using peft_test::assemble;
using peft_test::read_file;

namespace {

fs::path temp_dir(const std::string& name) {
  const char* base = std::getenv("PEFT_TEST_TMP");
  fs::path dir = fs::path(base ? base : fs::temp_directory_path().string()) /
                 ("peft_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

/// Same dtype, shape and bytes (bit-exact: NaN payloads and -0.0 included).
testing::AssertionResult SameTensor(const torch::Tensor& got, const torch::Tensor& want) {
  if (got.scalar_type() != want.scalar_type())
    return testing::AssertionFailure() << "dtype " << got.scalar_type() << " vs "
                                       << want.scalar_type();
  if (got.sizes() != want.sizes())
    return testing::AssertionFailure() << "shape " << got.sizes() << " vs " << want.sizes();
  auto w = want.contiguous();
  const auto nbytes = static_cast<std::size_t>(w.numel() * w.element_size());
  if (nbytes > 0 && std::memcmp(got.data_ptr(), w.data_ptr(), nbytes) != 0)
    return testing::AssertionFailure() << "values differ:\n" << got << "\nvs\n" << w;
  return testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Round trips

struct DtypeCase {
  const char* name;
  torch::ScalarType type;
};

class SafetensorsRoundTrip : public testing::TestWithParam<DtypeCase> {};

/// Distinct values of `type` in `shape`, with negatives and (for floats) special values.
torch::Tensor sample(torch::ScalarType type, std::vector<std::int64_t> shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  if (type == torch::kBool) return (torch::arange(n) % 3 == 1).reshape(shape);
  if (type == torch::kUInt8) return torch::arange(n).mul(37).remainder(256).to(type).reshape(shape);
  auto base = torch::arange(n, torch::kFloat64).sub(n / 2);
  if (!torch::isFloatingType(type)) return base.mul(7).to(type).reshape(shape);
  auto t = base.mul(0.375).to(type);
  if (n >= 6) {  // inf, -inf, NaN, -0.0 survive bit-exactly
    t[0] = std::numeric_limits<double>::infinity();
    t[1] = -std::numeric_limits<double>::infinity();
    t[2] = std::numeric_limits<double>::quiet_NaN();
    t[3] = -0.0;
  }
  return t.reshape(shape);
}

TEST_P(SafetensorsRoundTrip, KeepsValuesShapesAndDtypeInHeaderOrder) {
  const auto type = GetParam().type;
  Tensors in = {
      {"matrix", sample(type, {2, 3})},
      {"scalar", sample(type, {})},
      {"empty", sample(type, {0, 4})},
      {"vector", sample(type, {7})},
      {"empty_middle", sample(type, {3, 0, 2})},
      {"cube", sample(type, {2, 2, 3})},
  };
  const auto file = peft::parse_safetensors(peft::serialize_safetensors(in), "mem");
  ASSERT_EQ(file.tensors.size(), in.size());
  EXPECT_TRUE(file.metadata.empty());
  for (std::size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(in[i].first);
    EXPECT_EQ(file.tensors[i].first, in[i].first);
    const auto& t = file.tensors[i].second;
    EXPECT_TRUE(SameTensor(t, in[i].second));
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_TRUE(t.device().is_cpu());
  }
  EXPECT_EQ(file.tensors[1].second.dim(), 0);
  EXPECT_EQ(file.tensors[2].second.numel(), 0);
}

INSTANTIATE_TEST_SUITE_P(SafetensorsAllDtypes, SafetensorsRoundTrip,
                         testing::Values(DtypeCase{"F32", torch::kFloat32},
                                         DtypeCase{"F16", torch::kFloat16},
                                         DtypeCase{"BF16", torch::kBFloat16},
                                         DtypeCase{"F64", torch::kFloat64},
                                         DtypeCase{"I64", torch::kInt64},
                                         DtypeCase{"I32", torch::kInt32},
                                         DtypeCase{"I16", torch::kInt16},
                                         DtypeCase{"I8", torch::kInt8},
                                         DtypeCase{"U8", torch::kUInt8},
                                         DtypeCase{"BOOL", torch::kBool}),
                         [](const testing::TestParamInfo<DtypeCase>& param_info) {
                           return std::string(param_info.param.name);
                         });

TEST(SafetensorsRoundTripMisc, WritesTheDtypeNameOfEachTensorInTheHeader) {
  const std::pair<torch::ScalarType, std::string> cases[] = {
      {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
      {torch::kFloat64, "F64"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
      {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
      {torch::kBool, "BOOL"}};
  for (const auto& c : cases) {
    const auto bytes = peft::serialize_safetensors({{"t", torch::zeros({1}, c.first)}});
    EXPECT_NE(bytes.find("\"dtype\":\"" + c.second + "\""), std::string::npos) << c.second;
  }
}

TEST(SafetensorsRoundTripMisc, KeepsMetadataInOrderWithEscapesAndUnicode) {
  const Metadata meta = {{"format", "pt"},
                         {"zeta", "quote \" backslash \\ newline \n tab \t"},
                         {"alpha", "ünïcödé ✓"},
                         {"", "empty key"}};
  const auto file =
      peft::parse_safetensors(peft::serialize_safetensors({{"w", torch::ones({2})}}, meta), "m");
  EXPECT_EQ(file.metadata, meta);
  ASSERT_EQ(file.tensors.size(), 1u);
}

TEST(SafetensorsRoundTripMisc, MetadataAloneWithoutTensorsRoundTrips) {
  const Metadata meta = {{"format", "pt"}};
  const auto file = peft::parse_safetensors(peft::serialize_safetensors({}, meta), "m");
  EXPECT_EQ(file.metadata, meta);
  EXPECT_TRUE(file.tensors.empty());
}

TEST(SafetensorsRoundTripMisc, EmptyFileHasNoTensorsAndNoMetadata) {
  const auto bytes = peft::serialize_safetensors({});
  EXPECT_EQ(bytes, assemble("{}      "));
  const auto file = peft::parse_safetensors(bytes, "m");
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST(SafetensorsRoundTripMisc, NonContiguousAndOffsetViewsAreWrittenAsTheirValues) {
  auto base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  auto transposed = base.t();                        // non-contiguous
  auto sliced = base.index({torch::indexing::Slice(1, 3), torch::indexing::Slice(2, 5)});
  auto grad = torch::ones({3}, torch::requires_grad());
  const auto file = peft::parse_safetensors(
      peft::serialize_safetensors({{"t", transposed}, {"s", sliced}, {"g", grad}}), "m");
  EXPECT_TRUE(peft_test::equal(file.tensors[0].second, transposed));
  EXPECT_TRUE(peft_test::equal(file.tensors[1].second, sliced));
  EXPECT_TRUE(peft_test::equal(file.tensors[2].second, grad.detach()));
  EXPECT_FALSE(file.tensors[2].second.requires_grad());
}

TEST(SafetensorsRoundTripMisc, ReadTensorsOwnTheirMemory) {
  auto bytes = peft::serialize_safetensors({{"w", torch::full({4}, 3.f)}});
  auto file = peft::parse_safetensors(bytes, "m");
  std::fill(bytes.begin(), bytes.end(), '\xff');
  bytes.clear();
  bytes.shrink_to_fit();
  EXPECT_TRUE(peft_test::equal(file.tensors[0].second, torch::full({4}, 3.f)));
}

TEST(SafetensorsRoundTripMisc, FindReturnsTheNamedTensorOrNull) {
  const auto file = peft::parse_safetensors(
      peft::serialize_safetensors({{"a", torch::ones({1})}, {"b", torch::zeros({2})}}), "m");
  ASSERT_NE(file.find("b"), nullptr);
  EXPECT_EQ(file.find("b")->numel(), 2);
  EXPECT_EQ(file.find("c"), nullptr);
}

TEST(SafetensorsRoundTripMisc, SaveThenLoadFromDiskLeavesNoTemporaryFile) {
  const fs::path dir = temp_dir("safetensors_save");
  const fs::path path = dir / "sub" / "adapter_model.safetensors";
  const Tensors in = {{"x", torch::arange(6, torch::kInt64).reshape({2, 3})}};
  peft::save_safetensors(path, in, {{"format", "pt"}});
  peft::save_safetensors(path, in, {{"format", "pt"}});  // replaces the existing file
  const auto file = peft::load_safetensors(path);
  EXPECT_TRUE(SameTensor(file.tensors.at(0).second, in[0].second));
  EXPECT_EQ(file.metadata, (Metadata{{"format", "pt"}}));
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(path.parent_path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
  fs::remove_all(dir);
}

TEST(SafetensorsRoundTripMisc, LoadingAMissingFileNamesThePath) {
  const fs::path path = temp_dir("safetensors_missing") / "nope.safetensors";
  try {
    peft::load_safetensors(path);
    FAIL() << "loaded a missing file";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Writer layout

TEST(SafetensorsWriter, LaysOutLengthHeaderAndDataAsPythonDoes) {
  const auto bytes = peft::serialize_safetensors(
      {{"b", torch::tensor({1.f, -2.f})}, {"a", torch::tensor({int16_t{1}}, torch::kInt16)}},
      {{"format", "pt"}});
  std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"I16","shape":[1],"data_offsets":[8,10]}})";
  while (header.size() % 8) header += ' ';
  std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01\x00", 10);  // 1.f, -2.f, int16 1
  EXPECT_EQ(bytes, assemble(header, data));
}

TEST(SafetensorsWriter, PadsTheHeaderWithSpacesToAMultipleOfEight) {
  for (int len = 1; len <= 9; ++len) {
    const auto bytes = peft::serialize_safetensors({{std::string(len, 'k'), torch::ones({1})}});
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u) << len;
    const std::string header = bytes.substr(8, n);
    const auto close = header.rfind('}');
    EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << header;
    EXPECT_LT(header.size() - close - 1, 8u);
  }
}

TEST(SafetensorsWriter, OmitsEmptyMetadata) {
  const auto bytes = peft::serialize_safetensors({{"a", torch::ones({1})}});
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
}

TEST(SafetensorsWriter, RejectsDuplicateTensorNames) {
  EXPECT_THROW(peft::serialize_safetensors({{"a", torch::ones({1})}, {"a", torch::ones({2})}}),
               peft::SerializationError);
}

TEST(SafetensorsWriter, RejectsATensorNamedMetadata) {
  EXPECT_THROW(peft::serialize_safetensors({{"__metadata__", torch::ones({1})}}),
               peft::SerializationError);
}

TEST(SafetensorsWriter, RejectsDuplicateMetadataKeys) {
  EXPECT_THROW(peft::serialize_safetensors({}, {{"k", "1"}, {"k", "2"}}),
               peft::SerializationError);
}

TEST(SafetensorsWriter, RejectsUnsupportedDtypes) {
  EXPECT_THROW(peft::serialize_safetensors({{"c", torch::ones({2}, torch::kComplexFloat)}}),
               peft::SerializationError);
}

TEST(SafetensorsWriter, RejectsUndefinedTensors) {
  EXPECT_THROW(peft::serialize_safetensors({{"u", torch::Tensor()}}), peft::SerializationError);
}

TEST(SafetensorsWriter, RejectsNamesThatAreNotUtf8) {
  EXPECT_THROW(peft::serialize_safetensors({{"bad\xff", torch::ones({1})}}),
               peft::SerializationError);
}

TEST(SafetensorsWriter, SaveErrorsNameThePathAndLeaveTheOldFile) {
  const fs::path dir = temp_dir("safetensors_save_error");
  const fs::path path = dir / "w.safetensors";
  peft::save_safetensors(path, {{"a", torch::ones({1})}});
  const std::string before = read_file(path);
  try {
    peft::save_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}});
    FAIL() << "saved duplicate names";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), before);
  fs::remove_all(dir);
}

}  // namespace
