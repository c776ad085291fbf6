#ifndef FIB_FIB_H
#define FIB_FIB_H

#include <stdint.h>

/* fib_mod returns the n-th Fibonacci number modulo m (fast doubling). */
uint64_t fib_mod(uint64_t n, uint64_t m);

#endif
