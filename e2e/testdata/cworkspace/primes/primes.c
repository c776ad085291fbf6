#include "primes/primes.h"

#include "arith/arith.h"

int primes_is_prime(uint64_t n) {
  static const uint64_t witnesses[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return 0;
  for (unsigned i = 0; i < sizeof witnesses / sizeof witnesses[0]; i++) {
    if (n % witnesses[i] == 0) return n == witnesses[i];
  }
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    s++;
  }
  for (unsigned i = 0; i < sizeof witnesses / sizeof witnesses[0]; i++) {
    uint64_t x = arith_powmod(witnesses[i], d, n);
    if (x == 1 || x == n - 1) continue;
    int composite = 1;
    for (int r = 1; r < s; r++) {
      x = arith_mulmod(x, x, n);
      if (x == n - 1) {
        composite = 0;
        break;
      }
    }
    if (composite) return 0;
  }
  return 1;
}

uint64_t primes_nth(unsigned n) {
  uint64_t candidate = 1;
  while (n > 0) {
    candidate++;
    if (primes_is_prime(candidate)) n--;
  }
  return candidate;
}
