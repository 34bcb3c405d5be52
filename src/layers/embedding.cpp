#include "peft/layers/embedding.hpp"

#include <torch/nn/functional/embedding.h>
#include <torch/nn/init.h>

#include <algorithm>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/variants/dora_embedding.hpp"
#include "peft/variants/plain_lora.hpp"

namespace peft {

namespace F = torch::nn::functional;

EmbeddingImpl::EmbeddingImpl(const torch::nn::EmbeddingOptions& options_) : options(options_) { reset(); }

EmbeddingImpl::EmbeddingImpl(const torch::nn::EmbeddingOptions& options_, torch::Tensor weight_)
    : options(options_) {
  options._weight(torch::Tensor());  // the options keep no second reference to the table
  if (weight_.dim() != 2 || weight_.size(0) != options.num_embeddings() || weight_.size(1) != options.embedding_dim())
    throw ConfigError::about("peft::Embedding", "weight", detail::shape_string(weight_.sizes()),
                             "does not match num_embeddings and embedding_dim [" +
                                 std::to_string(options.num_embeddings()) + ", " +
                                 std::to_string(options.embedding_dim()) + "]",
                             "pass a [num_embeddings, embedding_dim] tensor");
  weight = register_parameter("weight", weight_, weight_.requires_grad());
}

void EmbeddingImpl::reset() {
  const auto num = options.num_embeddings();
  if (options.padding_idx()) {
    // torch::nn::Embedding's rule: -num <= padding_idx < num, negative values count from the end.
    const std::int64_t p = *options.padding_idx();
    if (p >= num || p < -num)
      throw ConfigError::about("EmbeddingOptions", "padding_idx", std::to_string(p),
                               "Padding_idx must be within num_embeddings (" + std::to_string(num) + ")",
                               "use an index in [-num_embeddings, num_embeddings)");
    if (p < 0) options.padding_idx(num + p);
  }
  const torch::Tensor given = options._weight();
  if (given.defined()) {
    if (given.dim() != 2 || given.size(0) != num || given.size(1) != options.embedding_dim())
      throw ConfigError::about("EmbeddingOptions", "_weight", detail::shape_string(given.sizes()),
                               "Shape of _weight does not match num_embeddings and embedding_dim [" +
                                   std::to_string(num) + ", " + std::to_string(options.embedding_dim()) + "]",
                               "pass a [num_embeddings, embedding_dim] tensor");
    weight = register_parameter("weight", given);  // as torch::nn::Embedding: trainable
    options._weight(torch::Tensor());
    return;
  }
  weight = register_parameter("weight", detail::new_base_parameter_tensor({num, options.embedding_dim()}));
  if (!skip_init_active()) reset_parameters();
}

void EmbeddingImpl::reset_parameters() {
  torch::nn::init::normal_(weight);
  if (options.padding_idx()) {
    torch::NoGradGuard no_grad;
    weight[*options.padding_idx()].fill_(0);
  }
}

std::shared_ptr<torch::nn::Module> EmbeddingImpl::clone(const torch::optional<torch::Device>& device) const {
  torch::NoGradGuard no_grad;
  return finish_clone(std::make_shared<EmbeddingImpl>(options, cloned(weight, device)), device);
}

std::shared_ptr<LoraLayer> EmbeddingImpl::plain_copy() const {
  torch::NoGradGuard no_grad;
  return std::make_shared<EmbeddingImpl>(options, weight.clone());
}

torch::Tensor EmbeddingImpl::lookup(const torch::Tensor& ids, const torch::Tensor& table) const {
  // torch::nn::Embedding's forward (max_norm renormalises the looked-up rows of `table` in place).
  return F::embedding(ids, table,
                      F::EmbeddingFuncOptions()
                          .padding_idx(options.padding_idx())
                          .max_norm(options.max_norm())
                          .norm_type(options.norm_type())
                          .scale_grad_by_freq(options.scale_grad_by_freq())
                          .sparse(options.sparse()));
}

torch::Tensor EmbeddingImpl::base_forward_with(const torch::Tensor& ids, const torch::Tensor& w, const torch::Tensor&) {
  return lookup(ids, w);
}

torch::Tensor EmbeddingImpl::tied_output(const torch::Tensor& hidden) {
  const auto& rows = batch_adapters();
  if (rows.empty()) {
    const std::vector<std::string>& active = active_adapters();
    auto it = std::find_if(active.begin(), active.end(), [&](const std::string& n) { return has_trainable_tokens(n); });
    const bool tokens = !disabled() && !merged() && it != active.end();
    return torch::linear(hidden, tokens ? weight_for(*it) : weight);
  }
  // Mixed batch: each row's logits with its adapter's rows (PEFT's tied wrapper, per sub-batch).
  if (static_cast<std::int64_t>(rows.size()) != hidden.size(0))
    throw Error("mixed-batch forward: " + std::to_string(rows.size()) + " adapter names for a batch of " +
                std::to_string(hidden.size(0)));
  auto out = torch::linear(hidden, weight);
  if (disabled() || !has_any_trainable_tokens()) return out;
  std::vector<std::string> distinct;
  for (const auto& n : rows)
    if (n != "__base__" && std::find(distinct.begin(), distinct.end(), n) == distinct.end()) distinct.push_back(n);
  for (const auto& n : distinct) {
    if (!has_trainable_tokens(n))
      throw Error("mixed-batch forward: adapter `" + n + "` has no trainable tokens in the tied output layer "
                  "(PEFT raises KeyError: '" + n + "')");
    std::vector<std::int64_t> idx;
    for (std::size_t i = 0; i < rows.size(); ++i)
      if (rows[i] == n) idx.push_back(static_cast<std::int64_t>(i));
    const auto index = torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong)).to(hidden.device());
    out = out.index_copy(0, index, torch::linear(hidden.index_select(0, index), weight_for(n)));
  }
  return out;
}

torch::Tensor EmbeddingImpl::token_forward(const torch::Tensor& ids, const std::string& name) {
  const auto& indices = trainable_token_indices(name);
  const auto pad = options.padding_idx();
  if (options.max_norm() || options.scale_grad_by_freq() || options.sparse() ||
      (pad && std::find(indices.begin(), indices.end(), *pad) != indices.end()))
    return LoraLayer::token_forward(ids, name);
  const auto n = static_cast<std::int64_t>(indices.size());
  const auto long_on = torch::TensorOptions().dtype(torch::kLong).device(ids.device());
  // slot[id] = position of id among the token rows, -1 for every other id.
  auto slot = torch::full({options.num_embeddings()}, -1, long_on);
  slot.index_put_({torch::tensor(indices, torch::kLong).to(ids.device())}, torch::arange(n, long_on));
  const auto s = slot.index_select(0, ids.reshape(-1)).view(ids.sizes());
  const auto rows = trainable_tokens_delta(name).to(weight.scalar_type());
  return torch::where(s.ge(0).unsqueeze(-1), F::embedding(s.clamp_min(0), rows), lookup(ids, weight));
}

void EmbeddingImpl::check_adapter_settings(const AdapterSettings& s, const CordaEigens*) {
  if (s.r <= 0)
    throw ConfigError("r", std::to_string(s.r), "`r` should be a positive integer value", "use a rank >= 1");
  if (s.lora_bias)
    throw ConfigError("lora_bias", "true", "lora_bias=True is not supported for Embedding.",
                      "leave the embedding out of target_modules or set lora_bias=false");
  switch (s.init) {
    // PEFT's Embedding.update_layer resets every other truthy init like `true` (quirk, followed).
    case InitMethod::Default:
    case InitMethod::Random:
    case InitMethod::Gaussian:
    case InitMethod::Orthogonal:
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Eva:
    case InitMethod::Corda: return;
    default:
      throw ConfigError("init_lora_weights", "'" + s.init_name + "'",
                        "this initialisation is not implemented for Embedding layers in peft-cpp",
                        "use true, false or \"gaussian\" for adapters that target embeddings");
  }
}

LoraFactorEntries EmbeddingImpl::create_lora_factors(std::int64_t r, bool) const {
  // PEFT draws randn(r, num) then randn(dim, r) for every init, on the CPU in fp32.
  auto A = torch::randn({r, in_features()});
  auto B = torch::randn({out_features(), r});
  return {{nullptr, A}, {nullptr, B}};
}

void EmbeddingImpl::reset_lora_parameters(const AdapterSettings& s, const LoraFactors& f, std::optional<CordaEigens>&) {
  if (s.init == InitMethod::Random) return;  // false: both stay N(0, 1)
  torch::NoGradGuard no_grad;
  f.A.zero_();
  f.B.normal_();
}

torch::Tensor EmbeddingImpl::lora_input(const torch::Tensor& ids, const LoraFactors&) const { return ids; }

torch::Tensor EmbeddingImpl::lora_branch(const torch::Tensor& ids, const LoraFactors& f, const AdapterDropout&) const {
  return torch::matmul(lookup(ids, f.A.t()), f.B.t());
}

void EmbeddingImpl::add_lora_branch(torch::Tensor& result, const torch::Tensor& ids, const LoraFactors& f,
                                    const AdapterDropout& dropout, double scaling) const {
  result = result + lora_branch(ids, f, dropout) * scaling;
}

std::unique_ptr<LoraVariant> EmbeddingImpl::resolve_lora_variant(const AdapterSettings& s) const {
  if (s.use_dora) return std::make_unique<DoraEmbeddingVariant>();
  return std::make_unique<PlainLoraVariant>();
}

void EmbeddingImpl::pretty_print(std::ostream& stream) const {
  stream << "peft::Embedding(num_embeddings=" << options.num_embeddings()
         << ", embedding_dim=" << options.embedding_dim();
  if (options.padding_idx()) stream << ", padding_idx=" << *options.padding_idx();
  if (options.max_norm()) stream << ", max_norm=" << *options.max_norm();
  stream << ", adapters=" << adapter_names().size() << ")";
}

}  // namespace peft
