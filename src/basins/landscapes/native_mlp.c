/* Loss and gradient of every member's one-hidden-layer, one-output network, member by member.

   The engine's objective for these networks in float64 on the CPU (basins.landscapes.native_mlp
   compiles and loads it; basins.landscapes.fused_mlp.FusedMLPObjective calls it): the same
   function as fused_mlp.loss_and_gradient (tests/test_native_mlp.py: equal to round-off) for
   one hidden layer, one output, shared inputs, all samples, tanh, relu or linear units. Each
   member's forward and backward pass runs over its own hidden units, vectorized along the
   samples (inputs stored feature-major, so a sweep over samples is contiguous), its
   activations in a scratch of (h + 2) x P doubles that stays in cache. The transcendental
   functions are polynomials the compiler vectorizes (exp after range reduction, log on
   [1/2, 1] by the atanh series) to about one ulp: libm's scalar calls cost more than the
   arithmetic. Members are independent: a member's result does not depend on which others
   share the call (shard invariance); callers split members between threads. Only OpenMP's
   SIMD pragmas are used (-fopenmp-simd), no OpenMP runtime beside torch's. */

#include <math.h>
#include <stdint.h>
#include <string.h>

enum { LOSS_MSE = 0, LOSS_HINGE = 1, LOSS_QUADRATIC_HINGE = 2, LOSS_CROSS_ENTROPY = 3 };
enum { ACT_TANH = 0, ACT_RELU = 1, ACT_LINEAR = 2 };

/* exp(x), clamped to [-708, 709] (exp(-708) ~ 3e-308, exp(709) ~ 8e307: the sigmoid and the
   losses only need it to saturate there). Range reduction x = k ln 2 + r, |r| <= ln 2 / 2, k
   rounded by the 1.5 * 2^52 shift (k lands in the low mantissa bits, 2^k is built from them);
   the Taylor polynomial of degree 13 (truncation < 5e-18 relative) in Estrin's scheme. Written
   without branches, type-punning unions or libm calls, so that loops over it vectorize
   (1 ns a value against libm's 5-7, within 4.3e-16 relative of it). */
static inline double exp_vec(double x) {
    const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    double shifted = x * log2e + 0x1.8p52;   /* k in the low mantissa bits */
    double k = shifted - 0x1.8p52;
    double r = (x - k * ln2_hi) - k * ln2_lo;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double c01 = 1.0 + r, c23 = 0.5 + r * (1.0 / 6.0), c45 = 1.0 / 24.0 + r * (1.0 / 120.0),
           c67 = 1.0 / 720.0 + r * (1.0 / 5040.0), c89 = 1.0 / 40320.0 + r * (1.0 / 362880.0),
           c1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0), c1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    double c03 = c01 + r2 * c23, c47 = c45 + r2 * c67, c811 = c89 + r2 * c1011;
    double p = (c03 + r4 * c47) + r8 * (c811 + r4 * c1213);
    uint64_t bits; memcpy(&bits, &shifted, 8);
    uint64_t sbits = (bits + 1023) << 52; double scale; memcpy(&scale, &sbits, 8);
    return p * scale;
}
/* log(v) for v in [1/2, 1]: 2 atanh(s), s = (v - 1) / (v + 1), |s| <= 1/3; the odd series to
   s^35 (truncation < 2e-18). */
static inline double log_half_to_one(double v) {
    double s = (v - 1.0) / (v + 1.0), s2 = s * s;
    double p = 1.0 / 35.0;
    p = p * s2 + 1.0 / 33.0;
    p = p * s2 + 1.0 / 31.0;
    p = p * s2 + 1.0 / 29.0;
    p = p * s2 + 1.0 / 27.0;
    p = p * s2 + 1.0 / 25.0;
    p = p * s2 + 1.0 / 23.0;
    p = p * s2 + 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return 2.0 * s * p;
}

static inline double sigmoid_vec(double z) { return 1.0 / (1.0 + exp_vec(-z)); }

/* a[s] = b + sum_k w[k] xt[k][s]: one unit's pre-activations. Eight (then four, then one)
   features a pass: one load and store of a[] per pass, where a pass per feature chains each
   pass's loads to the last one's stores (store-forwarding latency, 14 % of the pass at h = 16). */
static inline void preactivation_row(const double *w, double b, const double *xt, int64_t stride,
                                     int64_t d, int64_t P, double *a) {
#pragma omp simd
    for (int64_t s = 0; s < P; s++) a[s] = b;
    int64_t k = 0;
    for (; k + 8 <= d; k += 8) {
        const double *x0 = xt + k * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride,
                     *x4 = x3 + stride, *x5 = x4 + stride, *x6 = x5 + stride, *x7 = x6 + stride;
        const double w0 = w[k], w1 = w[k + 1], w2 = w[k + 2], w3 = w[k + 3], w4 = w[k + 4],
                     w5 = w[k + 5], w6 = w[k + 6], w7 = w[k + 7];
#pragma omp simd
        for (int64_t s = 0; s < P; s++)
            a[s] += ((w0 * x0[s] + w1 * x1[s]) + (w2 * x2[s] + w3 * x3[s])) +
                    ((w4 * x4[s] + w5 * x5[s]) + (w6 * x6[s] + w7 * x7[s]));
    }
    for (; k + 4 <= d; k += 4) {
        const double *x0 = xt + k * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride;
        const double w0 = w[k], w1 = w[k + 1], w2 = w[k + 2], w3 = w[k + 3];
#pragma omp simd
        for (int64_t s = 0; s < P; s++) a[s] += (w0 * x0[s] + w1 * x1[s]) + (w2 * x2[s] + w3 * x3[s]);
    }
    for (; k < d; k++) {
        const double *x0 = xt + k * stride, w0 = w[k];
#pragma omp simd
        for (int64_t s = 0; s < P; s++) a[s] += w0 * x0[s];
    }
}

/* out[s] = b + sum_j w[j] hidden[j][s]: the network's output, four units a pass (as above). */
static inline void output_row(const double *hidden, const double *w, double b, int64_t h, int64_t P,
                              double *out) {
#pragma omp simd
    for (int64_t s = 0; s < P; s++) out[s] = b;
    int64_t j = 0;
    for (; j + 4 <= h; j += 4) {
        const double *a0 = hidden + j * P, *a1 = a0 + P, *a2 = a1 + P, *a3 = a2 + P;
        const double w0 = w[j], w1 = w[j + 1], w2 = w[j + 2], w3 = w[j + 3];
#pragma omp simd
        for (int64_t s = 0; s < P; s++) out[s] += (w0 * a0[s] + w1 * a1[s]) + (w2 * a2[s] + w3 * a3[s]);
    }
    for (; j < h; j++) {
        const double *a0 = hidden + j * P, w0 = w[j];
#pragma omp simd
        for (int64_t s = 0; s < P; s++) out[s] += w0 * a0[s];
    }
}

/* out[k] = sum_s back[s] xt[k][s] for k < d: one row of the first layer's weight gradient.
   Eight (then four, then one) features at a time share each pass over the samples: their
   independent accumulators keep the FMA units busy, where one dot product at a time is a
   chain of dependent additions (latency-bound: half of the whole pass's time at h = 16). */
static inline void weight_gradient_row(const double *back, const double *xt, int64_t stride,
                                       int64_t d, int64_t P, double *out) {
    int64_t k = 0;
    for (; k + 8 <= d; k += 8) {
        const double *x0 = xt + k * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride,
                     *x4 = x3 + stride, *x5 = x4 + stride, *x6 = x5 + stride, *x7 = x6 + stride;
        double g0 = 0.0, g1 = 0.0, g2 = 0.0, g3 = 0.0, g4 = 0.0, g5 = 0.0, g6 = 0.0, g7 = 0.0;
#pragma omp simd reduction(+ : g0, g1, g2, g3, g4, g5, g6, g7)
        for (int64_t s = 0; s < P; s++) {
            const double v = back[s];
            g0 += v * x0[s]; g1 += v * x1[s]; g2 += v * x2[s]; g3 += v * x3[s];
            g4 += v * x4[s]; g5 += v * x5[s]; g6 += v * x6[s]; g7 += v * x7[s];
        }
        out[k] = g0; out[k + 1] = g1; out[k + 2] = g2; out[k + 3] = g3;
        out[k + 4] = g4; out[k + 5] = g5; out[k + 6] = g6; out[k + 7] = g7;
    }
    for (; k + 4 <= d; k += 4) {
        const double *x0 = xt + k * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride;
        double g0 = 0.0, g1 = 0.0, g2 = 0.0, g3 = 0.0;
#pragma omp simd reduction(+ : g0, g1, g2, g3)
        for (int64_t s = 0; s < P; s++) {
            const double v = back[s];
            g0 += v * x0[s]; g1 += v * x1[s]; g2 += v * x2[s]; g3 += v * x3[s];
        }
        out[k] = g0; out[k + 1] = g1; out[k + 2] = g2; out[k + 3] = g3;
    }
    for (; k < d; k++) {
        const double *x0 = xt + k * stride;
        double g0 = 0.0;
#pragma omp simd reduction(+ : g0)
        for (int64_t s = 0; s < P; s++) g0 += back[s] * x0[s];
        out[k] = g0;
    }
}

/* One member: loss and gradient (n_params) from theta (n_params), its mean over the first P
   samples. xt: (d, stride) inputs, feature-major; y: (>= P) labels +-1 (targets for mse).
   scratch: (h + 2) * P doubles. */
static double member(const double *theta, double *grad, int64_t d, int64_t h, int64_t P,
                     int64_t stride, const double *xt, const double *y, int loss, int activation,
                     int bias, double margin, double beta, double l2, double *scratch) {
    const double *w1 = theta, *b1 = theta + h * d;
    const double *w2 = b1 + (bias ? h : 0);
    const double b2 = bias ? w2[h] : 0.0;
    double *gw1 = grad, *gb1 = grad + h * d;
    double *gw2 = gb1 + (bias ? h : 0);
    double *hidden = scratch, *out = scratch + h * P, *delta = out + P;
    const double inv_p = 1.0 / (double)P;

    for (int64_t j = 0; j < h; j++) preactivation_row(w1 + j * d, bias ? b1[j] : 0.0, xt, stride, d, P, hidden + j * P);
    /* one long loop over every unit's samples: independent iterations keep the polynomial's
       latency hidden (a loop of P alone is too short to) */
    const int64_t hp = h * P;
    if (activation == ACT_TANH) {
#pragma omp simd
        for (int64_t i = 0; i < hp; i++) hidden[i] = 2.0 * sigmoid_vec(2.0 * hidden[i]) - 1.0;
    } else if (activation == ACT_RELU) {
#pragma omp simd
        for (int64_t i = 0; i < hp; i++) hidden[i] = hidden[i] > 0.0 ? hidden[i] : 0.0;
    }
    output_row(hidden, w2, b2, h, P, out);

    double total = 0.0;
    if (loss == LOSS_MSE) {
#pragma omp simd reduction(+ : total)
        for (int64_t s = 0; s < P; s++) {
            double r = out[s] - y[s];
            total += 0.5 * r * r;
            delta[s] = r * inv_p;
        }
    } else if (loss == LOSS_CROSS_ENTROPY) {
        /* softplus(z) / beta with z = -beta y f; d / d f = -y sigmoid(z). softplus(z) =
           relu(z) - log sigmoid(|z|), and sigmoid(|z|) = max(s, 1 - s) lies in [1/2, 1]. */
#pragma omp simd reduction(+ : total)
        for (int64_t s = 0; s < P; s++) {
            double z = -beta * y[s] * out[s];
            double sg = sigmoid_vec(z);
            double upper = sg > 1.0 - sg ? sg : 1.0 - sg;
            total += (z > 0.0 ? z : 0.0) - log_half_to_one(upper);
            delta[s] = -y[s] * sg * inv_p;
        }
        total /= beta;
    } else if (loss == LOSS_HINGE) { /* one loop per hinge: a branch inside keeps gcc from vectorizing */
#pragma omp simd reduction(+ : total)
        for (int64_t s = 0; s < P; s++) {
            double shortfall = margin - y[s] * out[s];
            total += shortfall > 0.0 ? shortfall : 0.0;
            delta[s] = shortfall > 0.0 ? -y[s] * inv_p : 0.0;
        }
    } else {
#pragma omp simd reduction(+ : total)
        for (int64_t s = 0; s < P; s++) {
            double shortfall = margin - y[s] * out[s];
            double active = shortfall > 0.0 ? shortfall : 0.0;
            total += 0.5 * active * active;
            delta[s] = -y[s] * active * inv_p;
        }
    }
    total *= inv_p;

    double gb2 = 0.0;
#pragma omp simd reduction(+ : gb2)
    for (int64_t s = 0; s < P; s++) gb2 += delta[s];
    for (int64_t j = 0; j < h; j++) {
        double *a = hidden + j * P;
        const double wj = w2[j];
        /* the output weight's gradient and d loss / d pre-activation (written over the
           activation) and its sum, the bias gradient, in one pass */
        double g = 0.0, gb = 0.0;
        if (activation == ACT_TANH) {
#pragma omp simd reduction(+ : g, gb)
            for (int64_t s = 0; s < P; s++) {
                const double act = a[s], back = delta[s] * wj * (1.0 - act * act);
                g += delta[s] * act;
                gb += back;
                a[s] = back;
            }
        } else if (activation == ACT_RELU) {
#pragma omp simd reduction(+ : g, gb)
            for (int64_t s = 0; s < P; s++) {
                const double act = a[s], back = act > 0.0 ? delta[s] * wj : 0.0;
                g += delta[s] * act;
                gb += back;
                a[s] = back;
            }
        } else {
#pragma omp simd reduction(+ : g, gb)
            for (int64_t s = 0; s < P; s++) {
                const double back = delta[s] * wj;
                g += delta[s] * a[s];
                gb += back;
                a[s] = back;
            }
        }
        gw2[j] = g;
        if (bias) gb1[j] = gb;
        weight_gradient_row(a, xt, stride, d, P, gw1 + j * d);
    }
    if (bias) gw2[h] = gb2;

    const int64_t n_params = h * d + h + (bias ? h + 1 : 0);
    double square = 0.0;
    if (l2 != 0.0) {
        for (int64_t i = 0; i < n_params; i++) {
            square += theta[i] * theta[i];
            grad[i] += l2 * theta[i];
        }
    }
    return total + 0.5 * l2 * square;
}

/* Members first to first + n_members - 1: losses (n_members) and grads (n_members, n_params),
   each the mean over its first sizes[m] of the P samples (all P where sizes is NULL: the
   jamming sweep's members fit nested prefixes of one pool). scratch: (h + 2) * P doubles. */
void native_mlp_loss_and_gradient(int64_t n_members, const double *theta, double *losses, double *grads,
                                  int64_t d, int64_t h, int64_t P, const double *xt, const double *y,
                                  const int64_t *sizes, int loss, int activation, int bias,
                                  double margin, double beta, double l2, double *scratch) {
    const int64_t n_params = h * d + h + (bias ? h + 1 : 0);
    for (int64_t m = 0; m < n_members; m++)
        losses[m] = member(theta + m * n_params, grads + m * n_params, d, h, sizes ? sizes[m] : P, P,
                           xt, y, loss, activation, bias, margin, beta, l2, scratch);
}
