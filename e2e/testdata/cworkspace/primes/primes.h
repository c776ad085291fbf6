#ifndef PRIMES_PRIMES_H
#define PRIMES_PRIMES_H

#include <stdint.h>

/* primes_is_prime is a deterministic Miller-Rabin test for all 64-bit n. */
int primes_is_prime(uint64_t n);
/* primes_nth returns the n-th prime, counting 2 as the first. */
uint64_t primes_nth(unsigned n);

#endif
