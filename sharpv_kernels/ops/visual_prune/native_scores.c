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
 * blocks of 256, in 16 interleaved lanes (float32 and float16 rows: lane q sums elements
 * q, q + 16, ...; bfloat16 rows: an even and an odd set of 16 lanes, lane q summing elements
 * 2q, 2q + 32, ... and 2q + 1, 2q + 33, ..., the two sets added lane by lane at the end of
 * the block), each square accumulated with one fused multiply-add (fmaf, one rounding), the
 * lanes summed pairwise and the block sums added in double. Every sum of squares of a row
 * goes through one non-inlined function per row type, so identical rows give bit-identical
 * unit vectors (a difference of exactly 0), and so do rows that are power-of-two rescalings
 * of one another (products and sums scale exactly, and so do 1/sqrt and the rounding to
 * float32). A bfloat16 row and the same values as float32 may differ in the last bits (the
 * two lane orders); every row of one call has the same type. bfloat16 rows are converted as
 * they are loaded (shifts and masks: exact), float16 rows into a float32 copy of the row.
 * The order is the code's, not the compiler's: the AVX-512 vector loops and the portable
 * scalar loops give the same bits, and so do 1 and any number of threads.
 * Build flags (sharpv_kernels/_native.py): -O3 -march=native and -ffp-contract=off: only the
 * accumulations are fused (explicitly); a fused u * s - m would round one side of a
 * difference only and break the exact zeros above.
 *
 * bfloat16 tokens are swept two at a time (each row's operations unchanged: the same bits).
 *
 * Measured and not adopted (7B bfloat16, interleaved against this code, bits compared):
 * S's difference fused as fma(x, ia, -m) (the T difference never is): 2.94 -> 3.04 ms on two
 * threads, 5.02 -> 5.18 on one (u = x * ia is still needed for T, so it only moves a
 * subtraction from the add pipes to the FMA pipes); keeping the scaled rows of frame t + 1
 * as float32 for the next sweep (one scratch frame per thread, the same bits): 2.87 -> 3.32
 * ms on two threads, 4.90 -> 5.53 on one (the float32 store and re-read cost more than the
 * widening and scaling they save); prefetch distances 4-16 KB ahead and levels other than
 * those below, frame ranges split one or two frames off the middle, and each frame's tokens
 * split between two threads (so the second read could come from L2): the same or slower.
 *
 * sharpv_visual_distances returns 0, or nonzero when scratch memory cannot be allocated.
 * The rest of the op on the native route (native.py): sharpv_visual_scores (S, T, I from the
 * distances, torch_path's float32 operations, and the ratios r), sharpv_all_finite (the
 * norms' finiteness flag), sharpv_select_top (the kept tokens of each frame, torch.sort's
 * order), sharpv_gather_rows (the kept rows), sharpv_counts_cu (int32 counts and token
 * offsets) and sharpv_advise_hugepages.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

enum { SV_F32 = 0, SV_BF16 = 1, SV_F16 = 2 };

static inline float bf16_to_f32(uint16_t h) {
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

/* Sums of squares: float32 squares accumulated (fused) in float32 in LANES interleaved partial sums
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
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
/* vectors wider than the target's pass by value differently: these are always inlined */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float vf __attribute__((vector_size(LANES * sizeof(float))));
typedef uint32_t vu __attribute__((vector_size(LANES * sizeof(uint32_t))));

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define SV_SHUFFLE 1
#endif
#endif

/* Elements k .. k + LANES - 1 of a float32 row (bfloat16 rows have their own loads: bf_ld). */
static inline __attribute__((always_inline)) vf vld(const void *r, int64_t k) {
  vf v;
  memcpy(&v, (const float *)r + k, sizeof v);
  return v;
}

/* Elements k .. k + n - 1 (n < LANES) as vld's lanes, zeros after: a zero adds nothing to
 * a lane's sum (its square, and its difference to a zero, are +0). */
static inline __attribute__((always_inline)) vf vld_part(const float *r, int64_t k, int64_t n) {
  float t[LANES] = {0.0f};
  for (int64_t q = 0; q < n; ++q) t[q] = r[k + q];
  vf v;
  memcpy(&v, t, sizeof v);
  return v;
}

/* For bfloat16 rows, a prefetch of element k + PF_AHEAD (the next row, near the end: rows
 * of a frame are usually adjacent); a hint, which never faults. Measured at the 7B shape
 * with one thread: the bfloat16 pass about 10% faster; float32 not faster (left out). */
#define PF_AHEAD 1024
static inline __attribute__((always_inline)) void pf(const uint16_t *r, int64_t k) {
  /* the address may pass the row's end: computed as an integer */
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

/* acc + a * b with one rounding (the accumulations only) */
static inline __attribute__((always_inline)) vf vfma(vf a, vf b, vf acc) {
  return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
}

#else
#define SV_VECTORS 0
#endif

/* The float32 row functions (float32 rows, and float16 rows converted to float32; bfloat16
 * rows have their own, below), always inlined into one non-inlined instance each. With col,
 * the row is also added to the column sums col in the same read. */
static inline __attribute__((always_inline)) double sum_sq_impl(const float *restrict r,
                                                                int64_t d,
                                                                float *restrict col) {
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    int64_t j = 0;
#if SV_VECTORS
    vf vl = {0.0f};
    for (; j + LANES <= n; j += LANES) {
      vf v = vld(r, k0 + j);
      vl = vfma(v, v, vl);
      if (col) {
        vf c;
        memcpy(&c, col + k0 + j, sizeof c);
        c += v;
        memcpy(col + k0 + j, &c, sizeof c);
      }
    }
    if (j < n) { /* the ragged end: its lanes, zeros in the others */
      vf v = vld_part(r, k0 + j, n - j);
      vl = vfma(v, v, vl);
      if (col)
        for (int64_t q = 0; j + q < n; ++q) col[k0 + j + q] += v[q];
    }
    acc += (double)vtotal(vl);
#else
    float l[LANES] = {0.0f};
    for (; j + LANES <= n; j += LANES)
      for (int q = 0; q < LANES; ++q) {
        float v = r[k0 + j + q];
        l[q] = fmaf(v, v, l[q]);
      }
    for (int q = 0; j + q < n; ++q) {
      float v = r[k0 + j + q];
      l[q] = fmaf(v, v, l[q]);
    }
    acc += (double)lanes_total(l);
#endif
  }
#if !SV_VECTORS
  if (col)
    for (int64_t k = 0; k < d; ++k) col[k] += r[k];
#endif
  return acc;
}

__attribute__((noinline)) static double sum_sq_f32(const void *r, int64_t d) {
  return sum_sq_impl(r, d, NULL);
}

/* The sum of squares of a row, and the row added to the column sums col (one read). */
__attribute__((noinline)) static double sum_sq_add_f32(const void *restrict r, int64_t d,
                                                     float *restrict col) {
  return sum_sq_impl(r, d, col);
}

/* Element k of both squared differences, into the lane sums *lm and *ln. */
static inline __attribute__((always_inline)) void pair_step(const float *a, float ia,
                                                            const float *m, const float *b,
                                                            float ib, int64_t k, float *lm,
                                                            float *ln) {
  float u = a[k] * ia;
  float e = u - m[k];
  float g = b[k] * ib - u;
  *lm = fmaf(e, e, *lm);
  *ln = fmaf(g, g, *ln);
}

/* One read of two rows a (frame t) and b (frame t + 1, the same token): the squared
 * distances of a's unit vector to the frame mean's (m) and of b's unit vector to a's. */
static inline __attribute__((always_inline)) void pair_sums_impl(
    const float *a, float ia, const float *m, const float *b, float ib, int64_t d,
    double *s_mean, double *s_next) {
  double sm = 0.0, sn = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    int64_t j = 0;
#if SV_VECTORS
    vf vm = {0.0f}, vn = {0.0f};
    for (; j + LANES <= n; j += LANES) {
      vf u = vld(a, k0 + j) * ia, mk;
      memcpy(&mk, m + k0 + j, sizeof mk);
      vf e = u - mk;
      vf w = vld(b, k0 + j) * ib - u;
      vm = vfma(e, e, vm);
      vn = vfma(w, w, vn);
    }
    if (j < n) { /* the ragged end: its lanes, zeros in the others */
      vf u = vld_part(a, k0 + j, n - j) * ia;
      vf e = u - vld_part(m, k0 + j, n - j);
      vf w = vld_part(b, k0 + j, n - j) * ib - u;
      vm = vfma(e, e, vm);
      vn = vfma(w, w, vn);
    }
    sm += (double)vtotal(vm);
    sn += (double)vtotal(vn);
#else
    float lm[LANES] = {0.0f}, ln[LANES] = {0.0f};
    for (; j + LANES <= n; j += LANES)
      for (int q = 0; q < LANES; ++q)
        pair_step(a, ia, m, b, ib, k0 + j + q, lm + q, ln + q);
    for (int q = 0; j + q < n; ++q) pair_step(a, ia, m, b, ib, k0 + j + q, lm + q, ln + q);
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
  pair_sums_impl(a, ia, m, b, ib, d, s_mean, s_next);
}

/* bfloat16 rows: groups of GROUP = 2 LANES elements, read as LANES 32-bit words whose
 * halves are two bfloat16 (little-endian: element 2q is the low half of word q). The even
 * elements are the words shifted left by 16 and the odd ones the words with the low half
 * cleared (both exact), so lane q holds elements 2q (even) and 2q + 1 (odd) of the group:
 * no permute. Each sum has an even and an odd set of lanes, SUM_BLOCK / GROUP terms each;
 * at the end of a block lane q of both is added (even + odd), then the lanes pairwise as
 * lanes_total. Column sums and the unit mean of bfloat16 rows are kept in the same order:
 * element k of a row is entry bf_pos(k) of the scratch (the even elements of a group
 * first, then the odd ones), whose length is d rounded up to a whole group (zeros after
 * the row: they add nothing, their differences are +0). Built without AVX-512, the scalar
 * loops below take the same terms in the same order (the same bits). */
#define GROUP (2 * LANES)

static inline __attribute__((always_inline)) int64_t bf_pos(int64_t k) {
  return (k & ~(int64_t)(GROUP - 1)) + (k & 1) * LANES + ((k & (GROUP - 1)) >> 1);
}

static inline int64_t bf_len(int64_t d) { return (d + GROUP - 1) / GROUP * GROUP; }

#if SV_VECTORS
/* Elements k .. k + GROUP - 1 of a bfloat16 row (n of them present, zeros after) as the
 * even and odd lanes. */
/* (x86: little-endian, element 2q is the low half of word q) */
static inline __attribute__((always_inline)) void bf_ld(const uint16_t *r, int64_t k, int64_t n,
                                                        vf *ev, vf *od) {
  vu w;
  if (n >= GROUP) {
    memcpy(&w, r + k, sizeof w);
  } else {
    uint16_t t[GROUP] = {0};
    memcpy(t, r + k, (size_t)n * sizeof(uint16_t));
    memcpy(&w, t, sizeof w);
  }
  const vu hi = (vu){0} + 0xffff0000u;
  vu e = w << 16, o = w & hi;
  memcpy(ev, &e, sizeof e);
  memcpy(od, &o, sizeof o);
}
#endif

static inline __attribute__((always_inline)) double bf_sum_sq_impl(const uint16_t *restrict r,
                                                                   int64_t d,
                                                                   float *restrict col) {
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
#if SV_VECTORS
    vf ve = {0.0f}, vo = {0.0f};
    for (int64_t j = 0; j < n; j += GROUP) {
      pf(r, k0 + j);
      vf e, o;
      bf_ld(r, k0 + j, n - j, &e, &o);
      ve = vfma(e, e, ve);
      vo = vfma(o, o, vo);
      if (col) {
        vf c0, c1;
        memcpy(&c0, col + k0 + j, sizeof c0);
        memcpy(&c1, col + k0 + j + LANES, sizeof c1);
        c0 += e;
        c1 += o;
        memcpy(col + k0 + j, &c0, sizeof c0);
        memcpy(col + k0 + j + LANES, &c1, sizeof c1);
      }
    }
    acc += (double)vtotal(ve + vo);
#else
    float le[LANES] = {0.0f}, lo[LANES] = {0.0f}, l[LANES];
    for (int64_t j = 0; j < n; j += GROUP)
      for (int q = 0; q < LANES; ++q) {
        int64_t k = j + 2 * q;
        if (k < n) {
          float v = bf16_to_f32(r[k0 + k]);
          le[q] = fmaf(v, v, le[q]);
          if (col) col[k0 + j + q] += v;
        }
        if (k + 1 < n) {
          float v = bf16_to_f32(r[k0 + k + 1]);
          lo[q] = fmaf(v, v, lo[q]);
          if (col) col[k0 + j + LANES + q] += v;
        }
      }
    for (int q = 0; q < LANES; ++q) l[q] = le[q] + lo[q];
    acc += (double)lanes_total(l);
#endif
  }
  return acc;
}

__attribute__((noinline)) static double sum_sq_bf16(const void *r, int64_t d) {
  return bf_sum_sq_impl(r, d, NULL);
}

__attribute__((noinline)) static double sum_sq_add_bf16(const void *restrict r, int64_t d,
                                                      float *restrict col) {
  return bf_sum_sq_impl(r, d, col);
}

#if SV_VECTORS
/* One GROUP of elements k .. of bfloat16 rows a (scale ia) and b (scale ib), left of them
 * in the block: the squared differences of u(a) to the unit mean (me, mo: its even and odd
 * lanes) and of u(b) to u(a), added to the lane sums *sme, *smo, *sne, *sno. */
static inline __attribute__((always_inline)) void bf_pair_group(
    const uint16_t *a, float ia, const uint16_t *b, float ib, vf me, vf mo, int64_t k,
    int64_t left, vf *sme, vf *smo, vf *sne, vf *sno) {
  vf ae, ao, be, bo;
  bf_ld(a, k, left, &ae, &ao);
  bf_ld(b, k, left, &be, &bo);
  vf ue = ae * ia, uo = ao * ia;
  vf ee = ue - me, eo = uo - mo;
  vf ge = be * ib - ue, go = bo * ib - uo;
  *sme = vfma(ee, ee, *sme);
  *smo = vfma(eo, eo, *smo);
  *sne = vfma(ge, ge, *sne);
  *sno = vfma(go, go, *sno);
}
#endif

/* pair_sums of bfloat16 rows, m in the bf_pos order. */
__attribute__((noinline)) static void pair_sums_bf16(const void *a_, float ia, const float *m,
                                                     const void *b_, float ib, int64_t d,
                                                     double *s_mean, double *s_next) {
  const uint16_t *a = a_, *b = b_;
  double sm = 0.0, sn = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
#if SV_VECTORS
    vf vme = {0.0f}, vmo = {0.0f}, vne = {0.0f}, vno = {0.0f};
    for (int64_t j = 0; j < n; j += GROUP) {
      pf(a, k0 + j);
      vf me, mo;
      memcpy(&me, m + k0 + j, sizeof me);
      memcpy(&mo, m + k0 + j + LANES, sizeof mo);
      bf_pair_group(a, ia, b, ib, me, mo, k0 + j, n - j, &vme, &vmo, &vne, &vno);
    }
    sm += (double)vtotal(vme + vmo);
    sn += (double)vtotal(vne + vno);
#else
    float lme[LANES] = {0.0f}, lmo[LANES] = {0.0f}, lne[LANES] = {0.0f}, lno[LANES] = {0.0f};
    float lm[LANES], ln[LANES];
    for (int64_t j = 0; j < n; j += GROUP)
      for (int q = 0; q < LANES; ++q) {
        int64_t k = j + 2 * q;
        if (k < n) {
          float u = bf16_to_f32(a[k0 + k]) * ia;
          float e = u - m[k0 + j + q];
          float g = bf16_to_f32(b[k0 + k]) * ib - u;
          lme[q] = fmaf(e, e, lme[q]);
          lne[q] = fmaf(g, g, lne[q]);
        }
        if (k + 1 < n) {
          float u = bf16_to_f32(a[k0 + k + 1]) * ia;
          float e = u - m[k0 + j + LANES + q];
          float g = bf16_to_f32(b[k0 + k + 1]) * ib - u;
          lmo[q] = fmaf(e, e, lmo[q]);
          lno[q] = fmaf(g, g, lno[q]);
        }
      }
    for (int q = 0; q < LANES; ++q) {
      lm[q] = lme[q] + lmo[q];
      ln[q] = lne[q] + lno[q];
    }
    sm += (double)lanes_total(lm);
    sn += (double)lanes_total(ln);
#endif
  }
  *s_mean = sm;
  *s_next = sn;
}

/* Prefetches of the two-token sweep (bfloat16): the rows of frame t + 1, read there for the
 * first time (from memory), PF_FAR elements ahead (past the next pair of rows) into L2 only
 * (locality 2: prefetcht1), not polluting L1, which holds the column sums and the unit mean;
 * the rows of frame t, read again (from L3), PF_NEAR elements ahead into L1. Measured at the
 * 7B shape, interleaved: against PF_AHEAD for both (the one-row functions' prefetch) the
 * bfloat16 pass went from 6.59 to 5.37 ms on one thread and from 3.60 to 3.19 ms (minima
 * 3.49 to 2.88) on two; the same distances with the frame t + 1 rows prefetched into L1
 * measured 3.40 ms on two threads against 2.92 into L2; farther, nearer, or both streams
 * into L2 measured the same or slower. Hints only, which never fault. */
#define PF_FAR 8192
#define PF_NEAR 4096
static inline __attribute__((always_inline)) void pf_far(const uint16_t *r, int64_t k) {
  __builtin_prefetch((const void *)((uintptr_t)r + (uintptr_t)(k + PF_FAR) * 2u), 0, 2);
}
static inline __attribute__((always_inline)) void pf_near(const uint16_t *r, int64_t k) {
  __builtin_prefetch((const void *)((uintptr_t)r + (uintptr_t)(k + PF_NEAR) * 2u), 0, 3);
}

/* Two bfloat16 rows at once, for the sweep (tokens i and i + 1): each row's operations are
 * those of the one-row functions above, in the same order (the same bits; the column sums
 * take row r0 then row r1, as two calls would), but the column sums and the unit mean are
 * loaded and stored once per two rows. Built without AVX-512: the one-row functions twice. */
__attribute__((noinline)) static void sum_sq_add2_bf16(const uint16_t *restrict r0,
                                                       const uint16_t *restrict r1, int64_t d,
                                                       float *restrict col, double *s0,
                                                       double *s1) {
#if SV_VECTORS
  double acc0 = 0.0, acc1 = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    vf ve0 = {0.0f}, vo0 = {0.0f}, ve1 = {0.0f}, vo1 = {0.0f};
    for (int64_t j = 0; j < n; j += GROUP) {
      pf_far(r0, k0 + j);
      pf_far(r1, k0 + j);
      vf e0, o0, e1, o1, c0, c1;
      bf_ld(r0, k0 + j, n - j, &e0, &o0);
      bf_ld(r1, k0 + j, n - j, &e1, &o1);
      ve0 = vfma(e0, e0, ve0);
      vo0 = vfma(o0, o0, vo0);
      ve1 = vfma(e1, e1, ve1);
      vo1 = vfma(o1, o1, vo1);
      memcpy(&c0, col + k0 + j, sizeof c0);
      memcpy(&c1, col + k0 + j + LANES, sizeof c1);
      c0 += e0;
      c1 += o0;
      c0 += e1;
      c1 += o1;
      memcpy(col + k0 + j, &c0, sizeof c0);
      memcpy(col + k0 + j + LANES, &c1, sizeof c1);
    }
    acc0 += (double)vtotal(ve0 + vo0);
    acc1 += (double)vtotal(ve1 + vo1);
  }
  *s0 = acc0;
  *s1 = acc1;
#else
  *s0 = sum_sq_add_bf16(r0, d, col);
  *s1 = sum_sq_add_bf16(r1, d, col);
#endif
}

__attribute__((noinline)) static void pair_sums2_bf16(const uint16_t *a0, float ia0,
                                                      const uint16_t *a1, float ia1,
                                                      const float *m, const uint16_t *b0,
                                                      float ib0, const uint16_t *b1, float ib1,
                                                      int64_t d, double *out) {
#if SV_VECTORS
  double sm0 = 0.0, sn0 = 0.0, sm1 = 0.0, sn1 = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t n = d - k0 < SUM_BLOCK ? d - k0 : SUM_BLOCK;
    vf me0 = {0.0f}, mo0 = {0.0f}, ne0 = {0.0f}, no0 = {0.0f};
    vf me1 = {0.0f}, mo1 = {0.0f}, ne1 = {0.0f}, no1 = {0.0f};
    for (int64_t j = 0; j < n; j += GROUP) {
      pf_near(a0, k0 + j);
      pf_near(a1, k0 + j);
      vf me, mo;
      memcpy(&me, m + k0 + j, sizeof me);
      memcpy(&mo, m + k0 + j + LANES, sizeof mo);
      bf_pair_group(a0, ia0, b0, ib0, me, mo, k0 + j, n - j, &me0, &mo0, &ne0, &no0);
      bf_pair_group(a1, ia1, b1, ib1, me, mo, k0 + j, n - j, &me1, &mo1, &ne1, &no1);
    }
    sm0 += (double)vtotal(me0 + mo0);
    sn0 += (double)vtotal(ne0 + no0);
    sm1 += (double)vtotal(me1 + mo1);
    sn1 += (double)vtotal(ne1 + no1);
  }
  out[0] = sm0;
  out[1] = sn0;
  out[2] = sm1;
  out[3] = sn1;
#else
  pair_sums_bf16(a0, ia0, m, b0, ib0, d, out, out + 1);
  pair_sums_bf16(a1, ia1, m, b1, ib1, d, out + 2, out + 3);
#endif
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
  int64_t dp = dtype == SV_BF16 ? bf_len(d) : d; /* scratch entries (bf_pos order for bf16) */
  float *col = malloc((size_t)dp * sizeof(float));
  float *um = malloc((size_t)(2 * dp) * sizeof(float)); /* this frame's u(mean), the next's */
  double *sq = malloc((size_t)(2 * f) * sizeof(double)); /* this frame's, the next's */
  float *buf = malloc((size_t)(2 * d) * sizeof(float)); /* float16 rows a and b, converted */
  const row_ops *ops = dtype == SV_BF16 ? &OPS_BF16 : &OPS_F32;
  int rc = (col && um && sq && buf) ? 0 : -1;
  if (rc == 0 && t0 < t1) {
    double *sq_cur = sq, *sq_nxt = sq + f;
    float *um_cur = um, *um_nxt = um + dp;
    double s_mean, s_next;
    /* frame t0: norms and column sums, and T against frame t0 - 1 (0 for the first frame) */
    memset(col, 0, (size_t)dp * sizeof(float));
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
    mnorm[t0] = norm_out(unit_mean(col, f, dp, eps, um_cur));
    /* the sweep of frame t: S of frame t (its rows read a second time, from cache) and,
     * from the rows of frame t + 1 (their first read), their norms, column sums and T */
    for (int64_t t = t0; t < t1; ++t) {
      int has_next = t + 1 < t1;
      if (has_next) memset(col, 0, (size_t)dp * sizeof(float));
      int64_t i = 0;
      if (dtype == SV_BF16) /* two tokens at a time (the same bits as one at a time) */
        for (; i + 1 < f; i += 2) {
          const uint16_t *a0 = row_at(x, dtype, t, i, d, st, si, buf);
          const uint16_t *a1 = row_at(x, dtype, t, i + 1, d, st, si, buf);
          const uint16_t *b0 = a0, *b1 = a1;
          float ia0 = inv_norm(sq_cur[i], eps), ia1 = inv_norm(sq_cur[i + 1], eps);
          float ib0 = ia0, ib1 = ia1;
          double s4[4];
          if (has_next) {
            b0 = row_at(x, dtype, t + 1, i, d, st, si, buf);
            b1 = row_at(x, dtype, t + 1, i + 1, d, st, si, buf);
            sum_sq_add2_bf16(b0, b1, d, col, &sq_nxt[i], &sq_nxt[i + 1]);
            norms[(t + 1) * f + i] = norm_out(sq_nxt[i]);
            norms[(t + 1) * f + i + 1] = norm_out(sq_nxt[i + 1]);
            ib0 = inv_norm(sq_nxt[i], eps);
            ib1 = inv_norm(sq_nxt[i + 1], eps);
          }
          pair_sums2_bf16(a0, ia0, a1, ia1, um_cur, b0, ib0, b1, ib1, d, s4);
          dm[t * f + i] = (float)sqrt(s4[0]);
          dm[t * f + i + 1] = (float)sqrt(s4[2]);
          if (has_next) {
            dt[(t + 1) * f + i] = (float)sqrt(s4[1]);
            dt[(t + 1) * f + i + 1] = (float)sqrt(s4[3]);
          }
        }
      for (; i < f; ++i) {
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
        mnorm[t + 1] = norm_out(unit_mean(col, f, dp, eps, um_nxt));
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

/* A pair's score from its distance d and whether each token is non-zero (SPEC 1, as
 * torch_path.pair_scores): dissim d, exactly 1 against one zero token, 0 between two;
 * cosine d^2 / 2, exactly 1 when either token is zero. */
static float pair_score(float d, int nz_a, int nz_b, int cosine) {
  if (cosine) return nz_a && nz_b ? 0.5f * (d * d) : 1.0f;
  return nz_a && nz_b ? d : (nz_a || nz_b) ? 1.0f : 0.0f;
}

/* S, T and I = T + w S (n, f) from the distances (visual_scores_torch's float32 operations,
 * the same bits): a token is non-zero where its norm is above eps, compared in float32;
 * the first frame of every video (cu[b], b < nvid) has T = S. With r (not NULL), the ratios
 * r[t] = clamp(||T[t]|| / float32(2 sqrt f), 0, 1) too: the squares summed in double (not
 * torch.linalg.vector_norm's float32 order: the same value within a float32 rounding of the
 * norm; exactly the same where the sum is exact, e.g. T in {0, 1}), its square root rounded
 * to float32, then float32 division and clamp as torch_path. */
void sharpv_visual_scores(const float *dm, const float *dt, const float *norms,
                          const float *mnorm, const int32_t *cu, int64_t nvid, int64_t n,
                          int64_t f, int cosine, float w, float eps, float *S, float *T,
                          float *I, float *r) {
  for (int64_t t = 0; t < n; ++t) {
    const float *nr = norms + t * f, *np = norms + (t > 0 ? t - 1 : 0) * f;
    int nz_m = mnorm[t] > eps;
    for (int64_t i = 0; i < f; ++i) {
      int nz = nr[i] > eps;
      S[t * f + i] = pair_score(dm[t * f + i], nz, nz_m, cosine);
      T[t * f + i] = pair_score(dt[t * f + i], nz, np[i] > eps, cosine);
    }
  }
  for (int64_t b = 0; b < nvid; ++b)
    if (cu[b] >= 0 && cu[b] < n) memcpy(T + cu[b] * f, S + cu[b] * f, (size_t)f * sizeof *T);
  for (int64_t k = 0; k < n * f; ++k) {
    float ws = w * S[k];
    I[k] = T[k] + ws;
  }
  if (r) { /* the ratio of every frame: ||T[t]|| / (2 sqrt f) in [0, 1] (NaN stays NaN) */
    float den = (float)(2.0 * sqrt((double)f));
    for (int64_t t = 0; t < n; ++t) {
      double q = 0.0;
      for (int64_t i = 0; i < f; ++i) q += (double)T[t * f + i] * (double)T[t * f + i];
      float v = (float)sqrt(q) / den;
      r[t] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
  }
}

/* 1 when every one of the n norms is finite (norms are >= 0, +inf or NaN), else 0: the
 * flag torch.isfinite(norms).all() reads, in one pass and no tensor. */
int sharpv_all_finite(const float *norms, int64_t n) {
  int bad = 0;
  for (int64_t k = 0; k < n; ++k) bad |= !(norms[k] <= FLT_MAX);
  return !bad;
}

/* The op's counts as int32 (k32[t] = (int32_t)k[t]) and its token offsets
 * cu_tokens[b] = (int32_t)(k[0] + ... + k[cu[b] - 1]) for b <= nvid: torch_path's cumsum,
 * index and int32 conversions (the same values), in one call. cu is valid (increasing, in
 * [0, n]). */
void sharpv_counts_cu(const int64_t *k, int64_t n, const int32_t *cu, int64_t nvid,
                      int32_t *k32, int32_t *cu_tokens) {
  int64_t acc = 0, t = 0;
  for (int64_t b = 0; b <= nvid; ++b) {
    for (; t < cu[b] && t < n; ++t) acc += k[t];
    cu_tokens[b] = (int32_t)(uint32_t)(uint64_t)acc;
  }
  for (t = 0; t < n; ++t) k32[t] = (int32_t)(uint32_t)(uint64_t)k[t];
}

/* The selection: key of token i of a frame with score v, ordered as torch.sort(descending,
 * stable) orders them: higher scores first (every NaN above +inf, -0 equal to +0), ties to
 * the lower index. Keys sort ascending. */
static uint64_t select_key(float v, int64_t i) {
  uint32_t u;
  if (v != v) {
    u = 0xffffffffu; /* NaN: above every number */
  } else {
    if (v == 0.0f) v = 0.0f; /* -0 as +0 */
    memcpy(&u, &v, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* monotone: larger v, larger u */
  }
  return ((uint64_t)(~u) << 32) | (uint64_t)i;
}

/* The r-th smallest of the distinct keys k[0 .. n) (0 <= r < n), k reordered: quickselect
 * (median of three pivots). */
static uint64_t select_nth(uint64_t *k, int64_t n, int64_t r) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    uint64_t x = k[lo], y = k[mid], z = k[hi];
    uint64_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    int64_t i = lo, j = hi;
    while (i <= j) { /* Hoare partition around the value p */
      while (k[i] < p) ++i;
      while (k[j] > p) --j;
      if (i <= j) {
        uint64_t t = k[i];
        k[i++] = k[j];
        k[j--] = t;
      }
    }
    if (r <= j)
      hi = j;
    else if (r >= i)
      lo = i;
    else
      return k[r];
  }
  return k[r];
}

/* Flat indices t * f + i, increasing, of the counts[t] (0 <= counts[t] <= f) best tokens of
 * every frame t < n by score (n, f) as keyed above: what select_torch returns. out holds
 * sum(counts) entries; returns how many were written, or -1 when scratch memory cannot be
 * allocated (or f does not fit in 32 bits). */
int64_t sharpv_select_top(const float *score, int64_t n, int64_t f, const int64_t *counts,
                          int64_t *out) {
  if (n <= 0 || f <= 0) return 0;
  if (f > (int64_t)UINT32_MAX) return -1; /* indices are packed into 32 bits */
  uint64_t *keys = malloc((size_t)(2 * f) * sizeof(uint64_t));
  int64_t m = 0;
  if (!keys) return -1;
  for (int64_t t = 0; t < n; ++t) {
    int64_t k = counts[t] < 0 ? 0 : counts[t] > f ? f : counts[t];
    if (k == f) {
      for (int64_t i = 0; i < f; ++i) out[m++] = t * f + i;
      continue;
    }
    if (k == 0) continue;
    for (int64_t i = 0; i < f; ++i) keys[i] = select_key(score[t * f + i], i);
    memcpy(keys + f, keys, (size_t)f * sizeof *keys);
    uint64_t last = select_nth(keys + f, f, k - 1); /* the k-th best key: keep those <= it */
    for (int64_t i = 0; i < f; ++i)
      if (keys[i] <= last) out[m++] = t * f + i;
  }
  free(keys);
  return m;
}

/* Copy of n bytes from s to d (d 64-byte aligned, n a multiple of 64) with non-temporal
 * stores where the machine has them: a large output then goes to memory without first
 * being read into the cache (measured, 10 MB of bfloat16 rows, 2 threads: about a third
 * less time than memcpy into fresh memory). */
static void copy_stream(char *restrict d, const char *restrict s, int64_t n) {
#if SV_VECTORS
  for (int64_t j = 0; j < n; j += 64) {
    __m512i v;
    memcpy(&v, s + j, sizeof v);
    _mm512_stream_si512((void *)(d + j), v);
  }
#else
  memcpy(d, s, (size_t)n);
#endif
}

/* Outputs of at least this many bytes are written with non-temporal stores and, with more
 * than one thread, on `threads` OpenMP threads (smaller ones: memcpy on the calling thread). */
#define GATHER_BIG ((int64_t)4 << 20)

/* Rows r0 .. r1 - 1 of the gather; streamed stores are fenced by the thread that made them
 * (ordered before the end of the parallel region and the caller's reads). */
static void gather_range(const char *s, int64_t src_stride, int64_t row_bytes,
                         const int64_t *idx, int64_t r0, int64_t r1, char *d, int stream) {
  for (int64_t r = r0; r < r1; ++r) {
    if (stream)
      copy_stream(d + r * row_bytes, s + idx[r] * src_stride, row_bytes);
    else
      memcpy(d + r * row_bytes, s + idx[r] * src_stride, (size_t)row_bytes);
  }
#if SV_VECTORS
  if (stream) _mm_sfence();
#endif
}

/* dst row r = src row idx[r] (row_bytes each, rows src_stride bytes apart), r < k; indices
 * are valid (the caller's selection). One thread enters no OpenMP region (see below). */
int sharpv_gather_rows(const void *src, int64_t src_stride, int64_t row_bytes,
                       const int64_t *idx, int64_t k, void *dst, int threads) {
  const char *s = src;
  char *d = dst;
  int64_t total = k * row_bytes;
  int stream = total >= GATHER_BIG && row_bytes % 64 == 0 && (uintptr_t)d % 64 == 0;
  int chunks = total >= GATHER_BIG && threads > 1 ? threads : 1;
  if (chunks <= 1) {
    gather_range(s, src_stride, row_bytes, idx, 0, k, d, stream);
  } else {
#pragma omp parallel num_threads(chunks)
    {
#if defined(_OPENMP)
      int c = omp_get_thread_num(), m = omp_get_num_threads();
#else
      int c = 0, m = 1;
#endif
      gather_range(s, src_stride, row_bytes, idx, k * c / m, k * (c + 1) / m, d, stream);
    }
  }
  return 0;
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
