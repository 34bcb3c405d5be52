// HF tokenizers' processors (tokenizers/src/processors/) for one sequence.

#include "post_processor.hpp"

namespace peft::text::detail {
namespace {

// prefix + ids + suffix: what every supported single-sequence processor reduces to.
class Wrap : public PostProcessor {
 public:
  Wrap(std::vector<int64_t> prefix, std::vector<int64_t> suffix) : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<int64_t>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int64_t> prefix_, suffix_;
};

// TemplateProcessing may put $A anywhere and several times, so it keeps the whole item list.
class Template : public PostProcessor {
 public:
  struct Item {
    bool sequence;
    std::vector<int64_t> ids;
  };
  explicit Template(std::vector<Item> items) : items_(std::move(items)) {}
  void process(std::vector<int64_t>& ids) const override {
    std::vector<int64_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& it : items_) {
      if (it.sequence) out.insert(out.end(), ids.begin(), ids.end());
      else out.insert(out.end(), it.ids.begin(), it.ids.end());
    }
    ids = std::move(out);
  }

 private:
  std::vector<Item> items_;
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> items) : items_(std::move(items)) {}
  void process(std::vector<int64_t>& ids) const override {
    for (const auto& p : items_) p->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> items_;
};

class Identity : public PostProcessor {
 public:
  void process(std::vector<int64_t>&) const override {}
};

// Roberta/Bert: "sep"/"cls" are [token, id] pairs.
int64_t pair_id(const JsonValue& v, const char* key, const JsonPlace& at) {
  const JsonValue* p = v.find(key);
  if (!p || !p->is_array() || p->as_array().size() != 2 || !p->as_array()[1].is_int())
    bad_field(at.child(key), "[token, id]", p);
  return p->as_array()[1].as_int();
}

std::unique_ptr<PostProcessor> parse_template(const JsonValue& v, const JsonPlace& at) {
  const JsonValue* single = v.find("single");
  if (!single || !single->is_array()) bad_field(at.child("single"), "an array of template items", single);
  const JsonValue* specials = v.find("special_tokens");
  std::vector<Template::Item> items;
  for (std::size_t i = 0; i < single->as_array().size(); ++i) {
    const JsonValue& it = single->as_array()[i];
    const JsonPlace ip = at.child("single").item(i);
    if (const JsonValue* s = it.find("Sequence")) {
      const std::string id = get_string(*s, "id", ip.child("Sequence"), "A");
      if (id != "A")
        unsupported(ip.child("Sequence.id"), id, "only single sequences ($A) are encoded", "use $A in \"single\"");
      items.push_back({true, {}});
    } else if (const JsonValue* st = it.find("SpecialToken")) {
      const std::string id = get_string(*st, "id", ip.child("SpecialToken"), "");
      const JsonValue* tok = specials && specials->is_object() ? specials->find(id) : nullptr;
      const JsonValue* ids = tok ? tok->find("ids") : nullptr;
      if (!ids || !ids->is_array())
        bad_field(at.child("special_tokens").child(id).child("ids"), "an array of ids", ids);
      Template::Item item{false, {}};
      for (const auto& x : ids->as_array()) {
        if (!x.is_int()) bad_field(at.child("special_tokens").child(id).child("ids"), "an array of ids", &x);
        item.ids.push_back(x.as_int());
      }
      items.push_back(std::move(item));
    } else {
      bad_field(ip, "{\"Sequence\": ...} or {\"SpecialToken\": ...}", &it);
    }
  }
  return std::make_unique<Template>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_bos_eos_processor(std::vector<int64_t> bos, std::vector<int64_t> eos) {
  return std::make_unique<Wrap>(std::move(bos), std::move(eos));
}

std::unique_ptr<PostProcessor> parse_post_processor(const JsonValue& v, const JsonPlace& at) {
  if (v.is_null()) return nullptr;
  const std::string type = get_type(v, at);
  if (type == "ByteLevel") return std::make_unique<Identity>();  // only trims offsets
  if (type == "TemplateProcessing") return parse_template(v, at);
  if (type == "RobertaProcessing" || type == "BertProcessing")
    return std::make_unique<Wrap>(std::vector<int64_t>{pair_id(v, "cls", at)},
                                  std::vector<int64_t>{pair_id(v, "sep", at)});
  if (type == "Sequence")
    return std::make_unique<Sequence>(parse_list<PostProcessor>(v, "processors", at, parse_post_processor));
  unsupported(at.child("type"), type, "this post-processor is not implemented",
              "supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence");
}

}  // namespace peft::text::detail
