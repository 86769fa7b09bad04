/* Hands an ovpot model to OpenVINO's runtime through memory, as an application would:
 * ovpot_model_save_to_memory_buffer -> ov_core_read_model_from_memory_buffer -> infer on CPU.
 * The FP32 model's outputs must match OpenVINO's reference outputs; the quantized model's
 * classes must match FP32's, and its Convolution/MatMul layers must run in int8.
 *
 * OpenVINO's C API cannot walk the ops of a model (nor read their "runtimePrecision" rt_info),
 * so the int8 share comes from OpenVINO's profiling instead: the CPU plugin names each executed
 * layer's kernel with its precision (e.g. "brgconv_avx512_I8"). ovpot's own count, from its
 * report, is printed next to it.
 *
 *   ov_roundtrip FIXTURE_DIR
 *
 * Exit: 0 done, 1 failure, 3 quantization unsupported (FP32 part still checked). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "common.h"
#include "npy.h"
#include "openvino/c/openvino.h"

#define OV_CHECK(call)                                                                           \
    do {                                                                                         \
        ov_status_e s_ = (call);                                                                 \
        if (s_ != OK) {                                                                          \
            fprintf(stderr, "%s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #call, (int)s_,          \
                    ov_get_last_err_msg());                                                      \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* The number of strings in the JSON list `key` of `json` (names without '"' or ']'). */
static size_t count_list(const char *json, const char *key) {
    const char *p = strstr(json, key);
    size_t quotes = 0;
    if (p == NULL || (p = strchr(p + strlen(key), '[')) == NULL) return 0;
    for (; *p && *p != ']'; p++) quotes += *p == '"';
    return quotes / 2;
}

/* Layers with weights as the CPU plugin names them (MatMul becomes FullyConnected*). */
static int is_weighted(const char *node_type) {
    return strncmp(node_type, "Convolution", 11) == 0 || strncmp(node_type, "FullyConnected", 14) == 0 ||
           strncmp(node_type, "MatMul", 6) == 0 || strncmp(node_type, "GroupConvolution", 16) == 0;
}

/* Runs `model` in OpenVINO on the `n` samples of `x` ([n,1,28,28]); writes n x 10 logits, and
 * how many of the executed weighted layers ran an int8 kernel (`*int8` of `*weighted`). */
static void ov_run(const ovpot_model_t *model, const float *x, size_t n, float *logits, size_t *int8,
                   size_t *weighted) {
    ovpot_ir_buffer_t *buf = NULL;
    const char *xml = NULL;
    const uint8_t *weights = NULL;
    size_t xml_size = 0, weights_size = 0;
    CHECK(ovpot_model_save_to_memory_buffer(model, &buf));
    CHECK(ovpot_ir_buffer_xml(buf, &xml, &xml_size));
    CHECK(ovpot_ir_buffer_weights(buf, &weights, &weights_size));

    ov_core_t *core = NULL;
    ov_model_t *ov_model = NULL;
    ov_tensor_t *w = NULL;
    ov_shape_t w_shape;
    int64_t w_dims[1] = {(int64_t)weights_size};
    OV_CHECK(ov_core_create(&core));
    OV_CHECK(ov_shape_create(1, w_dims, &w_shape));
    OV_CHECK(ov_tensor_create_from_host_ptr(U8, w_shape, (void *)weights, &w));
    OV_CHECK(ov_core_read_model_from_memory_buffer(core, xml, xml_size, w, &ov_model));

    ov_compiled_model_t *compiled = NULL;
    ov_infer_request_t *request = NULL;
    OV_CHECK(ov_core_compile_model(core, ov_model, "CPU", 4, &compiled, ov_property_key_hint_inference_precision,
                                   "f32", ov_property_key_enable_profiling, "YES"));
    OV_CHECK(ov_compiled_model_create_infer_request(compiled, &request));
    for (size_t i = 0; i < n; i++) {
        ov_shape_t in_shape;
        int64_t in_dims[4] = {1, 1, 28, 28};
        ov_tensor_t *in = NULL, *out = NULL;
        void *data = NULL;
        OV_CHECK(ov_shape_create(4, in_dims, &in_shape));
        OV_CHECK(ov_tensor_create_from_host_ptr(F32, in_shape, (void *)(x + i * 784), &in));
        OV_CHECK(ov_infer_request_set_input_tensor_by_index(request, 0, in));
        OV_CHECK(ov_infer_request_infer(request));
        OV_CHECK(ov_infer_request_get_output_tensor_by_index(request, 0, &out));
        OV_CHECK(ov_tensor_data(out, &data));
        memcpy(logits + i * 10, data, 10 * sizeof(float));
        ov_tensor_free(out);
        ov_tensor_free(in);
        ov_shape_free(&in_shape);
    }
    ov_profiling_info_list_t prof = {NULL, 0};
    OV_CHECK(ov_infer_request_get_profiling_info(request, &prof));
    *int8 = *weighted = 0;
    for (size_t i = 0; i < prof.size; i++) {
        const ov_profiling_info_t *p = &prof.profiling_infos[i];
        if (p->status != EXECUTED || !is_weighted(p->node_type)) continue;
        size_t len = strlen(p->exec_type);
        ++*weighted;
        *int8 += len > 3 && (strcmp(p->exec_type + len - 3, "_I8") == 0 || strcmp(p->exec_type + len - 3, "_U8") == 0);
    }
    ov_profiling_info_list_free(&prof);
    ov_infer_request_free(request);
    ov_compiled_model_free(compiled);
    ov_model_free(ov_model);
    ov_tensor_free(w);
    ov_shape_free(&w_shape);
    ov_core_free(core);
    ovpot_ir_buffer_free(buf);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 1;
    }
    char path[4096];
    npy_array ref_in, ref_out;
    snprintf(path, sizeof path, "%s/ref/in/input.npy", argv[1]);
    if (npy_read(path, &ref_in)) return 1;
    snprintf(path, sizeof path, "%s/ref/out0.npy", argv[1]);
    if (npy_read(path, &ref_out)) return 1;
    const size_t n = (size_t)ref_in.shape[0];
    const float *ref = (const float *)ref_out.data;

    ovpot_model_t *model = NULL;
    snprintf(path, sizeof path, "%s/model.xml", argv[1]);
    CHECK(ovpot_model_read(path, NULL, &model));

    /* FP32 through memory: OpenVINO reproduces its own reference outputs. */
    float logits[64 * 10];
    size_t int8 = 0, weighted = 0;
    if (n > 64) return 1;
    ov_run(model, (const float *)ref_in.data, n, logits, &int8, &weighted);
    float maxdiff = 0;
    for (size_t k = 0; k < n * 10; k++) maxdiff = fmaxf(maxdiff, fabsf(logits[k] - ref[k]));
    printf("FP32 via memory buffer: max |diff| to reference %.3g\n", maxdiff);
    if (maxdiff > 1e-4f * 10) return 1;
    printf("FP32 in OpenVINO: %zu/%zu weighted layers run in int8\n", int8, weighted);
    if (int8 != 0 || weighted == 0) return 1;

    ovpot_dataset_t *calib = NULL;
    ovpot_session_t *session = NULL;
    ovpot_model_t *quantized = NULL;
    snprintf(path, sizeof path, "%s/calib", argv[1]);
    CHECK(ovpot_dataset_create_from_npy_folder(model, path, &calib));
    CHECK(ovpot_session_create(model, NULL, &session));
    ovpot_status_e st = ovpot_session_run(session, calib, &quantized);
    int rc = 0;
    if (st == OVPOT_UNSUPPORTED) {
        printf("quantization unsupported: %s\n", ovpot_last_error());
        rc = EXIT_QUANT_UNSUPPORTED;
    } else if (st != OVPOT_OK) {
        fprintf(stderr, "run failed: %s: %s\n", ovpot_status_name(st), ovpot_last_error());
        rc = 1;
    } else {
        float q[64 * 10];
        size_t q_int8 = 0, q_weighted = 0;
        ov_run(quantized, (const float *)ref_in.data, n, q, &q_int8, &q_weighted);
        size_t agree = 0;
        for (size_t i = 0; i < n; i++)
            agree += argmax_f32(q + i * 10, 10) == argmax_f32(ref + i * 10, 10);
        printf("INT8 in OpenVINO: %zu/%zu classes agree with FP32\n", agree, n);
        if (agree != n) rc = 1;
        printf("INT8 in OpenVINO: %zu/%zu weighted layers run in int8 (%.0f%%, from profiling)\n", q_int8,
               q_weighted, q_weighted ? 100.0 * (double)q_int8 / (double)q_weighted : 0.0);
        if (q_weighted != weighted || q_int8 == 0) rc = 1;
        /* ovpot's view: the layers its report lists as quantized. */
        const char *report = NULL;
        CHECK(ovpot_session_report_json(session, &report));
        printf("ovpot report: %zu quantized layers\n", count_list(report, "\"quantized_layers\""));

        /* The same quantization with the application's own OpenVINO core as ovpot's backend:
         * statistics and verdicts run in this process's OpenVINO, found already loaded. */
        ov_core_t *core = NULL;
        ovpot_session_t *in_ov = NULL;
        ovpot_model_t *quantized_ov = NULL;
        OV_CHECK(ov_core_create(&core));
        CHECK(ovpot_session_create(model, NULL, &in_ov));
        CHECK(ovpot_session_set_openvino_core(in_ov, core, NULL));
        CHECK(ovpot_session_run(in_ov, calib, &quantized_ov));
        const char *report_ov = NULL;
        CHECK(ovpot_session_report_json(in_ov, &report_ov));
        const char *backend = strstr(report_ov, "\"backend\": \"openvino ");
        ov_run(quantized_ov, (const float *)ref_in.data, n, q, &q_int8, &q_weighted);
        size_t agree_ov = 0;
        for (size_t i = 0; i < n; i++)
            agree_ov += argmax_f32(q + i * 10, 10) == argmax_f32(ref + i * 10, 10);
        printf("quantized in the application's OpenVINO core: backend %s, %zu/%zu classes agree, latency %s\n",
               backend ? "openvino" : "?", agree_ov, n, strstr(report_ov, "\"latency\": {") ? "reported" : "missing");
        if (backend == NULL || agree_ov != n || strstr(report_ov, "\"latency\": {") == NULL) rc = 1;
        ovpot_model_free(quantized_ov);
        ovpot_session_free(in_ov);
        ov_core_free(core);
    }
    ovpot_model_free(quantized);
    ovpot_session_free(session);
    ovpot_dataset_free(calib);
    ovpot_model_free(model);
    npy_free(&ref_in);
    npy_free(&ref_out);
    return rc;
}
