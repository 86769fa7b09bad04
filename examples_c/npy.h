/* Minimal .npy reader for the examples: little-endian, C order, any dtype (kept as bytes). */
#ifndef OVPOT_EXAMPLES_NPY_H
#define OVPOT_EXAMPLES_NPY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char descr[8];      /* e.g. "<f4", "<i8" */
    int64_t shape[8];
    size_t rank;
    size_t count;       /* elements */
    size_t item_size;   /* bytes per element */
    void *data;         /* count * item_size bytes; free with npy_free */
} npy_array;

static void npy_free(npy_array *a) {
    free(a->data);
    a->data = NULL;
}

/* Returns 0 on success. */
static int npy_read(const char *path, npy_array *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        fclose(f);
        return -2;
    }
    size_t hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    char *h = (char *)calloc(hlen + 1, 1);
    if (!h || fread(h, 1, hlen, f) != hlen) {
        free(h);
        fclose(f);
        return -3;
    }
    const char *d = strstr(h, "'descr': '");
    const char *s = strstr(h, "'shape': (");
    if (!d || !s || strstr(h, "'fortran_order': True")) {
        free(h);
        fclose(f);
        return -4;
    }
    d += 10;
    size_t n = 0;
    while (d[n] && d[n] != '\'' && n < sizeof out->descr - 1) {
        out->descr[n] = d[n];
        n++;
    }
    out->item_size = (size_t)atoi(out->descr + 2);
    s += 10;
    out->count = 1;
    while (*s && *s != ')' && out->rank < 8) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        out->shape[out->rank++] = v;
        out->count *= (size_t)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    free(h);
    size_t bytes = out->count * out->item_size;
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data || fread(out->data, 1, bytes, f) != bytes) {
        npy_free(out);
        fclose(f);
        return -5;
    }
    fclose(f);
    return 0;
}

#endif
