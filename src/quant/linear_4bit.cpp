// The 4-bit matmul node and peft::Linear's quantised base (quant/linear_4bit.hpp).
#include "peft/quant/linear_4bit.hpp"

#include <torch/autograd.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include "peft/error.hpp"
#include "peft/layers/linear.hpp"
#include "peft/quant/quantize_4bit.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The state rides in the node's saved_data as plain IValues (tensors shared, never written), so
// a requantised layer cannot change what a pending backward dequantises.
void save_state(AutogradContext* ctx, const QuantState4bit& s) {
  auto& d = ctx->saved_data;
  d["absmax"] = s.absmax;
  d["quant_map"] = s.quant_map;
  d["nested"] = s.nested();
  if (s.nested()) {
    d["nested_absmax"] = s.nested_absmax;
    d["nested_quant_map"] = s.nested_quant_map;
  }
  d["quant_type"] = static_cast<std::int64_t>(s.quant_type);
  d["blocksize"] = s.blocksize;
  d["dtype"] = static_cast<std::int64_t>(s.dtype);
  d["shape"] = s.shape;
  d["nested_blocksize"] = s.nested_blocksize;
  d["nested_dtype"] = static_cast<std::int64_t>(s.nested_dtype);
  d["nested_offset"] = static_cast<double>(s.nested_offset);
}

QuantState4bit load_state(AutogradContext* ctx) {
  auto& d = ctx->saved_data;
  QuantState4bit s;
  s.absmax = d["absmax"].toTensor();
  s.quant_map = d["quant_map"].toTensor();
  if (d["nested"].toBool()) {
    s.nested_absmax = d["nested_absmax"].toTensor();
    s.nested_quant_map = d["nested_quant_map"].toTensor();
  }
  s.quant_type = static_cast<QuantType4bit>(d["quant_type"].toInt());
  s.blocksize = d["blocksize"].toInt();
  s.dtype = static_cast<torch::ScalarType>(d["dtype"].toInt());
  s.shape = d["shape"].toIntVector();
  s.nested_blocksize = d["nested_blocksize"].toInt();
  s.nested_dtype = static_cast<torch::ScalarType>(d["nested_dtype"].toInt());
  s.nested_offset = static_cast<float>(d["nested_offset"].toDouble());
  return s;
}

struct Matmul4bitFn : public torch::autograd::Function<Matmul4bitFn> {
  // Only x and (when given) the bias are autograd inputs; the packed codes are uint8.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const c10::optional<torch::Tensor>& bias,
                               const torch::Tensor& packed, const QuantState4bit* state) {
    ctx->saved_data["packed"] = packed;
    save_state(ctx, *state);
    ctx->saved_data["bias_grad"] = bias.has_value() && bias->requires_grad();
    const auto W = dequantize_4bit(packed, *state, x.scalar_type());
    return torch::linear(x, W, bias ? *bias : torch::Tensor());
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto& dy = grads[0];
    const auto packed = ctx->saved_data["packed"].toTensor();
    torch::Tensor dx, db;
    if (ctx->needs_input_grad(0)) dx = torch::matmul(dy, dequantize_4bit(packed, load_state(ctx), dy.scalar_type()));
    if (ctx->saved_data["bias_grad"].toBool()) db = dy.reshape({-1, dy.size(-1)}).sum(0);
    return {dx, db, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor matmul_4bit(const torch::Tensor& x, const torch::Tensor& packed, const QuantState4bit& state,
                          const torch::Tensor& bias) {
  const bool grad = torch::GradMode::is_enabled() && (x.requires_grad() || (bias.defined() && bias.requires_grad()));
  if (!grad) {
    const auto W = dequantize_4bit(packed, state, x.scalar_type());
    return torch::linear(x, W, bias);
  }
  const c10::optional<torch::Tensor> b = bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
  return Matmul4bitFn::apply(x, b, packed, &state);
}

torch::Tensor linear_4bit_forward(const torch::Tensor& x, const torch::Tensor& packed, const Linear4bitState& q,
                                  const torch::Tensor& bias) {
  const auto in_dtype = x.scalar_type();
  const auto c = q.compute_dtype.value_or(in_dtype);
  auto y = matmul_4bit(x.to(c), packed, q.state, bias.defined() ? bias.to(c) : bias);
  return y.to(in_dtype);
}

}  // namespace detail
}  // namespace peft

namespace peft {

void LinearImpl::quantize_4bit_(QuantType4bit quant_type, std::int64_t blocksize, bool compress_statistics,
                                std::optional<torch::ScalarType> compute_dtype) {
  if (quant_)
    throw ConfigError::about("peft::Linear", "weight", "4-bit " + std::string(to_string(quant_->state.quant_type)),
                             "the layer is quantised already", "call dequantize_() first to quantise it differently");
  if (merged())
    throw ConfigError::about("peft::Linear", "merged_adapters", std::to_string(merged_adapters().size()),
                             "a layer with merged adapters cannot be quantised", "unmerge() first");
  // quantize_4bit checks the block size and the weight's dtype before anything changes.
  auto [packed, st] = quantize_4bit(weight.detach(), quant_type, blocksize, compress_statistics);
  set_quantized_weight(packed, std::move(st), compute_dtype);
}

void LinearImpl::set_quantized_weight(const torch::Tensor& packed, QuantState4bit state,
                                      std::optional<torch::ScalarType> compute_dtype) {
  const std::vector<std::int64_t> want{options.out_features(), options.in_features()};
  if (state.shape != want)
    throw ConfigError::about("peft::Linear", "quant_state.shape", c10::str(c10::IntArrayRef(state.shape)),
                             "the 4-bit weight does not fit this layer", "expected " + c10::str(c10::IntArrayRef(want)));
  const std::int64_t n = state.numel();
  if (packed.scalar_type() != torch::kUInt8 || packed.numel() != (n + 1) / 2)
    throw ConfigError::about("peft::Linear", "weight", c10::str(packed.scalar_type(), packed.sizes()),
                             "packed 4-bit codes must be uint8 with (out·in + 1) / 2 elements",
                             "expected " + std::to_string((n + 1) / 2) + " bytes");
  if (compute_dtype && *compute_dtype != torch::kFloat32 && *compute_dtype != torch::kFloat16 &&
      *compute_dtype != torch::kBFloat16)
    throw ConfigError::about("BitsAndBytesConfig", "bnb_4bit_compute_dtype", c10::toString(*compute_dtype),
                             "the compute dtype must be floating", "use bfloat16, float16 or float32");
  torch::NoGradGuard no_grad;
  auto q = std::make_shared<Linear4bitState>();
  q->state = state.to(packed.device());
  q->compute_dtype = compute_dtype;
  weight.set_requires_grad(false);
  weight.mutable_grad() = torch::Tensor();
  weight.set_data(packed.reshape({(n + 1) / 2, 1}));
  torch::autograd::impl::bump_version(weight);  // caches keyed by the stored weight (DoRA's norm) see the change
  quant_ = std::move(q);
}

void LinearImpl::dequantize_(std::optional<torch::ScalarType> dtype) {
  if (!quant_) return;
  torch::NoGradGuard no_grad;
  auto dense = dequantize_4bit(weight, quant_->state, dtype ? c10::optional<torch::ScalarType>(*dtype) : c10::nullopt);
  weight.set_data(dense);
  torch::autograd::impl::bump_version(weight);
  quant_.reset();
}

torch::Tensor LinearImpl::dense_weight() {
  if (!quant_) return weight;
  return dequantize_4bit(weight, quant_->state);
}

void LinearImpl::write_dense_weight(const torch::Tensor& w) {
  if (!quant_) return BaseLayer::write_dense_weight(w);
  // PEFT's Linear4bit.merge/unmerge: requantise W' with the same type, block size and nesting.
  warn("Merge lora module to 4-bit linear may get different generations due to rounding errors.");
  const auto& old = quant_->state;
  auto [packed, st] = quantize_4bit(w.detach(), old.quant_type, old.blocksize, old.nested());
  torch::NoGradGuard no_grad;
  weight.set_data(packed);
  torch::autograd::impl::bump_version(weight);
  quant_->state = std::move(st);
}

void LinearImpl::copy_quant_state_from(const LinearImpl& other, const torch::optional<torch::Device>& device) {
  if (!other.quant_) return;
  auto q = std::make_shared<Linear4bitState>(*other.quant_);
  q->state = device ? other.quant_->state.to(*device) : other.quant_->state.clone();
  quant_ = std::move(q);
}

void LinearImpl::to_impl_4bit(const c10::optional<torch::Device>& device, const c10::optional<torch::Dtype>& dtype,
                              bool non_blocking) {
  for (auto& child : children()) {
    if (device && dtype) child->to(*device, *dtype, non_blocking);
    else if (dtype) child->to(*dtype, non_blocking);
    else child->to(*device, non_blocking);
  }
  torch::NoGradGuard no_grad;
  if (bias.defined()) {
    auto b = bias;
    if (device) b = b.to(*device, non_blocking);
    if (dtype) b = b.to(*dtype, non_blocking);
    bias.set_data(b);
  }
  if (device) {
    weight.set_data(weight.to(*device, non_blocking));
    quant_->state = quant_->state.to(*device);
  }
}

void LinearImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  if (!quant_) return LoraLayer::to(device, dtype, non_blocking);
  to_impl_4bit(device, dtype, non_blocking);
}
void LinearImpl::to(torch::Dtype dtype, bool non_blocking) {
  if (!quant_) return LoraLayer::to(dtype, non_blocking);
  to_impl_4bit(c10::nullopt, dtype, non_blocking);
}
void LinearImpl::to(torch::Device device, bool non_blocking) {
  if (!quant_) return LoraLayer::to(device, non_blocking);
  to_impl_4bit(device, c10::nullopt, non_blocking);
}

}  // namespace peft
