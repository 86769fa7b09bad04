// ovpot C++17 wrapper: header-only RAII handles over the C API in ovpot.h.
//
// Each class owns one handle (move-only; freed in the destructor). Failures throw ovpot::Error,
// which carries the ovpot_status_e and the message of ovpot_last_error(). Callbacks are
// std::function; an exception thrown inside one is caught at the C boundary, turned into a
// failure status (the run stops with OVPOT_CALLBACK_FAILED) and rethrown by the run call.
// Threading is that of the C API (see ovpot.h).
#ifndef OVPOT_HPP
#define OVPOT_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ovpot.h"

namespace ovpot {

/// A failed ovpot call: status and message.
class Error : public std::runtime_error {
public:
    Error(ovpot_status_e status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    /// The C status of the failure.
    ovpot_status_e status() const noexcept { return status_; }

private:
    ovpot_status_e status_;
};

/// Throws ovpot::Error for any status but OVPOT_OK.
inline void check(ovpot_status_e status) {
    if (status != OVPOT_OK) throw Error(status, ovpot_last_error());
}

namespace detail {
template <typename T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const noexcept { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;
}  // namespace detail

/// Shape of a model port: -1 for dynamic dims; `dynamic_rank` when even the rank is unknown.
struct PartialShape {
    std::vector<int64_t> dims;
    bool dynamic_rank = false;
};

/// Model outputs returned by Model::infer or given to a metric.
class Outputs {
public:
    explicit Outputs(const ovpot_outputs_t* view) : view_(view) {}
    explicit Outputs(ovpot_outputs_t* owned) : owned_(owned), view_(owned) {}
    size_t size() const {
        size_t n = 0;
        check(ovpot_outputs_size(view_, &n));
        return n;
    }
    size_t find(const std::string& name) const {
        size_t i = 0;
        check(ovpot_outputs_find(view_, name.c_str(), &i));
        return i;
    }
    std::string name(size_t i) const {
        const char* n = nullptr;
        check(ovpot_outputs_name(view_, i, &n));
        return n;
    }
    ovpot_element_type_e element_type(size_t i) const {
        ovpot_element_type_e t;
        check(ovpot_outputs_element_type(view_, i, &t));
        return t;
    }
    std::vector<int64_t> shape(size_t i) const {
        const int64_t* d = nullptr;
        size_t r = 0;
        check(ovpot_outputs_shape(view_, i, &d, &r));
        return std::vector<int64_t>(d, d + r);
    }
    /// Output `i` as f32 values (throws OVPOT_MISMATCH for other element types).
    std::vector<float> f32(size_t i) const {
        if (element_type(i) != OVPOT_ELEMENT_TYPE_F32)
            throw Error(OVPOT_MISMATCH, "output " + name(i) + " is not f32");
        const void* p = nullptr;
        size_t bytes = 0;
        check(ovpot_outputs_data(view_, i, &p, &bytes));
        const float* f = static_cast<const float*>(p);
        return std::vector<float>(f, f + bytes / sizeof(float));
    }

private:
    detail::Handle<ovpot_outputs_t, ovpot_outputs_free> owned_;
    const ovpot_outputs_t* view_;
};

/// A sample being filled (owned, or a view inside a data callback).
class Sample {
public:
    explicit Sample(ovpot_sample_t* view) : view_(view) {}
    /// Copies `data` into input `name`.
    void set_input(const std::string& name, ovpot_element_type_e type, const std::vector<int64_t>& shape,
                   const void* data, size_t byte_size) {
        check(ovpot_sample_set_input(view_, name.c_str(), static_cast<uint32_t>(type), shape.data(),
                                     shape.size(), data, byte_size));
    }
    void set_input(const std::string& name, const std::vector<int64_t>& shape, const float* data, size_t count) {
        set_input(name, OVPOT_ELEMENT_TYPE_F32, shape, data, count * sizeof(float));
    }
    void set_input(size_t index, ovpot_element_type_e type, const std::vector<int64_t>& shape,
                   const void* data, size_t byte_size) {
        check(ovpot_sample_set_input_by_index(view_, index, static_cast<uint32_t>(type), shape.data(),
                                              shape.size(), data, byte_size));
    }
    const ovpot_sample_t* get() const noexcept { return view_; }

private:
    ovpot_sample_t* view_;
};

class Model {
public:
    /// Reads `xml` (+ `bin`, default: `xml` with .bin).
    static Model read(const std::string& xml, const std::string& bin = "") {
        ovpot_model_t* m = nullptr;
        check(ovpot_model_read(xml.c_str(), bin.empty() ? nullptr : bin.c_str(), &m));
        return Model(m);
    }
    /// Reads IR text and weights from memory.
    static Model read_from_memory(const std::string& xml, const std::vector<uint8_t>& weights) {
        ovpot_model_t* m = nullptr;
        check(ovpot_model_read_from_memory_buffer(xml.data(), xml.size(), weights.data(), weights.size(), &m));
        return Model(m);
    }
    explicit Model(ovpot_model_t* owned) : h_(owned) {}

    void save(const std::string& xml, const std::string& bin = "") const {
        check(ovpot_model_save(h_.get(), xml.c_str(), bin.empty() ? nullptr : bin.c_str()));
    }
    /// IR text and weights, ready for ov_core_read_model_from_memory_buffer.
    std::pair<std::string, std::vector<uint8_t>> save_to_memory() const {
        ovpot_ir_buffer_t* b = nullptr;
        check(ovpot_model_save_to_memory_buffer(h_.get(), &b));
        detail::Handle<ovpot_ir_buffer_t, ovpot_ir_buffer_free> buf(b);
        const char* xml = nullptr;
        const uint8_t* w = nullptr;
        size_t xn = 0, wn = 0;
        check(ovpot_ir_buffer_xml(b, &xml, &xn));
        check(ovpot_ir_buffer_weights(b, &w, &wn));
        return {std::string(xml, xn), std::vector<uint8_t>(w, w + wn)};
    }
    size_t inputs_size() const {
        size_t n = 0;
        check(ovpot_model_inputs_size(h_.get(), &n));
        return n;
    }
    size_t outputs_size() const {
        size_t n = 0;
        check(ovpot_model_outputs_size(h_.get(), &n));
        return n;
    }
    std::string input_name(size_t i) const {
        const char* n = nullptr;
        check(ovpot_model_input_name(h_.get(), i, &n));
        return n;
    }
    std::string output_name(size_t i) const {
        const char* n = nullptr;
        check(ovpot_model_output_name(h_.get(), i, &n));
        return n;
    }
    ovpot_element_type_e input_element_type(size_t i) const {
        ovpot_element_type_e t;
        check(ovpot_model_input_element_type(h_.get(), i, &t));
        return t;
    }
    PartialShape input_shape(size_t i) const {
        const int64_t* d = nullptr;
        int64_t r = 0;
        check(ovpot_model_input_partial_shape(h_.get(), i, &d, &r));
        PartialShape s;
        if (r < 0) s.dynamic_rank = true;
        else s.dims.assign(d, d + r);
        return s;
    }
    /// Runs the built-in engine on one sample.
    Outputs infer(const Sample& sample) const {
        ovpot_outputs_t* o = nullptr;
        check(ovpot_model_infer(h_.get(), sample.get(), &o));
        return Outputs(o);
    }
    const ovpot_model_t* get() const noexcept { return h_.get(); }

private:
    detail::Handle<ovpot_model_t, ovpot_model_free> h_;
};

/// A dataset: from a callback, in-memory arrays or a folder of .npy files.
class Dataset {
public:
    using GetItem = std::function<void(size_t index, Sample& sample)>;

    /// `length` samples produced by `get_item` (exceptions become callback failures).
    static Dataset from_callback(const Model& model, size_t length, GetItem get_item) {
        auto* state = new State{std::move(get_item), nullptr};
        ovpot_dataset_t* d = nullptr;
        ovpot_status_e st = ovpot_dataset_create(model.get(), length, &State::call, state, &State::destroy, &d);
        if (st != OVPOT_OK) {
            delete state;
            check(st);
        }
        Dataset ds(d);
        ds.state_ = state;
        return ds;
    }
    static Dataset from_npy_folder(const Model& model, const std::string& path) {
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create_from_npy_folder(model.get(), path.c_str(), &d));
        return Dataset(d);
    }
    explicit Dataset(ovpot_dataset_t* owned) : h_(owned) {}
    size_t size() const {
        size_t n = 0;
        check(ovpot_dataset_size(h_.get(), &n));
        return n;
    }
    const ovpot_dataset_t* get() const noexcept { return h_.get(); }
    /// Rethrows an exception a callback threw during the last call, if any.
    void rethrow() const {
        if (state_ && state_->error) std::rethrow_exception(std::exchange(state_->error, nullptr));
    }

private:
    struct State {
        GetItem fn;
        std::exception_ptr error;
        static int call(void* ud, size_t index, ovpot_sample_t* s) {
            auto* st = static_cast<State*>(ud);
            try {
                Sample sample(s);
                st->fn(index, sample);
                return 0;
            } catch (...) {
                st->error = std::current_exception();
                return 1;
            }
        }
        static void destroy(void* ud) { delete static_cast<State*>(ud); }
    };
    detail::Handle<ovpot_dataset_t, ovpot_dataset_free> h_;
    State* state_ = nullptr;  // owned by the C dataset (freed by State::destroy)
};

/// A metric: callbacks or the built-in top-1 accuracy.
class Metric {
public:
    using Update = std::function<void(const Outputs& outputs, size_t index)>;
    using Value = std::function<double()>;
    using Reset = std::function<void()>;

    static Metric from_callbacks(Update update, Value value, Reset reset, bool higher_is_better = true) {
        auto* state = new State{std::move(update), std::move(value), std::move(reset)};
        ovpot_metric_t* m = nullptr;
        ovpot_status_e st = ovpot_metric_create(&State::update_cb, &State::value_cb, &State::reset_cb,
                                                higher_is_better, state, &State::destroy, &m);
        if (st != OVPOT_OK) {
            delete state;
            check(st);
        }
        return Metric(m);
    }
    static Metric top1_accuracy(const std::vector<int64_t>& labels, size_t output_index = 0) {
        ovpot_metric_t* m = nullptr;
        check(ovpot_metric_create_top1_accuracy(labels.data(), labels.size(), output_index, &m));
        return Metric(m);
    }
    explicit Metric(ovpot_metric_t* owned) : h_(owned) {}
    /// The metric of `model` over every sample of `data`.
    double evaluate(const Model& model, const Dataset& data) {
        double v = 0;
        check(ovpot_metric_evaluate(h_.get(), model.get(), data.get(), &v));
        return v;
    }
    ovpot_metric_t* get() noexcept { return h_.get(); }

private:
    struct State {
        Update update;
        Value value;
        Reset reset;
        static int update_cb(void* ud, const ovpot_outputs_t* o, size_t index) {
            try {
                static_cast<State*>(ud)->update(Outputs(o), index);
                return 0;
            } catch (...) {
                return 1;
            }
        }
        static int value_cb(void* ud, double* v) {
            try {
                *v = static_cast<State*>(ud)->value();
                return 0;
            } catch (...) {
                return 1;
            }
        }
        static int reset_cb(void* ud) {
            try {
                auto* st = static_cast<State*>(ud);
                if (st->reset) st->reset();
                return 0;
            } catch (...) {
                return 1;
            }
        }
        static void destroy(void* ud) { delete static_cast<State*>(ud); }
    };
    detail::Handle<ovpot_metric_t, ovpot_metric_free> h_;
};

/// Result of a run: the quantized model and whether accuracy control reached its target.
struct Result {
    Model model;
    bool accuracy_reached;
};

class Session {
public:
    using Progress = std::function<bool(ovpot_stage_e stage, size_t done, size_t total)>;
    using Log = std::function<void(ovpot_log_level_e level, const char* message)>;

    /// A session on `model`; `config_json` is POT or ovpot JSON ("" for defaults).
    explicit Session(const Model& model, const std::string& config_json = "") {
        ovpot_session_t* s = nullptr;
        check(ovpot_session_create(model.get(), config_json.empty() ? nullptr : config_json.c_str(), &s));
        h_.reset(s);
    }
    Session& set_option(const std::string& key, const std::string& json_value) {
        check(ovpot_session_set_option(h_.get(), key.c_str(), json_value.c_str()));
        return *this;
    }
    Session& set_preset(const std::string& preset) {
        check(ovpot_session_set_preset(h_.get(), preset.c_str()));
        return *this;
    }
    Session& set_target_device(const std::string& device) {
        check(ovpot_session_set_target_device(h_.get(), device.c_str()));
        return *this;
    }
    Session& set_subset_size(size_t n) {
        check(ovpot_session_set_subset_size(h_.get(), n));
        return *this;
    }
    Session& set_max_drop(double d) {
        check(ovpot_session_set_max_drop(h_.get(), d));
        return *this;
    }
    /// `progress` returns false to cancel.
    Session& on_progress(Progress progress) {
        progress_ = std::make_unique<Progress>(std::move(progress));
        check(ovpot_session_set_progress_callback(h_.get(), &progress_cb, progress_.get()));
        return *this;
    }
    Session& on_log(Log log, ovpot_log_level_e level = OVPOT_LOG_INFO) {
        log_ = std::make_unique<Log>(std::move(log));
        check(ovpot_session_set_log_callback(h_.get(), &log_cb, static_cast<uint32_t>(level), log_.get()));
        return *this;
    }
    /// DefaultQuantization.
    Model run(const Dataset& calibration) {
        ovpot_model_t* q = nullptr;
        ovpot_status_e st = ovpot_session_run(h_.get(), calibration.get(), &q);
        calibration.rethrow();
        check(st);
        return Model(q);
    }
    /// AccuracyAwareQuantization; accuracy_reached is false when the best model found is still
    /// above the maximal drop (OVPOT_ACCURACY_NOT_REACHED).
    Result run_accuracy_aware(const Dataset& calibration, const Dataset& evaluation, Metric& metric) {
        ovpot_model_t* q = nullptr;
        ovpot_status_e st =
            ovpot_session_run_accuracy_aware(h_.get(), calibration.get(), evaluation.get(), metric.get(), &q);
        calibration.rethrow();
        evaluation.rethrow();
        if (st == OVPOT_ACCURACY_NOT_REACHED) return Result{Model(q), false};
        check(st);
        return Result{Model(q), true};
    }
    /// The JSON report of the last run.
    std::string report_json() const {
        const char* j = nullptr;
        check(ovpot_session_report_json(h_.get(), &j));
        return j;
    }

private:
    static int progress_cb(void* ud, ovpot_stage_e stage, size_t done, size_t total) {
        try {
            return (*static_cast<Progress*>(ud))(stage, done, total) ? 0 : 1;
        } catch (...) {
            return 1;
        }
    }
    static void log_cb(void* ud, ovpot_log_level_e level, const char* message) {
        try {
            (*static_cast<Log*>(ud))(level, message);
        } catch (...) {
        }
    }
    detail::Handle<ovpot_session_t, ovpot_session_free> h_;
    std::unique_ptr<Progress> progress_;
    std::unique_ptr<Log> log_;
};

}  // namespace ovpot

#endif  // OVPOT_HPP
