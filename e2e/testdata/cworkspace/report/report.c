#include "report/report.h"

#include <inttypes.h>
#include <stdio.h>

#include "fib/fib.h"
#include "fnv/fnv.h"
#include "primes/primes.h"

int report_format(char *buf, size_t size) {
  enum { kPrimeIndex = 10000, kFibIndex = 1000 };
  const uint64_t modulus = 1000000007;
  uint64_t prime = primes_nth(kPrimeIndex);
  uint64_t fib = fib_mod(kFibIndex, modulus);
  char summary[64];
  int n = snprintf(summary, sizeof summary, "%" PRIu64 ":%" PRIu64, prime, fib);
  uint64_t hash = fnv1a64(summary, (size_t)n);
  return snprintf(buf, size, "prime(%d)=%" PRIu64 " fib(%d)%%%" PRIu64 "=%" PRIu64 " fnv=%016" PRIx64,
                  kPrimeIndex, prime, kFibIndex, modulus, fib, hash);
}
