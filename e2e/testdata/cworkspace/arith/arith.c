#include "arith/arith.h"

uint64_t arith_mulmod(uint64_t a, uint64_t b, uint64_t m) {
  return (uint64_t)((unsigned __int128)a * b % m);
}

uint64_t arith_powmod(uint64_t base, uint64_t exp, uint64_t m) {
  uint64_t result = 1 % m;
  base %= m;
  while (exp > 0) {
    if (exp & 1) result = arith_mulmod(result, base, m);
    base = arith_mulmod(base, base, m);
    exp >>= 1;
  }
  return result;
}
