// Replacing one child of a LibTorch container in place. Sequential and ModuleList keep their
// elements in private lists next to the registry and offer no setter; the explicit-instantiation
// idiom below is the standard-conforming way to name those members (access checks do not apply
// to explicit instantiations), so the container itself — which the user's code holds — changes.

#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include "peft/error.hpp"
#include "peft/tuner/injection.hpp"

namespace peft {
namespace {

template <typename Tag, typename Tag::type Member>
struct MemberAccess {
  friend typename Tag::type member_of(Tag) { return Member; }
};
struct SequentialItems {
  using type = std::vector<torch::nn::AnyModule> torch::nn::SequentialImpl::*;
  friend type member_of(SequentialItems);
};
struct ModuleListItems {
  using type = std::vector<std::shared_ptr<torch::nn::Module>> torch::nn::ModuleListImpl::*;
  friend type member_of(ModuleListItems);
};
template struct MemberAccess<SequentialItems, &torch::nn::SequentialImpl::modules_>;
template struct MemberAccess<ModuleListItems, &torch::nn::ModuleListImpl::modules_>;

std::size_t position_of(const torch::nn::Module& parent, const std::string& name) {
  std::size_t i = 0;
  for (const auto& child : parent.named_children()) {
    if (child.key() == name) return i;
    ++i;
  }
  throw Error("module has no child `" + name + "`");
}

}  // namespace

void reset_module_list(torch::nn::ModuleListImpl& list, const std::vector<std::shared_ptr<torch::nn::Module>>& items) {
  for (const auto& child : list.named_children()) list.unregister_module(child.key());
  (list.*member_of(ModuleListItems{})).clear();
  for (const auto& m : items) list.push_back(m);
}

std::size_t container_references(const torch::nn::Module& parent) {
  if (dynamic_cast<const torch::nn::SequentialImpl*>(&parent) ||
      dynamic_cast<const torch::nn::ModuleListImpl*>(&parent) ||
      dynamic_cast<const torch::nn::ModuleDictImpl*>(&parent))
    return 2;  // the registry and the element list
  return 1;    // the registry only
}

ReplacedChild replace_child_module(const std::shared_ptr<torch::nn::Module>& parent_ptr, const std::string& name,
                                   std::shared_ptr<torch::nn::Module> replacement, torch::nn::AnyModule any) {
  torch::nn::Module& parent = *parent_ptr;
  ReplacedChild old{parent_ptr, name, parent.named_children()[name], {}};
  if (auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&parent)) {
    auto& items = seq->*member_of(SequentialItems{});
    const auto i = position_of(parent, name);
    // The element list holds typed modules (their forward): the caller's typed replacement.
    if (any.is_empty() || any.ptr() != replacement)
      throw Error("replacing `" + name + "` in a Sequential needs the replacement as an AnyModule");
    old.any = std::move(items.at(i));
    items.at(i) = std::move(any);
  } else if (auto* list = dynamic_cast<torch::nn::ModuleListImpl*>(&parent)) {
    auto& items = list->*member_of(ModuleListItems{});
    items.at(position_of(parent, name)) = replacement;
  } else if (auto* dict = dynamic_cast<torch::nn::ModuleDictImpl*>(&parent)) {
    dict->update({{name, replacement}});  // overwrites the entry and the registry
    return old;
  }
  parent.replace_module(name, std::move(replacement));
  return old;
}

}  // namespace peft
