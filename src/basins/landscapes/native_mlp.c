/* Loss and gradient of every member's one-hidden-layer, one-output network, eight members at a time.

   The engine's objective for these networks in float64 on the CPU (basins.landscapes.native_mlp
   compiles and loads it; basins.landscapes.fused_mlp.FusedMLPObjective calls it): the same
   function as fused_mlp.loss_and_gradient (tests/test_native_mlp.py: equal to round-off) for
   one hidden layer, one output, shared inputs, all samples or each member's own prefix of them,
   tanh, relu or linear units. Members run one per SIMD lane (see lane_group), through the
   samples a block at a time; a group's parameters and gradients (2 x 8 x n_params doubles)
   stay in cache. The transcendental functions are polynomials the compiler vectorizes (exp
   after range reduction, log on [1/2, 1] by the atanh series) to about one ulp: libm's scalar
   calls cost more than the arithmetic. A member's result does not depend on which others share
   the call (shard invariance); callers split members between threads. Only OpenMP's SIMD
   pragmas are used (-fopenmp-simd), no OpenMP runtime beside torch's. */

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

/* Eight members at a time, one per SIMD lane: every operation below is a vertical one over
   the eight (a vector of GCC's vector extensions, split by the compiler into what the CPU has:
   one AVX-512 register, two AVX2 ones, or scalars), so a member's arithmetic is the same
   whichever lane it runs in and whichever members share its group (shard invariance), and no
   sum ends in a horizontal reduction or a partial vector: with one member a lane, the sums
   over samples are plain vector additions. */
enum { LANES = 8 };
typedef double lanes __attribute__((vector_size(LANES * sizeof(double)), aligned(sizeof(double))));

static inline lanes broadcast(double value) { return (lanes){0} + value; }

/* The loss of one sample in every lane and, in *slope, its derivative in the output. */
static inline lanes sample_loss(lanes out, double label, int loss, double margin, double beta, lanes *slope) {
    double f[LANES], value[LANES], derivative[LANES];
    memcpy(f, &out, sizeof out);
    if (loss == LOSS_MSE) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const double r = f[l] - label;
            value[l] = 0.5 * r * r;
            derivative[l] = r;
        }
    } else if (loss == LOSS_CROSS_ENTROPY) {
        /* softplus(z) / beta with z = -beta y f; d / d f = -y sigmoid(z). softplus(z) =
           relu(z) - log sigmoid(|z|), and sigmoid(|z|) = max(s, 1 - s) lies in [1/2, 1]. */
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const double z = -beta * label * f[l], sg = sigmoid_vec(z);
            const double upper = sg > 1.0 - sg ? sg : 1.0 - sg;
            value[l] = ((z > 0.0 ? z : 0.0) - log_half_to_one(upper)) / beta;
            derivative[l] = -label * sg;
        }
    } else if (loss == LOSS_HINGE) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const double shortfall = margin - label * f[l];
            value[l] = shortfall > 0.0 ? shortfall : 0.0;
            derivative[l] = shortfall > 0.0 ? -label : 0.0;
        }
    } else {
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            const double shortfall = margin - label * f[l], active = shortfall > 0.0 ? shortfall : 0.0;
            value[l] = 0.5 * active * active;
            derivative[l] = -label * active;
        }
    }
    memcpy(slope, derivative, sizeof *slope);
    lanes result;
    memcpy(&result, value, sizeof result);
    return result;
}

/* Samples a pass: each weight is loaded once for BLOCK samples, each gradient row loaded and
   stored once for them, and the BLOCK x h activations go through one loop (independent
   iterations hide the exp polynomial's latency). Inputs are padded to a multiple of BLOCK, so
   every member's samples are grouped alike whoever shares its group. */
enum { BLOCK = 4 };
_Static_assert(BLOCK == 4, "lane_group's sums over a block are written out for four samples");

/* Parameters of one member: first layer's weights and biases, then the output's. */
static inline int64_t parameter_count(int64_t d, int64_t h, int bias) { return h * d + h + (bias ? h + 1 : 0); }

/* Samples a pass (callers pad the inputs to a multiple of it). */
int64_t native_mlp_sample_block(void) { return BLOCK; }

/* Doubles of scratch a call needs: the group's parameters and gradients (n_params lanes
   each) and a block's activations (BLOCK x h lanes). */
int64_t native_mlp_scratch_doubles(int64_t d, int64_t h, int bias) {
    return (2 * parameter_count(d, h, bias) + BLOCK * h) * LANES;
}

/* The units' activations, one vector at a time: each lane through the same instructions
   wherever it sits (a loop over all count x LANES values could be peeled or given a scalar
   tail by the compiler, and a member's bits would depend on its lane). */
static inline void activate(lanes *z, int64_t count, int activation) {
    for (int64_t i = 0; i < count; i++) {
        double v[LANES];
        memcpy(v, z + i, sizeof v);
        if (activation == ACT_TANH) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) v[l] = 2.0 * sigmoid_vec(2.0 * v[l]) - 1.0;
        } else if (activation == ACT_RELU) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) v[l] = v[l] > 0.0 ? v[l] : 0.0;
        }
        memcpy(z + i, v, sizeof v);
    }
}

/* Members first .. first + n - 1 (n <= LANES; lanes beyond n repeat the last member and are
   dropped): losses (n) and grads (n, n_params), member m's the mean over its first sizes[m]
   samples (all P where sizes is NULL). x: (padded, d) inputs, sample-major, y: (padded,)
   labels, padded with finite values to a multiple of BLOCK samples (they weigh 0). */
static void lane_group(int64_t n, const double *theta, double *losses, double *grads, int64_t d, int64_t h,
                       int64_t P, const double *x, const double *y, const int64_t *sizes, int loss,
                       int activation, int bias, double margin, double beta, double l2, lanes *scratch) {
    const int64_t n_params = parameter_count(d, h, bias);
    lanes *params = scratch, *grad = scratch + n_params, *hidden = grad + n_params;
    const lanes *w1 = params, *b1 = params + h * d, *w2 = b1 + (bias ? h : 0), *b2 = w2 + h;
    lanes *gw1 = grad, *gb1 = grad + h * d, *gw2 = gb1 + (bias ? h : 0), *gb2 = gw2 + h;

    double column[LANES], weight[LANES];
    int64_t count[LANES], longest = 0;
    for (int l = 0; l < LANES; l++) {
        const int64_t m = l < n ? l : n - 1;
        count[l] = sizes ? sizes[m] : P;
        longest = count[l] > longest ? count[l] : longest;
        weight[l] = 1.0 / (double)count[l];
    }
    for (int64_t i = 0; i < n_params; i++) {
        for (int l = 0; l < LANES; l++) column[l] = theta[(l < n ? l : n - 1) * n_params + i];
        memcpy(params + i, column, sizeof column);
        grad[i] = broadcast(0.0);
    }

    lanes total = broadcast(0.0);
    for (int64_t s0 = 0; s0 < longest; s0 += BLOCK) {
        const double *xs[BLOCK];
        for (int b = 0; b < BLOCK; b++) xs[b] = x + (s0 + b) * d;
        for (int64_t j = 0; j < h; j++) {
            const lanes *row = w1 + j * d;
            lanes z[BLOCK];
            for (int b = 0; b < BLOCK; b++) z[b] = bias ? b1[j] : broadcast(0.0);
            for (int64_t k = 0; k < d; k++)
                for (int b = 0; b < BLOCK; b++) z[b] += row[k] * xs[b][k];
            for (int b = 0; b < BLOCK; b++) hidden[b * h + j] = z[b];
        }
        activate(hidden, BLOCK * h, activation);
        lanes delta[BLOCK];
        for (int b = 0; b < BLOCK; b++) {
            lanes out = bias ? *b2 : broadcast(0.0);
            for (int64_t j = 0; j < h; j++) out += w2[j] * hidden[b * h + j];
            lanes slope, share;
            const lanes value = sample_loss(out, y[s0 + b], loss, margin, beta, &slope);
            /* each lane's mean over its own samples: later samples weigh 0 */
            double in[LANES];
            for (int l = 0; l < LANES; l++) in[l] = s0 + b < count[l] ? weight[l] : 0.0;
            memcpy(&share, in, sizeof share);
            total += value * share;
            delta[b] = slope * share;
        }
        if (bias) *gb2 += (delta[0] + delta[1]) + (delta[2] + delta[3]);
        for (int64_t j = 0; j < h; j++) {
            lanes back[BLOCK], act[BLOCK];
            for (int b = 0; b < BLOCK; b++) {
                act[b] = hidden[b * h + j];
                back[b] = delta[b] * w2[j];
                if (activation == ACT_TANH) back[b] *= 1.0 - act[b] * act[b];
                else if (activation == ACT_RELU) back[b] *= -__builtin_convertvector(act[b] > 0.0, lanes);
            }
            gw2[j] += (delta[0] * act[0] + delta[1] * act[1]) + (delta[2] * act[2] + delta[3] * act[3]);
            if (bias) gb1[j] += (back[0] + back[1]) + (back[2] + back[3]);
            lanes *row = gw1 + j * d;
            for (int64_t k = 0; k < d; k++)
                row[k] += (back[0] * xs[0][k] + back[1] * xs[1][k]) + (back[2] * xs[2][k] + back[3] * xs[3][k]);
        }
    }
    if (l2 != 0.0) {
        lanes square = broadcast(0.0);
        for (int64_t i = 0; i < n_params; i++) {
            square += params[i] * params[i];
            grad[i] += l2 * params[i];
        }
        total += 0.5 * l2 * square;
    }
    double result[LANES];
    memcpy(result, &total, sizeof total);
    for (int64_t m = 0; m < n; m++) losses[m] = result[m];
    for (int64_t i = 0; i < n_params; i++) {
        memcpy(column, grad + i, sizeof column);
        for (int64_t m = 0; m < n; m++) grads[m * n_params + i] = column[m];
    }
}

/* Members 0 .. n_members - 1, eight at a time: losses (n_members) and grads (n_members,
   n_params), each the mean over its first sizes[m] of the P samples (all P where sizes is NULL:
   the jamming sweep's members fit nested prefixes of one pool). x, y: padded to a multiple of
   BLOCK samples (see lane_group); scratch: native_mlp_scratch_doubles(d, h, bias) doubles. */
void native_mlp_loss_and_gradient(int64_t n_members, const double *theta, double *losses, double *grads,
                                  int64_t d, int64_t h, int64_t P, const double *x, const double *y,
                                  const int64_t *sizes, int loss, int activation, int bias,
                                  double margin, double beta, double l2, double *scratch) {
    const int64_t n_params = parameter_count(d, h, bias);
    for (int64_t m = 0; m < n_members; m += LANES) {
        const int64_t n = n_members - m < LANES ? n_members - m : LANES;
        lane_group(n, theta + m * n_params, losses + m, grads + m * n_params, d, h, P, x, y,
                   sizes ? sizes + m : NULL, loss, activation, bias, margin, beta, l2, (lanes *)scratch);
    }
}
