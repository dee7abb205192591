/* Loss and gradient of every member's one-output network of one or more hidden layers, a SIMD
   register's lanes of members at a time; and the engine's gd, Adam and Dormand-Prince steps on
   them, many at a time, and the stages of a Runge-Kutta-Chebyshev step (float64's build only,
   see `real`); at the end, a Kuramoto ring's energy and gradient and its Dormand-Prince steps
   (float64), the same loop stepping it.

   The engine's objective for these networks in float64 or float32 on the CPU
   (basins.landscapes.native_mlp compiles and loads it; basins.landscapes.fused_mlp.FusedMLPObjective
   calls it): the same
   function as fused_mlp.loss_and_gradient (tests/test_native_mlp.py: equal to round-off) for
   hidden layers of equal width (one: the study's networks, a pass written for it; more: the
   jamming sweep's and the deeper experiments', layer by layer), one output, shared inputs, all
   samples or each member's own prefix of them, tanh, relu or linear units. Members run one per SIMD lane (see LANES), through the
   samples a block at a time; a group's parameters and gradients (2 x LANES x n_params reals)
   stay in cache. The transcendental functions are polynomials the compiler vectorizes (exp
   after range reduction, log on [1/2, 1] by fdlibm's reduction and polynomial) to about one
   ulp: libm's scalar calls cost more than the arithmetic. A member's result does not depend on
   which others share the call (shard invariance), nor on samples beyond its own count, which its
   lanes compute where a block or a longer member reaches them (their units are set to 0 there,
   their losses left out: forget_other_samples, block_loss); callers split members between threads. */

#include <float.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

enum { LOSS_MSE = 0, LOSS_HINGE = 1, LOSS_QUADRATIC_HINGE = 2, LOSS_CROSS_ENTROPY = 3 };
enum { ACT_TANH = 0, ACT_RELU = 1, ACT_LINEAR = 2 };

/* LANES members at a time, one per SIMD lane: every operation below is a vertical one over
   them (a vector of GCC's vector extensions, split by the compiler into what the CPU has:
   one AVX-512 or AVX2 register, or scalars), so a member's arithmetic is the same
   whichever lane it runs in and whichever members share its group (shard invariance), and no
   sum ends in a horizontal reduction or a partial vector: with one member a lane, the sums
   over samples are plain vector additions. The functions take and return whole vectors: a
   vector taken apart into an array of doubles and put back comes back through memory, two
   half-width stores and a full-width load that AVX2 CPUs cannot forward (it cost the kernel
   half its time on one). */
/* The kernel's numbers: doubles, or floats where built with -DNATIVE_FLOAT32 (and
   -fsingle-precision-constant, so that its constants are floats too: basins.landscapes.native_mlp
   builds both). The float build has the objective and gd's loop only. */
#if defined(NATIVE_FLOAT32)
typedef float real;
typedef int32_t real_bits;
#define REAL_MAGNITUDE INT32_MAX
#define REAL_LARGEST FLT_MAX
#define SQUARE_ROOT sqrtf
#else
typedef double real;
typedef int64_t real_bits;
#define REAL_MAGNITUDE INT64_MAX
#define REAL_LARGEST DBL_MAX
#define SQUARE_ROOT sqrt
#endif
/* One register of reals a vector: AVX-512's, else AVX2's (eight doubles without AVX-512 were
   two registers, and the blocks' sums spilled). */
#if defined(__AVX512F__)
enum { VECTOR_BYTES = 64 };
#else
enum { VECTOR_BYTES = 32 };
#endif
enum { LANES = VECTOR_BYTES / sizeof(real) };
typedef real lanes __attribute__((vector_size(VECTOR_BYTES), aligned(sizeof(real))));
/* The lanes' bits, and the masks comparisons of lanes give (all ones where true). */
typedef real_bits lane_bits __attribute__((vector_size(VECTOR_BYTES), aligned(sizeof(real))));

static inline lanes broadcast(real value) { return (lanes){0} + value; }

/* yes where mask is set, else no: `mask ? yes : no` lane by lane. */
static inline lanes select(lane_bits mask, lanes yes, lanes no) {
    return (lanes)((mask & (lane_bits)yes) | (~mask & (lane_bits)no));
}

/* max(v, 0), NaN where v is NaN (as torch's relu: a NaN parameter must give a NaN loss, which the
   stopping test calls diverged, not a finite one). */
static inline lanes positive_part(lanes v) { return select((v > 0.0) | (v != v), v, broadcast(0.0)); }

static inline lanes absolute(lanes v) { return (lanes)((lane_bits)v & REAL_MAGNITUDE); }

static inline lanes larger(lanes a, lanes b) { return select(a > b, a, b); }

/* exp(x), clamped to [-708, 709] (exp(-708) ~ 3e-308, exp(709) ~ 8e307: the sigmoid and the
   losses only need it to saturate there; floats: [-87, 88]). Range reduction x = k ln 2 + r,
   |r| <= ln 2 / 2, k rounded by the 1.5 * 2^52 shift (1.5 * 2^23 for floats: k lands in the low
   mantissa bits, 2^k is built from them); the Taylor polynomial of degree 13 (truncation < 5e-18
   relative; degree 7 for floats, < 8e-9) in Estrin's scheme. No branches or libm calls (1 ns a
   value against libm's 5-7, within 4.3e-16 relative of it). */
static inline lanes exp_lanes(lanes x) {
#if defined(NATIVE_FLOAT32)
    const real lowest = -87.0, highest = 88.0, shift = 0x1.8p23, ln2_hi = 0x1.62e4p-1, ln2_lo = 0x1.7f7d1cp-20;
    const int bias = 127, mantissa = 23;
#else
    const real lowest = -708.0, highest = 709.0, shift = 0x1.8p52, ln2_hi = 6.93147180369123816490e-01,
               ln2_lo = 1.90821492927058770002e-10;
    const int bias = 1023, mantissa = 52;
#endif
    const real log2e = 1.4426950408889634;
    x = select(x < lowest, broadcast(lowest), x);
    x = select(x > highest, broadcast(highest), x);
    const lanes shifted = x * log2e + shift; /* k in the low mantissa bits */
    const lanes k = shifted - shift;
    const lanes r = (x - k * ln2_hi) - k * ln2_lo;
    const lanes r2 = r * r, r4 = r2 * r2;
    const lanes c01 = 1.0 + r, c23 = 0.5 + r * (1.0 / 6.0), c45 = 1.0 / 24.0 + r * (1.0 / 120.0),
                c67 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    const lanes c03 = c01 + r2 * c23, c47 = c45 + r2 * c67;
#if defined(NATIVE_FLOAT32)
    const lanes p = c03 + r4 * c47;
#else
    const lanes r8 = r4 * r4;
    const lanes c89 = 1.0 / 40320.0 + r * (1.0 / 362880.0), c1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0),
                c1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    const lanes c811 = c89 + r2 * c1011;
    const lanes p = (c03 + r4 * c47) + r8 * (c811 + r4 * c1213);
#endif
    const lanes scale = (lanes)(((lane_bits)shifted + bias) << mantissa);
    return p * scale;
}

/* log(v) for v in [1/2, 1] (about one ulp): v = 2^k (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)]
   (k = -1 below sqrt(1/2), else 0; both exact), log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| <=
   0.1716, as f - f^2 / 2 + s (f^2 / 2 + R(s^2)) with R the minimax polynomial of degree 7 in
   s^2 of fdlibm's log (error < 2^-58.45). The plain atanh series on [1/2, 1] needed 17 terms
   (|s| <= 1/3) in one serial chain: 18 % of the study's networks' evaluation (session 45). */
static inline lanes log_half_to_one(lanes v) {
    const real ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const lane_bits low = v < 0.70710678118654752440;
    const lanes k = select(low, broadcast(-1.0), broadcast(0.0));
    const lanes f = select(low, v + v, v) - 1.0;
    const lanes s = f / (2.0 + f), z = s * s, w = z * z;
    const lanes even = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    const lanes odd = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                                                          + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    const lanes half_square = 0.5 * f * f;
    return k * ln2_hi - ((half_square - (s * (half_square + (odd + even)) + k * ln2_lo)) - f);
}

static inline lanes sigmoid_lanes(lanes z) { return 1.0 / (1.0 + exp_lanes(-z)); }

/* The loss of one sample in every lane and, in *slope, its derivative in the output. Where
   with_loss is 0 the cross-entropy's loss is replaced by its lower bound relu(z) / beta (the log
   it skips took 14 % of a gd step at the study's networks): an evaluation's total is then
   at most its loss, not finite exactly where the loss is not, and, where beta is not tiny
   (bounding), finite below a quarter of the largest real only where the loss is finite (a
   sample's loss and bound differ by at most log 2 / beta), so the stopping test decides
   divergence on it (see exact_losses). */
static inline lanes sample_loss(lanes out, real label, int loss, real margin, real beta, int with_loss,
                                lanes *slope) {
    if (loss == LOSS_MSE) {
        const lanes r = out - label;
        *slope = r;
        return 0.5 * r * r;
    }
    if (loss == LOSS_CROSS_ENTROPY) {
        /* softplus(z) / beta with z = -beta y f; d / d f = -y sigmoid(z). softplus(z) =
           relu(z) - log sigmoid(|z|), and sigmoid(|z|) = max(s, 1 - s) lies in [1/2, 1]. */
        const lanes z = -beta * label * out, sg = sigmoid_lanes(z);
        *slope = -label * sg;
        const lanes softplus = with_loss ? positive_part(z) - log_half_to_one(larger(sg, 1.0 - sg)) : positive_part(z);
        return beta == 1.0 ? softplus : softplus / beta; /* the same bits, without a division at beta 1 */
    }
    const lanes shortfall = margin - label * out, active = positive_part(shortfall);
    if (loss == LOSS_HINGE) {
        *slope = select(shortfall > 0.0, broadcast(-label), broadcast(0.0));
        return active;
    }
    *slope = -label * active; /* quadratic hinge */
    return 0.5 * active * active;
}

/* A unit's activation. */
static inline lanes activate(lanes z, int activation) {
    if (activation == ACT_TANH) return 2.0 * sigmoid_lanes(2.0 * z) - 1.0;
    if (activation == ACT_RELU) return positive_part(z);
    return z;
}

/* Samples a pass: each weight is loaded once for BLOCK samples, each gradient row loaded and
   stored once for them, and the BLOCK x h activations go through one loop (independent
   iterations hide the exp polynomial's latency). Inputs are padded to a multiple of BLOCK, so
   every member's samples are grouped alike whoever shares its group. */
enum { BLOCK = 4 };
_Static_assert(BLOCK == 4, "evaluate's sums over a block are written out for four samples");

/* Parameters of `depth` hidden layers of h units on d inputs and one output, with biases or
   without, in basins.landscapes.architecture's order: each layer's (fan_out, fan_in) weights,
   then its biases. */
static inline int64_t parameter_count(int64_t d, int64_t h, int64_t depth, int bias) {
    return h * d + (depth - 1) * h * h + h + (bias ? depth * h + 1 : 0);
}

/* Activation lanes a block needs: one layer's (one hidden layer), else every layer's and two
   layers' backward deltas. */
static inline int64_t activation_lanes(int64_t h, int64_t depth) { return BLOCK * h * (depth == 1 ? 1 : depth + 2); }

/* An evaluation sums its samples in SAMPLE_PARTS parts of whole blocks, fixed by P alone
   (part_start), each part summed on its own and the parts then added in order, so that the
   threads of a team (below) can share one group of lanes, a part each, with the bits of one
   thread computing every part. float32: two (a group is sixteen members with AVX-512, so a call
   of up to sixteen members had one thread's work; and a float sum of a thousand samples rounds
   less in two halves); float64: one, the study's sums as they were (its groups are eight
   members, so two threads share sixteen members already). */
#if defined(NATIVE_FLOAT32)
enum { SAMPLE_PARTS = 2 };
#else
enum { SAMPLE_PARTS = 1 };
#endif

int64_t native_mlp_sample_parts(void) { return SAMPLE_PARTS; }

/* Lanes of the slots an evaluation's parts go through (see team), none where the samples are
   one part: two sets of SAMPLE_PARTS x (n_params + 2). */
static inline int64_t slot_lanes(int64_t n_params) { return SAMPLE_PARTS == 1 ? 0 : 2 * SAMPLE_PARTS * (n_params + 2); }

/* Threads that share one group of lanes in a window (a team of `size`; one thread alone is a
   team of one): every thread runs the whole window on its own copy of the group, and of each
   evaluation computes the parts index, index + size, ... into the shared slots (a part's
   gradient, loss and shortfall: n_params + 2 lanes), waits for the others at the barrier, then
   adds every part in order, so that all of them hold the same bits and take the same decisions.
   Only the first (index 0) writes the members' outputs. The slots are two sets, evaluations
   taking them in turn: a thread one evaluation ahead writes the other set, and cannot be two
   ahead (the barrier between). barrier: two shared counters (arrivals, then the generation),
   zero before the window. */
typedef struct {
    int64_t index, size;
    int64_t *barrier;
    lanes *slots;
    int64_t evaluations;
} team;

/* A team of one, its slots in the caller's scratch. */
static team alone(lanes *slots) { return (team){.index = 0, .size = 1, .barrier = NULL, .slots = slots}; }

/* Every thread of the team has arrived (a generation barrier: the last to arrive resets the
   count, then moves the generation on; the others spin on it, yielding the core after a while,
   so that a descheduled partner costs time, never a hang). */
static void team_wait(const team *t) {
    if (t->size == 1) return;
    int64_t *arrived = t->barrier, *generation = t->barrier + 1;
    const int64_t now = __atomic_load_n(generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL) == t->size) {
        __atomic_store_n(arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(generation, now + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int64_t spins = 0; __atomic_load_n(generation, __ATOMIC_ACQUIRE) == now; spins++) {
        if (spins >= 4096) {
            sched_yield();
            continue;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/* Samples a pass (callers pad the inputs to a multiple of it). */
int64_t native_mlp_sample_block(void) { return BLOCK; }

/* Members a group computes together, one a lane (callers split members between threads by whole
   groups: a thread with a part of a group computes the whole group). */
int64_t native_mlp_lanes(void) { return LANES; }

/* Reals of scratch a call needs: the group's parameters and gradients (n_params lanes
   each), a block's activations (BLOCK x h lanes) and the sample parts' slots (a team of one). */
int64_t native_mlp_scratch_size(int64_t d, int64_t h, int64_t depth, int bias) {
    const int64_t n_params = parameter_count(d, h, depth, bias);
    return (2 * n_params + activation_lanes(h, depth) + slot_lanes(n_params)) * LANES;
}

/* A network and its data as every entry point takes them (see native_mlp_loss_and_gradient);
   with_loss 0: an evaluation wants the gradient, and of the cross-entropy's loss a lower bound
   alone (see sample_loss). */
typedef struct {
    int64_t d, h, depth, P, n_params;
    const real *x, *y;
    int loss, activation, bias, with_loss;
    real margin, beta, l2;
} network;

/* Each lane's samples: its count, the weight 1 / count of each, and the longest and shortest
   counts. */
typedef struct {
    lane_bits count;
    lanes weight;
    int64_t longest, shortest;
} lane_samples;

static lane_samples all_samples(int64_t P) {
    return (lane_samples){.count = (lane_bits){0} + (real_bits)P, .weight = broadcast((real)1.0 / (real)P),
                          .longest = P, .shortest = P};
}

/* The longest and shortest of the lanes' counts. */
static void count_extremes(lane_samples *samples) {
    samples->longest = samples->shortest = samples->count[0];
    for (int l = 1; l < LANES; l++) {
        samples->longest = samples->count[l] > samples->longest ? samples->count[l] : samples->longest;
        samples->shortest = samples->count[l] < samples->shortest ? samples->count[l] : samples->shortest;
    }
}

/* The samples of the lanes of members m .. m + n - 1: all P where sizes is NULL, else each its
   member's first sizes[member] (lanes beyond n repeat the last member's). */
static lane_samples samples_of(const int64_t *sizes, int64_t m, int64_t n, int64_t P) {
    lane_samples samples = all_samples(P);
    if (!sizes) return samples;
    for (int l = 0; l < LANES; l++) {
        const int64_t count = sizes[m + (l < n ? l : n - 1)];
        samples.count[l] = count;
        samples.weight[l] = (real)1.0 / (real)count;
    }
    count_extremes(&samples);
    return samples;
}

/* Rows first .. first + n - 1 of a (rows, width) array as width lanes (lanes beyond n repeat
   the last row, so every lane computes finite, discarded values), and back. */
static void gather(int64_t n, const real *rows, int64_t width, lanes *out) {
    real column[LANES];
    for (int64_t i = 0; i < width; i++) {
        for (int l = 0; l < LANES; l++) column[l] = rows[(l < n ? l : n - 1) * width + i];
        memcpy(out + i, column, sizeof column);
    }
}

static void scatter(int64_t n, const lanes *in, int64_t width, real *rows) {
    real column[LANES];
    for (int64_t i = 0; i < width; i++) {
        memcpy(column, in + i, sizeof column);
        for (int64_t m = 0; m < n; m++) rows[m * width + i] = column[m];
    }
}

/* One member's row of width reals into lane l of width lanes, and back. */
static void load_lane(int l, const real *row, int64_t width, lanes *out) {
    for (int64_t i = 0; i < width; i++) out[i][l] = row[i];
}

static void store_lane(int l, const lanes *in, int64_t width, real *row) {
    for (int64_t i = 0; i < width; i++) row[i] = in[i][l];
}

/* Lane l's samples: its member's first count (samples_of's, lane by lane). */
static void set_lane_samples(lane_samples *samples, int l, int64_t count) {
    samples->count[l] = count;
    samples->weight[l] = (real)1.0 / (real)count;
    count_extremes(samples);
}

/* The slope of a unit's activation, from its value act. */
static inline lanes activation_slope(lanes act, int activation) {
    if (activation == ACT_TANH) return 1.0 - act * act;
    if (activation == ACT_RELU) return -__builtin_convertvector(act > 0.0, lanes);
    return broadcast(1.0);
}

/* Whether sample s is one of each lane's own (all ones where it is). */
static inline lane_bits own_sample(const lane_samples *samples, int64_t s) { return (real_bits)s < samples->count; }

/* A block's units (BLOCK x h lanes, sample-major) set to 0 on the samples that are not their
   lane's own, where the block reaches past some lane's count: what a sample beyond a member's
   own computes (an input far out can overflow there) must not reach its sums, not even as 0 x inf. */
static inline void forget_other_samples(const lane_samples *samples, int64_t s0, int64_t h, lanes *units) {
    if (s0 + BLOCK <= samples->shortest) return;
    for (int b = 0; b < BLOCK; b++) {
        const lane_bits own = own_sample(samples, s0 + b);
        for (int64_t j = 0; j < h; j++) units[b * h + j] = select(own, units[b * h + j], broadcast(0.0));
    }
}

/* The block of samples s0 .. s0 + BLOCK - 1 at outputs out: total plus the lanes' loss over
   them, added sample by sample (each sample weighing its lane's 1 / count; a lane's later
   samples left out: each lane's mean over its own samples), and in delta the loss's derivative
   in each output (0 on the samples left out). Where shortfall is given, each lane's largest
   margin - y f over its own samples so far. */
static inline lanes block_loss(const network *net, const lanes *out, int64_t s0, const lane_samples *samples,
                               lanes total, lanes *delta, lanes *shortfall) {
    for (int b = 0; b < BLOCK; b++) {
        lanes slope;
        const real label = net->y[s0 + b];
        const lanes value = sample_loss(out[b], label, net->loss, net->margin, net->beta, net->with_loss, &slope);
        const lane_bits own = own_sample(samples, s0 + b);
        total = select(own, total + value * samples->weight, total);
        delta[b] = select(own, slope * samples->weight, broadcast(0.0));
        if (shortfall) *shortfall = select(own, larger(net->margin - label * out[b], *shortfall), *shortfall);
    }
    return total;
}

/* l2 / 2 |params|^2 added to the loss (returned) and its gradient to grad. */
static lanes weight_decay(const network *net, const lanes *params, lanes *grad, lanes total) {
    if (net->l2 == 0.0) return total;
    lanes square = broadcast(0.0);
    for (int64_t i = 0; i < net->n_params; i++) {
        square += params[i] * params[i];
        grad[i] += net->l2 * params[i];
    }
    return total + 0.5 * net->l2 * square;
}

/* Loss (returned) and gradient (added to grad) of a network of one hidden layer over the samples
   begin .. end - 1 (whole blocks; see evaluate_part). hidden: BLOCK x h lanes. */
static lanes evaluate_one_layer(const network *net, const lanes *params, lanes *grad, lanes *hidden,
                                const lane_samples *samples, int64_t begin, int64_t end, lanes *shortfall) {
    const int64_t d = net->d, h = net->h;
    const int bias = net->bias, activation = net->activation;
    const lanes *w1 = params, *b1 = params + h * d, *w2 = b1 + (bias ? h : 0), *b2 = w2 + h;
    lanes *gw1 = grad, *gb1 = grad + h * d, *gw2 = gb1 + (bias ? h : 0), *gb2 = gw2 + h;

    lanes total = broadcast(0.0);
    for (int64_t s0 = begin; s0 < end; s0 += BLOCK) {
        const real *xs[BLOCK];
        for (int b = 0; b < BLOCK; b++) xs[b] = net->x + (s0 + b) * d;
        /* the block's pre-activations, then all its activations in one loop (independent
           exponentials and divisions, which the core overlaps), then the outputs */
        for (int64_t j = 0; j < h; j++) {
            const lanes *row = w1 + j * d;
            lanes z[BLOCK];
            for (int b = 0; b < BLOCK; b++) z[b] = bias ? b1[j] : broadcast(0.0);
            for (int64_t k = 0; k < d; k++)
                for (int b = 0; b < BLOCK; b++) z[b] += row[k] * xs[b][k];
            for (int b = 0; b < BLOCK; b++) hidden[b * h + j] = z[b];
        }
        for (int64_t i = 0; i < BLOCK * h; i++) hidden[i] = activate(hidden[i], activation);
        forget_other_samples(samples, s0, h, hidden);
        lanes out[BLOCK];
        for (int b = 0; b < BLOCK; b++) out[b] = bias ? *b2 : broadcast(0.0);
        for (int64_t j = 0; j < h; j++)
            for (int b = 0; b < BLOCK; b++) out[b] += w2[j] * hidden[b * h + j];
        lanes delta[BLOCK];
        total = block_loss(net, out, s0, samples, total, delta, shortfall);
        if (bias) *gb2 += (delta[0] + delta[1]) + (delta[2] + delta[3]);
        for (int64_t j = 0; j < h; j++) {
            lanes back[BLOCK], act[BLOCK];
            for (int b = 0; b < BLOCK; b++) {
                act[b] = hidden[b * h + j];
                back[b] = delta[b] * w2[j];
                if (activation != ACT_LINEAR) back[b] *= activation_slope(act[b], activation);
            }
            gw2[j] += (delta[0] * act[0] + delta[1] * act[1]) + (delta[2] * act[2] + delta[3] * act[3]);
            if (bias) gb1[j] += (back[0] + back[1]) + (back[2] + back[3]);
            lanes *row = gw1 + j * d;
            for (int64_t k = 0; k < d; k++)
                row[k] += (back[0] * xs[0][k] + back[1] * xs[1][k]) + (back[2] * xs[2][k] + back[3] * xs[3][k]);
        }
    }
    return total;
}

/* Where layer `layer` (0 .. depth; depth is the output) starts in the parameters: its weights,
   then its biases. */
static inline int64_t layer_offset(const network *net, int64_t layer) {
    if (layer == 0) return 0;
    const int64_t bias = net->bias ? net->h : 0;
    return net->h * net->d + bias + (layer - 1) * (net->h * net->h + bias);
}

/* units[b * h + j] = act(bias_j + sum_k weights[j, k] source[b * h + k]) for a block: one
   hidden layer after the first, from the one below (h x h weights). */
static void layer_forward(const lanes *weights, const lanes *biases, const lanes *source, int64_t h, int activation,
                          lanes *units) {
    for (int64_t j = 0; j < h; j++) {
        const lanes *row = weights + j * h;
        lanes z[BLOCK];
        for (int b = 0; b < BLOCK; b++) z[b] = biases ? biases[j] : broadcast(0.0);
        for (int64_t k = 0; k < h; k++)
            for (int b = 0; b < BLOCK; b++) z[b] += row[k] * source[b * h + k];
        for (int b = 0; b < BLOCK; b++) units[b * h + j] = activate(z[b], activation);
    }
}

/* Loss and gradient of a network of depth >= 2 hidden layers of h units (see evaluate), the
   same passes layer by layer: work holds every layer's activations of a block (depth x BLOCK x
   h lanes) and two layers' backward deltas (BLOCK x h each). */
static lanes evaluate_layers(const network *net, const lanes *params, lanes *grad, lanes *work,
                             const lane_samples *samples, int64_t begin, int64_t end, lanes *shortfall) {
    const int64_t d = net->d, h = net->h, depth = net->depth, layer_lanes = BLOCK * h;
    const int bias = net->bias, activation = net->activation;
    lanes *back = work + depth * layer_lanes, *below = back + layer_lanes;
    const lanes *w_out = params + layer_offset(net, depth), *last = work + (depth - 1) * layer_lanes;
    lanes *gw_out = grad + layer_offset(net, depth);

    lanes total = broadcast(0.0);
    for (int64_t s0 = begin; s0 < end; s0 += BLOCK) {
        const real *xs[BLOCK];
        for (int b = 0; b < BLOCK; b++) xs[b] = net->x + (s0 + b) * d;
        /* the first layer, from the shared inputs */
        for (int64_t j = 0; j < h; j++) {
            const lanes *row = params + j * d;
            lanes z[BLOCK];
            for (int b = 0; b < BLOCK; b++) z[b] = bias ? params[h * d + j] : broadcast(0.0);
            for (int64_t k = 0; k < d; k++)
                for (int b = 0; b < BLOCK; b++) z[b] += row[k] * xs[b][k];
            for (int b = 0; b < BLOCK; b++) work[b * h + j] = activate(z[b], activation);
        }
        forget_other_samples(samples, s0, h, work);
        for (int64_t layer = 1; layer < depth; layer++) {
            const lanes *weights = params + layer_offset(net, layer);
            layer_forward(weights, bias ? weights + h * h : NULL, work + (layer - 1) * layer_lanes, h, activation,
                          work + layer * layer_lanes);
        }
        lanes out[BLOCK], delta[BLOCK];
        for (int b = 0; b < BLOCK; b++) {
            out[b] = bias ? w_out[h] : broadcast(0.0);
            for (int64_t j = 0; j < h; j++) out[b] += w_out[j] * last[b * h + j];
        }
        total = block_loss(net, out, s0, samples, total, delta, shortfall);
        /* the output layer's gradient, and the last hidden layer's deltas */
        if (bias) gw_out[h] += (delta[0] + delta[1]) + (delta[2] + delta[3]);
        for (int64_t j = 0; j < h; j++) {
            const lanes *act = last + j;
            gw_out[j] += (delta[0] * act[0] + delta[1] * act[h]) + (delta[2] * act[2 * h] + delta[3] * act[3 * h]);
            for (int b = 0; b < BLOCK; b++) back[b * h + j] = delta[b] * w_out[j] * activation_slope(act[b * h], activation);
        }
        /* hidden layers depth - 1 .. 1: their weights' gradient, then the deltas of the layer below */
        for (int64_t layer = depth - 1; layer >= 1; layer--) {
            const lanes *weights = params + layer_offset(net, layer), *source = work + (layer - 1) * layer_lanes;
            lanes *g_weights = grad + layer_offset(net, layer);
            for (int64_t j = 0; j < h; j++) {
                const lanes *delta_j = back + j;
                if (bias) g_weights[h * h + j] += (delta_j[0] + delta_j[h]) + (delta_j[2 * h] + delta_j[3 * h]);
                for (int64_t k = 0; k < h; k++)
                    g_weights[j * h + k] += (delta_j[0] * source[k] + delta_j[h] * source[h + k])
                                            + (delta_j[2 * h] * source[2 * h + k] + delta_j[3 * h] * source[3 * h + k]);
            }
            for (int b = 0; b < BLOCK; b++)
                for (int64_t k = 0; k < h; k++) {
                    lanes sum = broadcast(0.0);
                    for (int64_t j = 0; j < h; j++) sum += back[b * h + j] * weights[j * h + k];
                    below[b * h + k] = sum * activation_slope(source[b * h + k], activation);
                }
            lanes *swap = back;
            back = below;
            below = swap;
        }
        /* the first layer's gradient, from the shared inputs */
        for (int64_t j = 0; j < h; j++) {
            const lanes *delta_j = back + j;
            if (bias) grad[h * d + j] += (delta_j[0] + delta_j[h]) + (delta_j[2 * h] + delta_j[3 * h]);
            lanes *row = grad + j * d;
            for (int64_t k = 0; k < d; k++)
                row[k] += (delta_j[0] * xs[0][k] + delta_j[h] * xs[1][k])
                          + (delta_j[2 * h] * xs[2][k] + delta_j[3 * h] * xs[3][k]);
        }
    }
    return total;
}

/* Where part `part` of the samples starts (SAMPLE_PARTS parts of whole blocks; part SAMPLE_PARTS: the end). */
static inline int64_t part_start(const network *net, int64_t part) {
    const int64_t blocks = (net->P + BLOCK - 1) / BLOCK;
    return BLOCK * (blocks * part / SAMPLE_PARTS);
}

/* Part `part` of every lane's loss (returned, without weight decay) and gradient (grad) at params:
   its samples' sum, each weighing its lane's 1 / count (samples beyond a lane's own count weigh
   0); where shortfall is given, each lane's largest margin - y f over them. */
static lanes evaluate_part(const network *net, const lanes *params, lanes *grad, lanes *work,
                           const lane_samples *samples, int64_t part, lanes *shortfall) {
    const int64_t begin = part_start(net, part), stop = part_start(net, part + 1);
    const int64_t end = stop < samples->longest ? stop : samples->longest;
    for (int64_t i = 0; i < net->n_params; i++) grad[i] = broadcast(0.0);
    if (shortfall) *shortfall = broadcast(-INFINITY);
    return net->depth == 1 ? evaluate_one_layer(net, params, grad, work, samples, begin, end, shortfall)
                           : evaluate_layers(net, params, grad, work, samples, begin, end, shortfall);
}

/* Every lane's loss (returned) and gradient (grad, n_params lanes) at params: the mean over
   each lane's own samples of the sample loss, plus l2 / 2 |params|^2; where shortfall is given,
   each lane's largest margin - y f over its own samples (the jamming sweep's satisfied test).
   work: activation_lanes(h, depth) lanes; t: the team computing it (its parts through the
   slots; unused where the samples are one part). */
static lanes evaluate(const network *net, const lanes *params, lanes *grad, lanes *work, const lane_samples *samples,
                      lanes *shortfall, team *t) {
    if (SAMPLE_PARTS == 1)
        return weight_decay(net, params, grad, evaluate_part(net, params, grad, work, samples, 0, shortfall));
    const int64_t n_params = net->n_params, stride = n_params + 2;
    lanes *slots = t->slots + (t->evaluations++ % 2) * SAMPLE_PARTS * stride;
    for (int64_t part = t->index; part < SAMPLE_PARTS; part += t->size) {
        lanes *slot = slots + part * stride;
        slot[n_params] = evaluate_part(net, params, slot, work, samples, part, shortfall ? slot + n_params + 1 : NULL);
    }
    team_wait(t);
    lanes total = slots[n_params];
    for (int64_t i = 0; i < n_params; i++) grad[i] = slots[i];
    if (shortfall) *shortfall = slots[n_params + 1];
    for (int64_t part = 1; part < SAMPLE_PARTS; part++) {
        const lanes *slot = slots + part * stride;
        total += slot[n_params];
        for (int64_t i = 0; i < n_params; i++) grad[i] += slot[i];
        if (shortfall) *shortfall = larger(slot[n_params + 1], *shortfall);
    }
    return weight_decay(net, params, grad, total);
}

static network network_of(int64_t d, int64_t h, int64_t depth, int64_t P, const real *x, const real *y,
                          int loss, int activation, int bias, double margin, double beta, double l2) {
    return (network){.d = d, .h = h, .depth = depth, .P = P, .n_params = parameter_count(d, h, depth, bias),
                     .x = x, .y = y,
                     .loss = loss, .activation = activation, .bias = bias, .with_loss = 1, .margin = (real)margin,
                     .beta = (real)beta, .l2 = (real)l2};
}

/* Members 0 .. n_members - 1, LANES at a time: losses (n_members) and grads (n_members,
   n_params), each the mean over its first sizes[m] of the P samples (all P where sizes is NULL:
   the jamming sweep's members fit nested prefixes of one pool). x: (padded, d) inputs,
   sample-major, y: (padded,) labels, padded with finite values to a multiple of BLOCK samples
   (they weigh 0); scratch: native_mlp_scratch_size(d, h, depth, bias) reals. */
void native_mlp_loss_and_gradient(int64_t n_members, const real *theta, real *losses, real *grads,
                                  int64_t d, int64_t h, int64_t depth, int64_t P, const real *x, const real *y,
                                  const int64_t *sizes, int loss, int activation, int bias,
                                  double margin, double beta, double l2, real *scratch) {
    const network net = network_of(d, h, depth, P, x, y, loss, activation, bias, margin, beta, l2);
    lanes *params = (lanes *)scratch, *grad = params + net.n_params, *hidden = grad + net.n_params;
    team solo = alone(hidden + activation_lanes(h, depth));
    for (int64_t m = 0; m < n_members; m += LANES) {
        const int64_t n = n_members - m < LANES ? n_members - m : LANES;
        const lane_samples samples = samples_of(sizes, m, n, P);
        gather(n, theta + m * net.n_params, net.n_params, params);
        const lanes total = evaluate(&net, params, grad, hidden, &samples, NULL, &solo);
        scatter(n, &total, 1, losses + m);
        scatter(n, grad, net.n_params, grads + m * net.n_params);
    }
}

/* ---- Steps in C: the engine's windows (basins.engine.windows) for gd and gradient flow ----

   A window runs n_steps steps of the engine's loop for each member, with the loop's stopping
   test before every step as a mask (basins.engine.descent._classify): a member that stops keeps
   its point, loss, gradient and state, and its status, step and gradient norm are written out.
   Each member's arithmetic is its own lane's (shard invariance); a group of LANES leaves the
   window early once all of its members have stopped. The arithmetic mirrors the torch steppers
   (GradientDescent, GradientFlow in basins.engine.dynamics): gd's bit for bit (its update
   rounded as torch rounds it, below), the flow's to round-off (its exp, log and sums round in
   their last bits otherwise than torch's, and the step-size control passes those bits on);
   tests/test_native_steps.py compares them member by member. The stopping test's gradient norm
   sums its squares in another order than torch's norm (round-off in the recorded norm). */

/* Status codes of basins.labels. */
enum { RUNNING = -1, CONVERGED = 0, BUDGET = 1, DIVERGED = 2 };

/* The stopping test of basins.engine.descent._classify for every lane: diverged (loss or
   gradient norm not finite, or a parameter beyond divergence_threshold) before converged
   (gradient norm at most grad_tol, or met[l] where met is given: the satisfied test) before
   budget spent (over[l]). */
static void classify(const lanes *params, lanes loss, const lanes *grad, int64_t n_params, double grad_tol,
                     double divergence_threshold, const int *over, const int *met, int *status, real *norm) {
    lanes squares = broadcast(0.0), largest = broadcast(0.0);
    for (int64_t i = 0; i < n_params; i++) {
        squares += grad[i] * grad[i];
        largest = larger(absolute(params[i]), largest);
    }
    for (int l = 0; l < LANES; l++) {
        norm[l] = SQUARE_ROOT(squares[l]);
        const int bad = !isfinite(loss[l]) || !isfinite(norm[l]) || largest[l] > (real)divergence_threshold;
        const int good = norm[l] <= (real)grad_tol || (met && met[l]);
        status[l] = bad ? DIVERGED : good ? CONVERGED : over[l] ? BUDGET : RUNNING;
    }
}

/* A window's members pass through the lanes as a queue: a lane whose member stops, or has run
   the window's steps, takes the next member waiting, so that the lanes stay busy until the
   last members. (A group of eight fixed members ran until its slowest stopped: 1.65x the steps
   its members needed in the N = 41 network's ensemble of the default study.) A member's
   arithmetic is the same in any lane beside any others (see LANES), so its result is the same
   bits whichever lane takes it when. */
typedef struct {
    int64_t member[LANES]; /* each lane's member; lanes that have held none hold member 0's copy */
    int64_t taken[LANES];  /* steps the lane's member has run in this window */
    int running[LANES];
    int64_t next, n_members, n_steps;
} lane_queue;

/* The queue of members 0 .. n_members - 1 for a window of n_steps steps (none wait where it has no step). */
static lane_queue queue_of(int64_t n_members, int64_t n_steps) {
    lane_queue q = {.next = n_steps > 0 ? 0 : n_members, .n_members = n_members, .n_steps = n_steps};
    for (int l = 0; l < LANES; l++) {
        q.member[l] = 0;
        q.taken[l] = 0;
        q.running[l] = 0;
    }
    return q;
}

static int lanes_running(const lane_queue *q) {
    int count = 0;
    for (int l = 0; l < LANES; l++) count += q->running[l];
    return count;
}

/* Lanes that run no member take the next waiting (loaded[l] set: the caller loads the member's
   rows into them); returns how many lanes run. */
static int take_waiting(lane_queue *q, int *loaded) {
    for (int l = 0; l < LANES; l++) {
        loaded[l] = !q->running[l] && q->next < q->n_members;
        if (loaded[l]) {
            q->member[l] = q->next++;
            q->taken[l] = 0;
            q->running[l] = 1;
        }
    }
    return lanes_running(q);
}

/* The running lanes that stop (status >= 0) are recorded at their members (the step: the
   window's first_step plus the steps the member took in it; status_out NULL: not written, a
   team's other threads) and leave (left[l] set: the caller stores the lane's rows); returns how
   many left. */
static int record_stops(lane_queue *q, const int *status, const real *norm, int64_t first_step, int64_t *status_out,
                        int64_t *step_out, real *norm_out, int *left) {
    int count = 0;
    for (int l = 0; l < LANES; l++) {
        left[l] = q->running[l] && status[l] >= 0;
        if (!left[l]) continue;
        const int64_t member = q->member[l];
        if (status_out) {
            status_out[member] = status[l];
            step_out[member] = first_step + q->taken[l];
            norm_out[member] = norm[l];
        }
        q->running[l] = 0;
        count++;
    }
    return count;
}

/* A step done: each running lane's member counts it (in steps, its step count; NULL: not
   written), and those that have run the window's steps leave (left[l]), still running,
   unclassified at the window's end as the window's caller expects. */
static void count_step(lane_queue *q, int64_t *steps, int *left) {
    for (int l = 0; l < LANES; l++) {
        left[l] = 0;
        if (!q->running[l]) continue;
        if (steps) steps[q->member[l]] += 1;
        if (++q->taken[l] == q->n_steps) {
            q->running[l] = 0;
            left[l] = 1;
        }
    }
}

/* The mask of the lanes whose flag is set. */
static inline lane_bits mask_of(const int *flags) {
    lane_bits mask;
    for (int l = 0; l < LANES; l++) mask[l] = flags[l] ? -1 : 0;
    return mask;
}

static int any_lane(const int *flags) {
    int any = 0;
    for (int l = 0; l < LANES; l++) any |= flags[l];
    return any;
}

static int any_set(lane_bits mask) {
    int any = 0;
    for (int l = 0; l < LANES; l++) any |= mask[l] != 0;
    return any;
}

/* Reals of scratch a window needs: the point, a trial point and seven gradients (the
   Dormand-Prince stages; gd uses one), n_params lanes each, a block's activations and the
   sample parts' slots (a team of one). */
int64_t native_mlp_steps_scratch_size(int64_t d, int64_t h, int64_t depth, int bias) {
    const int64_t n_params = parameter_count(d, h, depth, bias);
    return (9 * n_params + activation_lanes(h, depth) + slot_lanes(n_params)) * LANES;
}

/* The satisfied test of the jamming sweep (basins.jamming.PrefixSatisfied) where delta_tol is
   not NaN: every one of a lane's own samples has margin - y f <= delta_tol, from the largest
   shortfall evaluate found (met[l]); NULL where there is no such test. */
static const int *satisfied(double delta_tol, lanes shortfall, int *met) {
    if (isnan(delta_tol)) return NULL;
    for (int l = 0; l < LANES; l++) met[l] = shortfall[l] <= (real)delta_tol;
    return met;
}

/* shortfall with the lanes just loaded (loaded[l]) given their members' largest shortfall at
   params, where the satisfied test applies (one evaluation of the group; its loss and gradient
   go to spare, n_params lanes); as it was where none was loaded or there is no such test. */
static lanes with_fresh_shortfalls(const network *net, const lanes *params, lanes *spare, lanes *hidden,
                                   const lane_samples *samples, double delta_tol, const int *loaded, lanes shortfall,
                                   team *t) {
    if (isnan(delta_tol) || !any_lane(loaded)) return shortfall;
    lanes fresh = broadcast(INFINITY);
    evaluate(net, params, spare, hidden, samples, &fresh, t);
    for (int l = 0; l < LANES; l++) shortfall[l] = loaded[l] ? fresh[l] : shortfall[l];
    return shortfall;
}

/* gd's and Adam's windows step the cross-entropy with its loss's lower bound (sample_loss,
   with_loss 0): their steps need the gradient, and of the loss only the stopping test's
   divergence (not finite), which the bound decides where it is at most a quarter of the largest
   real. The loss itself is evaluated where it leaves the window: on the step after which a
   member's window ends (every lane's loss then), and once more where a member stops (below). */

/* Lanes whose bound does not decide whether their loss is finite: finite, beyond a quarter of
   the largest real. */
static inline lane_bits undecided_bounds(lanes bound) {
    return (bound > (real)(REAL_LARGEST / 4)) & (bound <= (real)REAL_LARGEST);
}

/* loss_now with the lanes that hold the bound (bounded, then cleared) given the loss itself,
   where some lane in `wanted` holds it: one evaluation of the group at params (its gradient to
   spare), the bits of a step's evaluation with the loss; as it was where none is wanted. */
static lanes exact_losses(const network *net, const lanes *params, lanes *spare, lanes *hidden,
                          const lane_samples *samples, team *t, lane_bits wanted, lane_bits *bounded, lanes loss_now) {
    if (!any_set(wanted & *bounded)) return loss_now;
    const lanes exact = evaluate(net, params, spare, hidden, samples, NULL, t);
    loss_now = select(*bounded, exact, loss_now);
    *bounded = (lane_bits){0};
    return loss_now;
}

/* True where a running lane's member takes its last step of the window next. */
static int window_ends_next(const lane_queue *q) {
    int ends = 0;
    for (int l = 0; l < LANES; l++) ends |= q->running[l] && q->taken[l] + 1 == q->n_steps;
    return ends;
}

/* The network as a window's steps evaluate it: without the cross-entropy's log (see above),
   where beta is at least 2^60 log 2 / the largest real. A sample's loss and bound differ by at
   most log 2 / beta, which is then far below half a unit in the last place of the largest real,
   so a sample's loss overflows only where its bound does (the argument above holds sample by
   sample, before the weights 1 / count); at a smaller beta (or a negative one) the gap can
   carry the loss alone past the largest real (an independent reviewer's case: beta 1e-307), and
   the steps evaluate the loss itself. */
static network bounding(const network *net) {
    const real smallest_beta = (real)(0.6931471805599453 * 0x1p60 / (double)REAL_LARGEST);
    network bound = *net;
    bound.with_loss = net->loss != LOSS_CROSS_ENTROPY || !(net->beta >= smallest_beta);
    return bound;
}

/* Which lanes of a step's losses hold the bound: all where it evaluated `bound`, unless it
   was the network itself. */
static lane_bits bounded_after(const network *evaluated) {
    return evaluated->with_loss ? (lane_bits){0} : ~(lane_bits){0};
}

/* Lane l takes member j of a gd or Adam window: its point, gradient, loss and samples. */
static void gd_load(const network *net, int l, int64_t j, const real *theta, const real *grads, const real *losses,
                    const int64_t *sizes, lanes *params, lanes *grad, lanes *loss_now, lane_samples *samples) {
    load_lane(l, theta + j * net->n_params, net->n_params, params);
    load_lane(l, grads + j * net->n_params, net->n_params, grad);
    (*loss_now)[l] = losses[j];
    if (sizes) set_lane_samples(samples, l, sizes[j]);
}

/* The lanes that left (left[l]) give their members' point, gradient and loss back. */
static void gd_store(const network *net, const int *left, const int64_t *member, const lanes *params,
                     const lanes *grad, lanes loss_now, real *theta, real *grads, real *losses) {
    for (int l = 0; l < LANES; l++) {
        if (!left[l]) continue;
        store_lane(l, params, net->n_params, theta + member[l] * net->n_params);
        store_lane(l, grad, net->n_params, grads + member[l] * net->n_params);
        losses[member[l]] = loss_now[l];
    }
}

/* n_steps of full-batch gradient descent theta <- theta - lr grad (constant lr, no momentum)
   for members 0 .. n_members - 1, from first_step on. theta (n_members, n_params), losses,
   grads: where the members start, with their loss and gradient there; overwritten with where
   they end. status (-1 on entry), stop_step, grad_norm (n_members): the outcome of those that
   stop in the window. steps (n_members): each member's step count, advanced with it. sizes
   (n_members or NULL): each member's own first samples (native_mlp_loss_and_gradient);
   delta_tol: the satisfied test's (NaN: none), a member that meets it converges. team_index,
   team_size, barrier, slots: this thread's place in the team of threads sharing these members
   (see team; every thread of it calls with the same members and arguments, its own scratch,
   the same barrier and slots: 2 x native_mlp_sample_parts() x (n_params + 2) x
   native_mlp_lanes() reals), or 0, 1, NULL, NULL: alone. */
void native_mlp_gd_steps(int64_t n_members, real *theta, real *losses, real *grads, int64_t *steps,
                         int64_t *status, int64_t *stop_step, real *grad_norm, int64_t first_step,
                         int64_t n_steps, double lr, double grad_tol, double divergence_threshold,
                         const int64_t *sizes, double delta_tol,
                         int64_t d, int64_t h, int64_t depth, int64_t P, const real *x, const real *y, int loss,
                         int activation, int bias, double margin, double beta, double l2, real *scratch,
                         int64_t team_index, int64_t team_size, int64_t *barrier, real *slots) {
    const network net = network_of(d, h, depth, P, x, y, loss, activation, bias, margin, beta, l2),
                  bound = bounding(&net);
    const int64_t n_params = net.n_params;
    const int tracking = !isnan(delta_tol);
    /* the layout of native_mlp_steps_scratch_size: nine vectors of n_params lanes, a block, the slots */
    lanes *params = (lanes *)scratch, *grad = params + n_params, *move = grad + n_params, *spare = move + n_params,
          *hidden = params + 9 * n_params;
    team own = slots ? (team){.index = team_index, .size = team_size, .barrier = barrier, .slots = (lanes *)slots}
                     : alone(hidden + activation_lanes(h, depth));
    /* the team's first thread writes the members' outputs; the others keep their copies */
    const int writes = own.index == 0;
    int64_t *status_out = writes ? status : NULL, *steps_out = writes ? steps : NULL;
    const int never[LANES] = {0};
    lane_queue q = queue_of(n_members, n_steps);
    lane_samples samples = all_samples(P);
    int lane_status[LANES], met[LANES], loaded[LANES], left[LANES];
    real norm[LANES];
    lanes loss_now, shortfall = broadcast(INFINITY);
    /* lanes of loss_now holding the cross-entropy's bound; a lane that takes a member holds none
       (its last member left with its loss made exact: at its stop or its window's last step) */
    lane_bits bounded = {0};
    if (n_members <= 0) return;
    /* lanes that never hold a member compute on member 0's copy: finite values, never stored */
    for (int l = 0; l < LANES; l++) gd_load(&net, l, 0, theta, grads, losses, sizes, params, grad, &loss_now, &samples);
    for (;;) {
        if (!take_waiting(&q, loaded)) return;
        for (int l = 0; l < LANES; l++)
            if (loaded[l])
                gd_load(&net, l, q.member[l], theta, grads, losses, sizes, params, grad, &loss_now, &samples);
        shortfall = with_fresh_shortfalls(&net, params, spare, hidden, &samples, delta_tol, loaded, shortfall, &own);
        loss_now = exact_losses(&net, params, spare, hidden, &samples, &own, undecided_bounds(loss_now), &bounded,
                                loss_now);
        classify(params, loss_now, grad, n_params, grad_tol, divergence_threshold, never,
                 satisfied(delta_tol, shortfall, met), lane_status, norm);
        const int stopped = record_stops(&q, lane_status, norm, first_step, status_out, stop_step, grad_norm, left);
        /* a member that stops before its first step here is where it was loaded: nothing to write
           back (a team's other threads may still be reading its row) */
        for (int l = 0; l < LANES; l++) left[l] = left[l] && q.taken[l] > 0;
        loss_now = exact_losses(&net, params, spare, hidden, &samples, &own, mask_of(left), &bounded, loss_now);
        if (writes) gd_store(&net, left, q.member, params, grad, loss_now, theta, grads, losses);
        if (stopped) continue; /* the lanes freed take members, classified before they step */
        /* theta - lr grad rounded twice, as torch's two kernels round it: the products go
           through memory (the barrier), so the compiler cannot fuse them into the
           subtractions (one rounding, the last bits of an FMA differ) */
        for (int64_t i = 0; i < n_params; i++) move[i] = (real)lr * grad[i];
        __asm__ volatile("" ::: "memory");
        const lane_bits moving = mask_of(q.running);
        for (int64_t i = 0; i < n_params; i++) params[i] = select(moving, params[i] - move[i], params[i]);
        /* a stopped lane's point is unchanged, so its loss and gradient come out as they were */
        const network *stepping = window_ends_next(&q) ? &net : &bound;
        loss_now = evaluate(stepping, params, grad, hidden, &samples, tracking ? &shortfall : NULL, &own);
        bounded = bounded_after(stepping);
        count_step(&q, steps_out, left);
        if (writes) gd_store(&net, left, q.member, params, grad, loss_now, theta, grads, losses);
    }
}

#if !defined(NATIVE_FLOAT32) /* Adam, gradient flow and its stages: float64 only */

/* Lane l takes member j's Adam moments and step count (besides gd_load's). */
static void adam_load(const network *net, int l, int64_t j, const double *exp_avg, const double *exp_avg_sq,
                      const int64_t *steps, lanes *first, lanes *second, int64_t *count) {
    load_lane(l, exp_avg + j * net->n_params, net->n_params, first);
    load_lane(l, exp_avg_sq + j * net->n_params, net->n_params, second);
    count[l] = steps[j];
}

/* The lanes that left an Adam window give their members' point, gradient, moments and loss back. */
static void adam_store(const network *net, const int *left, const int64_t *member, const lanes *params,
                       const lanes *grad, const lanes *first, const lanes *second, lanes loss_now, double *theta,
                       double *grads, double *exp_avg, double *exp_avg_sq, double *losses) {
    gd_store(net, left, member, params, grad, loss_now, theta, grads, losses);
    for (int l = 0; l < LANES; l++) {
        if (!left[l]) continue;
        store_lane(l, first, net->n_params, exp_avg + member[l] * net->n_params);
        store_lane(l, second, net->n_params, exp_avg_sq + member[l] * net->n_params);
    }
}

/* n_steps of full-batch Adam (basins.engine.dynamics.Adam, torch.optim.Adam's arithmetic), as
   native_mlp_gd_steps steps gd: exp_avg, exp_avg_sq (n_members, n_params) and steps
   (n_members) are the stepper's state, advanced in place; the step size lr * lr_factor ^
   (steps // lr_every) (lr_every 0: constant). Every product and sum is rounded one at a time in
   torch's order (through memory: no fused multiply-add); the bias corrections' powers are
   libm's, whose last bits may differ from torch's, so a run follows torch's to round-off. */
void native_mlp_adam_steps(int64_t n_members, double *theta, double *losses, double *grads, double *exp_avg,
                           double *exp_avg_sq, int64_t *steps, int64_t *status, int64_t *stop_step, double *grad_norm,
                           int64_t first_step, int64_t n_steps, double lr, int64_t lr_every, double lr_factor,
                           double beta1, double beta2, double eps, double grad_tol, double divergence_threshold,
                           const int64_t *sizes, double delta_tol,
                           int64_t d, int64_t h, int64_t depth, int64_t P, const double *x, const double *y, int loss,
                           int activation, int bias, double margin, double beta, double l2, double *scratch) {
    const network net = network_of(d, h, depth, P, x, y, loss, activation, bias, margin, beta, l2),
                  bound = bounding(&net);
    const int64_t n_params = net.n_params;
    const int tracking = !isnan(delta_tol);
    lanes *params = (lanes *)scratch, *grad = params + n_params, *first = grad + n_params, *second = first + n_params,
          *one = second + n_params, *other = one + n_params, *spare = other + n_params,
          *hidden = params + 9 * n_params;
    const int never[LANES] = {0};
    const double keep1 = 1.0 - beta1, keep2 = 1.0 - beta2;
    lane_queue q = queue_of(n_members, n_steps);
    lane_samples samples = all_samples(P);
    int lane_status[LANES], met[LANES], loaded[LANES], left[LANES];
    int64_t count[LANES];
    double norm[LANES];
    lanes loss_now, shortfall = broadcast(INFINITY);
    /* lanes of loss_now holding the cross-entropy's bound; a lane that takes a member holds none
       (its last member left with its loss made exact: at its stop or its window's last step) */
    lane_bits bounded = {0};
    if (n_members <= 0) return;
    /* lanes that never hold a member compute on member 0's copy: finite values, never stored */
    for (int l = 0; l < LANES; l++) {
        gd_load(&net, l, 0, theta, grads, losses, sizes, params, grad, &loss_now, &samples);
        adam_load(&net, l, 0, exp_avg, exp_avg_sq, steps, first, second, count);
    }
    for (;;) {
        if (!take_waiting(&q, loaded)) return;
        for (int l = 0; l < LANES; l++) {
            if (!loaded[l]) continue;
            gd_load(&net, l, q.member[l], theta, grads, losses, sizes, params, grad, &loss_now, &samples);
            adam_load(&net, l, q.member[l], exp_avg, exp_avg_sq, steps, first, second, count);
        }
        shortfall = with_fresh_shortfalls(&net, params, spare, hidden, &samples, delta_tol, loaded, shortfall, NULL);
        loss_now = exact_losses(&net, params, spare, hidden, &samples, NULL, undecided_bounds(loss_now), &bounded,
                                loss_now);
        classify(params, loss_now, grad, n_params, grad_tol, divergence_threshold, never,
                 satisfied(delta_tol, shortfall, met), lane_status, norm);
        const int stopped = record_stops(&q, lane_status, norm, first_step, status, stop_step, grad_norm, left);
        loss_now = exact_losses(&net, params, spare, hidden, &samples, NULL, mask_of(left), &bounded, loss_now);
        adam_store(&net, left, q.member, params, grad, first, second, loss_now, theta, grads, exp_avg, exp_avg_sq,
                   losses);
        if (stopped) continue; /* the lanes freed take members, classified before they step */
        lanes size, correction2;
        for (int l = 0; l < LANES; l++) {
            const double rate = lr_every ? lr * pow(lr_factor, (double)(count[l] / lr_every)) : lr;
            const double t = (double)(count[l] + 1);
            size[l] = rate / (1.0 - pow(beta1, t));
            correction2[l] = sqrt(1.0 - pow(beta2, t));
        }
        /* exp_avg = beta1 exp_avg + (1 - beta1) grad; exp_avg_sq = beta2 exp_avg_sq + ((1 - beta2) grad) grad */
        for (int64_t i = 0; i < n_params; i++) {
            one[i] = beta1 * first[i];
            other[i] = keep1 * grad[i];
        }
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) {
            one[i] = one[i] + other[i];
            other[i] = keep2 * grad[i];
        }
        __asm__ volatile("" ::: "memory");
        const lane_bits moving = mask_of(q.running);
        for (int64_t i = 0; i < n_params; i++) {
            first[i] = select(moving, one[i], first[i]);
            other[i] = other[i] * grad[i];
            one[i] = beta2 * second[i];
        }
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) second[i] = select(moving, one[i] + other[i], second[i]);
        /* theta - ((lr / bias_correction1) exp_avg) / (sqrt(exp_avg_sq) / sqrt(bias_correction2) + eps) */
        for (int64_t i = 0; i < n_params; i++)
            for (int l = 0; l < LANES; l++) one[i][l] = sqrt(second[i][l]);
        for (int64_t i = 0; i < n_params; i++) {
            one[i] = one[i] / correction2;
            other[i] = size * first[i];
        }
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) one[i] = one[i] + eps;
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) other[i] = other[i] / one[i];
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) params[i] = select(moving, params[i] - other[i], params[i]);
        const network *stepping = window_ends_next(&q) ? &net : &bound;
        loss_now = evaluate(stepping, params, grad, hidden, &samples, tracking ? &shortfall : NULL, NULL);
        bounded = bounded_after(stepping);
        for (int l = 0; l < LANES; l++) count[l] += q.running[l];
        count_step(&q, steps, left);
        adam_store(&net, left, q.member, params, grad, first, second, loss_now, theta, grads, exp_avg, exp_avg_sq,
                   losses);
    }
}

/* sum_j weights[j] rows[j * stride] over the non-zero weights (the stages' slopes). */
static inline lanes weighted_sum(const double *weights, int count, const lanes *rows, int64_t stride) {
    lanes total = broadcast(0.0);
    for (int j = 0; j < count; j++)
        if (weights[j] != 0.0) total += rows[j * stride] * weights[j];
    return total;
}

/* A landscape's loss and gradient at a stage of a step (the loss only where need_loss: a ring's
   cosines cost extra), for one group of lanes. */
typedef lanes (*stage_evaluation)(const void *landscape, const lanes *params, lanes *grad, int need_loss);

/* A window of Dormand-Prince steps: its buffers (n_members rows) and settings, as
   native_mlp_dormand_prince_steps takes them. */
typedef struct {
    double *theta, *losses, *grads, *step_size, *time, *step_cap;
    int64_t *steps, *status, *stop_step;
    double *grad_norm;
    int64_t first_step, n_steps;
    const double *a, *e;
    double error_exponent, rtol, atol, max_time, grad_tol, divergence_threshold;
} flow_window;

/* A landscape's setup of lane l for member j (a network's samples), or NULL: nothing to set. */
typedef void (*lane_setup)(void *landscape, int l, int64_t j);

/* Lane l takes member j of a window w: its point, gradient, loss and stepper state. */
static void flow_load(const flow_window *w, int l, int64_t j, int64_t n_params, lanes *params, lanes *slopes,
                      lanes *loss_now, double *size, double *t, double *cap) {
    load_lane(l, w->theta + j * n_params, n_params, params);
    load_lane(l, w->grads + j * n_params, n_params, slopes);
    (*loss_now)[l] = w->losses[j];
    size[l] = w->step_size[j];
    t[l] = w->time[j];
    cap[l] = w->step_cap[j];
}

/* The lanes that left (left[l]) give their members' point, gradient, loss and stepper state back. */
static void flow_store(const flow_window *w, const int *left, const int64_t *member, int64_t n_params,
                       const lanes *params, const lanes *slopes, lanes loss_now, const double *size, const double *t,
                       const double *cap) {
    for (int l = 0; l < LANES; l++) {
        if (!left[l]) continue;
        const int64_t j = member[l];
        store_lane(l, params, n_params, w->theta + j * n_params);
        store_lane(l, slopes, n_params, w->grads + j * n_params);
        w->losses[j] = loss_now[l];
        w->step_size[j] = size[l];
        w->time[j] = t[l];
        w->step_cap[j] = cap[l];
    }
}

/* Dormand-Prince 5(4) gradient flow with a step size per member, as GradientFlow.step and
   _accept_or_reject (basins.engine.dynamics), for members 0 .. n_members - 1 of a window w,
   through the lanes as a queue (lane_queue): tableau a (6 rows of up to 6 coefficients, row k
   the stage k + 2's, zero-padded) and error weights e (7); the error test
   RMS(error / (atol + rtol max(|theta|, |candidate|))) <= 1, the loss test (a step that raises
   the loss beyond 1e-12 relative is rejected and caps the step size at half its length, the cap
   growing 1.1x a step accepted), the step factor 0.9 error^error_exponent (-1/5) in [0.2, 5] (at
   most 1 after a rejection). step_size, time, step_cap (float) and steps (int64) (n_members): the stepper's
   state, advanced in place; a member whose time reaches max_time has spent its budget. The
   stages are evaluate's (inlined: each caller passes its own), setup its lanes' (or NULL);
   scratch holds the point, a stage point and the seven stages' gradients, n_params lanes each. */
static inline __attribute__((always_inline)) void dormand_prince_members(
    const flow_window *w, int64_t n_members, int64_t n_params, stage_evaluation evaluate, void *landscape,
    lane_setup setup, lanes *scratch) {
    enum { STAGES = 7 };
    lanes *params = scratch, *stage = params + n_params, *slopes = stage + n_params;
    lane_queue q = queue_of(n_members, w->n_steps);
    int lane_status[LANES], over[LANES], loaded[LANES], left[LANES];
    double norm[LANES], hs[LANES], t[LANES], cap[LANES], size[LANES];
    lanes loss_now, stage_loss = broadcast(0.0);
    if (n_members <= 0) return;
    /* lanes that never hold a member compute on member 0's copy: finite values, never stored */
    for (int l = 0; l < LANES; l++) {
        flow_load(w, l, 0, n_params, params, slopes, &loss_now, size, t, cap);
        if (setup) setup(landscape, l, 0);
    }
    for (;;) {
        if (!take_waiting(&q, loaded)) return;
        for (int l = 0; l < LANES; l++) {
            if (!loaded[l]) continue;
            flow_load(w, l, q.member[l], n_params, params, slopes, &loss_now, size, t, cap);
            if (setup) setup(landscape, l, q.member[l]);
        }
        for (int l = 0; l < LANES; l++) over[l] = t[l] >= w->max_time;
        classify(params, loss_now, slopes, n_params, w->grad_tol, w->divergence_threshold, over, NULL, lane_status,
                 norm);
        const int stopped = record_stops(&q, lane_status, norm, w->first_step, w->status, w->stop_step, w->grad_norm,
                                         left);
        flow_store(w, left, q.member, n_params, params, slopes, loss_now, size, t, cap);
        if (stopped) continue; /* the lanes freed take members, classified before they step */
        for (int l = 0; l < LANES; l++) hs[l] = size[l] < w->max_time - t[l] ? size[l] : w->max_time - t[l];
        lanes step;
        for (int l = 0; l < LANES; l++) step[l] = hs[l];
        /* stages 2 .. 7: stage = params - h sum_j a_kj grad_j; the last is the candidate */
        for (int k = 1; k < STAGES; k++) {
            for (int64_t i = 0; i < n_params; i++)
                stage[i] = params[i] - step * weighted_sum(w->a + (k - 1) * (STAGES - 1), k, slopes + i, n_params);
            stage_loss = evaluate(landscape, stage, slopes + k * n_params, k == STAGES - 1);
        }
        /* error = h sum_j e_j grad_j, measured against atol + rtol max(|theta|, |candidate|) */
        lanes squares = broadcast(0.0);
        for (int64_t i = 0; i < n_params; i++) {
            const lanes combination = weighted_sum(w->e, STAGES, slopes + i, n_params);
            const lanes scale = w->atol + w->rtol * larger(absolute(params[i]), absolute(stage[i]));
            const lanes ratio = step * combination / scale;
            squares += ratio * ratio;
        }
        int accept[LANES];
        for (int l = 0; l < LANES; l++) {
            const double en = sqrt(squares[l] / (double)n_params);
            accept[l] = isfinite(en) && en <= 1.0 && isfinite(stage_loss[l]);
            const int rises = accept[l] && stage_loss[l] > loss_now[l] + 1e-12 * fabs(loss_now[l]);
            accept[l] = accept[l] && !rises && q.running[l];
            double factor = 0.9 * exp(w->error_exponent * log(en > 1e-10 ? en : 1e-10));
            factor = factor < 0.2 ? 0.2 : factor > 5.0 ? 5.0 : factor;
            factor = isfinite(en) ? factor : 0.2;
            factor = accept[l] ? factor : (factor < 1.0 ? factor : 1.0);
            if (!q.running[l]) continue;
            cap[l] = rises ? 0.5 * hs[l] : accept[l] ? 1.1 * cap[l] : cap[l];
            t[l] += accept[l] ? hs[l] : 0.0;
            size[l] = hs[l] * factor < cap[l] ? hs[l] * factor : cap[l];
        }
        const lane_bits accepted = mask_of(accept);
        for (int64_t i = 0; i < n_params; i++) {
            params[i] = select(accepted, stage[i], params[i]);
            slopes[i] = select(accepted, slopes[(STAGES - 1) * n_params + i], slopes[i]);
        }
        loss_now = select(accepted, stage_loss, loss_now);
        count_step(&q, w->steps, left);
        flow_store(w, left, q.member, n_params, params, slopes, loss_now, size, t, cap);
    }
}

/* A network as a stage_evaluation sees it: the network, its lanes' samples (each its member's
   first sizes[member] where sizes is given) and a block's activations. */
typedef struct {
    const network *net;
    const int64_t *sizes;
    lane_samples samples;
    lanes *hidden;
} network_lanes;

static lanes network_stage(const void *landscape, const lanes *params, lanes *grad, int need_loss) {
    const network_lanes *g = landscape;
    network stage = *g->net;
    stage.with_loss = need_loss; /* the candidate's loss alone is tested: the inner stages skip theirs */
    return evaluate(&stage, params, grad, g->hidden, &g->samples, NULL, NULL);
}

static void network_lane(void *landscape, int l, int64_t j) {
    network_lanes *g = landscape;
    if (g->sizes) set_lane_samples(&g->samples, l, g->sizes[j]);
}

/* Dormand-Prince gradient flow on the network (dormand_prince_members) for members 0 ..
   n_members - 1. The other arguments as native_mlp_gd_steps' (no satisfied test: a member's
   shortfall would have to follow its accepted stages). */
void native_mlp_dormand_prince_steps(int64_t n_members, double *theta, double *losses, double *grads,
                                     double *step_size, double *time, double *step_cap, int64_t *steps,
                                     int64_t *status, int64_t *stop_step, double *grad_norm, int64_t first_step,
                                     int64_t n_steps, const double *a, const double *e, double error_exponent,
                                     double rtol, double atol, double max_time, double grad_tol, double divergence_threshold,
                                     const int64_t *sizes, int64_t d, int64_t h, int64_t depth, int64_t P, const double *x, const double *y, int loss,
                                     int activation, int bias, double margin, double beta, double l2,
                                     double *scratch) {
    const flow_window w = {theta, losses, grads, step_size, time, step_cap, steps, status, stop_step, grad_norm,
                           first_step, n_steps, a, e, error_exponent, rtol, atol, max_time, grad_tol,
                           divergence_threshold};
    const network net = network_of(d, h, depth, P, x, y, loss, activation, bias, margin, beta, l2);
    network_lanes landscape = {&net, sizes, all_samples(P), (lanes *)scratch + 9 * net.n_params};
    dormand_prince_members(&w, n_members, net.n_params, network_stage, &landscape, network_lane, (lanes *)scratch);
}

/* Doubles of scratch the Chebyshev stages need: the start, its slope, three stage points, a
   gradient and two products, n_params lanes each, and a block's activations. */
int64_t native_mlp_chebyshev_scratch_size(int64_t d, int64_t h, int64_t depth, int bias) {
    return (8 * parameter_count(d, h, depth, bias) + activation_lanes(h, depth)) * LANES;
}

/* The stages of a damped Runge-Kutta-Chebyshev step, as ChebyshevFlow._stages
   (basins.engine.dynamics): for members 0 .. n_members - 1 (LANES at a time), from theta with
   slope = -grad (n_members, n_params), step h and stage count stages (n_members),
   Y_1 = theta + h first[s] slope and for j = 2 .. s
       Y_j = mu Y_(j-1) + nu Y_(j-2) + (1 - mu - nu) theta + h mu~ (-grad(Y_(j-1)) - a_(j-1) slope)
   with mu, nu, mu~, a_(j-1) the tables' [s, j] (rows of width table_width); Y_s is written to
   out. A lane whose s is reached keeps its Y_s while its group goes on (callers group members
   of like s). The products and sums are rounded one at a time in torch's order (the products
   go through memory: no fused multiply-add), so a stage is the torch recursion's to the
   gradient's round-off. */
void native_mlp_chebyshev_stages(int64_t n_members, const double *theta, const double *slope, const double *h,
                                 const int64_t *stages, const double *first, const double *mu, const double *nu,
                                 const double *mu_slope, const double *a_prev, int64_t table_width, double *out,
                                 int64_t d, int64_t h_units, int64_t depth, int64_t P, const double *x, const double *y, int loss,
                                 int activation, int bias, double margin, double beta, double l2, double *scratch) {
    network net = network_of(d, h_units, depth, P, x, y, loss, activation, bias, margin, beta, l2);
    net.with_loss = 0; /* the stages take gradients only */
    const int64_t n_params = net.n_params;
    const lane_samples samples = all_samples(P);
    lanes *start = (lanes *)scratch, *down = start + n_params, *older = down + n_params, *previous = older + n_params,
          *next = previous + n_params, *grad = next + n_params, *product = grad + n_params,
          *other = product + n_params, *hidden = other + n_params;
    for (int64_t m = 0; m < n_members; m += LANES) {
        const int64_t n = n_members - m < LANES ? n_members - m : LANES;
        int64_t count[LANES], most = 1;
        lanes step, first_move;
        for (int l = 0; l < LANES; l++) {
            const int64_t member = m + (l < n ? l : n - 1);
            count[l] = stages[member];
            most = count[l] > most ? count[l] : most;
            step[l] = h[member];
            first_move[l] = h[member] * first[count[l]];
        }
        gather(n, theta + m * n_params, n_params, start);
        gather(n, slope + m * n_params, n_params, down);
        for (int64_t i = 0; i < n_params; i++) {
            older[i] = start[i];
            next[i] = first_move * down[i];
        }
        __asm__ volatile("" ::: "memory");
        for (int64_t i = 0; i < n_params; i++) previous[i] = start[i] + next[i];
        for (int64_t j = 2; j <= most; j++) {
            lanes m_j, n_j, rest, move, a_j;
            int taking[LANES];
            for (int l = 0; l < LANES; l++) {
                const int64_t at = count[l] * table_width + j;
                taking[l] = j <= count[l];
                m_j[l] = taking[l] ? mu[at] : 0.0;
                n_j[l] = taking[l] ? nu[at] : 0.0;
                a_j[l] = taking[l] ? a_prev[at] : 0.0;
                move[l] = step[l] * (taking[l] ? mu_slope[at] : 0.0);
                rest[l] = (1.0 - m_j[l]) - n_j[l];
            }
            const lane_bits active = mask_of(taking);
            evaluate(&net, previous, grad, hidden, &samples, NULL, NULL);
            /* torch's order: ((mu Y1 + nu Y2) + rest theta) + move ((-grad) - a slope) */
            for (int64_t i = 0; i < n_params; i++) {
                next[i] = m_j * previous[i];
                product[i] = n_j * older[i];
                other[i] = a_j * down[i];
            }
            __asm__ volatile("" ::: "memory");
            for (int64_t i = 0; i < n_params; i++) {
                next[i] = next[i] + product[i];
                grad[i] = -grad[i] - other[i];
                product[i] = rest * start[i];
            }
            __asm__ volatile("" ::: "memory");
            for (int64_t i = 0; i < n_params; i++) {
                next[i] = next[i] + product[i];
                other[i] = move * grad[i];
            }
            __asm__ volatile("" ::: "memory");
            for (int64_t i = 0; i < n_params; i++) {
                older[i] = previous[i];
                previous[i] = select(active, next[i] + other[i], previous[i]);
            }
        }
        scatter(n, previous, n_params, out + m * n_params);
    }
}

/* ---- Dense Hessians of one hidden layer (basins.landscapes.fused_mlp.hessians) ----

   H = mean_s (l'' J_s J_s^T + l' d^2 f_s) + l2 I per member, as fused_mlp.hessians writes it
   (tests/test_native_mlp.py: equal to it to round-off): J_s the output's gradient on sample s,
   l' and l'' the loss's derivatives in the output, d^2 f_s nonzero only among a hidden unit's
   incoming weights and bias (through the activation's second derivative) and between them and
   its outgoing weight. One member a lane; a block of BLOCK samples at a time adds its products
   into the lower triangle (BLOCK multiply-adds a load and store of H), which is then mirrored.
   float64's build only. */

/* Reals of scratch native_mlp_hessians needs: a group's parameters, a block's Jacobians and
   units (activations, slopes, second derivatives) and its Hessians. */
int64_t native_mlp_hessian_scratch_size(int64_t d, int64_t h, int64_t depth, int bias) {
    (void)depth; /* one hidden layer: the argument list of the other scratch sizes */
    const int64_t n_params = parameter_count(d, h, 1, bias);
    return (n_params + BLOCK * n_params + 3 * BLOCK * h + n_params * n_params) * LANES;
}

/* The loss's first and second derivatives in the output f (of the sample loss, not yet over P). */
static inline void loss_derivatives(lanes out, real label, const network *net, lanes *first, lanes *second) {
    if (net->loss == LOSS_MSE) {
        *first = out - label;
        *second = broadcast(1.0);
    } else if (net->loss == LOSS_CROSS_ENTROPY) {
        const lanes s = sigmoid_lanes(-net->beta * label * out);
        *first = -label * s;
        *second = net->beta * s * (1.0 - s);
    } else {
        const lanes shortfall = net->margin - label * out;
        const lanes active = select(shortfall > 0.0, broadcast(1.0), broadcast(0.0));
        *first = net->loss == LOSS_HINGE ? -label * active : -label * positive_part(shortfall);
        *second = net->loss == LOSS_HINGE ? broadcast(0.0) : active;
    }
}

/* Members 0 .. n_members - 1's Hessians (n_members, n_params, n_params) at theta (n_members,
   n_params), each network of one hidden layer (depth 1) of h units on d inputs (x, y and the
   settings as native_mlp_loss_and_gradient takes them; x padded to a multiple of BLOCK samples,
   which weigh 0); scratch: native_mlp_hessian_scratch_size(d, h, 1, bias) reals. */
void native_mlp_hessians(int64_t n_members, const double *theta, double *hessians, int64_t d, int64_t h,
                         int64_t depth, int64_t P, const double *x, const double *y, int loss, int activation,
                         int bias, double margin, double beta, double l2, double *scratch) {
    const network net = network_of(d, h, depth, P, x, y, loss, activation, bias, margin, beta, l2);
    const int64_t n_params = net.n_params, fan_in = d + (bias ? 1 : 0);
    const int64_t bias_at = h * d, outgoing_at = h * d + (bias ? h : 0), output_bias_at = outgoing_at + h;
    lanes *params = (lanes *)scratch, *jacobian = params + n_params, *units = jacobian + BLOCK * n_params,
          *hess = units + 3 * BLOCK * h;
    lanes *act = units, *slope = units + BLOCK * h, *bend = units + 2 * BLOCK * h;
    const lanes *w1 = params, *b1 = params + bias_at, *w2 = params + outgoing_at, *b2 = params + output_bias_at;
    const real per_sample = (real)1.0 / (real)P;
    for (int64_t m = 0; m < n_members; m += LANES) {
        const int64_t n = n_members - m < LANES ? n_members - m : LANES;
        gather(n, theta + m * n_params, n_params, params);
        for (int64_t i = 0; i < n_params * n_params; i++) hess[i] = broadcast(0.0);
        for (int64_t s0 = 0; s0 < P; s0 += BLOCK) {
            lanes first[BLOCK], second[BLOCK];
            for (int b = 0; b < BLOCK; b++) {
                const real *xs = x + (s0 + b) * d;
                lanes out = bias ? *b2 : broadcast(0.0);
                for (int64_t j = 0; j < h; j++) {
                    lanes z = bias ? b1[j] : broadcast(0.0);
                    for (int64_t k = 0; k < d; k++) z += w1[j * d + k] * xs[k];
                    const lanes a = activate(z, activation);
                    act[b * h + j] = a;
                    slope[b * h + j] = activation_slope(a, activation);
                    /* the second derivative: tanh's -2 a (1 - a^2), 0 for relu and linear units */
                    bend[b * h + j] = activation == ACT_TANH ? -2.0 * a * slope[b * h + j] : broadcast(0.0);
                    out += w2[j] * a;
                }
                const real weight = s0 + b < P ? per_sample : 0.0; /* padded samples weigh 0 */
                loss_derivatives(out, y[s0 + b], &net, &first[b], &second[b]);
                first[b] *= weight;
                second[b] *= weight;
                lanes *row = jacobian + b * n_params;
                for (int64_t j = 0; j < h; j++) {
                    const lanes through = w2[j] * slope[b * h + j];
                    for (int64_t k = 0; k < d; k++) row[j * d + k] = through * xs[k];
                    if (bias) row[bias_at + j] = through;
                    row[outgoing_at + j] = act[b * h + j];
                }
                if (bias) row[output_bias_at] = broadcast(1.0);
            }
            /* The Gauss-Newton part, lower triangle: BLOCK samples' products per entry. */
            const lanes *j0 = jacobian, *j1 = j0 + n_params, *j2 = j1 + n_params, *j3 = j2 + n_params;
            for (int64_t p = 0; p < n_params; p++) {
                const lanes a0 = second[0] * j0[p], a1 = second[1] * j1[p], a2 = second[2] * j2[p],
                            a3 = second[3] * j3[p];
                lanes *hrow = hess + p * n_params;
                for (int64_t q = 0; q <= p; q++) hrow[q] += (a0 * j0[q] + a1 * j1[q]) + (a2 * j2[q] + a3 * j3[q]);
            }
            /* The output's own curvature: per unit, among its incoming weights and bias (index
               in(a) = j d + a, the bias at bias_at + j, above them) and with its outgoing weight
               (above both), inputs u = (x_s, 1). */
            for (int64_t j = 0; j < h; j++) {
                for (int b = 0; b < BLOCK; b++) {
                    const real *xs = x + (s0 + b) * d;
                    const lanes curve = first[b] * w2[j] * bend[b * h + j], cross = first[b] * slope[b * h + j];
                    for (int64_t a = 0; a < fan_in; a++) {
                        const lanes ua = a < d ? curve * xs[a] : curve;
                        const int64_t row = a < d ? j * d + a : bias_at + j;
                        for (int64_t c = 0; c <= a; c++) hess[row * n_params + (c < d ? j * d + c : bias_at + j)] +=
                            c < d ? ua * xs[c] : ua;
                        hess[(outgoing_at + j) * n_params + row] += a < d ? cross * xs[a] : cross;
                    }
                }
            }
        }
        for (int64_t p = 0; p < n_params; p++) {
            hess[p * n_params + p] += l2;
            for (int64_t q = 0; q < p; q++) hess[q * n_params + p] = hess[p * n_params + q];
        }
        scatter(n, hess, n_params * n_params, hessians + m * n_params * n_params);
    }
}

/* ---- Rings of identical Kuramoto oscillators (basins.oscillators.KuramotoRing) ----

   V(theta) = -sum_i sum_{s=1..k} cos(theta_{i+s} - theta_i) around a ring of n, and its
   gradient, one member a lane as the networks'; and the engine's Dormand-Prince gradient flow on
   it (dormand_prince_members). The torch ring's arithmetic to round-off: the pulls are summed into
   the gradient in its order, the sine and cosine are the polynomials below (torch's are SLEEF's),
   and the energy's sum runs in another order. */

/* Whether every lane of a mask is set (the polynomials' range test: lanes outside it, rare, take
   libm's scalar calls). */
static inline int all_lanes(lane_bits mask) {
    real_bits every = -1;
    for (int l = 0; l < LANES; l++) every &= mask[l];
    return every != 0;
}

/* sin x and cos x for |x| <= 2^19 pi / 2 (see ACCURACY below): x = j pi / 2 + r, j rounded by the
   1.5 * 2^52 shift, r = (x - j p1) - j p1t with fdlibm's 33-bit p1 (j p1 exact) and its tail,
   |r| <= pi / 4 with r's own rounding error kept as a correction; then fdlibm's kernels of sin
   and cos on [-pi/4, pi/4] (minimax polynomials of degree 13 and 14, error < 2^-58) and the
   quadrant j mod 4. Lanes beyond that range, or not finite, take libm's sin and cos. */
static inline void sincos_lanes(lanes x, lanes *sine, lanes *cosine) {
    const double shift = 0x1.8p52, two_over_pi = 6.36619772367581382433e-01, p1 = 1.57079632673412561417e+00,
                 p1t = 6.07710050650619224932e-11;
    const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03, S3 = -1.98412698298579493134e-04,
                 S4 = 2.75573137070700676789e-06, S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
    const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03, C3 = 2.48015872894767294178e-05,
                 C4 = -2.75573143513906633035e-07, C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
    const lane_bits inside = absolute(x) <= 823549.6561; /* 2^19 pi / 2; false for NaN */
    const lanes safe = select(inside, x, broadcast(0.0));
    const lanes shifted = safe * two_over_pi + shift; /* j in the low mantissa bits */
    const lanes j = shifted - shift;
    const lanes head = safe - j * p1, tail_product = j * p1t;
    const lanes r = head - tail_product, rt = (head - r) - tail_product; /* r + rt = x - j pi / 2 */
    const lanes z = r * r, v = z * r, z2 = z * z;
    const lanes sin_poly = S2 + z * (S3 + z * S4) + z * z2 * (S5 + z * S6);
    const lanes sin_r = r - ((z * (0.5 * rt - v * sin_poly) - rt) - v * S1);
    const lanes cos_poly = z * (C1 + z * (C2 + z * C3)) + z2 * z2 * (C4 + z * (C5 + z * C6));
    const lanes half_z = 0.5 * z, one_less = 1.0 - half_z;
    const lanes cos_r = one_less + (((1.0 - one_less) - half_z) + (z * cos_poly - r * rt));
    const lane_bits quadrant = (lane_bits)shifted & 3;
    const lane_bits swapped = (quadrant & 1) != 0;
    const lanes s = select(swapped, cos_r, sin_r), c = select(swapped, sin_r, cos_r);
    *sine = select((quadrant & 2) != 0, -s, s);
    *cosine = select(((quadrant + 1) & 2) != 0, -c, c);
    if (__builtin_expect(!all_lanes(inside), 0))
        for (int l = 0; l < LANES; l++)
            if (!inside[l]) {
                (*sine)[l] = sin(x[l]);
                (*cosine)[l] = cos(x[l]);
            }
}

/* sin x alone, for the stages whose energy is not needed (|x| <= 2^19 pi; ACCURACY below): x = j pi
   + r, j rounded by the 1.5 * 2^52 shift, r = (x - j p1) - j p1t with twice fdlibm's 33-bit pi / 2
   and its tail (j p1 exact), |r| <= pi / 2; sin r by its Taylor series to degree 21 (the first
   term left out is below 1.3e-18 on that range), negated where j is odd. Half the work of
   sincos_lanes, which needs both kernels for its quadrants. Lanes beyond the range, or not
   finite, take libm's sin. */
static inline lanes sin_lanes(lanes x) {
    const double shift = 0x1.8p52, one_over_pi = 3.18309886183790671538e-01, p1 = 3.14159265346825122833e+00,
                 p1t = 1.21542010130123844986e-10;
    static const double taylor[10] = { /* (-1)^k / (2k + 1)!, k = 1 .. 10 */
        -1.66666666666666657e-01, 8.33333333333333322e-03, -1.98412698412698413e-04, 2.75573192239858925e-06,
        -2.50521083854417202e-08, 1.60590438368216133e-10, -7.64716373181981641e-13, 2.81145725434552060e-15,
        -8.22063524662432950e-18, 1.95729410633912626e-20};
    const lane_bits inside = absolute(x) <= 1647099.3122; /* 2^19 pi; false for NaN */
    const lanes safe = select(inside, x, broadcast(0.0));
    const lanes shifted = safe * one_over_pi + shift; /* j in the low mantissa bits */
    const lanes j = shifted - shift;
    const lanes r = (safe - j * p1) - j * p1t, z = r * r;
    lanes series = broadcast(taylor[9]);
    for (int term = 8; term >= 0; term--) series = series * z + taylor[term];
    const lanes sine = r + r * z * series;
    lanes result = (lanes)((lane_bits)sine ^ (((lane_bits)shifted & 1) << (8 * sizeof(real) - 1)));
    if (__builtin_expect(!all_lanes(inside), 0))
        for (int l = 0; l < LANES; l++)
            if (!inside[l]) result[l] = sin(x[l]);
    return result;
}

/* ACCURACY of sincos_lanes and sin_lanes: within 2 ulp of libm on random arguments up to their
   ranges' ends (1.6 ulp of the exact values; session-51 referee, mpmath), and within ~4e-21
   absolutely everywhere: pi / 2 in two parts misses it by ~3.5e-27, so near a multiple of pi
   (of pi / 2 for the cosine), where the value itself is tiny, the relative error grows (fdlibm
   adds a third part there). A ring's gradient sums such values with terms of size 1, where that
   is far below its own round-off. */
/* A ring as a stage_evaluation sees it: n oscillators, k neighbours a side, n lanes of work. */
typedef struct {
    int64_t n, k;
    lanes *pulls;
} ring;

/* V and its gradient (KuramotoRing.energy_and_gradient): pair (i, i + s) pulls on both ends with
   sin(theta_{i+s} - theta_i), subtracted at i and added at i + s, shift by shift; V only where
   need_loss (else 0). */
static lanes ring_stage(const void *landscape, const lanes *theta, lanes *grad, int need_loss) {
    const ring *r = landscape;
    const int64_t n = r->n;
    lanes energy = broadcast(0.0), sine, cosine;
    for (int64_t i = 0; i < n; i++) grad[i] = broadcast(0.0);
    for (int64_t s = 1; s <= r->k; s++) {
        lanes cosines = broadcast(0.0);
        for (int64_t i = 0; i < n; i++) {
            const lanes difference = theta[i + s < n ? i + s : i + s - n] - theta[i];
            if (need_loss) {
                sincos_lanes(difference, &sine, &cosine);
                cosines += cosine;
            } else {
                sine = sin_lanes(difference);
            }
            r->pulls[i] = sine;
        }
        for (int64_t i = 0; i < n; i++) grad[i] = (grad[i] - r->pulls[i]) + r->pulls[i >= s ? i - s : i - s + n];
        energy = energy - cosines;
    }
    return need_loss ? energy : broadcast(0.0);
}

/* Doubles of scratch a ring's call needs: the point, a stage point and seven gradients (the
   Dormand-Prince stages; an evaluation uses two), and the pulls, n lanes each. */
int64_t native_ring_scratch_size(int64_t n) { return 10 * n * LANES; }

/* Members 0 .. n_members - 1, LANES at a time: energies (n_members; NULL: the gradient alone,
   by sin_lanes, as the flow's inner stages take it) and grads (n_members, n) of the ring at
   theta (n_members, n); scratch: native_ring_scratch_size(n) doubles. */
void native_ring_energy_and_gradient(int64_t n_members, const double *theta, double *energies, double *grads,
                                     int64_t n, int64_t k, double *scratch) {
    lanes *params = (lanes *)scratch, *grad = params + n;
    const ring landscape = {n, k, params + 9 * n};
    for (int64_t m = 0; m < n_members; m += LANES) {
        const int64_t count = n_members - m < LANES ? n_members - m : LANES;
        gather(count, theta + m * n, n, params);
        const lanes energy = ring_stage(&landscape, params, grad, energies != NULL);
        if (energies) scatter(count, &energy, 1, energies + m);
        scatter(count, grad, n, grads + m * n);
    }
}

/* Dormand-Prince gradient flow on the ring (dormand_prince_members) for members 0 .. n_members -
   1; the arguments as native_mlp_dormand_prince_steps', the ring (n, k) for the network. */
void native_ring_dormand_prince_steps(int64_t n_members, double *theta, double *energies, double *grads,
                                      double *step_size, double *time, double *step_cap, int64_t *steps,
                                      int64_t *status, int64_t *stop_step, double *grad_norm, int64_t first_step,
                                      int64_t n_steps, const double *a, const double *e, double error_exponent,
                                      double rtol, double atol, double max_time, double grad_tol,
                                      double divergence_threshold, int64_t n, int64_t k, double *scratch) {
    const flow_window w = {theta, energies, grads, step_size, time, step_cap, steps, status, stop_step, grad_norm,
                           first_step, n_steps, a, e, error_exponent, rtol, atol, max_time, grad_tol,
                           divergence_threshold};
    ring landscape = {n, k, (lanes *)scratch + 9 * n};
    dormand_prince_members(&w, n_members, n, ring_stage, &landscape, NULL, (lanes *)scratch);
}

#endif
