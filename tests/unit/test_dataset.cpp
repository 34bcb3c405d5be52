// load_documents (.txt / .jsonl), encode_documents, make_blocks and the resumable BatchSampler.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <set>

#include "peft/error.hpp"
#include "peft/text/dataset.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace peft::text;

namespace {
void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::vector<int64_t> row(const torch::Tensor& t, int64_t i) {
  auto r = t[i].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}
}  // namespace

TEST(DatasetDocuments, TextFilesSplitOnBlankLines) {
  const auto dir = peft_test::scratch_dir("ds_txt");
  write(dir / "a.txt", "\nfirst line\nsecond line\n\n\n third\r\n  \t\r\nlast");
  EXPECT_EQ(load_documents(dir / "a.txt"), (std::vector<std::string>{"first line\nsecond line", " third", "last"}));
  write(dir / "one.txt", "no blank\nlines here\n");
  EXPECT_EQ(load_documents(dir / "one.txt"), (std::vector<std::string>{"no blank\nlines here"}));
  write(dir / "empty.txt", "");
  EXPECT_TRUE(load_documents(dir / "empty.txt").empty());
}

TEST(DatasetDocuments, JsonlReadsTheNamedField) {
  const auto dir = peft_test::scratch_dir("ds_jsonl");
  write(dir / "d.jsonl", "{\"text\": \"alpha\", \"id\": 1}\n\n{\"text\": \"line\\nbreak \\u00e9\"}\n{\"text\": \"\"}\n");
  EXPECT_EQ(load_documents(dir / "d.jsonl"), (std::vector<std::string>{"alpha", "line\nbreak \xc3\xa9"}));
  write(dir / "p.jsonl", "{\"prompt\": \"q\", \"completion\": \"a\"}\n");
  EXPECT_EQ(load_documents(dir / "p.jsonl", "completion"), (std::vector<std::string>{"a"}));
}

TEST(DatasetDocuments, BadJsonlLineIsNamedByFileAndLine) {
  const auto dir = peft_test::scratch_dir("ds_jsonl_bad");
  auto expect_error = [&](const std::string& body, const std::string& needle) {
    write(dir / "bad.jsonl", body);
    try {
      load_documents(dir / "bad.jsonl");
      ADD_FAILURE() << "no error for " << body;
    } catch (const peft::SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": broken}\n", "bad.jsonl:3");
  expect_error("{\"text\": \"ok\"}\n[1, 2]\n", "bad.jsonl:2");
  expect_error("{\"body\": \"ok\"}\n", "no field \"text\" (fields: body)");
  expect_error("{\"text\": 5}\n", "bad.jsonl:1");
  EXPECT_THROW(load_documents(dir / "missing.txt"), peft::SerializationError);
}

TEST(DatasetBlocks, EncodeDocumentsPutsEosBetweenDocuments) {
  ByteTokenizer t;
  EXPECT_EQ(encode_documents(t, {"ab", "c"}), (std::vector<int64_t>{'a', 'b', 256, 'c'}));
}

TEST(DatasetBlocks, BlocksOverlapByOneTokenAndHeldOutIsTheTail) {
  // 21 tokens, seq_len 4 -> (21 - 1) / 4 = 5 blocks of 5: [0..4], [4..8], ..., [16..20].
  auto b = make_blocks(iota(21), 4, 0.2);
  ASSERT_EQ(b.train.sizes(), (torch::IntArrayRef{4, 5}));
  ASSERT_EQ(b.heldout.sizes(), (torch::IntArrayRef{1, 5}));
  EXPECT_EQ(b.train.scalar_type(), torch::kInt64);
  EXPECT_EQ(row(b.train, 0), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(row(b.train, 1), (std::vector<int64_t>{4, 5, 6, 7, 8}));
  EXPECT_EQ(row(b.heldout, 0), (std::vector<int64_t>{16, 17, 18, 19, 20}));
  // The remainder is dropped: 23 tokens still give 5 blocks.
  EXPECT_EQ(make_blocks(iota(23), 4, 0.0).train.size(0), 5);
  EXPECT_EQ(make_blocks(iota(23), 4, 0.0).heldout.size(0), 0);
  // round(n * f), at least one block when f > 0.
  EXPECT_EQ(make_blocks(iota(101), 10, 0.25).heldout.size(0), 3);   // round(2.5) = 3
  EXPECT_EQ(make_blocks(iota(101), 10, 0.01).heldout.size(0), 1);
}

TEST(DatasetBlocks, RejectsBadArgumentsAndTooLittleText) {
  EXPECT_THROW(make_blocks(iota(100), 0, 0.1), peft::Error);
  EXPECT_THROW(make_blocks(iota(100), 4, 1.0), peft::Error);
  EXPECT_THROW(make_blocks(iota(100), 4, -0.1), peft::Error);
  EXPECT_THROW(make_blocks(iota(5), 4, 0.5), peft::Error);  // 1 block, which goes to held-out
  EXPECT_THROW(make_blocks(iota(4), 4, 0.0), peft::Error);  // no block at all
}

TEST(DatasetSampler, SameSeedSameBatchesAndEachEpochVisitsEveryBlockOnce) {
  auto blocks = make_blocks(iota(61), 5, 0.0).train;  // 12 blocks; row i starts with 5 * i
  ASSERT_EQ(blocks.size(0), 12);
  BatchSampler a(blocks, 4, 7), b(blocks, 4, 7), c(blocks, 4, 8);
  std::set<int64_t> firsts;
  bool differs = false;
  for (int i = 0; i < 3; ++i) {  // one epoch = 3 batches of 4
    auto x = a.next();
    ASSERT_EQ(x.sizes(), (torch::IntArrayRef{4, 6}));
    EXPECT_TRUE(peft_test::equal(x, b.next()));
    differs |= !torch::equal(x, c.next());
    for (int64_t r = 0; r < 4; ++r) firsts.insert(x[r][0].item<int64_t>());
  }
  EXPECT_EQ(firsts.size(), 12u);
  EXPECT_TRUE(differs);
  EXPECT_DOUBLE_EQ(a.epoch(), 1.0);
}

TEST(DatasetSampler, RestoreFromStateContinuesWithTheSameBatches) {
  auto blocks = make_blocks(iota(51), 5, 0.0).train;  // 10 blocks: batches of 4 cross epochs
  BatchSampler a(blocks, 4, 123);
  for (int i = 0; i < 4; ++i) a.next();
  const uint64_t s = a.state();
  EXPECT_EQ(s, 16u);
  std::vector<torch::Tensor> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(a.next());
  BatchSampler resumed(blocks, 4, 123);
  resumed.restore(s);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(peft_test::equal(resumed.next(), expected[static_cast<std::size_t>(i)])) << i;
}

TEST(DatasetSampler, BatchLargerThanTheDataWrapsIntoTheNextEpoch) {
  auto blocks = make_blocks(iota(16), 5, 0.0).train;  // 3 blocks
  BatchSampler s(blocks, 5, 1);
  EXPECT_EQ(s.next().size(0), 5);
  EXPECT_THROW(BatchSampler(blocks, 0, 1), peft::Error);
  EXPECT_THROW(BatchSampler(torch::empty({0, 6}, torch::kInt64), 2, 1), peft::Error);
}

TEST(DatasetCorpus, ShippedPartsLoadAsSeveralDocumentsOfDistinctText) {
  const fs::path corpus = fs::path(PEFT_TEST_DATA_DIR) / ".." / ".." / "data" / "corpus";
  const auto a = load_documents(corpus / "part_a.txt");
  const auto b = load_documents(corpus / "part_b.txt");
  EXPECT_GE(a.size(), 10u);
  EXPECT_GE(b.size(), 100u);
  const auto size_a = fs::file_size(corpus / "part_a.txt"), size_b = fs::file_size(corpus / "part_b.txt");
  EXPECT_GE(size_a, 50u * 1024);
  EXPECT_GE(size_b, 50u * 1024);
  EXPECT_LE(size_a + size_b, 600u * 1024);
  ByteTokenizer t;
  const auto ids = encode_documents(t, a);
  EXPECT_EQ(static_cast<int64_t>(std::count(ids.begin(), ids.end(), ByteTokenizer::kEndOfText)),
            static_cast<int64_t>(a.size()) - 1);
  auto blocks = make_blocks(ids, 128, 0.1);
  EXPECT_GT(blocks.train.size(0), 1000);
  EXPECT_GT(blocks.heldout.size(0), 100);
  EXPECT_EQ(t.decode(row(blocks.train, 0)), std::string(a[0].substr(0, 129)));
}
