/* Accuracy-aware quantization of an MNIST CNN from C with a metric callback (top-1 accuracy
 * computed here from the outputs) on the eval set read by ovpot from a folder of .npy files.
 *
 *   accuracy_aware FIXTURE_DIR OUT.xml [N]
 *
 * N (default: all) evaluates on the first N eval samples only, from an in-memory array, and
 * calibrates on N samples: a cheap run (e.g. under valgrind).
 *
 * Exit: 0 done (or accuracy not reached, with the best model saved), 1 failure,
 *       3 quantization unsupported in this build. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "npy.h"

typedef struct {
    const int64_t *labels;
    size_t count;
    size_t hits, seen;
    size_t resets;
} top1_state;

static int metric_update(void *user_data, const ovpot_outputs_t *outputs, size_t index) {
    top1_state *m = (top1_state *)user_data;
    size_t out = 0, rank = 0, bytes = 0;
    const int64_t *dims = NULL;
    const void *data = NULL;
    ovpot_element_type_e type;
    if (index >= m->count) return 1;
    if (ovpot_outputs_find(outputs, "logits", &out) != OVPOT_OK) return 2;
    if (ovpot_outputs_element_type(outputs, out, &type) != OVPOT_OK || type != OVPOT_ELEMENT_TYPE_F32)
        return 3;
    if (ovpot_outputs_shape(outputs, out, &dims, &rank) != OVPOT_OK || rank != 2 || dims[1] != 10)
        return 4;
    if (ovpot_outputs_data(outputs, out, &data, &bytes) != OVPOT_OK || bytes != 10 * sizeof(float))
        return 5;
    m->hits += (int64_t)argmax_f32((const float *)data, 10) == m->labels[index];
    m->seen++;
    return 0;
}

static int metric_value(void *user_data, double *value) {
    top1_state *m = (top1_state *)user_data;
    if (m->seen == 0) return 1;
    *value = (double)m->hits / (double)m->seen;
    return 0;
}

static int metric_reset(void *user_data) {
    top1_state *m = (top1_state *)user_data;
    m->hits = m->seen = 0;
    m->resets++;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FIXTURE_DIR OUT.xml [N]\n", argv[0]);
        return 1;
    }
    const size_t n_limit = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 0;
    char path[4096];
    ovpot_model_t *model = NULL;
    snprintf(path, sizeof path, "%s/model.xml", argv[1]);
    CHECK(ovpot_model_read(path, NULL, &model));

    ovpot_dataset_t *calib = NULL, *eval = NULL;
    snprintf(path, sizeof path, "%s/calib", argv[1]);
    CHECK(ovpot_dataset_create_from_npy_folder(model, path, &calib));
    npy_array images;
    memset(&images, 0, sizeof images);
    if (n_limit == 0) {
        snprintf(path, sizeof path, "%s/eval", argv[1]);
        CHECK(ovpot_dataset_create_from_npy_folder(model, path, &eval));
    } else {
        /* The first n_limit samples of the stacked eval images, as one array. */
        snprintf(path, sizeof path, "%s/eval/input.npy", argv[1]);
        if (npy_read(path, &images) != 0 || strcmp(images.descr, "<f4") != 0 || images.rank != 4 ||
            (size_t)images.shape[0] < n_limit) {
            fprintf(stderr, "cannot read %zu samples from %s\n", n_limit, path);
            return 1;
        }
        int64_t shape[4] = {(int64_t)n_limit, images.shape[1], images.shape[2], images.shape[3]};
        size_t bytes = images.count / (size_t)images.shape[0] * n_limit * images.item_size;
        ovpot_array_t arr = {"input", OVPOT_ELEMENT_TYPE_F32, shape, 4, images.data, bytes};
        CHECK(ovpot_dataset_create_from_arrays(&arr, 1, &eval));
    }
    size_t n_eval = 0;
    CHECK(ovpot_dataset_size(eval, &n_eval));

    npy_array labels;
    snprintf(path, sizeof path, "%s/eval_labels.npy", argv[1]);
    if (npy_read(path, &labels) != 0 || strcmp(labels.descr, "<i8") != 0 || labels.count < n_eval) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }

    top1_state state = {(const int64_t *)labels.data, n_eval, 0, 0, 0};
    ovpot_metric_t *metric = NULL, *builtin = NULL;
    CHECK(ovpot_metric_create(metric_update, metric_value, metric_reset, 1, &state, NULL, &metric));
    CHECK(ovpot_metric_create_top1_accuracy((const int64_t *)labels.data, n_eval, 0, &builtin));

    /* The callback metric and the built-in one agree on the FP32 model. */
    double fp32 = 0, fp32_builtin = 0;
    CHECK(ovpot_metric_evaluate(metric, model, eval, &fp32));
    CHECK(ovpot_metric_evaluate(builtin, model, eval, &fp32_builtin));
    printf("FP32 top-1: %.4f (callback) %.4f (built-in) over %zu samples\n", fp32, fp32_builtin, n_eval);
    if (fabs(fp32 - fp32_builtin) > 1e-12 || state.resets != 1) return 1;

    ovpot_session_t *session = NULL;
    CHECK(ovpot_session_create(model, "{\"algorithm\": \"accuracy_aware\"}", &session));
    CHECK(ovpot_session_set_max_drop(session, 0.01));
    CHECK(ovpot_session_set_option(session, "ranking_subset_size", "100"));
    if (n_limit) CHECK(ovpot_session_set_subset_size(session, n_limit));

    ovpot_model_t *quantized = NULL;
    ovpot_status_e st = ovpot_session_run_accuracy_aware(session, calib, eval, metric, &quantized);
    int rc = 0;
    if (st == OVPOT_UNSUPPORTED) {
        printf("quantization unsupported: %s\n", ovpot_last_error());
        rc = EXIT_QUANT_UNSUPPORTED;
    } else if (st == OVPOT_OK || st == OVPOT_ACCURACY_NOT_REACHED) {
        double int8 = 0;
        if (quantized == NULL) return 1;
        CHECK(ovpot_model_save(quantized, argv[2], NULL));
        CHECK(ovpot_metric_evaluate(metric, quantized, eval, &int8));
        printf("INT8 top-1: %.4f (%s)\n", int8, ovpot_status_name(st));
        const char *report = NULL;
        CHECK(ovpot_session_report_json(session, &report));
        printf("report has accuracy: %s\n", strstr(report, "\"accuracy\": {") ? "yes" : "no");
        if (st == OVPOT_OK && fp32 - int8 > 0.01 + 1e-9) rc = 1;
    } else {
        fprintf(stderr, "run failed: %s: %s\n", ovpot_status_name(st), ovpot_last_error());
        rc = 1;
    }

    ovpot_model_free(quantized);
    ovpot_session_free(session);
    ovpot_metric_free(builtin);
    ovpot_metric_free(metric);
    ovpot_dataset_free(eval);
    ovpot_dataset_free(calib);
    ovpot_model_free(model);
    npy_free(&labels);
    npy_free(&images);
    return rc;
}
