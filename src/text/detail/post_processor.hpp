#pragma once
// tokenizer.json `post_processor` for a single sequence: TemplateProcessing, RobertaProcessing,
// BertProcessing, ByteLevel (ids unchanged) and Sequence. Pair templates are not used.

#include <cstdint>
#include <memory>
#include <vector>

#include "json_fields.hpp"

namespace peft::text::detail {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Adds the special tokens around `ids` (only called for add_special_tokens = true).
  virtual void process(std::vector<int64_t>& ids) const = 0;
};

/// null -> nullptr; unknown types throw ConfigError naming the file and field.
std::unique_ptr<PostProcessor> parse_post_processor(const JsonValue& v, const JsonPlace& at);

/// A template "[bos] $A [eos]" (either optional), as transformers' LlamaTokenizerFast rebuilds
/// its post-processor from add_bos_token / add_eos_token.
std::unique_ptr<PostProcessor> make_bos_eos_processor(std::vector<int64_t> bos, std::vector<int64_t> eos);

}  // namespace peft::text::detail
