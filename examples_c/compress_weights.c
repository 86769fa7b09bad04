/* Weight-only compression from C (NNCF's compress_weights): a model handle compressed to INT8 in
 * memory and checked against the original, then a model file compressed to INT4 on disk,
 * streamed (weights read, compressed and written one tensor at a time).
 *
 *   compress_weights FIXTURE_DIR OUT.xml      (FIXTURE_DIR: tests/data/mnist_cnn)
 *
 * Exit: 0 done, 1 failure. */
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "npy.h"

static int on_progress(void *user_data, ovpot_stage_e stage, size_t done, size_t total) {
    size_t *steps = (size_t *)user_data;
    (*steps)++;
    if (done == total) printf("stage %d: %zu/%zu weights\n", (int)stage, done, total);
    return 0;
}

static void on_log(void *user_data, ovpot_log_level_e level, const char *message) {
    (void)user_data;
    printf("[log %d] %s\n", (int)level, message);
}

/* Arg-max of output 0 of `model` for one [1, 1, 28, 28] image. */
static size_t predict(const ovpot_model_t *model, const float *image) {
    const int64_t shape[4] = {1, 1, 28, 28};
    ovpot_sample_t *sample = NULL;
    ovpot_outputs_t *outputs = NULL;
    const void *logits = NULL;
    size_t bytes = 0;
    CHECK(ovpot_sample_create(model, &sample));
    CHECK(ovpot_sample_set_input(sample, "input", OVPOT_ELEMENT_TYPE_F32, shape, 4, image,
                                 28 * 28 * sizeof(float)));
    CHECK(ovpot_model_infer(model, sample, &outputs));
    CHECK(ovpot_outputs_data(outputs, 0, &logits, &bytes));
    size_t best = argmax_f32((const float *)logits, bytes / sizeof(float));
    ovpot_outputs_free(outputs);
    ovpot_sample_free(sample);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FIXTURE_DIR OUT.xml\n", argv[0]);
        return 1;
    }
    char path[4096];
    int rc = 0;

    /* Options are refused, with a message, before any work. */
    ovpot_compressor_t *bad = NULL;
    ovpot_status_e st = ovpot_compressor_create("{\"mode\": \"int8_asym\", \"ratio\": 0.5}", &bad);
    printf("int8 with a ratio: %s (%s)\n", ovpot_status_name(st), ovpot_last_error());
    if (st != OVPOT_INVALID_ARGUMENT || bad != NULL) rc = 1;

    ovpot_model_t *model = NULL;
    snprintf(path, sizeof path, "%s/model.xml", argv[1]);
    CHECK(ovpot_model_read(path, NULL, &model));

    /* 1. Handle to handle: INT8 per channel (the default), the model's answers kept. */
    ovpot_compressor_t *int8 = NULL;
    size_t steps = 0;
    CHECK(ovpot_compressor_create(NULL, &int8));
    CHECK(ovpot_compressor_set_progress_callback(int8, on_progress, &steps));
    ovpot_model_t *compressed = NULL;
    CHECK(ovpot_compressor_compress_model(int8, model, &compressed));
    const char *report = NULL;
    CHECK(ovpot_compressor_report_json(int8, &report));
    printf("int8 report: %zu bytes, progress calls: %zu\n", strlen(report), steps);

    npy_array images = {0};
    snprintf(path, sizeof path, "%s/eval/input.npy", argv[1]);
    if (npy_read(path, &images) != 0 || strcmp(images.descr, "<f4") != 0 || images.rank != 4) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    size_t agree = 0, n = images.shape[0] < 50 ? (size_t)images.shape[0] : 50;
    for (size_t i = 0; i < n; i++) {
        const float *x = (const float *)images.data + i * 28 * 28;
        agree += predict(model, x) == predict(compressed, x);
    }
    printf("int8 weights agree with FP32 on %zu/%zu images\n", agree, n);
    if (agree + 1 < n) rc = 1;

    /* 2. File to file, streamed: INT4 symmetric per channel, the rest as NNCF keeps it. */
    ovpot_compressor_t *int4 = NULL;
    CHECK(ovpot_compressor_create("{\"mode\": \"int4_sym\", \"group_size\": -1}", &int4));
    CHECK(ovpot_compressor_set_log_callback(int4, on_log, OVPOT_LOG_INFO, NULL));
    snprintf(path, sizeof path, "%s/model.xml", argv[1]);
    CHECK(ovpot_compressor_compress_file(int4, path, argv[2]));
    CHECK(ovpot_compressor_report_json(int4, &report));
    printf("int4 report mentions int4_sym: %s\n", strstr(report, "int4_sym") ? "yes" : "no");
    if (!strstr(report, "int4_sym")) rc = 1;

    ovpot_model_t *reread = NULL;
    CHECK(ovpot_model_read(argv[2], NULL, &reread));
    printf("int4 model class of image 0: %zu (FP32 %zu)\n", predict(reread, (const float *)images.data),
           predict(model, (const float *)images.data));

    ovpot_model_free(reread);
    ovpot_compressor_free(int4);
    npy_free(&images);
    ovpot_model_free(compressed);
    ovpot_compressor_free(int8);
    ovpot_model_free(model);
    return rc;
}
