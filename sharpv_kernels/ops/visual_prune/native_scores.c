/*
 * The native CPU kernel of Visual SharpV's score pass (built and loaded by native.py).
 *
 * For the frames of features x (total_frames, f, d), channel stride 1, it writes
 *   dm[t, i]    = || u(x[t, i]) - u(mean_t) ||   (float32)
 *   dt[t, i]    = || u(x[t, i]) - u(x[t-1, i]) ||, 0 for t = 0   (float32)
 *   norms[t, i] = || x[t, i] ||, +inf where the squared norm exceeds FLT_MAX (float32)
 *   mnorm[t]    = || mean_t ||   (float32)
 * with u(v) = v * (1 / ||v||) rounded to float32, and 0 when ||v|| <= eps.
 *
 * Frames are swept in pairs: the sweep of frame t reads each row of frame t + 1 (its norm,
 * the column sums, its difference to frame t's row) and, in the same step, the row of
 * frame t again (from cache) for its difference to the mean of frame t, whose column sums
 * the previous sweep completed. Each row is read twice in all; no intermediate tensor (its
 * norm and its share of the column sums come from one read).
 * Column sums are float32 (as in the Triton kernels); sums of squares are float32 over
 * blocks of 256 (16 interleaved lanes), added in double. Every sum of squares of a row goes
 * through one non-inlined function (per row type, with the same operations in the same
 * order), so identical rows give bit-identical unit vectors (a difference of exactly 0), and
 * so do rows that are power-of-two rescalings of one another (products and sums scale
 * exactly, and so do 1/sqrt and the rounding to float32). bfloat16 rows are converted as
 * they are loaded (a shift: exact), float16 rows into a float32 copy of the row.
 * Build flags (sharpv_kernels/_native.py): -O3 -march=native and -ffp-contract=off (a fused
 * multiply-add would round u on one side of a difference only).
 *
 * Returns 0, or nonzero when scratch memory cannot be allocated.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

enum { SV_F32 = 0, SV_BF16 = 1, SV_F16 = 2 };

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  } else {
    float v = (float)man * 5.9604644775390625e-8f; /* subnormal: man * 2^-24, exact */
    return sign ? -v : v;
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Row i of frame t as the row functions read it: the input itself (float32, and bfloat16,
 * whose row functions convert as they load), or float16 converted into buf. */
static const void *row_at(const void *x, int dtype, int64_t t, int64_t i, int64_t d,
                          int64_t st, int64_t si, float *buf) {
  int64_t off = t * st + i * si;
  if (dtype == SV_F32) return (const float *)x + off;
  const uint16_t *h = (const uint16_t *)x + off;
  if (dtype == SV_BF16) return h;
  for (int64_t k = 0; k < d; ++k) buf[k] = f16_to_f32(h[k]);
  return buf;
}

/* Element k of a row of float32 (bf16 = 0) or bfloat16 (bf16 = 1), as float32 (exact). */
static inline __attribute__((always_inline)) float ld(const void *r, int bf16, int64_t k) {
  return bf16 ? bf16_to_f32(((const uint16_t *)r)[k]) : ((const float *)r)[k];
}

/* Sums of squares: float32 products summed in float32 in LANES interleaved partial sums
 * over blocks of SUM_BLOCK elements (SUM_BLOCK / LANES terms each, then a pairwise sum of
 * the lanes), the block sums added in double. The order is fixed by the code, not by the
 * compiler's vectorisation (see SV_VECTORS below), and the relative error
 * of a block sum is at most about (SUM_BLOCK / LANES + log2 LANES) eps = 20 eps. */
#define LANES 16
#define SUM_BLOCK 256

/* The pairwise sum of the lanes: l[q] + l[q + 8], then of those halves, down to one (the
 * same order as halving l in place). */
static inline __attribute__((always_inline)) float lanes_total(const float *l) {
  _Static_assert(LANES == 16, "lanes_total sums 16 lanes");
  float h8[8], h4[4], h2[2];
  for (int q = 0; q < 8; ++q) h8[q] = l[q] + l[q + 8];
  for (int q = 0; q < 4; ++q) h4[q] = h8[q] + h8[q + 4];
  for (int q = 0; q < 2; ++q) h2[q] = h4[q] + h4[q + 2];
  return h2[0] + h2[1];
}

/* The full groups of LANES elements run on GNU C vectors of LANES floats where the compiler
 * has them (GCC >= 9, Clang): lane q of a vector is lane q of the sums, so each vector
 * operation is LANES of the scalar operations below, in the same order (the same bits), and
 * the compiler lowers it to the machine's vectors of any width (one AVX-512 register, two
 * AVX2 or four NEON ones). Left to itself, GCC 12 vectorised the scalar lane loops with
 * a six-instruction bfloat16 widening, or not at all once a column-sum update joined the
 * loop (measured: 2x slower). Only enabled, and measured, with AVX-512 (F and BW): lowered
 * to AVX2 the same code ran slower than the scalar loops (bfloat16 12x slower, its
 * interleave of 32 halves then a long instruction sequence). Other targets and compilers
 * use the portable scalar code, which adds a row to the column sums in a loop of its own
 * (the loops that compilers vectorise as they stand). */
#if (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)) && defined(__AVX512F__) && \
    defined(__AVX512BW__)
#define SV_VECTORS 1
#if defined(__GNUC__) && !defined(__clang__)
/* vectors wider than the target's pass by value differently: these are always inlined */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float vf __attribute__((vector_size(LANES * sizeof(float))));
typedef uint16_t vh __attribute__((vector_size(LANES * sizeof(uint16_t))));
typedef uint32_t vu __attribute__((vector_size(LANES * sizeof(uint32_t))));

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define SV_SHUFFLE 1
#endif
#endif
#if SV_SHUFFLE && defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SV_BF16_INTERLEAVE 1
#endif
#endif
#if SV_BF16_INTERLEAVE
typedef uint16_t vh2 __attribute__((vector_size(2 * LANES * sizeof(uint16_t))));
#endif

/* Elements k .. k + LANES - 1 of a row (float32 or bfloat16) as float32 (exact). A bfloat16
 * is the high half of its float32: on little-endian machines the halves are interleaved
 * with zeros (one permute), else widened and shifted. */
static inline __attribute__((always_inline)) vf vld(const void *r, int bf16, int64_t k) {
  vf v;
  if (bf16) {
    vh h;
    memcpy(&h, (const uint16_t *)r + k, sizeof h);
#if SV_BF16_INTERLEAVE
    _Static_assert(LANES == 16, "the interleave lists 16 lanes");
    const vh z = {0};
    vh2 w = __builtin_shufflevector(z, h, 0, 16, 0, 17, 0, 18, 0, 19, 0, 20, 0, 21, 0, 22, 0, 23,
                                    0, 24, 0, 25, 0, 26, 0, 27, 0, 28, 0, 29, 0, 30, 0, 31);
    memcpy(&v, &w, sizeof v);
#else
    vu u = __builtin_convertvector(h, vu) << 16;
    memcpy(&v, &u, sizeof v);
#endif
  } else {
    memcpy(&v, (const float *)r + k, sizeof v);
  }
  return v;
}

/* Elements k .. k + n - 1 (n < LANES) as vld's lanes, zeros after: a zero adds nothing to
 * a lane's sum (its square, and its difference to a zero, are +0). */
static inline __attribute__((always_inline)) vf vld_part(const void *r, int bf16, int64_t k,
                                                         int64_t n) {
  float t[LANES] = {0.0f};
  for (int64_t q = 0; q < n; ++q) t[q] = ld(r, bf16, k + q);
  vf v;
  memcpy(&v, t, sizeof v);
  return v;
}

/* For bfloat16 rows, a prefetch of element k + PF_AHEAD (the next row, near the end: rows
 * of a frame are usually adjacent); a hint, which never faults. Measured at the 7B shape
 * with one thread: the bfloat16 pass about 10% faster; float32 not faster (left out). */
#define PF_AHEAD 1024
static inline __attribute__((always_inline)) void pf(const void *r, int bf16, int64_t k) {
  if (bf16) /* the address may pass the row's end: computed as an integer */
    __builtin_prefetch((const void *)((uintptr_t)r + (uintptr_t)(k + PF_AHEAD) * 2u));
}

/* lanes_total of a vector, in halves of vectors (the same additions in the same order). */
typedef float vf8 __attribute__((vector_size(8 * sizeof(float))));
typedef float vf4 __attribute__((vector_size(4 * sizeof(float))));
typedef float vf2 __attribute__((vector_size(2 * sizeof(float))));
static inline __attribute__((always_inline)) float vtotal(vf v) {
  _Static_assert(LANES == 16, "vtotal sums 16 lanes");
#if SV_SHUFFLE /* (halves taken by memcpy kept the sums on the stack, not in registers) */
  vf8 a8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  vf4 a4 = __builtin_shufflevector(a8, a8, 0, 1, 2, 3) + __builtin_shufflevector(a8, a8, 4, 5, 6, 7);
  vf2 a2 = __builtin_shufflevector(a4, a4, 0, 1) + __builtin_shufflevector(a4, a4, 2, 3);
#else
  vf8 a8, b8;
  memcpy(&a8, &v, sizeof a8);
  memcpy(&b8, (const char *)&v + sizeof a8, sizeof b8);
  a8 += b8;
  vf4 a4, b4;
  memcpy(&a4, &a8, sizeof a4);
  memcpy(&b4, (const char *)&a8 + sizeof a4, sizeof b4);
  a4 += b4;
  vf2 a2, b2;
  memcpy(&a2, &a4, sizeof a2);
  memcpy(&b2, (const char *)&a4 + sizeof a2, sizeof b2);
  a2 += b2;
#endif
  return a2[0] + a2[1];
}

#else
#define SV_VECTORS 0
#endif

/* The row functions exist once per row type (float32, bfloat16), always inlined into one
 * non-inlined instance each: a bfloat16 row is converted as it is loaded (no converted
 * copy), and both instances do the same float32 operations in the same order, so a row
 * gives the same bits whichever type it was read as. With col, the row is also added to
 * the column sums col in the same read. */
static inline __attribute__((always_inline)) double sum_sq_impl(const void *restrict r,
                                                                int bf16, int64_t d,
                                                                float *restrict col) {
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    int64_t j = 0;
#if SV_VECTORS
    vf vl = {0.0f};
    for (; j + LANES <= n; j += LANES) {
      pf(r, bf16, k0 + j);
      vf v = vld(r, bf16, k0 + j);
      vl += v * v;
      if (col) {
        vf c;
        memcpy(&c, col + k0 + j, sizeof c);
        c += v;
        memcpy(col + k0 + j, &c, sizeof c);
      }
    }
    if (j < n) { /* the ragged end: its lanes, zeros in the others */
      vf v = vld_part(r, bf16, k0 + j, n - j);
      vl += v * v;
      if (col)
        for (int64_t q = 0; j + q < n; ++q) col[k0 + j + q] += v[q];
    }
    acc += (double)vtotal(vl);
#else
    float l[LANES] = {0.0f};
    for (; j + LANES <= n; j += LANES)
      for (int q = 0; q < LANES; ++q) {
        float v = ld(r, bf16, k0 + j + q);
        l[q] += v * v;
      }
    for (int q = 0; j + q < n; ++q) {
      float v = ld(r, bf16, k0 + j + q);
      l[q] += v * v;
    }
    acc += (double)lanes_total(l);
#endif
  }
#if !SV_VECTORS
  if (col)
    for (int64_t k = 0; k < d; ++k) col[k] += ld(r, bf16, k);
#endif
  return acc;
}

__attribute__((noinline)) static double sum_sq_f32(const void *r, int64_t d) {
  return sum_sq_impl(r, 0, d, NULL);
}

__attribute__((noinline)) static double sum_sq_bf16(const void *r, int64_t d) {
  return sum_sq_impl(r, 1, d, NULL);
}

/* The sum of squares of a row, and the row added to the column sums col (one read). */
__attribute__((noinline)) static double sum_sq_add_f32(const void *restrict r, int64_t d,
                                                     float *restrict col) {
  return sum_sq_impl(r, 0, d, col);
}

__attribute__((noinline)) static double sum_sq_add_bf16(const void *restrict r, int64_t d,
                                                      float *restrict col) {
  return sum_sq_impl(r, 1, d, col);
}

/* Element k of both squared differences, into the lane sums *lm and *ln. */
static inline __attribute__((always_inline)) void pair_step(const void *a, float ia,
                                                            const float *m, const void *b,
                                                            float ib, int bf16, int64_t k,
                                                            float *lm, float *ln) {
  float u = ld(a, bf16, k) * ia;
  float e = u - m[k];
  float g = ld(b, bf16, k) * ib - u;
  *lm += e * e;
  *ln += g * g;
}

/* One read of two rows a (frame t) and b (frame t + 1, the same token): the squared
 * distances of a's unit vector to the frame mean's (m) and of b's unit vector to a's. */
static inline __attribute__((always_inline)) void pair_sums_impl(
    const void *a, float ia, const float *m, const void *b, float ib, int bf16, int64_t d,
    double *s_mean, double *s_next) {
  double sm = 0.0, sn = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    int64_t j = 0;
#if SV_VECTORS
    vf vm = {0.0f}, vn = {0.0f};
    for (; j + LANES <= n; j += LANES) {
      pf(a, bf16, k0 + j);
      vf u = vld(a, bf16, k0 + j) * ia, mk;
      memcpy(&mk, m + k0 + j, sizeof mk);
      vf e = u - mk;
      vf w = vld(b, bf16, k0 + j) * ib - u;
      vm += e * e;
      vn += w * w;
    }
    if (j < n) { /* the ragged end: its lanes, zeros in the others */
      vf u = vld_part(a, bf16, k0 + j, n - j) * ia;
      vf e = u - vld_part(m, 0, k0 + j, n - j);
      vf w = vld_part(b, bf16, k0 + j, n - j) * ib - u;
      vm += e * e;
      vn += w * w;
    }
    sm += (double)vtotal(vm);
    sn += (double)vtotal(vn);
#else
    float lm[LANES] = {0.0f}, ln[LANES] = {0.0f};
    for (; j + LANES <= n; j += LANES)
      for (int q = 0; q < LANES; ++q)
        pair_step(a, ia, m, b, ib, bf16, k0 + j + q, lm + q, ln + q);
    for (int q = 0; j + q < n; ++q) pair_step(a, ia, m, b, ib, bf16, k0 + j + q, lm + q, ln + q);
    sm += (double)lanes_total(lm);
    sn += (double)lanes_total(ln);
#endif
  }
  *s_mean = sm;
  *s_next = sn;
}

__attribute__((noinline)) static void pair_sums_f32(const void *a, float ia, const float *m,
                                                    const void *b, float ib, int64_t d,
                                                    double *s_mean, double *s_next) {
  pair_sums_impl(a, ia, m, b, ib, 0, d, s_mean, s_next);
}

__attribute__((noinline)) static void pair_sums_bf16(const void *a, float ia, const float *m,
                                                     const void *b, float ib, int64_t d,
                                                     double *s_mean, double *s_next) {
  pair_sums_impl(a, ia, m, b, ib, 1, d, s_mean, s_next);
}

/* The row functions for the rows row_at returns. */
typedef struct {
  double (*sum_sq)(const void *, int64_t);
  double (*sum_sq_add)(const void *, int64_t, float *);
  void (*pair_sums)(const void *, float, const float *, const void *, float, int64_t, double *,
                    double *);
} row_ops;

static const row_ops OPS_F32 = {sum_sq_f32, sum_sq_add_f32, pair_sums_f32};
static const row_ops OPS_BF16 = {sum_sq_bf16, sum_sq_add_bf16, pair_sums_bf16};

static float inv_norm(double sq, double eps) {
  return sq > eps * eps ? (float)(1.0 / sqrt(sq)) : 0.0f;
}

static float norm_out(double sq) {
  return sq > (double)FLT_MAX ? INFINITY : (float)sqrt(sq);
}

/* u(mean) of a frame from its column sums, into um (the mean first, scaled in place);
 * returns the squared norm of the mean. */
static double unit_mean(const float *col, int64_t f, int64_t d, double eps, float *um) {
  float inv_f = 1.0f / (float)f;
  for (int64_t k = 0; k < d; ++k) um[k] = col[k] * inv_f;
  double msq = sum_sq_f32(um, d);
  float mi = inv_norm(msq, eps);
  for (int64_t k = 0; k < d; ++k) um[k] *= mi;
  return msq;
}

static int distances_range(const void *x, int dtype, int64_t t0, int64_t t1, int64_t f,
                            int64_t d, int64_t st, int64_t si, double eps, float *dm,
                            float *dt, float *norms, float *mnorm) {
  float *col = malloc((size_t)d * sizeof(float));
  float *um = malloc((size_t)(2 * d) * sizeof(float)); /* this frame's u(mean), the next's */
  double *sq = malloc((size_t)(2 * f) * sizeof(double)); /* this frame's, the next's */
  float *buf = malloc((size_t)(2 * d) * sizeof(float)); /* float16 rows a and b, converted */
  const row_ops *ops = dtype == SV_BF16 ? &OPS_BF16 : &OPS_F32;
  int rc = (col && um && sq && buf) ? 0 : -1;
  if (rc == 0 && t0 < t1) {
    double *sq_cur = sq, *sq_nxt = sq + f;
    float *um_cur = um, *um_nxt = um + d;
    double s_mean, s_next;
    /* frame t0: norms and column sums, and T against frame t0 - 1 (0 for the first frame) */
    memset(col, 0, (size_t)d * sizeof(float));
    for (int64_t i = 0; i < f; ++i) {
      const void *r = row_at(x, dtype, t0, i, d, st, si, buf + d);
      sq_cur[i] = ops->sum_sq_add(r, d, col);
      norms[t0 * f + i] = norm_out(sq_cur[i]);
      dt[t0 * f + i] = 0.0f;
      if (t0 > 0) {
        const void *p = row_at(x, dtype, t0 - 1, i, d, st, si, buf);
        /* only T is wanted: the partial column sums stand in for the mean, that sum is
         * dropped */
        ops->pair_sums(p, inv_norm(ops->sum_sq(p, d), eps), col, r, inv_norm(sq_cur[i], eps),
                       d, &s_mean, &s_next);
        dt[t0 * f + i] = (float)sqrt(s_next);
      }
    }
    mnorm[t0] = norm_out(unit_mean(col, f, d, eps, um_cur));
    /* the sweep of frame t: S of frame t (its rows read a second time, from cache) and,
     * from the rows of frame t + 1 (their first read), their norms, column sums and T */
    for (int64_t t = t0; t < t1; ++t) {
      int has_next = t + 1 < t1;
      if (has_next) memset(col, 0, (size_t)d * sizeof(float));
      for (int64_t i = 0; i < f; ++i) {
        const void *a = row_at(x, dtype, t, i, d, st, si, buf);
        float ia = inv_norm(sq_cur[i], eps);
        const void *b = a;
        float ib = ia;
        if (has_next) {
          b = row_at(x, dtype, t + 1, i, d, st, si, buf + d);
          sq_nxt[i] = ops->sum_sq_add(b, d, col);
          norms[(t + 1) * f + i] = norm_out(sq_nxt[i]);
          ib = inv_norm(sq_nxt[i], eps);
        }
        ops->pair_sums(a, ia, um_cur, b, ib, d, &s_mean, &s_next);
        dm[t * f + i] = (float)sqrt(s_mean);
        if (has_next) dt[(t + 1) * f + i] = (float)sqrt(s_next);
      }
      if (has_next) {
        mnorm[t + 1] = norm_out(unit_mean(col, f, d, eps, um_nxt));
        double *ts = sq_cur;
        sq_cur = sq_nxt;
        sq_nxt = ts;
        float *tu = um_cur;
        um_cur = um_nxt;
        um_nxt = tu;
      }
    }
  }
  free(col);
  free(um);
  free(sq);
  free(buf);
  return rc;
}

/* All frames [0, n): the frame ranges of up to `threads` OpenMP threads. Built with -fopenmp
 * after torch is loaded, the library shares torch's OpenMP runtime (the same libgomp.so.1),
 * so its threads are torch's intra-op threads: no second pool competing for the cores with
 * the first one's spinning workers. Built without OpenMP, the ranges run one after another
 * (the same results: a range's first frame re-reads the frame before it). One thread enters
 * no OpenMP region at all: the launcher asks for one in a forked child, where GNU OpenMP's
 * first parallel region would wait forever for the parent's threads. */
int sharpv_visual_distances(const void *x, int dtype, int64_t n, int64_t f, int64_t d,
                            int64_t st, int64_t si, double eps, float *dm, float *dt,
                            float *norms, float *mnorm, int threads) {
  int64_t chunks = threads < n ? threads : n;
  if (chunks <= 1)
    return distances_range(x, dtype, 0, n, f, d, st, si, eps, dm, dt, norms, mnorm);
  int rc = 0;
#pragma omp parallel for num_threads(chunks) schedule(static) reduction(| : rc)
  for (int64_t c = 0; c < chunks; ++c)
    rc |= distances_range(x, dtype, n * c / chunks, n * (c + 1) / chunks, f, d, st, si, eps, dm,
                          dt, norms, mnorm);
  return rc;
}

/* Ask for transparent huge pages over the 2 MB-aligned interior of [p, p + n), memory not
 * yet touched (a new output tensor): first-touch page faults then come 512 times less
 * often. Advisory only (a no-op where the system has no such pages); returns 0 or -1. */
int sharpv_advise_hugepages(void *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20;
  uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
  uintptr_t b = ((uintptr_t)p + n) & ~(huge - 1);
  if (b <= a) return 0;
  return madvise((void *)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
  return 0;
#endif
}
