// The catalogue models of the layer-type suite (tests/fixtures/peft-layers, fixtures README §8.2:
// convnet, conv1dnet, embednet) built from case.json model_dims with peft layers, so the module
// keys and parameter names are PEFT's.

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>

#include <stdexcept>

#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"
#include "support/catalogue_models.hpp"

namespace peft_test {
namespace {

std::int64_t dim(const peft::JsonValue& dims, const char* key) { return model_dim(dims, key); }

/// Output length of a conv with kernel k, stride s, padding p (dilation 1).
std::int64_t conv_out(std::int64_t n, std::int64_t k, std::int64_t s, std::int64_t p) { return (n + 2 * p - k) / s + 1; }

/// conv0 -> relu0 -> conv1 -> relu1 -> flat -> head, for Conv1d (conv1dnet) or Conv2d (convnet).
template <class Conv>
struct ConvNetImpl : torch::nn::Module {
  ConvNetImpl(Conv c0, Conv c1, std::int64_t flat_features, std::int64_t n_out)
      : conv0(register_module("conv0", std::move(c0))),
        relu0(register_module("relu0", torch::nn::ReLU())),
        conv1(register_module("conv1", std::move(c1))),
        relu1(register_module("relu1", torch::nn::ReLU())),
        flat(register_module("flat", torch::nn::Flatten(torch::nn::FlattenOptions().start_dim(1)))),
        head(register_module("head", peft::Linear(flat_features, n_out))) {}
  torch::Tensor forward(const torch::Tensor& x) { return head(flat(relu1(conv1(relu0(conv0(x)))))); }
  Conv conv0;
  torch::nn::ReLU relu0;
  Conv conv1;
  torch::nn::ReLU relu1;
  torch::nn::Flatten flat;
  peft::Linear head;
};

struct EmbedNetImpl : torch::nn::Module {
  EmbedNetImpl(std::int64_t vocab, std::int64_t d)
      : emb(register_module("emb", peft::Embedding(vocab, d))),
        proj(register_module("proj", peft::Linear(d, d))),
        head(register_module("head", peft::Linear(d, vocab))) {}
  torch::Tensor forward(const torch::Tensor& ids) { return head(torch::tanh(proj(emb(ids)))); }
  peft::Embedding emb;
  peft::Linear proj;
  peft::Linear head;
};

template <class M>
CatalogueModel catalogue_model(std::shared_ptr<M> m) {
  return {m, [m](const torch::Tensor& x) { return m->forward(x); }};
}

}  // namespace

std::optional<CatalogueModel> build_layer_catalogue_model(const std::string& model, const peft::JsonValue& dims) {
  if (model == "convnet") {
    const auto c_in = dim(dims, "c_in"), c1 = dim(dims, "c1"), c2 = dim(dims, "c2");
    const auto h2 = conv_out(dim(dims, "height"), 3, 2, 1), w2 = conv_out(dim(dims, "width"), 3, 2, 1);
    return catalogue_model(std::make_shared<ConvNetImpl<peft::Conv2d>>(
        peft::Conv2d(torch::nn::Conv2dOptions(c_in, c1, 3).stride(1).padding(1)),
        peft::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).stride(2).padding(1)), c2 * h2 * w2, dim(dims, "n_out")));
  }
  if (model == "conv1dnet") {
    const auto c_in = dim(dims, "c_in"), c1 = dim(dims, "c1"), c2 = dim(dims, "c2");
    const auto l2 = conv_out(dim(dims, "length"), 5, 2, 2);
    return catalogue_model(std::make_shared<ConvNetImpl<peft::Conv1d>>(
        peft::Conv1d(torch::nn::Conv1dOptions(c_in, c1, 3).stride(1).padding(1)),
        peft::Conv1d(torch::nn::Conv1dOptions(c1, c2, 5).stride(2).padding(2)), c2 * l2, dim(dims, "n_out")));
  }
  if (model == "embednet")
    return catalogue_model(std::make_shared<EmbedNetImpl>(dim(dims, "vocab"), dim(dims, "d_model")));
  return std::nullopt;
}

std::string layer_catalogue_class_name(const std::string& model) {
  if (model == "convnet") return "ConvNet";
  if (model == "conv1dnet") return "Conv1dNet";
  if (model == "embednet") return "EmbedNet";
  throw std::runtime_error("unknown catalogue model `" + model + "`");
}

torch::Tensor layer_catalogue_input(const std::string& model, const peft::JsonValue& dims, std::int64_t rows,
                                    std::int64_t tokens) {
  if (model == "convnet") return torch::randn({rows, dim(dims, "c_in"), dim(dims, "height"), dim(dims, "width")});
  if (model == "conv1dnet") return torch::randn({rows, dim(dims, "c_in"), dim(dims, "length")});
  if (model == "embednet") return torch::randint(0, dim(dims, "vocab"), {rows, tokens}, torch::kLong);
  throw std::runtime_error("unknown catalogue model `" + model + "`");
}

}  // namespace peft_test
