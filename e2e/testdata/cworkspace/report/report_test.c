#include <stdio.h>
#include <string.h>

#include "fib/fib.h"
#include "primes/primes.h"
#include "report/report.h"

static int failures;

static void expect_u64(const char *what, uint64_t got, uint64_t want) {
  if (got != want) {
    fprintf(stderr, "%s = %llu, want %llu\n", what, (unsigned long long)got, (unsigned long long)want);
    failures++;
  }
}

int main(void) {
  expect_u64("primes_nth(1)", primes_nth(1), 2);
  expect_u64("primes_nth(6)", primes_nth(6), 13);
  expect_u64("primes_nth(10000)", primes_nth(10000), 104729);
  expect_u64("fib_mod(10, 1000)", fib_mod(10, 1000), 55);
  expect_u64("fib_mod(90, 2^63)", fib_mod(90, 1ULL << 63), 2880067194370816120ULL);

  static const char want[] = "prime(10000)=104729 fib(1000)%1000000007=517691607 fnv=8f8af964733a4a0a";
  char line[256];
  int n = report_format(line, sizeof line);
  if (n != (int)strlen(want) || strcmp(line, want) != 0) {
    fprintf(stderr, "report_format = %d \"%s\", want %d \"%s\"\n", n, line, (int)strlen(want), want);
    failures++;
  }
  if (failures == 0) puts("report_test: all checks passed");
  return failures != 0;
}
