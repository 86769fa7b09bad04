/* Helpers shared by the C examples. */
#ifndef OVPOT_EXAMPLES_COMMON_H
#define OVPOT_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include "ovpot.h"

/* Define as 1 to accept OVPOT_UNSUPPORTED from ovpot_session_run* (exit code 3), e.g. in a build
 * without the quantization passes; by default UNSUPPORTED is a failure. */
#ifndef OVPOT_EXAMPLES_ALLOW_UNSUPPORTED
#define OVPOT_EXAMPLES_ALLOW_UNSUPPORTED 0
#endif

/* Exit code of an example whose quantization step is not available in this build. */
#define EXIT_QUANT_UNSUPPORTED (OVPOT_EXAMPLES_ALLOW_UNSUPPORTED ? 3 : 1)

/* Prints the failure of `call` and exits. */
#define CHECK(call)                                                                              \
    do {                                                                                         \
        ovpot_status_e st_ = (call);                                                             \
        if (st_ != OVPOT_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                  \
                    ovpot_status_name(st_), ovpot_last_error());                                 \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* Index of the largest of n floats. */
static size_t argmax_f32(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

#endif
