/* Default quantization of an MNIST CNN from C, with the calibration samples handed over by a
 * data callback (read from calib/input.npy).
 *
 *   quantize FIXTURE_DIR OUT.xml      (FIXTURE_DIR: tests/data/mnist_cnn)
 *
 * Exit: 0 done, 1 failure, 3 quantization unsupported in this build. */
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "npy.h"

typedef struct {
    npy_array images; /* [N, 1, 28, 28] f32 */
    size_t calls;
} calib_data;

/* Hands sample `index` to ovpot (copied by ovpot_sample_set_input). */
static int get_item(void *user_data, size_t index, ovpot_sample_t *sample) {
    calib_data *d = (calib_data *)user_data;
    const size_t per = (size_t)(d->images.shape[1] * d->images.shape[2] * d->images.shape[3]);
    const int64_t shape[4] = {1, d->images.shape[1], d->images.shape[2], d->images.shape[3]};
    const float *x = (const float *)d->images.data + index * per;
    d->calls++;
    return ovpot_sample_set_input(sample, "input", OVPOT_ELEMENT_TYPE_F32, shape, 4, x,
                                  per * sizeof(float)) != OVPOT_OK;
}

static int on_progress(void *user_data, ovpot_stage_e stage, size_t done, size_t total) {
    (void)user_data;
    if (done == total) printf("stage %d: %zu/%zu\n", (int)stage, done, total);
    return 0;
}

static void on_log(void *user_data, ovpot_log_level_e level, const char *message) {
    (void)user_data;
    printf("[log %d] %s\n", (int)level, message);
}

/* Arg-max of output 0 of `model` on dataset sample `index`. */
static size_t predict(const ovpot_model_t *model, const ovpot_dataset_t *data, size_t index) {
    ovpot_sample_t *sample = NULL;
    ovpot_outputs_t *outputs = NULL;
    const void *logits = NULL;
    size_t bytes = 0;
    CHECK(ovpot_dataset_get(data, index, &sample));
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
    printf("ovpot %s (ABI %u)\n", ovpot_version(), ovpot_abi_version());
    if (ovpot_abi_version() != OVPOT_ABI_VERSION) return 1;

    ovpot_model_t *model = NULL;
    snprintf(path, sizeof path, "%s/model.xml", argv[1]);
    CHECK(ovpot_model_read(path, NULL, &model));

    calib_data data = {0};
    snprintf(path, sizeof path, "%s/calib/input.npy", argv[1]);
    if (npy_read(path, &data.images) != 0 || strcmp(data.images.descr, "<f4") != 0 ||
        data.images.rank != 4) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    const size_t n = (size_t)data.images.shape[0];

    ovpot_dataset_t *calib = NULL;
    CHECK(ovpot_dataset_create(model, n, get_item, &data, NULL, &calib));
    size_t fp32_class = predict(model, calib, 0);
    printf("FP32 class of sample 0: %zu\n", fp32_class);

    const char *config =
        "{\"compression\": {\"target_device\": \"CPU\", \"algorithms\": [{\"name\": "
        "\"DefaultQuantization\", \"params\": {\"preset\": \"performance\", \"stat_subset_size\": 300}}]}}";
    ovpot_session_t *session = NULL;
    CHECK(ovpot_session_create(model, config, &session));
    CHECK(ovpot_session_set_subset_size(session, 100));
    CHECK(ovpot_session_set_progress_callback(session, on_progress, NULL));
    CHECK(ovpot_session_set_log_callback(session, on_log, OVPOT_LOG_INFO, NULL));

    ovpot_model_t *quantized = NULL;
    ovpot_status_e st = ovpot_session_run(session, calib, &quantized);
    int rc = 0;
    if (st == OVPOT_UNSUPPORTED) {
        printf("quantization unsupported: %s\n", ovpot_last_error());
        rc = EXIT_QUANT_UNSUPPORTED;
    } else if (st != OVPOT_OK) {
        fprintf(stderr, "run failed: %s: %s\n", ovpot_status_name(st), ovpot_last_error());
        rc = 1;
    } else {
        const char *report = NULL;
        CHECK(ovpot_session_report_json(session, &report));
        printf("report: %zu bytes, FakeQuantize entries: %s\n", strlen(report),
               strstr(report, "\"fake_quantize\": [\n") ? "yes" : "no");
        CHECK(ovpot_model_save(quantized, argv[2], NULL));
        size_t int8_class = predict(quantized, calib, 0);
        printf("INT8 class of sample 0: %zu\n", int8_class);
        if (int8_class != fp32_class) rc = 1;
    }
    printf("get_item calls: %zu\n", data.calls);

    ovpot_model_free(quantized);
    ovpot_session_free(session);
    ovpot_dataset_free(calib);
    ovpot_model_free(model);
    npy_free(&data.images);
    return rc;
}
