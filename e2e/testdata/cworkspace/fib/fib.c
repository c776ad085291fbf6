#include "fib/fib.h"

#include "arith/arith.h"

/* fib_pair sets *f = F(n) and *g = F(n+1), both modulo m. */
static void fib_pair(uint64_t n, uint64_t m, uint64_t *f, uint64_t *g) {
  if (n == 0) {
    *f = 0;
    *g = 1 % m;
    return;
  }
  uint64_t a, b;
  fib_pair(n / 2, m, &a, &b);
  /* F(2k) = F(k) * (2F(k+1) - F(k)); F(2k+1) = F(k)^2 + F(k+1)^2. */
  uint64_t c = arith_mulmod(a, (2 * b % m + m - a) % m, m);
  uint64_t d = (arith_mulmod(a, a, m) + arith_mulmod(b, b, m)) % m;
  if (n % 2 == 0) {
    *f = c;
    *g = d;
  } else {
    *f = d;
    *g = (c + d) % m;
  }
}

uint64_t fib_mod(uint64_t n, uint64_t m) {
  uint64_t f, g;
  fib_pair(n, m, &f, &g);
  return f;
}
