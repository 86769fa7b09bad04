// Checks the C++ wrapper (include/ovpot.hpp) class by class on the small models of tests/data:
// every free function and class, owned and lent handles, moves, and that an exception of the
// user's own type thrown from every kind of callback (get_item, metric reset/update/value, model
// evaluator, progress, log) comes out of the wrapper call that ran it as that same type.
//
//   cpp_wrapper_test DATA_DIR OUT_DIR      (DATA_DIR: tests/data; OUT_DIR: a writable folder)
//
// Prints one line per failed check and "cpp_wrapper_test: N checks, M failed" at the end.
// Exit: 0 all checks passed, 1 otherwise. Built and run by tests/c_api.rs; run under valgrind by
// .ci/tools/c_memcheck.sh.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "ovpot.hpp"
extern "C" {
#include "npy.h"
}

namespace fs = std::filesystem;

static int checks = 0, failures = 0;

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            std::cerr << __FILE__ << ":" << __LINE__ << ": failed: " #cond << "\n";    \
        }                                                                              \
    } while (0)

// Runs `body`, which must throw E; `then` checks the exception caught by its own type.
template <typename E, typename Body, typename Then>
static void expect_throw(const char* what, Body body, Then then) {
    checks++;
    try {
        body();
        failures++;
        std::cerr << what << ": nothing was thrown\n";
    } catch (const E& e) {
        then(e);
    } catch (const std::exception& e) {
        failures++;
        std::cerr << what << ": another exception: " << e.what() << "\n";
    } catch (...) {
        failures++;
        std::cerr << what << ": an exception of another type\n";
    }
}

/// The user's own exception type: no relation to std::exception or ovpot::Error.
struct UserError {
    std::string where;
    int code;
};

/// A .npy file read whole.
struct Npy {
    npy_array a{};
    explicit Npy(const std::string& path) {
        if (npy_read(path.c_str(), &a) != 0) throw std::runtime_error("cannot read " + path);
    }
    ~Npy() { npy_free(&a); }
    Npy(const Npy&) = delete;
    Npy& operator=(const Npy&) = delete;
    const float* f32() const { return static_cast<const float*>(a.data); }
    size_t rows() const { return static_cast<size_t>(a.shape[0]); }
    size_t per_row() const { return a.count / rows(); }
};

static std::vector<int64_t> labels_of(const Npy& n, size_t count) {
    std::vector<int64_t> v(count);
    const int64_t* p = static_cast<const int64_t*>(n.a.data);
    std::copy(p, p + count, v.begin());
    return v;
}

static size_t argmax(const std::vector<float>& v) {
    return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

/// Top-1 accuracy as a callback metric; `counter` counts live copies of the metric's state.
static ovpot::Metric top1_callback(std::vector<int64_t> labels, std::shared_ptr<int> token) {
    auto correct = std::make_shared<size_t>(0);
    auto seen = std::make_shared<size_t>(0);
    return ovpot::Metric::from_callbacks(
        [=](const ovpot::Outputs& o, size_t i) {
            (void)token;
            *seen += 1;
            if (static_cast<int64_t>(argmax(o.f32(0))) == labels.at(i)) *correct += 1;
        },
        [=] { return *seen ? static_cast<double>(*correct) / static_cast<double>(*seen) : 0.0; },
        [=] { *correct = *seen = 0; });
}

static void free_functions() {
    const std::string v = std::to_string(OVPOT_VERSION_MAJOR) + "." + std::to_string(OVPOT_VERSION_MINOR) + "." +
                          std::to_string(OVPOT_VERSION_PATCH);
    EXPECT(ovpot::version() == v);
    EXPECT(ovpot::abi_version() == OVPOT_ABI_VERSION);
    EXPECT(ovpot::host_target_isa() == "avx2" || ovpot::host_target_isa() == "vnni");
    EXPECT(std::string(ovpot::status_name(OVPOT_MISMATCH)) == "MISMATCH");
    EXPECT(std::string(ovpot::status_name(static_cast<ovpot_status_e>(77))) == "UNKNOWN");
    expect_throw<ovpot::Error>("check", [] { ovpot::check(ovpot_model_read(nullptr, nullptr, nullptr)); },
                               [](const ovpot::Error& e) {
                                   EXPECT(e.status() == OVPOT_INVALID_ARGUMENT);
                                   EXPECT(std::string(e.status_name()) == "INVALID_ARGUMENT");
                                   EXPECT(!ovpot::last_error().empty());
                                   EXPECT(ovpot::last_error() == e.what());
                               });
}

static void models(const std::string& mnist, const std::string& out) {
    expect_throw<ovpot::Error>("read a missing model", [&] { ovpot::Model::read(mnist + "/missing.xml"); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_IO_ERROR); });
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml", mnist + "/model.bin");
    EXPECT(model && model.owns());
    EXPECT(!model.friendly_name().empty());
    EXPECT(model.inputs_size() == 1 && model.outputs_size() == 1);
    EXPECT(model.input_name(0) == "input" && model.output_name(0) == "logits");
    EXPECT(model.input_element_type(0) == OVPOT_ELEMENT_TYPE_F32);
    EXPECT(model.output_element_type(0) == OVPOT_ELEMENT_TYPE_F32);
    const ovpot::PartialShape in = model.input_shape(0), outs = model.output_shape(0);
    EXPECT(!in.dynamic_rank && in.dims.size() == 4 && in.dims[1] == 1 && in.dims[2] == 28 && in.dims[3] == 28);
    EXPECT(!outs.dynamic_rank && !outs.dims.empty() && outs.dims.back() == 10);
    expect_throw<ovpot::Error>("input 5", [&] { model.input_name(5); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });

    // Files and memory buffers give the same model back.
    model.save(out + "/copy.xml");
    EXPECT(fs::exists(out + "/copy.xml") && fs::exists(out + "/copy.bin"));
    ovpot::Model copy = ovpot::Model::read(out + "/copy.xml");
    EXPECT(copy.input_name(0) == "input");
    ovpot::IrBuffer buf = model.save_to_memory_buffer();
    EXPECT(buf && buf.xml().substr(0, 5) == "<?xml" && buf.weights().size > 0);
    ovpot::Model from_buf = ovpot::Model::read_from_memory(buf);
    EXPECT(from_buf.output_name(0) == "logits");
    auto [xml, weights] = model.save_to_memory();
    EXPECT(xml == std::string(buf.xml()) && weights.size() == buf.weights().size);
    ovpot::Model from_pair = ovpot::Model::read_from_memory(xml, weights);
    EXPECT(from_pair.inputs_size() == 1);
    ovpot_ir_buffer_t* raw = buf.release();
    EXPECT(raw && !buf);
    ovpot_ir_buffer_free(raw);

    // Moves leave the source empty; a view never frees.
    ovpot::Model moved = std::move(copy);
    EXPECT(moved && !copy && !copy.owns());
    copy = std::move(moved);
    EXPECT(copy && !moved);
    {
        ovpot::Model view = ovpot::Model::view(model.get());
        EXPECT(view && !view.owns() && view.get() == model.get());
        EXPECT(view.input_name(0) == "input");
        EXPECT(view.release() == nullptr);
    }
    EXPECT(model.input_name(0) == "input");  // still alive after the view went
    ovpot_model_t* released = from_pair.release();
    EXPECT(released && !from_pair);
    ovpot_model_free(released);
}

static void samples_and_outputs(const std::string& mnist) {
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml");
    Npy calib(mnist + "/calib/input.npy");
    const size_t per = calib.per_row();

    // An owned sample for the model, set by index, then by name.
    ovpot::Sample s(model);
    EXPECT(s.owns() && s.size() == 0);
    s.set_input(0, {1, 1, 28, 28}, calib.f32(), per);
    EXPECT(s.size() == 1);
    ovpot::Outputs o = model.infer(s);
    EXPECT(o.owns() && o.size() == 1);
    EXPECT(o.find("logits") == 0 && o.name(0) == "logits");
    EXPECT(o.element_type(0) == OVPOT_ELEMENT_TYPE_F32);
    EXPECT((o.shape(0) == std::vector<int64_t>{1, 10}));
    EXPECT(o.data(0).size == 10 * sizeof(float));
    const std::vector<float> logits = o.f32(0);
    EXPECT(logits.size() == 10);
    expect_throw<ovpot::Error>("find a missing output", [&] { o.find("nope"); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
    // A mismatch is reported when the input is set.
    expect_throw<ovpot::Error>("wrong shape", [&] { s.set_input("input", {1, 1, 28, 27}, calib.f32(), 28 * 27); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_MISMATCH); });

    // A sample that knows no model, filled by name with a std::vector.
    ovpot::Sample free_sample = ovpot::Sample::create();
    std::vector<float> pixels(calib.f32(), calib.f32() + per);
    free_sample.set_input("input", {1, 1, 28, 28}, pixels);
    EXPECT(free_sample.size() == 1);
    EXPECT(model.infer(free_sample).f32(0) == logits);
    expect_throw<ovpot::Error>("by index without a model", [&] { free_sample.set_input(0, {1, 1, 28, 28}, pixels); },
                               [](const ovpot::Error&) {});

    // Moves and release.
    ovpot::Sample moved = std::move(s);
    EXPECT(moved.owns() && !s.owns() && s.get() == nullptr);
    ovpot::Outputs o2 = std::move(o);
    EXPECT(o2.owns() && !o.owns() && o.get() == nullptr && o2.size() == 1);
    ovpot_sample_t* raw = moved.release();
    EXPECT(raw && moved.get() == nullptr);
    ovpot::Sample again = ovpot::Sample::adopt(raw);
    EXPECT(again.owns() && again.size() == 1);
    ovpot::Sample created_for = ovpot::Sample::create(model);
    EXPECT(created_for.owns());
}

static void datasets(const std::string& mnist, const std::string& out) {
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml");
    Npy calib(mnist + "/calib/input.npy");
    const size_t per = calib.per_row();
    auto token = std::make_shared<int>(0);

    ovpot::Dataset npy = ovpot::Dataset::from_npy_folder(model, mnist + "/calib");
    EXPECT(npy.size() == calib.rows());
    ovpot::Sample first = npy.get(0);
    EXPECT(first.owns() && first.size() == 1);
    const std::vector<float> ref = model.infer(first).f32(0);

    {
        ovpot::Dataset cb = ovpot::Dataset::from_callback(model, 5, [&, token](size_t i, ovpot::Sample& s) {
            EXPECT(!s.owns());
            s.set_input("input", {1, 1, 28, 28}, calib.f32() + i * per, per);
        });
        EXPECT(token.use_count() == 2);
        EXPECT(cb.size() == 5);
        ovpot::Sample got = cb.get(0);
        EXPECT(got.owns() && model.infer(got).f32(0) == ref);
        ovpot::Dataset moved = std::move(cb);
        EXPECT(moved.size() == 5 && cb.get() == nullptr);
        cb = std::move(moved);
        EXPECT(cb.size() == 5);
        // A callback dataset for no model.
        ovpot::Dataset no_model = ovpot::Dataset::from_callback(3, [&, token](size_t i, ovpot::Sample& s) {
            s.set_input("input", {1, 1, 28, 28}, calib.f32() + i * per, per);
        });
        EXPECT(no_model.size() == 3 && token.use_count() == 3);
        EXPECT(model.infer(no_model.get(0)).f32(0) == ref);
    }
    EXPECT(token.use_count() == 1);  // the datasets freed their callbacks

    // In memory, from owned samples.
    ovpot::Dataset mem = ovpot::Dataset::in_memory();
    EXPECT(mem.size() == 0);
    for (size_t i = 0; i < 4; i++) {
        ovpot::Sample s(model);
        s.set_input("input", {1, 1, 28, 28}, calib.f32() + i * per, per);
        mem.add(s);
    }
    mem.add(first);
    EXPECT(mem.size() == 5);
    EXPECT(model.infer(mem.get(4)).f32(0) == ref && model.infer(mem.get(0)).f32(0) == ref);
    expect_throw<ovpot::Error>("add to an npy dataset", [&] { npy.add(first); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });

    // From stacked arrays (the first 20 images).
    ovpot::Array a;
    a.name = "input";
    a.shape = {20, 1, 28, 28};
    a.data = calib.f32();
    a.byte_size = 20 * per * sizeof(float);
    ovpot::Dataset arrays = ovpot::Dataset::from_arrays({a});
    EXPECT(arrays.size() == 20);
    EXPECT(model.infer(arrays.get(0)).f32(0) == ref);
    a.byte_size -= 4;
    expect_throw<ovpot::Error>("array byte size", [&] { ovpot::Dataset::from_arrays({a}); },
                               [](const ovpot::Error&) {});

    // Synthetic images, saved as PNG files.
    const std::string png_dir = out + "/synthetic";
    fs::create_directories(png_dir);
    ovpot::Dataset synth = ovpot::Dataset::synthetic(model, 4, 7, png_dir);
    EXPECT(synth.size() == 4);
    size_t pngs = 0;
    for (const auto& e : fs::directory_iterator(png_dir)) pngs += e.path().extension() == ".png";
    EXPECT(pngs == 4);
    EXPECT(model.infer(synth.get(3)).f32(0).size() == 10);
}

static void metrics(const std::string& digits) {
    ovpot::Model model = ovpot::Model::read(digits + "/model.xml");
    Npy eval(digits + "/eval/input.npy");
    Npy labels_npy(digits + "/eval_labels.npy");
    const size_t n = 60, per = eval.per_row();
    ovpot::Array a{"input", OVPOT_ELEMENT_TYPE_F32, {static_cast<int64_t>(n), static_cast<int64_t>(per)},
                   eval.f32(), n * per * sizeof(float)};
    ovpot::Dataset data = ovpot::Dataset::from_arrays({a});
    const std::vector<int64_t> labels = labels_of(labels_npy, n);
    auto token = std::make_shared<int>(0);

    double builtin = ovpot::Metric::top1_accuracy(labels, 0).evaluate(model, data);
    EXPECT(builtin > 0.8 && builtin <= 1.0);
    {
        ovpot::Metric cb = top1_callback(labels, token);
        EXPECT(token.use_count() == 2);
        EXPECT(cb.evaluate(model, data) == builtin);
        EXPECT(cb.evaluate(model, data) == builtin);  // reset between evaluations
        ovpot::Metric moved = std::move(cb);
        EXPECT(moved.get() && cb.get() == nullptr);
        EXPECT(moved.evaluate(model, data) == builtin);
    }
    EXPECT(token.use_count() == 1);
    // Labels from .npy: all 540 evaluation samples.
    ovpot::Dataset all = ovpot::Dataset::from_npy_folder(model, digits + "/eval");
    const double from_npy = ovpot::Metric::top1_accuracy_from_npy(digits + "/eval_labels.npy").evaluate(model, all);
    const double whole = ovpot::Metric::top1_accuracy(labels_of(labels_npy, labels_npy.rows())).evaluate(model, all);
    EXPECT(from_npy == whole && from_npy > 0.9);
    expect_throw<ovpot::Error>("labels from a missing file",
                               [&] { ovpot::Metric::top1_accuracy_from_npy(digits + "/none.npy"); },
                               [](const ovpot::Error&) {});
    // A metric without reset.
    auto count = std::make_shared<size_t>(0);
    ovpot::Metric no_reset = ovpot::Metric::from_callbacks([count](const ovpot::Outputs&, size_t) { ++*count; },
                                                           [count] { return static_cast<double>(*count); }, nullptr,
                                                           false);
    EXPECT(no_reset.evaluate(model, data) == static_cast<double>(n));
}

static void sessions(const std::string& mnist, const std::string& digits, const std::string& out) {
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml");
    ovpot::Dataset calib = ovpot::Dataset::from_npy_folder(model, mnist + "/calib");

    ovpot::Session session(model, "{\"preset\": \"performance\"}");
    session.set_option("stat_subset_size", "40")
        .set_preset("mixed")
        .set_target_device("CPU")
        .set_target_isa("avx2")
        .set_backend("builtin")
        .set_subset_size(32)
        .set_max_drop(0.02);
    const std::string cfg = session.config_json();
    EXPECT(cfg.find("\"target_isa\": \"avx2\"") != std::string::npos);
    EXPECT(cfg.find("\"stat_subset_size\": 32") != std::string::npos);
    EXPECT(cfg.find("\"preset\": \"mixed\"") != std::string::npos);
    expect_throw<ovpot::Error>("bad preset", [&] { session.set_preset("fastest"); },
                               [](const ovpot::Error&) {});
    expect_throw<ovpot::Error>("bad isa", [&] { session.set_target_isa("avx3"); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_PARSE_ERROR); });
    expect_throw<ovpot::Error>("NULL core", [&] { session.set_openvino_core(nullptr); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
    expect_throw<ovpot::Error>("report before a run", [&] { session.report_json(); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });

    size_t progress_calls = 0, log_lines = 0;
    session.on_progress([&](ovpot_stage_e, size_t done, size_t total) {
        progress_calls++;
        return done <= total;
    });
    session.on_log([&](ovpot_log_level_e, const char* msg) { log_lines += msg != nullptr; }, OVPOT_LOG_DEBUG);
    ovpot::Model q = session.run(calib);
    EXPECT(q && progress_calls > 0 && log_lines > 0);
    q.save(out + "/int8.xml");
    const std::string report = session.report_json();
    EXPECT(report.find("\"int8_arithmetic\"") != std::string::npos);
    // Cleared callbacks are not called.
    session.on_progress(nullptr).on_log(nullptr);
    progress_calls = log_lines = 0;
    session.run(calib);
    EXPECT(progress_calls == 0 && log_lines == 0);

    // Cancelled by progress.
    session.on_progress([](ovpot_stage_e, size_t, size_t) { return false; });
    expect_throw<ovpot::Error>("cancel", [&] { session.run(calib); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_CANCELLED); });
    session.on_progress(nullptr);

    // The OpenVINO backend from a library that is not there: an error when the session runs.
    session.set_backend("openvino", out + "/no_such_openvino/libopenvino_c.so");
    expect_throw<ovpot::Error>("missing OpenVINO", [&] { session.run(calib); }, [](const ovpot::Error& e) {
        EXPECT(std::string(e.what()).find("no_such_openvino") != std::string::npos);
    });
    session.set_backend("builtin");
    EXPECT(session.run(calib));

    // The per-layer analysis, its JSON and its page.
    const std::string analysis = session.analyze(calib, nullptr, 8, 60.0);
    EXPECT(analysis.find("\"target_sqnr_db\": 60.0") != std::string::npos);
    EXPECT(session.analysis_html().find("id=\"harm-chart\"") != std::string::npos);

    // Data-free quantization on synthetic images.
    ovpot::Session data_free(model);
    data_free.set_data_free().set_subset_size(4);
    ovpot::Model df = data_free.run(ovpot::Dataset::synthetic(model, 4, 1));
    EXPECT(df && data_free.report_json().size() > 0);

    // Moves.
    ovpot::Session moved = std::move(data_free);
    EXPECT(moved.get() && data_free.get() == nullptr);
    EXPECT(moved.report_json().size() > 0);

    // Accuracy control on the digits MLP: a callback metric, then without labels.
    ovpot::Model mlp = ovpot::Model::read(digits + "/model.xml");
    Npy eval(digits + "/eval/input.npy");
    Npy labels_npy(digits + "/eval_labels.npy");
    const size_t n = 100, per = eval.per_row();
    ovpot::Array a{"input", OVPOT_ELEMENT_TYPE_F32, {static_cast<int64_t>(n), static_cast<int64_t>(per)},
                   eval.f32(), n * per * sizeof(float)};
    ovpot::Dataset eval_data = ovpot::Dataset::from_arrays({a});
    ovpot::Dataset mlp_calib = ovpot::Dataset::from_npy_folder(mlp, digits + "/calib");
    auto token = std::make_shared<int>(0);
    ovpot::Metric metric = top1_callback(labels_of(labels_npy, n), token);
    ovpot::Session aa(mlp, "{\"algorithm\": \"accuracy_aware\"}");
    aa.set_max_drop(0.01).set_subset_size(50);
    ovpot::Result r = aa.run_accuracy_aware(mlp_calib, eval_data, metric);
    EXPECT(r.model);
    EXPECT(aa.report_json().find("\"accuracy\"") != std::string::npos);
    // Unreachable (a scripted metric: 1 for the FP32 model, 0 for every quantized one); the best
    // model found still comes back.
    auto values = std::make_shared<int>(0);
    ovpot::Metric scripted = ovpot::Metric::from_callbacks([](const ovpot::Outputs&, size_t) {},
                                                           [values] { return (*values)++ == 0 ? 1.0 : 0.0; }, nullptr);
    aa.set_max_drop(0).set_option("max_iter_num", "2");
    ovpot::Result unreached = aa.run_accuracy_aware(mlp_calib, eval_data, scripted);
    EXPECT(unreached.model && !unreached.accuracy_reached && *values >= 2);

    ovpot::Session free_of_labels(mlp, "{\"algorithm\": \"accuracy_aware\"}");
    free_of_labels.set_annotation_free(true, 0.6, 0).set_max_drop(0.05).set_subset_size(50);
    ovpot::Result af = free_of_labels.run_accuracy_aware(mlp_calib, eval_data);
    EXPECT(af.model && af.accuracy_reached);

    // A model evaluator metric: each candidate judged whole.
    size_t judged = 0;
    ovpot::Dataset eval_for_judge = ovpot::Dataset::from_arrays({a});
    ovpot::Metric judge = ovpot::Metric::model_evaluator([&](const ovpot::Model& m) {
        judged++;
        EXPECT(!m.owns() && m.inputs_size() == 1);
        ovpot::Metric top1 = ovpot::Metric::top1_accuracy(labels_of(labels_npy, n));
        return top1.evaluate(m, eval_for_judge);
    });
    ovpot::Session judged_session(mlp, "{\"algorithm\": \"accuracy_aware\"}");
    judged_session.set_max_drop(0.01).set_subset_size(50);
    ovpot::Result jr = judged_session.run_accuracy_aware(mlp_calib, eval_data, judge);
    EXPECT(jr.model && judged >= 2);

    // Judges: the exact one is Metric::evaluate's; the default is named as the report names it.
    ovpot::Metric top1 = ovpot::Metric::top1_accuracy(labels_of(labels_npy, n));
    const double exact = aa.evaluate(top1, r.model, eval_data, OVPOT_JUDGE_EXACT);
    EXPECT(exact == top1.evaluate(r.model, eval_data));
    EXPECT(aa.evaluate(top1, r.model, eval_data, OVPOT_JUDGE_TARGET) >= 0.0);
    EXPECT(aa.judge_name(OVPOT_JUDGE_EXACT) == "builtin engine, exact IR arithmetic");
    EXPECT(aa.report_json().find(aa.judge_name()) != std::string::npos);
    ovpot::Sample first = eval_data.get(0);
    EXPECT(aa.infer(r.model, first, OVPOT_JUDGE_TARGET).size() == 1);
    expect_throw<ovpot::Error>("bad judge", [&] { aa.judge_name(static_cast<ovpot_judge_e>(9)); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
    // A model evaluator evaluated directly is handed the model.
    const size_t before = judged;
    EXPECT(judge.evaluate(mlp, eval_data) > 0.5 && judged == before + 1);
}

static void compressors(const std::string& mnist, const std::string& out) {
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml");
    ovpot::Compressor int8;
    expect_throw<ovpot::Error>("report before compressing", [&] { int8.report_json(); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
    size_t steps = 0, lines = 0;
    int8.on_progress([&](ovpot_stage_e stage, size_t, size_t) {
            EXPECT(stage == OVPOT_STAGE_WEIGHT_COMPRESSION);
            steps++;
            return true;
        })
        .on_log([&](ovpot_log_level_e, const char*) { lines++; });
    ovpot::Model c = int8.compress(model);
    EXPECT(c && c.inputs_size() == 1 && steps > 0 && lines > 0);
    EXPECT(int8.report_json().find("int8_asym") != std::string::npos);
    EXPECT(c.save_to_memory_buffer().weights().size < model.save_to_memory_buffer().weights().size);

    expect_throw<ovpot::Error>("int8 with a ratio", [] { ovpot::Compressor("{\"mode\": \"int8_asym\", \"ratio\": 0.5}"); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
    ovpot::Compressor int4("{\"mode\": \"int4_sym\", \"group_size\": 16, \"group_size_fallback\": \"adjust\"}");
    int4.compress_file(mnist + "/model.xml", out + "/int4.xml");
    EXPECT(fs::exists(out + "/int4.xml") && fs::exists(out + "/int4.bin"));
    EXPECT(int4.report_json().find("int4_sym") != std::string::npos);
    EXPECT(ovpot::Model::read(out + "/int4.xml").outputs_size() == 1);
    // Cancelled: nothing written.
    int4.on_progress([](ovpot_stage_e, size_t, size_t) { return false; });
    expect_throw<ovpot::Error>("cancelled compression",
                               [&] { int4.compress_file(mnist + "/model.xml", out + "/cancelled.xml"); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_CANCELLED); });
    EXPECT(!fs::exists(out + "/cancelled.xml"));
    ovpot::Compressor moved = std::move(int4);
    EXPECT(moved.get() && int4.get() == nullptr);
    // Data-aware: calibration samples copied from a dataset that is gone before the run.
    ovpot::Compressor aware("{\"mode\": \"int4_asym\", \"group_size\": -1, \"scale_estimation\": true}");
    {
        ovpot::Dataset calib = ovpot::Dataset::from_npy_folder(model, mnist + "/calib");
        aware.set_backend("builtin").set_calibration(calib);
    }
    EXPECT(aware.compress(model).outputs_size() == 1);
    aware.clear_calibration();
    expect_throw<ovpot::Error>("scale estimation without data", [&] { aware.compress(model); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_INVALID_ARGUMENT); });
}

/// Exceptions of the user's type thrown from every kind of callback come out of the call as
/// themselves; the handles stay usable afterwards.
static void callback_exceptions(const std::string& mnist, const std::string& digits, const std::string& out) {
    ovpot::Model model = ovpot::Model::read(mnist + "/model.xml");
    Npy calib(mnist + "/calib/input.npy");
    const size_t per = calib.per_row();
    ovpot::Dataset good = ovpot::Dataset::from_npy_folder(model, mnist + "/calib");
    auto where = [](const char* w) { return [w](const UserError& e) { EXPECT(e.where == w); }; };

    // get_item: from a run, Dataset::get and Metric::evaluate.
    ovpot::Dataset throwing = ovpot::Dataset::from_callback(model, 8, [&](size_t i, ovpot::Sample& s) {
        if (i == 3) throw UserError{"get_item", 3};
        s.set_input("input", {1, 1, 28, 28}, calib.f32() + i * per, per);
    });
    ovpot::Session session(model);
    session.set_subset_size(8);
    expect_throw<UserError>("get_item in run", [&] { session.run(throwing); }, where("get_item"));
    expect_throw<UserError>("get_item in get", [&] { throwing.get(3); }, where("get_item"));
    EXPECT(throwing.get(2).size() == 1);
    ovpot::Metric top1 = ovpot::Metric::top1_accuracy(std::vector<int64_t>(8, 0));
    expect_throw<UserError>("get_item in evaluate", [&] { top1.evaluate(model, throwing); }, where("get_item"));
    throwing.rethrow();  // nothing left behind: the wrapper calls rethrew it
    // An ovpot::Error from a failing set call inside get_item keeps its status.
    ovpot::Dataset mismatched = ovpot::Dataset::from_callback(model, 4, [&](size_t, ovpot::Sample& s) {
        s.set_input("input", {1, 1, 14, 56}, calib.f32(), per);
    });
    expect_throw<ovpot::Error>("set_input in get_item", [&] { session.run(mismatched); },
                               [](const ovpot::Error& e) { EXPECT(e.status() == OVPOT_MISMATCH); });
    // A nested wrapper call's exception goes through the outer callback unchanged.
    ovpot::Dataset nested = ovpot::Dataset::from_callback(model, 8, [&](size_t i, ovpot::Sample& s) {
        ovpot::Sample inner = throwing.get(i);  // throws for i == 3
        s.set_input("input", {1, 1, 28, 28}, calib.f32() + i * per, per);
    });
    expect_throw<UserError>("nested get_item", [&] { session.run(nested); }, where("get_item"));
    // Through the C API directly, Dataset::rethrow() gives the exception back.
    {
        ovpot_model_t* q = nullptr;
        EXPECT(ovpot_session_run(session.get(), throwing.get(), &q) == OVPOT_CALLBACK_FAILED && !q);
        expect_throw<UserError>("Dataset::rethrow", [&] { throwing.rethrow(); }, where("get_item"));
    }

    // Metric callbacks: reset, update, value, from evaluate and from an accuracy-aware run.
    ovpot::Model mlp = ovpot::Model::read(digits + "/model.xml");
    Npy eval(digits + "/eval/input.npy");
    const size_t n = 30, mper = eval.per_row();
    ovpot::Dataset eval_data = ovpot::Dataset::from_arrays(
        {{"input", OVPOT_ELEMENT_TYPE_F32, {static_cast<int64_t>(n), static_cast<int64_t>(mper)}, eval.f32(),
          n * mper * sizeof(float)}});
    ovpot::Dataset mlp_calib = ovpot::Dataset::from_npy_folder(mlp, digits + "/calib");
    std::string fail_in;
    size_t updates = 0;
    ovpot::Metric scripted = ovpot::Metric::from_callbacks(
        [&](const ovpot::Outputs&, size_t i) {
            updates++;
            if (fail_in == "update" && i == 5) throw UserError{"update", 5};
        },
        [&] {
            if (fail_in == "value") throw UserError{"value", 0};
            return 1.0;
        },
        [&] {
            if (fail_in == "reset") throw UserError{"reset", 0};
        });
    for (const char* kind : {"reset", "update", "value"}) {
        fail_in = kind;
        updates = 0;
        expect_throw<UserError>(kind, [&] { scripted.evaluate(mlp, eval_data); }, where(kind));
        if (fail_in == "update") EXPECT(updates == 6);  // stopped at once
        if (fail_in == "reset") EXPECT(updates == 0);   // no update after a failed reset
    }
    fail_in.clear();
    EXPECT(scripted.evaluate(mlp, eval_data) == 1.0);
    ovpot::Session aa(mlp, "{\"algorithm\": \"accuracy_aware\"}");
    aa.set_subset_size(20);
    for (const char* kind : {"update", "value"}) {
        fail_in = kind;
        expect_throw<UserError>(kind, [&] { aa.run_accuracy_aware(mlp_calib, eval_data, scripted); }, where(kind));
    }
    fail_in.clear();
    ovpot::Metric judge = ovpot::Metric::model_evaluator([](const ovpot::Model&) -> double {
        throw UserError{"evaluate_model", 0};
    });
    expect_throw<UserError>("model evaluator", [&] { aa.run_accuracy_aware(mlp_calib, eval_data, judge); },
                            where("evaluate_model"));
    EXPECT(aa.run_accuracy_aware(mlp_calib, eval_data, scripted).model);

    // Progress and log, from a session run and from compression.
    size_t progress_calls = 0;
    session.on_progress([&](ovpot_stage_e, size_t, size_t) -> bool {
        if (++progress_calls == 2) throw UserError{"progress", 1};
        return true;
    });
    expect_throw<UserError>("progress in run", [&] { session.run(good); }, where("progress"));
    EXPECT(progress_calls == 2);
    session.on_progress(nullptr);
    bool log_threw = false;
    size_t progress_after_log = 0;
    session.on_progress([&](ovpot_stage_e, size_t, size_t) {
        progress_after_log += log_threw;
        return true;
    });
    session.on_log(
        [&](ovpot_log_level_e, const char*) {
            log_threw = true;
            throw UserError{"log", 0};
        },
        OVPOT_LOG_DEBUG);
    expect_throw<UserError>("log in run", [&] { session.run(good); }, where("log"));
    EXPECT(progress_after_log == 0);  // the run stopped at the first progress report after the log threw
    session.on_progress(nullptr).on_log(nullptr);
    EXPECT(session.run(good));  // usable again

    ovpot::Compressor comp;
    comp.on_progress([](ovpot_stage_e, size_t, size_t) -> bool { throw UserError{"progress", 2}; });
    expect_throw<UserError>("progress in compress", [&] { comp.compress(model); }, where("progress"));
    expect_throw<UserError>("progress in compress_file",
                            [&] { comp.compress_file(mnist + "/model.xml", out + "/thrown.xml"); }, where("progress"));
    EXPECT(!fs::exists(out + "/thrown.xml"));
    comp.on_progress(nullptr);
    // The log: no progress callback to stop at, so the exception comes once compression is done
    // (and the compressed model is freed).
    size_t logged = 0;
    comp.on_log([&](ovpot_log_level_e, const char*) {
        logged++;
        throw UserError{"log", 1};
    });
    expect_throw<UserError>("log in compress", [&] { comp.compress(model); }, where("log"));
    EXPECT(logged == 1);  // no more log calls after the first exception
    comp.on_log(nullptr);
    EXPECT(comp.compress(model));
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " DATA_DIR OUT_DIR\n";
        return 1;
    }
    const std::string data = argv[1], out = argv[2];
    const std::string mnist = data + "/mnist_cnn", digits = data + "/digits_mlp";
    fs::create_directories(out);
    const std::pair<const char*, std::function<void()>> sections[] = {
        {"free functions", free_functions},
        {"models", [&] { models(mnist, out); }},
        {"samples and outputs", [&] { samples_and_outputs(mnist); }},
        {"datasets", [&] { datasets(mnist, out); }},
        {"metrics", [&] { metrics(digits); }},
        {"sessions", [&] { sessions(mnist, digits, out); }},
        {"compressors", [&] { compressors(mnist, out); }},
        {"callback exceptions", [&] { callback_exceptions(mnist, digits, out); }},
    };
    for (const auto& [name, run] : sections) {
        const int before = failures;
        try {
            run();
        } catch (const ovpot::Error& e) {
            failures++;
            std::cerr << name << ": ovpot error " << e.status_name() << ": " << e.what() << "\n";
        } catch (const std::exception& e) {
            failures++;
            std::cerr << name << ": " << e.what() << "\n";
        } catch (const UserError& e) {
            failures++;
            std::cerr << name << ": UserError from " << e.where << " escaped\n";
        }
        std::cout << name << ": " << (failures == before ? "ok" : "FAILED") << "\n";
    }
    std::cout << "cpp_wrapper_test: " << checks << " checks, " << failures << " failed\n";
    return failures == 0 ? 0 : 1;
}
