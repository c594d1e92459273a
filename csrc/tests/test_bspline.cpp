// Unit tests of the shared B-spline math (kanfast/bspline.h), scalar and SIMD lanes.
// No torch: run by ctest after the CMake build.
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kanfast/bspline.h"
#include "kanfast/cpu/lanes.h"
#include "kanfast/uniform_bspline.h"

namespace {

int failures = 0;

#define EXPECT(cond, ...)                                        \
  do {                                                           \
    if (!(cond)) {                                               \
      ++failures;                                                \
      std::printf("FAIL %s:%d: %s | ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                  \
      std::printf("\n");                                         \
    }                                                            \
  } while (0)

struct Spline {
  std::vector<double> t;  // knots
  int order;
  int num_bases() const { return static_cast<int>(t.size()) - 1 - order; }
  double recip(int k, int j) const { return kanfast::knot_span_reciprocal(t[j], t[j + k]); }

  // recip(k, j) is 0 past the last span, as the kernels' tables are
  double table_recip(int k, int j) const { return j + k < static_cast<int>(t.size()) ? recip(k, j) : 0.0; }

  void eval(double x, std::vector<double>& B, std::vector<double>* D) const {
    B.assign(num_bases(), -1.0);
    std::vector<double> deriv(num_bases(), -1.0);
    auto knot = [&](int j) { return t[j]; };
    auto rec = [&](int k, int j) { return table_recip(k, j); };
    kanfast::dispatch_spline_order(order, [&](auto k) {
      kanfast::bspline_columns<decltype(k)::value, true>(x, static_cast<int>(t.size()), knot, rec,
                                                         [&](int j, double b, double d) {
                                                           B[j] = b;
                                                           deriv[j] = d;
                                                         });
    });
    if (D) *D = deriv;
  }
};

Spline uniform(int grid_size, int order, double lo = -1, double hi = 1) {
  Spline s{{}, order};
  const double h = (hi - lo) / grid_size;
  for (int j = -order; j <= grid_size + order; ++j) s.t.push_back(lo + j * h);
  return s;
}

Spline irregular(int order) {
  Spline s{{-3.0, -2.5, -1.0, -0.9, -0.2, 0.0, 0.05, 0.7, 1.0, 1.8, 2.0, 3.5}, order};
  return s;
}

void test_partition_of_unity_and_support() {
  for (int order = 1; order <= kanfast::kMaxSplineOrder; ++order) {
    for (const Spline& s : {uniform(5, order), uniform(17, order, -2, 3), irregular(std::min(order, 5))}) {  // 12 knots carry order <= 5
      const double lo = s.t[s.order], hi = s.t[s.t.size() - 1 - s.order];
      std::vector<double> B;
      for (int i = 0; i < 997; ++i) {
        const double x = lo + (hi - lo) * i / 997.0;
        s.eval(x, B, nullptr);
        double sum = 0;
        int nonzero = 0;
        for (double b : B) {
          EXPECT(b >= -1e-15, "order %d x %g basis %g < 0", order, x, b);
          sum += b;
          nonzero += b != 0;
        }
        EXPECT(std::fabs(sum - 1) < 1e-12, "order %d x %g sum %.17g", order, x, sum);
        EXPECT(nonzero <= order + 1, "order %d x %g has %d non-zero bases", order, x, nonzero);
      }
    }
  }
}

void test_derivative_matches_finite_differences() {
  for (int order = 1; order <= 5; ++order) {
    const Spline s = irregular(order);
    std::vector<double> B, D, Bp, Bm;
    for (double x : {-2.31, -0.55, 0.02, 0.333, 1.2, 2.7}) {
      s.eval(x, B, &D);
      const double h = 1e-6;
      s.eval(x + h, Bp, nullptr);
      s.eval(x - h, Bm, nullptr);
      for (int j = 0; j < s.num_bases(); ++j) {
        const double fd = (Bp[j] - Bm[j]) / (2 * h);
        EXPECT(std::fabs(fd - D[j]) < 1e-5 * (1 + std::fabs(D[j])), "order %d x %g j %d: %g vs %g", order, x, j,
               D[j], fd);
      }
    }
  }
}

void test_outside_and_non_finite() {
  const Spline s = uniform(5, 3);
  std::vector<double> B, D;
  const double inf = std::numeric_limits<double>::infinity();
  for (double x : {s.t.front() - 1e-9, s.t.back(), s.t.back() + 4, inf, -inf}) {
    s.eval(x, B, &D);
    for (int j = 0; j < s.num_bases(); ++j) {
      EXPECT(B[j] == 0 && D[j] == 0, "x %g j %d gives %g / %g, want 0", x, j, B[j], D[j]);
    }
  }
  s.eval(std::nan(""), B, &D);
  for (int j = 0; j < s.num_bases(); ++j) EXPECT(std::isnan(B[j]) && std::isnan(D[j]), "NaN x, j %d", j);
  s.eval(s.t.front(), B, nullptr);  // half-open: the first knot is inside
  EXPECT(B[0] == 0 && s.order > 0, "B_0 at t_0 of a cubic is 0, got %g", B[0]);
}

void test_repeated_knots_are_finite() {
  Spline s{{-1, -1, -1, -1, -0.5, 0, 0, 0.5, 1, 1, 1, 1}, 3};
  std::vector<double> B, D;
  for (int i = 0; i < 200; ++i) {
    const double x = -1 + 2.0 * i / 200;
    s.eval(x, B, &D);
    double sum = 0;
    for (int j = 0; j < s.num_bases(); ++j) {
      EXPECT(std::isfinite(B[j]) && std::isfinite(D[j]), "x %g j %d: %g %g", x, j, B[j], D[j]);
      sum += B[j];
    }
    EXPECT(std::fabs(sum - 1) < 1e-12, "clamped spline at %g sums to %.17g", x, sum);
  }
}

// The SIMD lanes of either width must give the scalar results bit for bit (the CPU kernels
// use them).
template <int Bytes>
void test_simd_lanes_equal_scalar() {
  using V = kanfast::cpu::Vec<double, Bytes>;
  constexpr int W = kanfast::cpu::Lanes<double, Bytes>::width;
  const Spline s = irregular(3);
  const int nk = static_cast<int>(s.t.size());
  double xs[W];
  for (int l = 0; l < W; ++l) xs[l] = -3.2 + 6.9 * l / (W - 1);  // outside on both sides and inside
  V x;
  std::memcpy(&x, xs, sizeof(x));
  std::vector<V> B(s.num_bases()), D(s.num_bases());
  auto knot = [&](int j) { return V{} + s.t[j]; };
  auto rec = [&](int k, int j) { return V{} + s.table_recip(k, j); };
  kanfast::bspline_columns<3, true>(x, nk, knot, rec, [&](int j, V b, V d) {
    B[j] = b;
    D[j] = d;
  });
  std::vector<double> b, d;
  for (int l = 0; l < W; ++l) {
    s.eval(xs[l], b, &d);
    for (int j = 0; j < s.num_bases(); ++j) {
      EXPECT(b[j] == B[j][l] && d[j] == D[j][l], "%d-byte lane %d j %d: %g/%g vs %g/%g", Bytes, l, j, B[j][l],
             D[j][l], b[j], d[j]);
    }
  }
}

// Every basis is emitted exactly once, for orders up to the maximum.
void test_every_basis_is_emitted() {
  for (int order = 1; order <= kanfast::kMaxSplineOrder; ++order) {
    const Spline s = uniform(9, order);
    std::vector<double> B, D;
    s.eval(0.123, B, &D);
    for (int j = 0; j < s.num_bases(); ++j) EXPECT(B[j] >= 0 && D[j] != -1.0, "order %d basis %d not emitted", order, j);
  }
}

// The uniform-grid kernel against the exact recursion, in double (where only rounding separates
// them) on knots, beside knots, outside the grid and non-finite x; derivatives in units of 1/h.
template <typename T>
void uniform_eval(const Spline& s, T x, std::vector<double>& B, std::vector<double>& D) {
  const int nk = static_cast<int>(s.t.size());
  const T origin = static_cast<T>(s.t.front()), inv_step = static_cast<T>((nk - 1) / (s.t.back() - s.t.front()));
  B.assign(s.num_bases(), -1.0);
  D.assign(s.num_bases(), -1.0);
  kanfast::dispatch_spline_order(s.order, [&](auto k) {
    if constexpr (decltype(k)::value >= 2) {
      kanfast::uniform_bspline_columns<decltype(k)::value, true>(x, origin, inv_step, nk, [&](int j, T b, T d) {
        B[j] = b;
        D[j] = d;
      });
    }
  });
}

void test_uniform_kernel_matches_recursion() {
  const double inf = std::numeric_limits<double>::infinity();
  for (int order = 2; order <= kanfast::kMaxSplineOrder; ++order) {
    for (const Spline& s : {uniform(5, order), uniform(17, order, -2, 3), uniform(64, order)}) {
      const double h = s.t[1] - s.t[0];
      std::vector<double> xs = {s.t.front() - 1, s.t.back() + 1, inf, -inf};
      for (double t : s.t) xs.insert(xs.end(), {t, std::nextafter(t, -inf), std::nextafter(t, inf)});
      for (int i = 0; i < 301; ++i) xs.push_back(s.t.front() + (s.t.back() - s.t.front()) * i / 300.0 + 1e-3);
      std::vector<double> B, D, UB, UD;
      for (double x : xs) {
        s.eval(x, B, &D);
        uniform_eval(s, x, UB, UD);
        for (int j = 0; j < s.num_bases(); ++j) {
          EXPECT(std::fabs(UB[j] - B[j]) < 1e-12 && std::fabs(UD[j] - D[j]) * h < 1e-12,
                 "order %d G %d x %.17g j %d: %g/%g vs %g/%g", order, s.num_bases() - order, x, j, UB[j], UD[j],
                 B[j], D[j]);
        }
      }
      uniform_eval(s, std::nan(""), UB, UD);
      for (int j = 0; j < s.num_bases(); ++j) EXPECT(std::isnan(UB[j]) && std::isnan(UD[j]), "NaN x, j %d", j);
    }
  }
}

// float SIMD lanes of either width give the scalar float results bit for bit.
template <int Bytes>
void test_uniform_simd_lanes_equal_scalar() {
  using V = kanfast::cpu::Vec<float, Bytes>;
  constexpr int W = kanfast::cpu::Lanes<float, Bytes>::width;
  const Spline s = uniform(5, 3);
  const int nk = static_cast<int>(s.t.size());
  float xs[W];
  for (int l = 0; l < W; ++l) xs[l] = static_cast<float>(-2.5 + 5.0 * l / (W - 1));  // outside on both sides and inside
  xs[1] = static_cast<float>(s.t[4]);                                                 // on a knot
  xs[2] = std::nanf("");
  V x;
  std::memcpy(&x, xs, sizeof(x));
  const float origin = static_cast<float>(s.t.front()), inv_step = static_cast<float>((nk - 1) / (s.t.back() - s.t.front()));
  std::vector<V> B(s.num_bases()), D(s.num_bases());
  kanfast::uniform_bspline_columns<3, true>(x, V{} + origin, V{} + inv_step, nk, [&](int j, V b, V d) {
    B[j] = b;
    D[j] = d;
  });
  std::vector<double> b, d;
  for (int l = 0; l < W; ++l) {
    uniform_eval<float>(s, xs[l], b, d);
    for (int j = 0; j < s.num_bases(); ++j) {
      const bool same = (b[j] == B[j][l] || (std::isnan(b[j]) && std::isnan(B[j][l]))) &&
                        (d[j] == D[j][l] || (std::isnan(d[j]) && std::isnan(D[j][l])));
      EXPECT(same, "%d-byte lane %d j %d: %g/%g vs %g/%g", Bytes, l, j, B[j][l], D[j][l], b[j], d[j]);
    }
  }
}

}  // namespace

int main() {
  test_partition_of_unity_and_support();
  test_derivative_matches_finite_differences();
  test_outside_and_non_finite();
  test_repeated_knots_are_finite();
  test_simd_lanes_equal_scalar<32>();
  test_simd_lanes_equal_scalar<64>();
  test_every_basis_is_emitted();
  test_uniform_kernel_matches_recursion();
  test_uniform_simd_lanes_equal_scalar<32>();
  test_uniform_simd_lanes_equal_scalar<64>();
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
