// Nearest-code search for low-dimensional codes (gs_vq.quant.search), fused: for a block of 16
// points, every code's score is computed in registers and compared with each point's best so
// far, vectorised across the points (8-wide vectors). Nothing of size [points, K] is ever written, unlike the
// matrix-product path (a [chunk, K] distance block written, then read back for the argmin).
// Worth it for D <= 16 (colours, scales, rotations, semantic features); BLAS wins for wider.
//
// Score of code k for point x: |c_k|^2 - 2 x.c_k (|x|^2 does not change the argmin). Ties go to
// the first index, as torch.argmin. Single-threaded: callers shard rows over threads.

#include <torch/extension.h>

#include <limits>

namespace {

// GCC/Clang vector extension: 8 floats, one AVX register with -march=native (built so by
// gs_vq.cext where the compiler accepts it), two SSE/NEON registers otherwise; no intrinsics.
typedef float v8f __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kVecs = 2;                  // vectors per block
constexpr int kBlock = kLanes * kVecs;    // points per block

template <int D>
void nearest_block(const float* __restrict__ x, int64_t count, const float* __restrict__ codes,
                   const float* __restrict__ norms, int64_t k, int64_t* __restrict__ out) {
    v8f xb[D][kVecs];  // the block's points, transposed, times -2
    v8f best[kVecs], arg[kVecs];  // code index as float: exact below 2^24 codes
    for (int v = 0; v < kVecs; ++v) {
        for (int l = 0; l < kLanes; ++l) {
            const int64_t p = v * kLanes + l;
            const int64_t row = p < count ? p : count - 1;  // pad a short block with its last point
            for (int j = 0; j < D; ++j) xb[j][v][l] = -2.0f * x[row * D + j];
        }
        best[v] = v8f{} + std::numeric_limits<float>::infinity();
        arg[v] = v8f{};
    }
    for (int64_t c = 0; c < k; ++c) {
        const float* code = codes + c * D;
        const v8f ci = v8f{} + static_cast<float>(c);
        for (int v = 0; v < kVecs; ++v) {
            v8f s = v8f{} + norms[c];
            for (int j = 0; j < D; ++j) s += xb[j][v] * code[j];
            const auto better = s < best[v];  // strict: the first code wins ties
            arg[v] = better ? ci : arg[v];
            best[v] = better ? s : best[v];
        }
    }
    for (int64_t p = 0; p < count; ++p) out[p] = static_cast<int64_t>(arg[p / kLanes][p % kLanes]);
}

template <int D>
void nearest_all(const float* x, int64_t n, const float* codes, const float* norms, int64_t k,
                 int64_t* out) {
    for (int64_t i = 0; i < n; i += kBlock) {
        const int64_t count = n - i < kBlock ? n - i : kBlock;
        nearest_block<D>(x + i * D, count, codes, norms, k, out + i);
    }
}

// x [N, D] float32, codes [K, D] float32, norms [K] float32 -> idx [N] int64
torch::Tensor nearest_small(torch::Tensor x, torch::Tensor codes, torch::Tensor norms) {
    TORCH_CHECK(x.dim() == 2 && codes.dim() == 2 && norms.dim() == 1, "bad ranks");
    TORCH_CHECK(x.scalar_type() == torch::kFloat && codes.scalar_type() == torch::kFloat &&
                    norms.scalar_type() == torch::kFloat, "float32 expected");
    x = x.contiguous();
    codes = codes.contiguous();
    norms = norms.contiguous();
    const int64_t n = x.size(0), d = x.size(1), k = codes.size(0);
    TORCH_CHECK(codes.size(1) == d && norms.size(0) == k && k > 0, "shape mismatch");
    TORCH_CHECK(k <= (1 << 24), "nearest_small: at most 2^24 codes");
    auto idx = torch::empty({n}, x.options().dtype(torch::kLong));
    if (n == 0) return idx;
    const float* xp = x.data_ptr<float>();
    const float* cp = codes.data_ptr<float>();
    const float* np_ = norms.data_ptr<float>();
    int64_t* out = idx.data_ptr<int64_t>();
    switch (d) {
#define GS_VQ_CASE(D) \
    case D: nearest_all<D>(xp, n, cp, np_, k, out); break;
        GS_VQ_CASE(1) GS_VQ_CASE(2) GS_VQ_CASE(3) GS_VQ_CASE(4) GS_VQ_CASE(5) GS_VQ_CASE(6)
        GS_VQ_CASE(7) GS_VQ_CASE(8) GS_VQ_CASE(9) GS_VQ_CASE(10) GS_VQ_CASE(11) GS_VQ_CASE(12)
        GS_VQ_CASE(13) GS_VQ_CASE(14) GS_VQ_CASE(15) GS_VQ_CASE(16)
#undef GS_VQ_CASE
        default: TORCH_CHECK(false, "nearest_small supports 1 to 16 dims, got ", d);
    }
    return idx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("nearest_small", &nearest_small, "argmin_k |c_k|^2 - 2 x.c_k for D <= 16 (CPU)");
}
