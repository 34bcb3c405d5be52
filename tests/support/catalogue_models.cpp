#include "support/catalogue_models.hpp"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"

namespace peft_test {
namespace {


peft::Linear linear(std::int64_t in, std::int64_t out, bool bias) {
  return peft::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto T = q.size(-2);
  auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  auto m = torch::full({T, T}, -std::numeric_limits<double>::infinity(), q.options()).triu(1);
  return torch::matmul(torch::softmax(s + m, -1), v);
}

struct MlpImpl : torch::nn::Module {
  MlpImpl(std::int64_t d_in, std::int64_t d_hidden, std::int64_t d_out, bool bias)
      : lin0(register_module("lin0", linear(d_in, d_hidden, bias))),
        relu(register_module("relu", torch::nn::ReLU())),
        drop(register_module("drop", torch::nn::Dropout(0.5))),
        lin1(register_module("lin1", linear(d_hidden, d_out, bias))),
        sm(register_module("sm", torch::nn::LogSoftmax(-1))) {}
  torch::Tensor forward(const torch::Tensor& x) { return sm(lin1(drop(relu(lin0(x))))); }
  peft::Linear lin0;
  torch::nn::ReLU relu;
  torch::nn::Dropout drop;
  peft::Linear lin1;
  torch::nn::LogSoftmax sm;
};

struct LlamaAttentionImpl : torch::nn::Module {
  explicit LlamaAttentionImpl(std::int64_t d)
      : q_proj(register_module("q_proj", linear(d, d, false))),
        k_proj(register_module("k_proj", linear(d, d, false))),
        v_proj(register_module("v_proj", linear(d, d, false))),
        o_proj(register_module("o_proj", linear(d, d, false))) {}
  peft::Linear q_proj, k_proj, v_proj, o_proj;
};
TORCH_MODULE(LlamaAttention);

struct LlamaMlpImpl : torch::nn::Module {
  LlamaMlpImpl(std::int64_t d, std::int64_t d_ff)
      : gate_proj(register_module("gate_proj", linear(d, d_ff, false))),
        up_proj(register_module("up_proj", linear(d, d_ff, false))),
        down_proj(register_module("down_proj", linear(d_ff, d, false))) {}
  peft::Linear gate_proj, up_proj, down_proj;
};
TORCH_MODULE(LlamaMlp);

struct LlamaBlockImpl : torch::nn::Module {
  LlamaBlockImpl(std::int64_t d, std::int64_t d_ff)
      : self_attn(register_module("self_attn", LlamaAttention(d))),
        mlp(register_module("mlp", LlamaMlp(d, d_ff))) {}
  torch::Tensor forward(torch::Tensor h) {
    auto a = causal_attention(self_attn->q_proj(h), self_attn->k_proj(h), self_attn->v_proj(h));
    h = h + self_attn->o_proj(a);
    return h + mlp->down_proj(torch::silu(mlp->gate_proj(h)) * mlp->up_proj(h));
  }
  LlamaAttention self_attn;
  LlamaMlp mlp;
};
TORCH_MODULE(LlamaBlock);

struct Gpt2AttentionImpl : torch::nn::Module {
  explicit Gpt2AttentionImpl(std::int64_t d)
      : c_attn(register_module("c_attn", peft::Conv1D(3 * d, d))),
        c_proj(register_module("c_proj", peft::Conv1D(d, d))) {}
  peft::Conv1D c_attn, c_proj;
};
TORCH_MODULE(Gpt2Attention);

struct Gpt2MlpImpl : torch::nn::Module {
  Gpt2MlpImpl(std::int64_t d, std::int64_t d_ff)
      : c_fc(register_module("c_fc", peft::Conv1D(d_ff, d))),
        c_proj(register_module("c_proj", peft::Conv1D(d, d_ff))) {}
  peft::Conv1D c_fc, c_proj;
};
TORCH_MODULE(Gpt2Mlp);

struct Gpt2BlockImpl : torch::nn::Module {
  Gpt2BlockImpl(std::int64_t d, std::int64_t d_ff)
      : attn(register_module("attn", Gpt2Attention(d))), mlp(register_module("mlp", Gpt2Mlp(d, d_ff))) {}
  torch::Tensor forward(torch::Tensor h) {
    const auto d = h.size(-1);
    auto qkv = attn->c_attn(h).split(d, -1);
    h = h + attn->c_proj(causal_attention(qkv[0], qkv[1], qkv[2]));
    return h + mlp->c_proj(torch::gelu(mlp->c_fc(h)));
  }
  Gpt2Attention attn;
  Gpt2Mlp mlp;
};
TORCH_MODULE(Gpt2Block);

/// The token embedding and the blocks, registered as `embed` and `blocks` (Llama's model:
/// embed_tokens, layers; GPT-2's transformer: wte, h).
template <class Block>
struct BodyImpl : torch::nn::Module {
  BodyImpl(const char* embed_name, const char* blocks_name, std::int64_t vocab, std::int64_t d, std::int64_t d_ff,
           std::int64_t n_layers)
      : embed(register_module(embed_name, torch::nn::Embedding(vocab, d))),
        blocks(register_module(blocks_name, torch::nn::ModuleList())) {
    for (std::int64_t i = 0; i < n_layers; ++i) blocks->push_back(Block(d, d_ff));
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    auto h = embed(ids);
    for (const auto& block : *blocks) h = block->as<typename Block::ContainedType>()->forward(h);
    return h;
  }
  torch::nn::Embedding embed;
  torch::nn::ModuleList blocks;
};

/// The body registered as `body_name` (decoder: model, gpt2: transformer), then lm_head.
template <class Block>
struct CausalLmImpl : torch::nn::Module {
  CausalLmImpl(const char* body_name, const char* embed_name, const char* blocks_name, const peft::JsonValue& dims)
      : body(register_module(body_name, std::make_shared<BodyImpl<Block>>(embed_name, blocks_name, model_dim(dims, "vocab"),
                                                                          model_dim(dims, "d_model"), model_dim(dims, "d_ff"),
                                                                          model_dim(dims, "n_layers")))),
        lm_head(register_module("lm_head", linear(model_dim(dims, "d_model"), model_dim(dims, "vocab"), false))) {}
  torch::Tensor forward(const torch::Tensor& ids) { return lm_head(body->forward(ids)); }
  std::shared_ptr<BodyImpl<Block>> body;
  peft::Linear lm_head;
};

template <class M>
CatalogueModel catalogue_model(std::shared_ptr<M> m) {
  return {m, [m](const torch::Tensor& x) { return m->forward(x); }};
}

}  // namespace

std::int64_t model_dim(const peft::JsonValue& dims, const char* key) {
  const peft::JsonValue* v = dims.find(key);
  if (!v || !v->is_int()) throw std::runtime_error(std::string("model_dims lacks integer ") + key);
  return v->as_int();
}

CatalogueModel build_catalogue_model(const std::string& model, const peft::JsonValue& dims) {
  if (model == "mlp" || model == "mlp_nobias") {
    const peft::JsonValue* b = dims.find("bias");
    const bool bias = model == "mlp" && (!b || !b->is_bool() || b->as_bool());
    return catalogue_model(
        std::make_shared<MlpImpl>(model_dim(dims, "d_in"), model_dim(dims, "d_hidden"), model_dim(dims, "d_out"), bias));
  }
  if (model == "decoder")
    return catalogue_model(std::make_shared<CausalLmImpl<LlamaBlock>>("model", "embed_tokens", "layers", dims));
  if (model == "gpt2")
    return catalogue_model(std::make_shared<CausalLmImpl<Gpt2Block>>("transformer", "wte", "h", dims));
  if (auto layer_model = build_layer_catalogue_model(model, dims)) return *layer_model;
  throw std::runtime_error("unknown catalogue model `" + model + "`");
}

}  // namespace peft_test
