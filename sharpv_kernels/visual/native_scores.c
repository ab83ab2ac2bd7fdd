/*
 * The native CPU kernel of Visual SharpV's score pass (built and loaded by native.py).
 *
 * For the frames [t0, t1) of features x (total_frames, f, d), channel stride 1, it writes
 *   dm[t, i]    = || u(x[t, i]) - u(mean_t) ||   (float32)
 *   dt[t, i]    = || u(x[t, i]) - u(x[t-1, i]) ||, 0 for t = 0   (float32)
 *   norms[t, i] = || x[t, i] ||, +inf where the squared norm exceeds FLT_MAX (float32)
 *   mnorm[t]    = || mean_t ||   (float32)
 * with u(v) = v * (1 / ||v||) rounded to float32, and 0 when ||v|| <= eps.
 *
 * One read of each frame for the norms and the column sums, then one more (from cache) for
 * the differences, against the previous frame's rows; no intermediate tensor. Column sums are
 * float32 (as in the Triton kernels); sums of squares are float32 over short blocks, added
 * in double. Every sum of squares of a row goes through one non-inlined function, so
 * identical rows give bit-identical unit vectors (a difference of exactly 0), and so do rows
 * that are power-of-two rescalings of one another (products and sums scale exactly, and so
 * do 1/sqrt and the rounding to float32).
 * Build flags (native.py): -O3 -fopenmp-simd (vectorised reductions, no OpenMP runtime) and
 * -ffp-contract=off (a fused multiply-add would round u on one side of a difference only).
 *
 * Returns 0, or -1 when scratch memory cannot be allocated.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* Row i of frame t as float32: the input itself, or converted into buf. */
static const float *row_f32(const void *x, int dtype, int64_t t, int64_t i, int64_t d,
                            int64_t st, int64_t si, float *buf) {
  int64_t off = t * st + i * si;
  if (dtype == SV_F32) return (const float *)x + off;
  const uint16_t *h = (const uint16_t *)x + off;
  if (dtype == SV_BF16) {
    for (int64_t k = 0; k < d; ++k) buf[k] = bf16_to_f32(h[k]);
  } else {
    for (int64_t k = 0; k < d; ++k) buf[k] = f16_to_f32(h[k]);
  }
  return buf;
}

/* Sums of squares: float32 products summed in float32 over blocks of SUM_BLOCK elements
 * (vectorised: a few terms per lane), the block sums added in double. The relative error
 * stays near that of a float32 tree sum whatever d is. */
#define SUM_BLOCK 64

__attribute__((noinline)) static double sum_sq(const float *r, int64_t d) {
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t k1 = k0 + SUM_BLOCK < d ? k0 + SUM_BLOCK : d;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t k = k0; k < k1; ++k) s += r[k] * r[k];
    acc += (double)s;
  }
  return acc;
}

static void add_to(float *col, const float *r, int64_t d) {
#pragma omp simd
  for (int64_t k = 0; k < d; ++k) col[k] += r[k];
}

/* Both squared distances of one row: to the mean's unit vector and to the previous row's. */
__attribute__((noinline)) static void sum_sq_diffs(const float *r, float iv, const float *um,
                                                   const float *p, float ip, int64_t d,
                                                   double *s_mean, double *s_prev) {
  double a = 0.0, b = 0.0;
  for (int64_t k0 = 0; k0 < d; k0 += SUM_BLOCK) {
    int64_t k1 = k0 + SUM_BLOCK < d ? k0 + SUM_BLOCK : d;
    float sa = 0.0f, sb = 0.0f;
#pragma omp simd reduction(+ : sa, sb)
    for (int64_t k = k0; k < k1; ++k) {
      float u = r[k] * iv;
      float e = u - um[k];
      float g = u - p[k] * ip;
      sa += e * e;
      sb += g * g;
    }
    a += (double)sa;
    b += (double)sb;
  }
  *s_mean = a;
  *s_prev = b;
}

static float inv_norm(double sq, double eps) {
  return sq > eps * eps ? (float)(1.0 / sqrt(sq)) : 0.0f;
}

static float norm_out(double sq) {
  return sq > (double)FLT_MAX ? INFINITY : (float)sqrt(sq);
}

int sharpv_visual_distances(const void *x, int dtype, int64_t t0, int64_t t1, int64_t f,
                            int64_t d, int64_t st, int64_t si, double eps, float *dm,
                            float *dt, float *norms, float *mnorm) {
  float *col = malloc((size_t)d * sizeof(float));
  double *sq = malloc((size_t)(2 * f) * sizeof(double)); /* this frame's and the previous */
  float *um = malloc((size_t)d * sizeof(float));
  float *mean = malloc((size_t)d * sizeof(float));
  float *buf = malloc((size_t)(2 * d) * sizeof(float)); /* converted rows: this, previous */
  int rc = (col && sq && um && mean && buf) ? 0 : -1;
  if (rc == 0) {
    double *sq_cur = sq, *sq_prev = sq + f;
    if (t0 > 0) {
      for (int64_t i = 0; i < f; ++i)
        sq_prev[i] = sum_sq(row_f32(x, dtype, t0 - 1, i, d, st, si, buf), d);
    }
    for (int64_t t = t0; t < t1; ++t) {
      memset(col, 0, (size_t)d * sizeof(float));
      for (int64_t i = 0; i < f; ++i) {
        const float *r = row_f32(x, dtype, t, i, d, st, si, buf);
        sq_cur[i] = sum_sq(r, d);
        add_to(col, r, d);
        norms[t * f + i] = norm_out(sq_cur[i]);
      }
      float inv_f = 1.0f / (float)f;
      for (int64_t k = 0; k < d; ++k) mean[k] = col[k] * inv_f;
      double msq = sum_sq(mean, d);
      float mi = inv_norm(msq, eps);
      for (int64_t k = 0; k < d; ++k) um[k] = mean[k] * mi;
      mnorm[t] = norm_out(msq);
      for (int64_t i = 0; i < f; ++i) {
        const float *r = row_f32(x, dtype, t, i, d, st, si, buf);
        float iv = inv_norm(sq_cur[i], eps);
        const float *p = r;
        float ip = iv;
        if (t > 0) {
          p = row_f32(x, dtype, t - 1, i, d, st, si, buf + d);
          ip = inv_norm(sq_prev[i], eps);
        }
        double a, b;
        sum_sq_diffs(r, iv, um, p, ip, d, &a, &b);
        dm[t * f + i] = (float)sqrt(a);
        dt[t * f + i] = (float)sqrt(b);
      }
      double *tmp = sq_prev;
      sq_prev = sq_cur;
      sq_cur = tmp;
    }
  }
  free(col);
  free(sq);
  free(um);
  free(mean);
  free(buf);
  return rc;
}
