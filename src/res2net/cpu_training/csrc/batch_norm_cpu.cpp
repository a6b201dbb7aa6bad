// Training-mode BatchNorm (then a residual add and the ReLU, where the block has them) on channels-last CPU
// maps, in fewer passes over memory than PyTorch's eager kernels. See res2net/cpu_training/fused_norm.py for why
// and when.
//
// A channels-last map of C channels is a row-major [rows, C] matrix. The per-channel loops run
// over "tiles" of R rows (R * C a multiple of 16 floats, the AVX-512 width) with the per-channel
// parameters repeated R times, so narrow channel counts (26, 52, 104) vectorise without a
// remainder loop. Statistics are accumulated in float over blocks of rows, then in double, and
// shifted by each channel's first value, so the one-pass variance does not cancel.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <vector>

namespace {

using bf16_bits = uint16_t;

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const bf16_bits* p, int64_t i) {
  const uint32_t bits = uint32_t(p[i]) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline void store(float* p, int64_t i, float value) { p[i] = value; }
inline void store(bf16_bits* p, int64_t i, float value) {  // round to nearest even, as PyTorch does
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
  p[i] = value != value ? bf16_bits(0x7FC0) : bf16_bits(rounded >> 16);  // NaN stays a quiet NaN
}

constexpr int64_t kRowsPerBlock = 64;  // rows summed in float before the double accumulators

struct Tiling {
  int64_t rows;      // all rows of the map
  int64_t channels;  // C
  int64_t repeat;    // R: rows per tile
  int64_t width;     // R * C
  int64_t tiles() const { return rows / repeat; }
  int64_t tail_begin() const { return tiles() * repeat; }
};

Tiling make_tiling(int64_t rows, int64_t channels) {
  const int64_t repeat = 16 / std::gcd<int64_t>(channels, 16);
  return {rows, channels, repeat, repeat * channels};
}

std::vector<float> tiled(const std::vector<float>& per_channel, const Tiling& t) {
  std::vector<float> out(t.width);
  for (int64_t i = 0; i < t.width; ++i) out[i] = per_channel[i % t.channels];
  return out;
}

// Sums over rows of f(offset, lane) into two per-channel double vectors, in parallel.
// f writes its two summands for element `offset` (lane = position within the tile).
template <typename Summands>
void sum_rows(const Tiling& t, std::vector<double>& first, std::vector<double>& second, Summands f) {
  const int threads = at::get_num_threads();
  std::vector<double> part_a(size_t(threads) * t.width, 0.0), part_b(size_t(threads) * t.width, 0.0);
  at::parallel_for(0, t.tiles(), 1, [&](int64_t begin, int64_t end) {
    const int thread = at::get_thread_num();
    double* acc_a = part_a.data() + size_t(thread) * t.width;
    double* acc_b = part_b.data() + size_t(thread) * t.width;
    std::vector<float> block_a(t.width), block_b(t.width);
    float* fa = block_a.data();
    float* fb = block_b.data();
    const int64_t tiles_per_block = std::max<int64_t>(1, kRowsPerBlock / t.repeat);
    for (int64_t b0 = begin; b0 < end; b0 += tiles_per_block) {
      const int64_t b1 = std::min(end, b0 + tiles_per_block);
      std::fill(block_a.begin(), block_a.end(), 0.f);
      std::fill(block_b.begin(), block_b.end(), 0.f);
      for (int64_t tile = b0; tile < b1; ++tile) {
        const int64_t base = tile * t.width;
#pragma omp simd
        for (int64_t lane = 0; lane < t.width; ++lane) {
          float a, b;
          f(base + lane, lane, a, b);
          fa[lane] += a;
          fb[lane] += b;
        }
      }
      for (int64_t lane = 0; lane < t.width; ++lane) {
        acc_a[lane] += fa[lane];
        acc_b[lane] += fb[lane];
      }
    }
  });
  first.assign(t.channels, 0.0);
  second.assign(t.channels, 0.0);
  for (int thread = 0; thread < threads; ++thread) {
    for (int64_t lane = 0; lane < t.width; ++lane) {
      first[lane % t.channels] += part_a[size_t(thread) * t.width + lane];
      second[lane % t.channels] += part_b[size_t(thread) * t.width + lane];
    }
  }
  for (int64_t row = t.tail_begin(); row < t.rows; ++row) {  // rows that fill no tile
    for (int64_t c = 0; c < t.channels; ++c) {
      float a, b;
      f(row * t.channels + c, c, a, b);
      first[c] += a;
      second[c] += b;
    }
  }
}

// out[offset] = f(offset, lane) for every element, in parallel.
template <typename Element>
void map_rows(const Tiling& t, Element f) {
  at::parallel_for(0, t.tiles(), 16, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t base = tile * t.width;
#pragma omp simd
      for (int64_t lane = 0; lane < t.width; ++lane) f(base + lane, lane);
    }
  });
  for (int64_t row = t.tail_begin(); row < t.rows; ++row)
    for (int64_t c = 0; c < t.channels; ++c) f(row * t.channels + c, c);
}

// y = BatchNorm(x) [+ residual] [then ReLU]; residual may be null.
template <typename T>
void forward_impl(const T* x, const T* residual, const float* weight, const float* bias, T* y, float* mean_out,
                  float* var_out, int64_t rows, int64_t channels, double eps, bool relu) {
  const Tiling t = make_tiling(rows, channels);
  std::vector<float> shift(channels);
  for (int64_t c = 0; c < channels; ++c) shift[c] = load(x, c);
  const std::vector<float> shift_tiled = tiled(shift, t);
  const float* k = shift_tiled.data();
  std::vector<double> sum, sum_sq;
  sum_rows(t, sum, sum_sq, [=](int64_t i, int64_t lane, float& a, float& b) {
    const float v = load(x, i) - k[lane];
    a = v;
    b = v * v;
  });
  std::vector<float> scale(channels), offset(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const double shifted_mean = sum[c] / double(rows);
    const double var = std::max(0.0, sum_sq[c] / double(rows) - shifted_mean * shifted_mean);
    const double invstd = 1.0 / std::sqrt(var + eps);
    const double mean = shifted_mean + shift[c];
    mean_out[c] = float(mean);
    var_out[c] = float(var);
    scale[c] = float(weight[c] * invstd);
    offset[c] = float(bias[c] - mean * weight[c] * invstd);
  }
  const std::vector<float> scale_tiled = tiled(scale, t), offset_tiled = tiled(offset, t);
  const float* s = scale_tiled.data();
  const float* o = offset_tiled.data();
  if (residual != nullptr) {
    map_rows(t, [=](int64_t i, int64_t lane) {
      const float v = load(x, i) * s[lane] + o[lane] + load(residual, i);
      store(y, i, relu ? std::max(v, 0.f) : v);
    });
  } else if (relu) {
    map_rows(t, [=](int64_t i, int64_t lane) { store(y, i, std::max(load(x, i) * s[lane] + o[lane], 0.f)); });
  } else {
    map_rows(t, [=](int64_t i, int64_t lane) { store(y, i, load(x, i) * s[lane] + o[lane]); });
  }
}

// The gradient reaching BatchNorm's output: grad_y, masked by ReLU's output when it follows.
// Both values are loaded unconditionally so the loops vectorise (a select, not a branch).
template <bool kRelu, typename T>
inline float masked_grad(const T* grad_y, const T* y, int64_t i) {
  const float g = load(grad_y, i);
  return kRelu ? (load(y, i) > 0.f ? g : 0.f) : g;
}

template <bool kRelu, typename T>
void backward_impl(const T* grad_y, const T* x, const T* y, const float* mean, const float* var,
                   const float* weight, T* grad_x, T* grad_residual, float* grad_weight, float* grad_bias,
                   int64_t rows, int64_t channels, double eps) {
  const Tiling t = make_tiling(rows, channels);
  std::vector<double> invstd(channels);
  for (int64_t c = 0; c < channels; ++c) invstd[c] = 1.0 / std::sqrt(double(var[c]) + eps);
  const std::vector<float> mean_v(mean, mean + channels);
  const std::vector<float> mean_tiled = tiled(mean_v, t);
  const float* m = mean_tiled.data();
  std::vector<double> sum_g, sum_gx;
  // g = grad_y masked by ReLU's output; gradients of bias and weight are sum(g), sum(g * x_hat).
  sum_rows(t, sum_g, sum_gx, [=](int64_t i, int64_t lane, float& a, float& b) {
    const float g = masked_grad<kRelu>(grad_y, y, i);
    a = g;
    b = g * (load(x, i) - m[lane]);
  });
  std::vector<float> k_grad(channels), k_bias(channels), k_centred(channels);
  for (int64_t c = 0; c < channels; ++c) {
    grad_bias[c] = float(sum_g[c]);
    grad_weight[c] = float(sum_gx[c] * invstd[c]);
    const double scale = double(weight[c]) * invstd[c];
    k_grad[c] = float(scale);
    k_bias[c] = float(scale * sum_g[c] / double(rows));
    k_centred[c] = float(scale * invstd[c] * invstd[c] * sum_gx[c] / double(rows));
  }
  const std::vector<float> a_t = tiled(k_grad, t), b_t = tiled(k_bias, t), c_t = tiled(k_centred, t);
  const float* ka = a_t.data();
  const float* kb = b_t.data();
  const float* kc = c_t.data();
  const auto input_gradient = [=](int64_t i, int64_t lane, float g) {
    return g * ka[lane] - kb[lane] - (load(x, i) - m[lane]) * kc[lane];
  };
  if (grad_residual != nullptr && grad_x != nullptr) {  // the residual's gradient is g itself
    map_rows(t, [=](int64_t i, int64_t lane) {
      const float g = masked_grad<kRelu>(grad_y, y, i);
      store(grad_residual, i, g);
      store(grad_x, i, input_gradient(i, lane, g));
    });
  } else if (grad_residual != nullptr) {
    map_rows(t, [=](int64_t i, int64_t) { store(grad_residual, i, masked_grad<kRelu>(grad_y, y, i)); });
  } else if (grad_x != nullptr) {
    map_rows(t, [=](int64_t i, int64_t lane) { store(grad_x, i, input_gradient(i, lane, masked_grad<kRelu>(grad_y, y, i))); });
  }
}

void check_map(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous() && t.device().is_cpu(), name, " must be a contiguous CPU [rows, C] matrix");
  TORCH_CHECK(t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kBFloat16, name, " must be float32 or bfloat16");
}

void check_like(const torch::Tensor& t, const torch::Tensor& x, const char* name) {
  TORCH_CHECK(t.sizes() == x.sizes() && t.scalar_type() == x.scalar_type() && t.is_contiguous(), name,
              " must be a contiguous matrix of x's shape and dtype");
}

void check_vector(const torch::Tensor& t, int64_t channels, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == channels && t.is_contiguous() && t.scalar_type() == torch::kFloat,
              name, " must be a contiguous float32 vector of C values");
}

}  // namespace

// x: [rows, C]; writes y = BatchNorm(x), plus residual if one is given (None otherwise), ReLU'd if relu,
// into y (the caller's memory, so the result can be an ordinary tensor rather than a view made here);
// returns the batch's mean and biased variance.
std::vector<torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   const std::optional<torch::Tensor>& residual, double eps, bool relu,
                                   torch::Tensor y) {
  check_map(x, "x");
  const int64_t rows = x.size(0), channels = x.size(1);
  TORCH_CHECK(rows > 0, "x has no rows");
  check_vector(weight, channels, "weight");
  check_vector(bias, channels, "bias");
  if (residual) check_like(*residual, x, "residual");
  check_like(y, x, "y");
  auto mean = torch::empty({channels}, weight.options());
  auto var = torch::empty({channels}, weight.options());
  const auto run = [&](auto typed) {
    using T = decltype(typed);
    forward_impl(static_cast<const T*>(x.data_ptr()),
                 residual ? static_cast<const T*>(residual->data_ptr()) : nullptr, weight.data_ptr<float>(),
                 bias.data_ptr<float>(), static_cast<T*>(y.data_ptr()), mean.data_ptr<float>(),
                 var.data_ptr<float>(), rows, channels, eps, relu);
  };
  if (x.scalar_type() == torch::kFloat) {
    run(float{});
  } else {
    run(bf16_bits{});
  }
  return {mean, var};
}

// Gradients of x (if input_grad), weight, bias and the residual (if residual_grad), from forward's
// saved values; the ones not asked for are undefined tensors. y, the forward's output, is read only
// for the ReLU's mask: it is needed with relu and ignored (may be None) without.
std::vector<torch::Tensor> backward(const torch::Tensor& grad_y, const torch::Tensor& x,
                                    const std::optional<torch::Tensor>& y, const torch::Tensor& mean,
                                    const torch::Tensor& var, const torch::Tensor& weight, double eps, bool relu,
                                    bool input_grad, bool residual_grad) {
  check_map(x, "x");
  const int64_t rows = x.size(0), channels = x.size(1);
  check_like(grad_y, x, "grad_y");
  TORCH_CHECK(!relu || y.has_value(), "backward with relu needs the forward's output y");
  if (y) check_like(*y, x, "y");
  check_vector(mean, channels, "mean");
  check_vector(var, channels, "var");
  check_vector(weight, channels, "weight");
  auto grad_x = input_grad ? torch::empty_like(x) : torch::Tensor();
  auto grad_residual = residual_grad ? torch::empty_like(x) : torch::Tensor();
  auto grad_weight = torch::empty({channels}, weight.options());
  auto grad_bias = torch::empty({channels}, weight.options());
  const auto run = [&](auto typed) {
    using T = decltype(typed);
    const auto* gy = static_cast<const T*>(grad_y.data_ptr());
    const auto* xs = static_cast<const T*>(x.data_ptr());
    const auto* ys = y ? static_cast<const T*>(y->data_ptr()) : nullptr;
    auto* gx = input_grad ? static_cast<T*>(grad_x.data_ptr()) : nullptr;
    auto* gr = residual_grad ? static_cast<T*>(grad_residual.data_ptr()) : nullptr;
    (relu ? backward_impl<true, T> : backward_impl<false, T>)(
        gy, xs, ys, mean.data_ptr<float>(), var.data_ptr<float>(), weight.data_ptr<float>(), gx, gr,
        grad_weight.data_ptr<float>(), grad_bias.data_ptr<float>(), rows, channels, eps);
  };
  if (x.scalar_type() == torch::kFloat) {
    run(float{});
  } else {
    run(bf16_bits{});
  }
  return {grad_x, grad_weight, grad_bias, grad_residual};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "BatchNorm (+ residual, + ReLU) training forward on a channels-last [rows, C] matrix");
  m.def("backward", &backward, "its backward");
}
