#ifndef ARITH_ARITH_H
#define ARITH_ARITH_H

#include <stdint.h>

/* Modular arithmetic on 64-bit values; m must be non-zero. */
uint64_t arith_mulmod(uint64_t a, uint64_t b, uint64_t m);
uint64_t arith_powmod(uint64_t base, uint64_t exp, uint64_t m);

#endif
