// CPU rasterizer kernel for gs_vq: per-pixel front-to-back compositing of projected Gaussians
// and its backward pass, OpenMP over bands of image rows.
//
// Same maths as gs_vq/render/composite.py (and gsplat 1.5.3's RasterizeToPixels3DGS kernels):
//   delta = mean2d - (pixel + 0.5), sigma = 0.5 (a dx^2 + c dy^2) + b dx dy,
//   alpha = min(max_alpha, opacity exp(-sigma)), skipped if sigma < 0 or alpha < alpha_threshold,
//   stop before the Gaussian whose next_T = T (1 - alpha) <= t_eps.
// The constants come from Python (gs_vq/render/projection.py) so they live in one place.
//
// Work list: every Gaussian's pixel box (|centre - mean| <= radius per axis) is walked in depth
// order; pixels whose sigma cannot give alpha >= alpha_threshold are dropped early (sigma >
// log(opacity / alpha_threshold) + margin), the rest go into per-pixel lists (CSR, depth order).
// Rows are split into bands; a band's pixels belong to one thread, so lists and outputs need no
// locks; gradients go to per-thread buffers summed at the end.

#include <torch/extension.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int kMaxChannels = 64;  // Python splits wider features into chunks
constexpr int kBandRows = 4;      // rows per unit of parallel work
constexpr float kPrefilterMargin = 1e-3f;

struct Params {
    double alpha_threshold, max_alpha, t_eps;  // cast to scalar_t where compared, as gsplat
    int64_t width, height, n_images, channels;
};

struct Box {
    int32_t x0, x1, r0, r1;  // inclusive pixel columns, inclusive global rows (image * H + y)
};

// The visible Gaussians in depth order, one contiguous record each (better locality than the
// separate input arrays): [mean x, mean y, conic a, b, c, opacity, colour 0..D-1].
constexpr int kHead = 6;

template <typename scalar_t>
struct Packed {
    std::vector<scalar_t> data;
    int64_t stride;
    const scalar_t *at(int64_t i) const { return data.data() + i * stride; }
};

template <typename scalar_t>
Packed<scalar_t> pack(const at::Tensor &means2d, const at::Tensor &conics, const at::Tensor &colors,
                      const at::Tensor &opacities, const at::Tensor &order, int64_t D) {
    const scalar_t *m = means2d.data_ptr<scalar_t>(), *co = conics.data_ptr<scalar_t>();
    const scalar_t *cl = colors.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>();
    const int64_t *ord = order.data_ptr<int64_t>(), n = order.numel();
    Packed<scalar_t> pk{std::vector<scalar_t>(n * (kHead + D)), kHead + D};
    at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
            const int64_t g = ord[i];
            scalar_t *r = pk.data.data() + i * pk.stride;
            r[0] = m[2 * g], r[1] = m[2 * g + 1];
            r[2] = co[3 * g], r[3] = co[3 * g + 1], r[4] = co[3 * g + 2], r[5] = op[g];
            std::copy(cl + g * D, cl + (g + 1) * D, r + kHead);
        }
    });
    return pk;
}

template <typename scalar_t>
inline scalar_t sigma_at(const scalar_t *r, scalar_t px, scalar_t py, scalar_t &dx, scalar_t &dy) {
    dx = r[0] - px;
    dy = r[1] - py;
    return scalar_t(0.5) * (r[2] * dx * dx + r[4] * dy * dy) + r[3] * dx * dy;
}

// Pixel boxes of the depth-ordered Gaussians, same float maths as composite.pixel_boxes.
template <typename scalar_t>
std::vector<Box> pixel_boxes(const Packed<scalar_t> &pk, const int32_t *radii,
                             const int64_t *image_ids, const int64_t *order, int64_t n,
                             const Params &p) {
    std::vector<Box> boxes(n);
    at::parallel_for(0, n, 2048, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
            const int64_t g = order[i];
            const scalar_t rx = radii[2 * g], ry = radii[2 * g + 1];
            Box b{0, -1, 0, -1};
            if (rx > 0 && ry > 0) {
                const scalar_t mx = pk.at(i)[0], my = pk.at(i)[1], half = 0.5;
                const int64_t x0 = std::max<scalar_t>(0, std::ceil(mx - rx - half));
                const int64_t y0 = std::max<scalar_t>(0, std::ceil(my - ry - half));
                const int64_t x1 = std::min<scalar_t>(p.width - 1, std::floor(mx + rx - half));
                const int64_t y1 = std::min<scalar_t>(p.height - 1, std::floor(my + ry - half));
                if (x0 <= x1 && y0 <= y1) {
                    const int64_t base = image_ids[g] * p.height;
                    b = Box{int32_t(x0), int32_t(x1), int32_t(base + y0), int32_t(base + y1)};
                }
            }
            boxes[i] = b;
        }
    });
    return boxes;
}

// CSR lists of depth-ordered Gaussian positions touching each band of rows.
void band_lists(const std::vector<Box> &boxes, int64_t n_bands, std::vector<int64_t> &start,
                std::vector<int32_t> &items) {
    start.assign(n_bands + 1, 0);
    for (const Box &b : boxes)
        if (b.x0 <= b.x1)
            for (int32_t k = b.r0 / kBandRows; k <= b.r1 / kBandRows; ++k) ++start[k + 1];
    for (int64_t k = 0; k < n_bands; ++k) start[k + 1] += start[k];
    items.resize(start[n_bands]);
    std::vector<int64_t> cursor(start.begin(), start.end() - 1);
    for (int32_t i = 0; i < int32_t(boxes.size()); ++i) {
        const Box &b = boxes[i];
        if (b.x0 <= b.x1)
            for (int32_t k = b.r0 / kBandRows; k <= b.r1 / kBandRows; ++k) items[cursor[k]++] = i;
    }
}

// Calls f(pixel, i) for the candidate pairs of one band, i = position in depth order.
template <typename scalar_t, typename F>
void visit_band(int64_t band, const std::vector<int64_t> &start, const std::vector<int32_t> &items,
                const std::vector<Box> &boxes, const std::vector<scalar_t> &log_thr,
                const Packed<scalar_t> &pk, const Params &p, F &&f) {
    const int32_t band_r0 = band * kBandRows, band_r1 = band_r0 + kBandRows - 1;
    for (int64_t k = start[band]; k < start[band + 1]; ++k) {
        const int32_t i = items[k];
        const Box &b = boxes[i];
        const scalar_t *rec = pk.at(i);
        const scalar_t limit = log_thr[i] + kPrefilterMargin;
        for (int32_t r = std::max(b.r0, band_r0); r <= std::min(b.r1, band_r1); ++r) {
            const scalar_t py = scalar_t(r % p.height) + scalar_t(0.5);
            for (int32_t x = b.x0; x <= b.x1; ++x) {
                scalar_t dx, dy;
                if (sigma_at(rec, scalar_t(x) + scalar_t(0.5), py, dx, dy) <= limit)
                    f(int64_t(r) * p.width + x, i);
            }
        }
    }
}

template <typename scalar_t>
std::vector<at::Tensor> forward_impl(const at::Tensor &means2d, const at::Tensor &conics,
                                     const at::Tensor &colors, const at::Tensor &opacities,
                                     const c10::optional<at::Tensor> &backgrounds,
                                     const at::Tensor &radii, const at::Tensor &image_ids,
                                     const at::Tensor &order, const Params &p) {
    const int64_t n_pix = p.n_images * p.height * p.width, D = p.channels;
    const int64_t n_rows = p.n_images * p.height, n_bands = (n_rows + kBandRows - 1) / kBandRows;
    const int64_t n = order.numel();
    const scalar_t thr = p.alpha_threshold, max_alpha = p.max_alpha, t_eps = p.t_eps;
    const Packed<scalar_t> pk = pack<scalar_t>(means2d, conics, colors, opacities, order, D);
    std::vector<Box> boxes = pixel_boxes(pk, radii.data_ptr<int32_t>(),
                                         image_ids.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
                                         n, p);
    std::vector<scalar_t> log_thr(n);
    for (int64_t i = 0; i < n; ++i) log_thr[i] = std::log(pk.at(i)[5] / thr);
    std::vector<int64_t> band_start;
    std::vector<int32_t> band_items;
    band_lists(boxes, n_bands, band_start, band_items);

    auto offsets = at::zeros({n_pix + 1}, order.options());  // int64 CSR offsets
    int64_t *off = offsets.data_ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
    for (int64_t band = 0; band < n_bands; ++band)
        visit_band(band, band_start, band_items, boxes, log_thr, pk, p,
                   [&](int64_t pix, int32_t) { ++off[pix + 1]; });
    for (int64_t i = 0; i < n_pix; ++i) off[i + 1] += off[i];

    auto ids = at::empty({off[n_pix]}, radii.options());  // int32 depth-order position per pair
    auto out = at::zeros({p.n_images, p.height, p.width, D}, colors.options());
    auto alphas = at::zeros({p.n_images, p.height, p.width, 1}, colors.options());
    auto t_final = at::empty({n_pix}, colors.options());
    auto n_used = at::zeros({n_pix}, radii.options());
    int32_t *id = ids.data_ptr<int32_t>(), *used = n_used.data_ptr<int32_t>();
    scalar_t *o = out.data_ptr<scalar_t>(), *a = alphas.data_ptr<scalar_t>();
    scalar_t *tf = t_final.data_ptr<scalar_t>();
    const scalar_t *bg = backgrounds ? backgrounds->data_ptr<scalar_t>() : nullptr;

#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
    for (int64_t band = 0; band < n_bands; ++band) {
        const int64_t pix0 = band * kBandRows * p.width;
        const int64_t pix1 = std::min(n_pix, pix0 + kBandRows * p.width);
        std::vector<int64_t> cursor(off + pix0, off + pix1);
        visit_band(band, band_start, band_items, boxes, log_thr, pk, p,
                   [&](int64_t pix, int32_t i) { id[cursor[pix - pix0]++] = i; });
        for (int64_t pix = pix0; pix < pix1; ++pix) {
            const scalar_t px = scalar_t(pix % p.width) + scalar_t(0.5);
            const scalar_t py = scalar_t((pix / p.width) % p.height) + scalar_t(0.5);
            scalar_t T = 1, acc[kMaxChannels] = {0};
            int64_t last = off[pix] - 1;
            for (int64_t k = off[pix]; k < off[pix + 1]; ++k) {
                const scalar_t *rec = pk.at(id[k]);
                scalar_t dx, dy;
                const scalar_t sigma = sigma_at(rec, px, py, dx, dy);
                const scalar_t alpha = std::min<scalar_t>(max_alpha, rec[5] * std::exp(-sigma));
                if (sigma < 0 || alpha < thr) continue;
                const scalar_t next_T = T * (1 - alpha);
                if (next_T <= t_eps) break;  // exclusive: this Gaussian does not contribute
                const scalar_t w = alpha * T;
                for (int64_t c = 0; c < D; ++c) acc[c] += w * rec[kHead + c];
                T = next_T;
                last = k;
            }
            used[pix] = int32_t(last + 1 - off[pix]);
            const scalar_t *bgi = bg ? bg + (pix / (p.height * p.width)) * D : nullptr;
            for (int64_t c = 0; c < D; ++c) o[pix * D + c] = acc[c] + (bgi ? T * bgi[c] : 0);
            a[pix] = 1 - T;
            tf[pix] = T;
        }
    }
    return {out, alphas, t_final, offsets, ids, n_used};
}

// Gradient record per depth-ordered Gaussian (per thread, summed at the end):
// [v_mean2d (2), v_conic (3), v_opacity (1), |v_mean2d| (2), v_colour (D)].
constexpr int kGradHead = 8;

template <typename scalar_t>
std::vector<at::Tensor> backward_impl(const at::Tensor &means2d, const at::Tensor &conics,
                                      const at::Tensor &colors, const at::Tensor &opacities,
                                      const c10::optional<at::Tensor> &backgrounds,
                                      const at::Tensor &order, const at::Tensor &offsets,
                                      const at::Tensor &ids, const at::Tensor &n_used,
                                      const at::Tensor &t_final, const at::Tensor &v_out,
                                      const at::Tensor &v_alphas, bool absgrad, const Params &p) {
    const int64_t n_pix = p.n_images * p.height * p.width, D = p.channels, n = order.numel();
    const int64_t n_rows = p.n_images * p.height, n_bands = (n_rows + kBandRows - 1) / kBandRows;
    const int64_t S = kGradHead + D;
    const scalar_t thr = p.alpha_threshold, max_alpha = p.max_alpha;
    const Packed<scalar_t> pk = pack<scalar_t>(means2d, conics, colors, opacities, order, D);
    const int64_t *off = offsets.data_ptr<int64_t>();
    const int32_t *id = ids.data_ptr<int32_t>(), *used = n_used.data_ptr<int32_t>();
    const scalar_t *tf = t_final.data_ptr<scalar_t>(), *gout = v_out.data_ptr<scalar_t>();
    const scalar_t *galpha = v_alphas.data_ptr<scalar_t>();
    const scalar_t *bg = backgrounds ? backgrounds->data_ptr<scalar_t>() : nullptr;
    const int n_threads = at::get_num_threads();
    auto grads = at::zeros({n_threads, n, S}, colors.options());

#pragma omp parallel num_threads(n_threads)
    {
        scalar_t *G = grads.data_ptr<scalar_t>() + omp_get_thread_num() * n * S;
#pragma omp for schedule(dynamic, 1)
        for (int64_t band = 0; band < n_bands; ++band) {
            const int64_t pix0 = band * kBandRows * p.width;
            const int64_t pix1 = std::min(n_pix, pix0 + kBandRows * p.width);
            for (int64_t pix = pix0; pix < pix1; ++pix) {
                if (used[pix] == 0) continue;
                const scalar_t px = scalar_t(pix % p.width) + scalar_t(0.5);
                const scalar_t py = scalar_t((pix / p.width) % p.height) + scalar_t(0.5);
                const scalar_t *g_c = gout + pix * D;
                const double T_final = tf[pix];
                double pix_term = galpha[pix];  // d loss / d (1 - T_final) - bg . g
                if (bg)
                    for (int64_t c = 0; c < D; ++c)
                        pix_term -= bg[(pix / (p.height * p.width)) * D + c] * g_c[c];
                pix_term *= T_final;
                double T = T_final, behind = 0;  // sum over later pairs of w_k (c_k . g)
                for (int64_t k = off[pix] + used[pix] - 1; k >= off[pix]; --k) {
                    const scalar_t *rec = pk.at(id[k]);
                    scalar_t dx, dy;
                    const scalar_t sigma = sigma_at(rec, px, py, dx, dy);
                    const scalar_t vis = std::exp(-sigma), opa = rec[5];
                    const scalar_t alpha = std::min<scalar_t>(max_alpha, opa * vis);
                    if (sigma < 0 || alpha < thr) continue;
                    const double ra = 1.0 / (1.0 - alpha);
                    T *= ra;  // transmittance in front of this Gaussian
                    const double w = alpha * T;
                    scalar_t *row = G + int64_t(id[k]) * S;
                    double cg = 0;
                    for (int64_t c = 0; c < D; ++c) {
                        cg += rec[kHead + c] * g_c[c];
                        row[kGradHead + c] += scalar_t(w * g_c[c]);
                    }
                    const double v_alpha = T * cg + (pix_term - behind) * ra;
                    behind += w * cg;
                    if (opa * vis > max_alpha) continue;  // clamped: no gradient to alpha
                    const double v_sigma = -double(opa) * vis * v_alpha;
                    const double vx = v_sigma * (rec[2] * dx + rec[3] * dy);
                    const double vy = v_sigma * (rec[3] * dx + rec[4] * dy);
                    row[0] += vx;
                    row[1] += vy;
                    row[2] += 0.5 * v_sigma * dx * dx;
                    row[3] += v_sigma * dx * dy;
                    row[4] += 0.5 * v_sigma * dy * dy;
                    row[5] += vis * v_alpha;
                    if (absgrad) {
                        row[6] += std::abs(vx);
                        row[7] += std::abs(vy);
                    }
                }
            }
        }
    }
    // Sum the threads' records and scatter them from depth order back to Gaussian ids.
    auto total = at::zeros({means2d.size(0), S}, colors.options());
    total.index_copy_(0, order, grads.sum(0));
    return {total.slice(1, 0, 2), total.slice(1, 2, 5), total.slice(1, kGradHead, S),
            total.select(1, 5), total.slice(1, 6, 8)};
}

Params make_params(int64_t width, int64_t height, int64_t n_images, int64_t channels,
                   double alpha_threshold, double max_alpha, double t_eps) {
    TORCH_CHECK(channels <= kMaxChannels, "at most ", kMaxChannels, " channels per call");
    return Params{alpha_threshold, max_alpha, t_eps, width, height, n_images, channels};
}

void check_inputs(const std::vector<at::Tensor> &floats, const at::Tensor &order) {
    for (const at::Tensor &t : floats) {
        TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "expected contiguous CPU tensors");
        TORCH_CHECK(t.scalar_type() == floats[0].scalar_type(), "mixed floating dtypes");
    }
    TORCH_CHECK(order.scalar_type() == at::kLong && order.numel() < (int64_t(1) << 31),
                "order must be int64 with fewer than 2^31 entries");
}

std::vector<at::Tensor> forward(at::Tensor means2d, at::Tensor conics, at::Tensor colors,
                                at::Tensor opacities, c10::optional<at::Tensor> backgrounds,
                                at::Tensor radii, at::Tensor image_ids, at::Tensor order,
                                int64_t width, int64_t height, int64_t n_images,
                                double alpha_threshold, double max_alpha, double t_eps) {
    const Params p = make_params(width, height, n_images, colors.size(1), alpha_threshold,
                                 max_alpha, t_eps);
    check_inputs({means2d, conics, colors, opacities}, order);
    TORCH_CHECK(radii.scalar_type() == at::kInt && image_ids.scalar_type() == at::kLong,
                "radii must be int32 and image_ids int64");
    std::vector<at::Tensor> result;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "gs_vq_rasterize_fwd", [&] {
        result = forward_impl<scalar_t>(means2d, conics, colors, opacities, backgrounds, radii,
                                        image_ids, order, p);
    });
    return result;
}

std::vector<at::Tensor> backward(at::Tensor means2d, at::Tensor conics, at::Tensor colors,
                                 at::Tensor opacities, c10::optional<at::Tensor> backgrounds,
                                 at::Tensor order, at::Tensor offsets, at::Tensor ids,
                                 at::Tensor n_used,
                                 at::Tensor t_final, at::Tensor v_out, at::Tensor v_alphas,
                                 bool absgrad, int64_t width, int64_t height, int64_t n_images,
                                 double alpha_threshold, double max_alpha, double t_eps) {
    const Params p = make_params(width, height, n_images, colors.size(1), alpha_threshold,
                                 max_alpha, t_eps);
    check_inputs({means2d, conics, colors, opacities, t_final, v_out, v_alphas}, order);
    std::vector<at::Tensor> result;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "gs_vq_rasterize_bwd", [&] {
        result = backward_impl<scalar_t>(means2d, conics, colors, opacities, backgrounds, order,
                                         offsets, ids, n_used, t_final, v_out, v_alphas, absgrad,
                                         p);
    });
    return result;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &forward, "composite projected Gaussians (CPU)");
    m.def("backward", &backward, "gradients of forward (CPU)");
    m.attr("max_channels") = kMaxChannels;
}
