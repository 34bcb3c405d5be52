// bitsandbytes' 4-bit and 8-bit blockwise quantisation (quant/quantize_4bit.hpp). Every step
// mirrors backends/default/ops.py so the codes and absmax are bit-identical: the same float32
// operations in the same order (reciprocal-then-multiply for full blocks, a true division for
// the partial last block, torch.bucketize on float32 midpoints).
#include "peft/quant/quantize_4bit.hpp"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <array>
#include <string>

#include "peft/error.hpp"

namespace peft {
namespace {

// NF4 as bitsandbytes lists it (double literals, cast to float32 as torch.tensor does).
constexpr std::array<double, 16> kNf4 = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0};
// FP4 in bit-pattern order before bnb divides by the largest magnitude (12).
constexpr std::array<float, 16> kFp4Raw = {0.0f,  0.0625f,  8.0f,  12.0f,  4.0f,  6.0f,  2.0f,  3.0f,
                                           0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
// The code indices in ascending value order (torch.argsort of the code on LibTorch 1.13's CPU;
// bnb's _get_4bit_quantize_bounds). FP4's two zeros: code 0 first, then code 8 — which is why a
// small positive value gets code 8. Fixed here so another LibTorch's unstable sort cannot move it.
constexpr std::array<std::int64_t, 16> kFp4Order = {11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3};

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), ascending.
// Generated once from bitsandbytes (float32 values as hex floats); tests compare it with the
// map bnb writes into checkpoints (tests/data/bnb4bit).
constexpr std::array<float, 256> kDynamicMap = {
    -0x1.fc66660000000p-1f, -0x1.f533320000000p-1f, -0x1.ee00000000000p-1f, -0x1.e6cccc0000000p-1f,
    -0x1.df99980000000p-1f, -0x1.d866660000000p-1f, -0x1.d133340000000p-1f, -0x1.ca00000000000p-1f,
    -0x1.c2cccc0000000p-1f, -0x1.bb99980000000p-1f, -0x1.b466660000000p-1f, -0x1.ad33320000000p-1f,
    -0x1.a600000000000p-1f, -0x1.9ecccc0000000p-1f, -0x1.9799980000000p-1f, -0x1.9066660000000p-1f,
    -0x1.8933340000000p-1f, -0x1.8200000000000p-1f, -0x1.7accce0000000p-1f, -0x1.73999a0000000p-1f,
    -0x1.6c66680000000p-1f, -0x1.6533340000000p-1f, -0x1.5e00000000000p-1f, -0x1.56ccce0000000p-1f,
    -0x1.4f999a0000000p-1f, -0x1.4866660000000p-1f, -0x1.4133340000000p-1f, -0x1.3a00000000000p-1f,
    -0x1.32cccc0000000p-1f, -0x1.2b999a0000000p-1f, -0x1.2466680000000p-1f, -0x1.1d33340000000p-1f,
    -0x1.1600000000000p-1f, -0x1.0ecccc0000000p-1f, -0x1.07999a0000000p-1f, -0x1.0066660000000p-1f,
    -0x1.f266680000000p-2f, -0x1.e400000000000p-2f, -0x1.d599980000000p-2f, -0x1.c733340000000p-2f,
    -0x1.b8cccc0000000p-2f, -0x1.aa66640000000p-2f, -0x1.9c00000000000p-2f, -0x1.8d99980000000p-2f,
    -0x1.7f33340000000p-2f, -0x1.70cccc0000000p-2f, -0x1.6266640000000p-2f, -0x1.5400000000000p-2f,
    -0x1.4599980000000p-2f, -0x1.3733340000000p-2f, -0x1.28cccc0000000p-2f, -0x1.1a66680000000p-2f,
    -0x1.0c00000000000p-2f, -0x1.fb33340000000p-3f, -0x1.de66680000000p-3f, -0x1.c1999a0000000p-3f,
    -0x1.a4cccc0000000p-3f, -0x1.8800000000000p-3f, -0x1.6b33320000000p-3f, -0x1.4e66660000000p-3f,
    -0x1.31999a0000000p-3f, -0x1.14cccc0000000p-3f, -0x1.f000000000000p-4f, -0x1.b666680000000p-4f,
    -0x1.93d70a0000000p-4f, -0x1.8851ea0000000p-4f, -0x1.7cccce0000000p-4f, -0x1.7147ae0000000p-4f,
    -0x1.65c2900000000p-4f, -0x1.5a3d700000000p-4f, -0x1.4eb8500000000p-4f, -0x1.4333340000000p-4f,
    -0x1.37ae140000000p-4f, -0x1.2c28f60000000p-4f, -0x1.20a3d60000000p-4f, -0x1.151eba0000000p-4f,
    -0x1.09999a0000000p-4f, -0x1.fc28f40000000p-5f, -0x1.e51eba0000000p-5f, -0x1.ce147a0000000p-5f,
    -0x1.b70a3e0000000p-5f, -0x1.a000000000000p-5f, -0x1.88f5c20000000p-5f, -0x1.71eb860000000p-5f,
    -0x1.5ae1460000000p-5f, -0x1.43d70a0000000p-5f, -0x1.2cccce0000000p-5f, -0x1.15c28e0000000p-5f,
    -0x1.fd70a40000000p-6f, -0x1.cf5c260000000p-6f, -0x1.a147ae0000000p-6f, -0x1.7333340000000p-6f,
    -0x1.451eb80000000p-6f, -0x1.170a3e0000000p-6f, -0x1.d1eb860000000p-7f, -0x1.75c2900000000p-7f,
    -0x1.3e76c80000000p-7f, -0x1.2c08300000000p-7f, -0x1.19999a0000000p-7f, -0x1.072b020000000p-7f,
    -0x1.e978d40000000p-8f, -0x1.c49ba60000000p-8f, -0x1.9fbe760000000p-8f, -0x1.7ae1480000000p-8f,
    -0x1.56041a0000000p-8f, -0x1.3126e80000000p-8f, -0x1.0c49ba0000000p-8f, -0x1.ced9140000000p-9f,
    -0x1.851eb80000000p-9f, -0x1.3b645a0000000p-9f, -0x1.e353f80000000p-10f, -0x1.4fdf3a0000000p-10f,
    -0x1.eecbfe0000000p-11f, -0x1.b3d07c0000000p-11f, -0x1.78d5000000000p-11f, -0x1.3dd9820000000p-11f,
    -0x1.02de020000000p-11f, -0x1.8fc5060000000p-12f, -0x1.19ce0a0000000p-12f, -0x1.47ae160000000p-13f,
    -0x1.743e960000000p-14f, -0x1.15df660000000p-14f, -0x1.6f00680000000p-15f, -0x1.64840c0000000p-16f,
    -0x1.040bfe0000000p-17f, -0x1.b435280000000p-19f, -0x1.27476e0000000p-21f, 0.0f,
    0x1.27476e0000000p-21f, 0x1.b435280000000p-19f, 0x1.040bfe0000000p-17f, 0x1.64840c0000000p-16f,
    0x1.6f00680000000p-15f, 0x1.15df660000000p-14f, 0x1.743e960000000p-14f, 0x1.47ae160000000p-13f,
    0x1.19ce0a0000000p-12f, 0x1.8fc5060000000p-12f, 0x1.02de020000000p-11f, 0x1.3dd9820000000p-11f,
    0x1.78d5000000000p-11f, 0x1.b3d07c0000000p-11f, 0x1.eecbfe0000000p-11f, 0x1.4fdf3a0000000p-10f,
    0x1.e353f80000000p-10f, 0x1.3b645a0000000p-9f, 0x1.851eb80000000p-9f, 0x1.ced9140000000p-9f,
    0x1.0c49ba0000000p-8f, 0x1.3126e80000000p-8f, 0x1.56041a0000000p-8f, 0x1.7ae1480000000p-8f,
    0x1.9fbe760000000p-8f, 0x1.c49ba60000000p-8f, 0x1.e978d40000000p-8f, 0x1.072b020000000p-7f,
    0x1.19999a0000000p-7f, 0x1.2c08300000000p-7f, 0x1.3e76c80000000p-7f, 0x1.75c2900000000p-7f,
    0x1.d1eb860000000p-7f, 0x1.170a3e0000000p-6f, 0x1.451eb80000000p-6f, 0x1.7333340000000p-6f,
    0x1.a147ae0000000p-6f, 0x1.cf5c260000000p-6f, 0x1.fd70a40000000p-6f, 0x1.15c28e0000000p-5f,
    0x1.2cccce0000000p-5f, 0x1.43d70a0000000p-5f, 0x1.5ae1460000000p-5f, 0x1.71eb860000000p-5f,
    0x1.88f5c20000000p-5f, 0x1.a000000000000p-5f, 0x1.b70a3e0000000p-5f, 0x1.ce147a0000000p-5f,
    0x1.e51eba0000000p-5f, 0x1.fc28f40000000p-5f, 0x1.09999a0000000p-4f, 0x1.151eba0000000p-4f,
    0x1.20a3d60000000p-4f, 0x1.2c28f60000000p-4f, 0x1.37ae140000000p-4f, 0x1.4333340000000p-4f,
    0x1.4eb8500000000p-4f, 0x1.5a3d700000000p-4f, 0x1.65c2900000000p-4f, 0x1.7147ae0000000p-4f,
    0x1.7cccce0000000p-4f, 0x1.8851ea0000000p-4f, 0x1.93d70a0000000p-4f, 0x1.b666680000000p-4f,
    0x1.f000000000000p-4f, 0x1.14cccc0000000p-3f, 0x1.31999a0000000p-3f, 0x1.4e66660000000p-3f,
    0x1.6b33320000000p-3f, 0x1.8800000000000p-3f, 0x1.a4cccc0000000p-3f, 0x1.c1999a0000000p-3f,
    0x1.de66680000000p-3f, 0x1.fb33340000000p-3f, 0x1.0c00000000000p-2f, 0x1.1a66680000000p-2f,
    0x1.28cccc0000000p-2f, 0x1.3733340000000p-2f, 0x1.4599980000000p-2f, 0x1.5400000000000p-2f,
    0x1.6266640000000p-2f, 0x1.70cccc0000000p-2f, 0x1.7f33340000000p-2f, 0x1.8d99980000000p-2f,
    0x1.9c00000000000p-2f, 0x1.aa66640000000p-2f, 0x1.b8cccc0000000p-2f, 0x1.c733340000000p-2f,
    0x1.d599980000000p-2f, 0x1.e400000000000p-2f, 0x1.f266680000000p-2f, 0x1.0066660000000p-1f,
    0x1.07999a0000000p-1f, 0x1.0ecccc0000000p-1f, 0x1.1600000000000p-1f, 0x1.1d33340000000p-1f,
    0x1.2466680000000p-1f, 0x1.2b999a0000000p-1f, 0x1.32cccc0000000p-1f, 0x1.3a00000000000p-1f,
    0x1.4133340000000p-1f, 0x1.4866660000000p-1f, 0x1.4f999a0000000p-1f, 0x1.56ccce0000000p-1f,
    0x1.5e00000000000p-1f, 0x1.6533340000000p-1f, 0x1.6c66680000000p-1f, 0x1.73999a0000000p-1f,
    0x1.7accce0000000p-1f, 0x1.8200000000000p-1f, 0x1.8933340000000p-1f, 0x1.9066660000000p-1f,
    0x1.9799980000000p-1f, 0x1.9ecccc0000000p-1f, 0x1.a600000000000p-1f, 0x1.ad33320000000p-1f,
    0x1.b466660000000p-1f, 0x1.bb99980000000p-1f, 0x1.c2cccc0000000p-1f, 0x1.ca00000000000p-1f,
    0x1.d133340000000p-1f, 0x1.d866660000000p-1f, 0x1.df99980000000p-1f, 0x1.e6cccc0000000p-1f,
    0x1.ee00000000000p-1f, 0x1.f533320000000p-1f, 0x1.fc66660000000p-1f, 0x1.0000000000000p+0f,
};

void check_blocksize(std::int64_t blocksize) {
  for (std::int64_t b = 32; b <= 4096; b *= 2)
    if (b == blocksize) return;
  throw ConfigError::about("quantize_4bit", "blocksize", std::to_string(blocksize),
                           "bitsandbytes supports block sizes 32, 64, 128, 256, 512, 1024, 2048 and 4096",
                           "use 64 (bnb's default)");
}

void check_float_input(const torch::Tensor& a, const char* subject) {
  const auto t = a.scalar_type();
  if (t != torch::kFloat32 && t != torch::kFloat16 && t != torch::kBFloat16)
    throw ConfigError::about(subject, "A.dtype", std::string(c10::toString(t)),
                             "only float32, float16 and bfloat16 tensors can be quantised",
                             "cast the tensor to one of them first");
}

// bnb's scaled values: per block A · (1 / max(absmax, 1e-38)) clamped to [-1, 1]; the partial
// last block divides by its absmax. Returns (scaled float32 [n], absmax float32 [blocks]).
std::pair<torch::Tensor, torch::Tensor> scale_blocks(const torch::Tensor& a, std::int64_t blocksize) {
  const auto flat = a.reshape(-1).to(torch::kFloat32);
  const std::int64_t n = flat.numel();
  const std::int64_t rem = n % blocksize, full = n - rem, blocks = full / blocksize;
  const auto com = flat.slice(0, 0, full).view({blocks, blocksize});
  auto absmax = std::get<0>(com.abs().max(-1));
  auto scaled = torch::clamp(com * absmax.clamp_min(1e-38).reciprocal().view({-1, 1}), -1, 1).reshape(-1);
  if (rem) {
    const auto tail = flat.slice(0, full);
    const auto am = tail.abs().max().clamp_min(1e-38);
    absmax = torch::cat({absmax, am.unsqueeze(0)});
    scaled = torch::cat({scaled, torch::clamp(tail / am, -1, 1)});
  }
  return {scaled, absmax};
}

// values [n] (float32) times the scale of their block: absmax[i / blocksize], the partial last
// block included; float32, as bnb's dequantize kernels.
torch::Tensor scale_blocks_by(const torch::Tensor& values, const torch::Tensor& absmax, std::int64_t blocksize) {
  const std::int64_t n = values.numel(), rem = n % blocksize, full = n - rem, blocks = full / blocksize;
  auto head = (values.slice(0, 0, full).view({blocks, blocksize}) * absmax.slice(0, 0, blocks).view({-1, 1})).reshape(full);
  return rem ? torch::cat({head, values.slice(0, full) * absmax[blocks]}) : head;
}

// Dequantises the codes in `packed` on the CPU straight into `dtype`: each value is
// float32(code) · float32(absmax) rounded once, as bnb's float32 result cast to dtype.
torch::Tensor dequantize_cpu(const torch::Tensor& packed, const torch::Tensor& absmax, const torch::Tensor& code,
                             std::int64_t n, std::int64_t blocksize, torch::ScalarType dtype) {
  auto out = torch::empty({n}, torch::TensorOptions().dtype(dtype));
  const auto p = packed.contiguous();
  const auto am = absmax.to(torch::kFloat32).contiguous();
  const auto c = code.to(torch::kFloat32).contiguous();
  const std::uint8_t* pp = p.data_ptr<std::uint8_t>();
  const float* ap = am.data_ptr<float>();
  const float* cp = c.data_ptr<float>();
  const std::int64_t blocks = (n + blocksize - 1) / blocksize;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "dequantize_4bit", [&] {
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, blocks, 16, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const float s = ap[b];
        const std::int64_t end = std::min(n, (b + 1) * blocksize);
        for (std::int64_t i = b * blocksize; i < end; ++i) {
          const std::uint8_t byte = pp[i >> 1];
          const int nib = (i & 1) ? (byte & 0xF) : (byte >> 4);
          op[i] = static_cast<scalar_t>(cp[nib] * s);
        }
      }
    });
  });
  return out;
}

}  // namespace

namespace detail {
torch::Tensor dequantize_4bit_tensor_ops(const torch::Tensor& packed, const torch::Tensor& absmax,
                                         const QuantState4bit& st, torch::ScalarType dtype) {
  // A 256-entry table (byte -> its two values) gathered by the packed bytes, then the scales.
  const std::int64_t n = st.numel();
  const auto code = st.quant_map.to(packed.device(), torch::kFloat32);
  const auto bytes = torch::arange(256, torch::TensorOptions().dtype(torch::kLong).device(packed.device()));
  const auto lut = torch::stack({code.index_select(0, bytes.__rshift__(4)), code.index_select(0, bytes.bitwise_and(15))}, 1);
  auto vals = lut.index_select(0, packed.reshape(-1).to(torch::kLong)).reshape(-1).slice(0, 0, n);
  return scale_blocks_by(vals, absmax.to(packed.device(), torch::kFloat32), st.blocksize).to(dtype);
}
}  // namespace detail

torch::Tensor code_4bit(QuantType4bit t) {
  auto code = torch::empty({16}, torch::kFloat32);
  float* p = code.data_ptr<float>();
  for (int i = 0; i < 16; ++i)
    p[i] = t == QuantType4bit::nf4 ? static_cast<float>(kNf4[i]) : kFp4Raw[i] / 12.0f;
  return code;
}

torch::Tensor dynamic_map_8bit() {
  auto m = torch::empty({256}, torch::kFloat32);
  std::copy(kDynamicMap.begin(), kDynamicMap.end(), m.data_ptr<float>());
  return m;
}

std::pair<torch::Tensor, torch::Tensor> quantize_blockwise_8bit(const torch::Tensor& a, const torch::Tensor& code,
                                                                std::int64_t blocksize) {
  if (blocksize <= 0)
    throw ConfigError::about("quantize_blockwise", "blocksize", std::to_string(blocksize), "must be positive",
                             "bnb nests absmax in blocks of 256");
  check_float_input(a, "quantize_blockwise");
  auto [scaled, absmax] = scale_blocks(a, blocksize);
  const auto c = code.to(a.device(), torch::kFloat32);
  const auto bounds = (c.slice(0, 0, -1) + c.slice(0, 1)) / 2;
  auto q = torch::bucketize(scaled, bounds, /*out_int32=*/true).to(torch::kUInt8);
  return {q.reshape(a.sizes()), absmax};
}

torch::Tensor dequantize_blockwise_8bit(const torch::Tensor& q, const torch::Tensor& absmax, const torch::Tensor& code,
                                        std::int64_t blocksize) {
  const auto values = code.to(q.device(), torch::kFloat32).index_select(0, q.reshape(-1).to(torch::kLong));
  return scale_blocks_by(values, absmax, blocksize).reshape(q.sizes());
}

std::pair<torch::Tensor, QuantState4bit> quantize_4bit(const torch::Tensor& a, QuantType4bit quant_type,
                                                       std::int64_t blocksize, bool compress_statistics) {
  check_blocksize(blocksize);
  check_float_input(a, "quantize_4bit");
  if (a.numel() == 0)
    throw ConfigError::about("quantize_4bit", "A.numel", "0", "an empty tensor cannot be quantised", "");
  torch::NoGradGuard no_grad;
  auto [scaled, absmax] = scale_blocks(a.detach(), blocksize);
  if (scaled.numel() % 2) scaled = torch::constant_pad_nd(scaled, {0, 1});
  const auto code = code_4bit(quant_type).to(a.device());
  auto order = torch::arange(16, torch::TensorOptions().dtype(torch::kLong).device(a.device()));
  if (quant_type == QuantType4bit::fp4)
    order = torch::tensor(std::vector<std::int64_t>(kFp4Order.begin(), kFp4Order.end()), torch::kLong).to(a.device());
  const auto sorted = code.index_select(0, order);
  const auto bounds = (sorted.slice(0, 0, -1) + sorted.slice(0, 1)) / 2;
  auto q = torch::bucketize(scaled, bounds, /*out_int32=*/true).to(torch::kLong);
  if (quant_type == QuantType4bit::fp4) q = order.index_select(0, q);
  const auto q8 = q.to(torch::kUInt8);
  auto packed = torch::bitwise_or(q8.slice(0, 0, c10::nullopt, 2).__lshift__(4), q8.slice(0, 1, c10::nullopt, 2))
                    .unsqueeze(1)
                    .contiguous();

  QuantState4bit st;
  st.quant_type = quant_type;
  st.blocksize = blocksize;
  st.dtype = a.scalar_type();
  st.shape = a.sizes().vec();
  st.quant_map = code;
  if (compress_statistics) {
    const auto offset = absmax.mean();
    const auto map = dynamic_map_8bit().to(a.device());
    auto [qabs, abs2] = quantize_blockwise_8bit(absmax - offset, map, 256);
    st.absmax = qabs;
    st.nested_absmax = abs2;
    st.nested_quant_map = map;
    st.nested_offset = offset.item<float>();
  } else {
    st.absmax = absmax;
  }
  return {packed, st};
}

torch::Tensor dequantize_4bit(const torch::Tensor& packed, const QuantState4bit& st,
                              c10::optional<torch::ScalarType> dtype) {
  check_blocksize(st.blocksize);
  for (auto d : st.shape)
    if (d <= 0)
      throw ConfigError::about("dequantize_4bit", "state.shape", c10::str(c10::IntArrayRef(st.shape)),
                               "sizes must be positive", "use the state quantize_4bit returned");
  const std::int64_t n = st.numel();
  if (packed.scalar_type() != torch::kUInt8 || packed.numel() != (n + 1) / 2)
    throw ConfigError::about("dequantize_4bit", "packed", std::string(c10::toString(packed.scalar_type())) + " of " +
                                                              std::to_string(packed.numel()) + " elements",
                             "expected uint8 with (numel + 1) / 2 = " + std::to_string((n + 1) / 2) + " bytes",
                             "pass the packed codes quantize_4bit returned with their state");
  // The CPU loop reads absmax[block] and quant_map[nibble] unchecked: sizes first.
  const std::int64_t blocks = st.blocks();
  if (!st.absmax.defined() || st.absmax.numel() != blocks || !st.quant_map.defined() || st.quant_map.numel() != 16 ||
      (st.nested() && (!st.nested_quant_map.defined() || st.nested_quant_map.numel() != 256 ||
                       st.nested_blocksize <= 0 ||
                       st.nested_absmax.numel() != (blocks + st.nested_blocksize - 1) / st.nested_blocksize)))
    throw ConfigError::about("dequantize_4bit", "state", "absmax of " + std::to_string(st.absmax.defined() ? st.absmax.numel() : 0),
                             "the state does not describe " + std::to_string(blocks) + " blocks of " +
                                 std::to_string(st.blocksize) + " (absmax per block, 16 codes, nested absmax per 256 blocks)",
                             "use the state quantize_4bit returned or QuantState4bit::from_entries read");
  torch::NoGradGuard no_grad;
  const auto out_dtype = dtype.value_or(st.dtype);
  const auto absmax = st.absmax_float();
  torch::Tensor out = packed.device().is_cpu()
                          ? dequantize_cpu(packed, absmax, st.quant_map, n, st.blocksize, out_dtype)
                          : detail::dequantize_4bit_tensor_ops(packed, absmax, st, out_dtype);
  return out.view(st.shape);
}

}  // namespace peft
