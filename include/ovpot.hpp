// ovpot C++17 wrapper: header-only RAII classes over the whole C API of ovpot.h.
//
// Coverage: every function of ovpot.h has a method or a free function here.
//   free functions  version, abi_version, host_target_isa, status_name, last_error, check
//   Model           read, read_from_memory, save, save_to_memory(_buffer), friendly_name, inputs
//                   and outputs (names, element types, partial shapes), infer
//   IrBuffer        a serialized model in memory (xml, weights)
//   Sample          owned (Sample(model), Sample::create, Dataset::get) or lent to get_item;
//                   set_input by name or index, size
//   Outputs         owned (Model::infer) or lent to a metric; names, types, shapes, data
//   Dataset         from_callback, in_memory + add, from_arrays, from_npy_folder, synthetic; get
//   Metric          from_callbacks, model_evaluator, top1_accuracy(_from_npy); evaluate
//   Session         options, preset, device, target ISA, backend, OpenVINO core, subset size,
//                   data-free, annotation-free, maximal drop, config_json, progress and log
//                   callbacks, run, run_accuracy_aware, report_json
//   Compressor      weight-only compression: options, progress and log callbacks, compress,
//                   compress_file, report_json
//
// Ownership: each class owns its handle (move-only; the destructor frees it; a moved-from
// object is empty). Sample, Outputs and Model can also be views of a handle ovpot lends to a
// callback (valid during the call only; never freed by the wrapper).
//
// Errors: a failed call throws ovpot::Error, which carries the ovpot_status_e and the message of
// ovpot_last_error().
//
// Callbacks are std::function. An exception thrown by any of them (get_item, metric reset,
// update, value and model evaluation, progress, log) is caught at the C boundary, stops the call
// that is running and is rethrown, as itself (std::rethrow_exception: catch it by its own type),
// by the wrapper call that ran the callback: Session::run, Session::run_accuracy_aware,
// Metric::evaluate, Dataset::get, Compressor::compress and Compressor::compress_file. Results
// of a call that rethrows are freed. Only the first exception of a call is kept; once a callback
// has thrown, the wrapper calls none of that call's callbacks any more: get_item, metric and
// progress callbacks report failure (the run stops with OVPOT_CALLBACK_FAILED / OVPOT_CANCELLED),
// log messages are dropped. A log callback cannot fail in C, so an exception from it stops the run
// at the next data, metric or progress callback, or, when none comes, is rethrown once the run
// has returned. Callbacks run through the C API directly (ovpot_session_run(session.get(), ...))
// lose their exceptions (the call still fails), except a get_item's, which Dataset::rethrow()
// rethrows.
//
// Threading is that of the C API (see ovpot.h): callbacks are called on the thread that made the
// wrapper call, one at a time.
#ifndef OVPOT_HPP
#define OVPOT_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
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
    /// The status' short name ("MISMATCH", ...).
    const char* status_name() const noexcept { return ovpot_status_name(status_); }

private:
    ovpot_status_e status_;
};

/// Throws ovpot::Error for any status but OVPOT_OK.
inline void check(ovpot_status_e status) {
    if (status != OVPOT_OK) throw Error(status, ovpot_last_error());
}

/// The library version, "MAJOR.MINOR.PATCH".
inline std::string version() { return ovpot_version(); }
/// The ABI version of the library (compare with OVPOT_ABI_VERSION of this header).
inline uint32_t abi_version() noexcept { return ovpot_abi_version(); }
/// What target_isa "auto" resolves to on this machine: "vnni" or "avx2".
inline std::string host_target_isa() { return ovpot_host_target_isa(); }
/// A status' short name ("OK", "INVALID_ARGUMENT", ...; "UNKNOWN" for other values).
inline const char* status_name(ovpot_status_e status) noexcept { return ovpot_status_name(status); }
/// The message of the last failed ovpot call on this thread ("" after a success).
inline std::string last_error() { return ovpot_last_error(); }

/// Reports progress of `stage` (`done` of `total` steps); returns false to cancel.
using Progress = std::function<bool(ovpot_stage_e stage, size_t done, size_t total)>;
/// Receives a log message (valid during the call only).
using Log = std::function<void(ovpot_log_level_e level, const char* message)>;

namespace detail {
template <typename T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const noexcept { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

/// The wrapper call running on this thread (innermost first): collects the first exception
/// its callbacks throw, so that the call rethrows it.
class CallScope {
public:
    CallScope() noexcept : prev_(current()) { current() = this; }
    ~CallScope() { current() = prev_; }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

    static CallScope*& current() noexcept {
        static thread_local CallScope* scope = nullptr;
        return scope;
    }
    void capture(std::exception_ptr e) noexcept {
        if (!error_) error_ = std::move(e);
    }
    bool failed() const noexcept { return static_cast<bool>(error_); }
    /// Rethrows the callback's exception, if any; else throws Error for a failed `status`.
    void finish(ovpot_status_e status) {
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
        check(status);
    }

private:
    CallScope* prev_;
    std::exception_ptr error_;
};

/// In a catch block of a callback: keeps the exception for the running wrapper call, or, with
/// none, in `fallback` (when given and empty).
inline void capture(std::exception_ptr* fallback = nullptr) noexcept {
    if (CallScope* s = CallScope::current()) s->capture(std::current_exception());
    else if (fallback && !*fallback) *fallback = std::current_exception();
}

/// Whether a callback of the running wrapper call has thrown: later callbacks then fail at once.
inline bool stopping() noexcept {
    const CallScope* s = CallScope::current();
    return s && s->failed();
}

inline int progress_thunk(void* ud, ovpot_stage_e stage, size_t done, size_t total) noexcept {
    if (stopping()) return 1;
    try {
        return (*static_cast<Progress*>(ud))(stage, done, total) ? 0 : 1;
    } catch (...) {
        capture();
        return 1;
    }
}

inline void log_thunk(void* ud, ovpot_log_level_e level, const char* message) noexcept {
    if (stopping()) return;
    try {
        (*static_cast<Log*>(ud))(level, message);
    } catch (...) {
        capture();
    }
}

template <typename T>
constexpr ovpot_element_type_e element_type_of() noexcept;
template <> constexpr ovpot_element_type_e element_type_of<float>() noexcept { return OVPOT_ELEMENT_TYPE_F32; }
template <> constexpr ovpot_element_type_e element_type_of<double>() noexcept { return OVPOT_ELEMENT_TYPE_F64; }
template <> constexpr ovpot_element_type_e element_type_of<int8_t>() noexcept { return OVPOT_ELEMENT_TYPE_I8; }
template <> constexpr ovpot_element_type_e element_type_of<uint8_t>() noexcept { return OVPOT_ELEMENT_TYPE_U8; }
template <> constexpr ovpot_element_type_e element_type_of<int16_t>() noexcept { return OVPOT_ELEMENT_TYPE_I16; }
template <> constexpr ovpot_element_type_e element_type_of<uint16_t>() noexcept { return OVPOT_ELEMENT_TYPE_U16; }
template <> constexpr ovpot_element_type_e element_type_of<int32_t>() noexcept { return OVPOT_ELEMENT_TYPE_I32; }
template <> constexpr ovpot_element_type_e element_type_of<uint32_t>() noexcept { return OVPOT_ELEMENT_TYPE_U32; }
template <> constexpr ovpot_element_type_e element_type_of<int64_t>() noexcept { return OVPOT_ELEMENT_TYPE_I64; }
template <> constexpr ovpot_element_type_e element_type_of<uint64_t>() noexcept { return OVPOT_ELEMENT_TYPE_U64; }
template <> constexpr ovpot_element_type_e element_type_of<bool>() noexcept { return OVPOT_ELEMENT_TYPE_BOOLEAN; }
}  // namespace detail

/// Shape of a model port: -1 for dynamic dims; `dynamic_rank` when even the rank is unknown.
struct PartialShape {
    std::vector<int64_t> dims;
    bool dynamic_rank = false;
    /// Whether every dim is known.
    bool is_static() const noexcept {
        if (dynamic_rank) return false;
        for (int64_t d : dims)
            if (d < 0) return false;
        return true;
    }
};

/// Bytes owned by another object (an IrBuffer, Outputs), valid as long as it.
struct Bytes {
    const uint8_t* data = nullptr;
    size_t size = 0;
    const uint8_t* begin() const noexcept { return data; }
    const uint8_t* end() const noexcept { return data + size; }
};

class Model;

/// A serialized model in memory (Model::save_to_memory_buffer): IR text and weights, ready for
/// OpenVINO's ov_core_read_model_from_memory_buffer.
class IrBuffer {
public:
    explicit IrBuffer(ovpot_ir_buffer_t* owned) noexcept : h_(owned) {}
    /// The IR text (NUL-terminated; the view excludes the NUL).
    std::string_view xml() const {
        const char* x = nullptr;
        size_t n = 0;
        check(ovpot_ir_buffer_xml(h_.get(), &x, &n));
        return std::string_view(x, n);
    }
    /// The weights (the .bin content).
    Bytes weights() const {
        Bytes b;
        check(ovpot_ir_buffer_weights(h_.get(), &b.data, &b.size));
        return b;
    }
    const ovpot_ir_buffer_t* get() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }
    /// Gives up ownership: the caller frees the handle with ovpot_ir_buffer_free.
    ovpot_ir_buffer_t* release() noexcept { return h_.release(); }

private:
    detail::Handle<ovpot_ir_buffer_t, ovpot_ir_buffer_free> h_;
};

/// Model outputs: owned (Model::infer) or lent to a metric's update callback.
class Outputs {
public:
    /// A view of outputs owned elsewhere (a metric callback's).
    explicit Outputs(const ovpot_outputs_t* view) noexcept : view_(view) {}
    /// Takes ownership of `owned` (from ovpot_model_infer).
    explicit Outputs(ovpot_outputs_t* owned) noexcept : owned_(owned), view_(owned) {}
    Outputs(Outputs&& o) noexcept : owned_(std::move(o.owned_)), view_(std::exchange(o.view_, nullptr)) {}
    Outputs& operator=(Outputs&& o) noexcept {
        owned_ = std::move(o.owned_);
        view_ = std::exchange(o.view_, nullptr);
        return *this;
    }
    size_t size() const {
        size_t n = 0;
        check(ovpot_outputs_size(view_, &n));
        return n;
    }
    /// The index of the output called `name`.
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
    /// The raw data of output `i` (row-major, little-endian), valid as long as these outputs.
    Bytes data(size_t i) const {
        const void* p = nullptr;
        Bytes b;
        check(ovpot_outputs_data(view_, i, &p, &b.size));
        b.data = static_cast<const uint8_t*>(p);
        return b;
    }
    /// Output `i` as f32 values (throws OVPOT_MISMATCH for other element types).
    std::vector<float> f32(size_t i) const {
        if (element_type(i) != OVPOT_ELEMENT_TYPE_F32)
            throw Error(OVPOT_MISMATCH, "output " + name(i) + " is not f32");
        const Bytes b = data(i);
        const float* f = reinterpret_cast<const float*>(b.data);
        return std::vector<float>(f, f + b.size / sizeof(float));
    }
    const ovpot_outputs_t* get() const noexcept { return view_; }
    /// Whether the wrapper frees the outputs (false for a view).
    bool owns() const noexcept { return static_cast<bool>(owned_); }

private:
    detail::Handle<ovpot_outputs_t, ovpot_outputs_free> owned_;
    const ovpot_outputs_t* view_;
};

/// One sample, a tensor per model input: owned (Sample(model), Sample::create, Dataset::get),
/// or a view of the one lent to a get_item callback. Input data is copied when set.
class Sample {
public:
    /// A view of a sample owned elsewhere (as given to get_item); never freed by the wrapper.
    explicit Sample(ovpot_sample_t* view) noexcept : view_(view) {}
    /// A new, empty sample for `model`: inputs are checked as they are set and can be set by
    /// index. Defined after Model.
    explicit Sample(const Model& model);
    /// A new, empty sample that knows no model (inputs by name only, checked when used).
    static Sample create() {
        ovpot_sample_t* s = nullptr;
        check(ovpot_sample_create(nullptr, &s));
        return adopt(s);
    }
    /// A new, empty sample for `model` (as Sample(model)).
    static Sample create(const Model& model) { return Sample(model); }
    /// Takes ownership of `owned` (from ovpot_sample_create or ovpot_dataset_get).
    static Sample adopt(ovpot_sample_t* owned) noexcept {
        Sample s(owned);
        s.owned_.reset(owned);
        return s;
    }
    Sample(Sample&& o) noexcept : owned_(std::move(o.owned_)), view_(std::exchange(o.view_, nullptr)) {}
    Sample& operator=(Sample&& o) noexcept {
        owned_ = std::move(o.owned_);
        view_ = std::exchange(o.view_, nullptr);
        return *this;
    }

    /// Copies `byte_size` bytes at `data` into input `name`.
    void set_input(const std::string& name, ovpot_element_type_e type, const std::vector<int64_t>& shape,
                   const void* data, size_t byte_size) {
        check(ovpot_sample_set_input(view_, name.c_str(), static_cast<uint32_t>(type), shape.data(),
                                     shape.size(), data, byte_size));
    }
    /// Copies `count` floats into input `name`.
    void set_input(const std::string& name, const std::vector<int64_t>& shape, const float* data, size_t count) {
        set_input(name, OVPOT_ELEMENT_TYPE_F32, shape, data, count * sizeof(float));
    }
    /// Copies `values` into input `name`, with the element type of T.
    template <typename T>
    void set_input(const std::string& name, const std::vector<int64_t>& shape, const std::vector<T>& values) {
        set_input(name, detail::element_type_of<T>(), shape, values.data(), values.size() * sizeof(T));
    }
    /// Input `index` of the model (a sample that knows its model).
    void set_input(size_t index, ovpot_element_type_e type, const std::vector<int64_t>& shape,
                   const void* data, size_t byte_size) {
        check(ovpot_sample_set_input_by_index(view_, index, static_cast<uint32_t>(type), shape.data(),
                                              shape.size(), data, byte_size));
    }
    void set_input(size_t index, const std::vector<int64_t>& shape, const float* data, size_t count) {
        set_input(index, OVPOT_ELEMENT_TYPE_F32, shape, data, count * sizeof(float));
    }
    template <typename T>
    void set_input(size_t index, const std::vector<int64_t>& shape, const std::vector<T>& values) {
        set_input(index, detail::element_type_of<T>(), shape, values.data(), values.size() * sizeof(T));
    }
    /// The number of inputs set so far.
    size_t size() const {
        size_t n = 0;
        check(ovpot_sample_size(view_, &n));
        return n;
    }
    const ovpot_sample_t* get() const noexcept { return view_; }
    ovpot_sample_t* get() noexcept { return view_; }
    /// Whether the wrapper frees the sample (false for a view).
    bool owns() const noexcept { return static_cast<bool>(owned_); }
    /// Gives up ownership: the caller frees the handle with ovpot_sample_free (NULL for a view).
    ovpot_sample_t* release() noexcept {
        if (!owned_) return nullptr;
        view_ = nullptr;
        return owned_.release();
    }

private:
    detail::Handle<ovpot_sample_t, ovpot_sample_free> owned_;
    ovpot_sample_t* view_;
};

/// An OpenVINO model: owned, or a view of the one lent to a model evaluator callback. Read-only;
/// one model may be used by several threads at once.
class Model {
public:
    /// Reads `xml` (+ `bin`, default: `xml` with .bin).
    static Model read(const std::string& xml, const std::string& bin = "") {
        ovpot_model_t* m = nullptr;
        check(ovpot_model_read(xml.c_str(), bin.empty() ? nullptr : bin.c_str(), &m));
        return Model(m);
    }
    /// Reads IR text and weights from memory (both copied).
    static Model read_from_memory(const char* xml, size_t xml_size, const uint8_t* weights, size_t weights_size) {
        ovpot_model_t* m = nullptr;
        check(ovpot_model_read_from_memory_buffer(xml, xml_size, weights, weights_size, &m));
        return Model(m);
    }
    static Model read_from_memory(const std::string& xml, const std::vector<uint8_t>& weights) {
        return read_from_memory(xml.data(), xml.size(), weights.data(), weights.size());
    }
    static Model read_from_memory(const IrBuffer& buffer) {
        const std::string_view xml = buffer.xml();
        const Bytes w = buffer.weights();
        return read_from_memory(xml.data(), xml.size(), w.data, w.size);
    }
    /// A view of a model owned elsewhere (as given to a model evaluator); never freed here.
    static Model view(const ovpot_model_t* model) noexcept {
        Model m(nullptr);
        m.ptr_ = model;
        return m;
    }
    /// Takes ownership of `owned`.
    explicit Model(ovpot_model_t* owned) noexcept : owned_(owned), ptr_(owned) {}
    Model(Model&& o) noexcept : owned_(std::move(o.owned_)), ptr_(std::exchange(o.ptr_, nullptr)) {}
    Model& operator=(Model&& o) noexcept {
        owned_ = std::move(o.owned_);
        ptr_ = std::exchange(o.ptr_, nullptr);
        return *this;
    }

    /// Writes IR v11 to `xml` and `bin` (default: `xml` with .bin), atomically.
    void save(const std::string& xml, const std::string& bin = "") const {
        check(ovpot_model_save(ptr_, xml.c_str(), bin.empty() ? nullptr : bin.c_str()));
    }
    /// Serializes the model into an IrBuffer (no copy of its bytes).
    IrBuffer save_to_memory_buffer() const {
        ovpot_ir_buffer_t* b = nullptr;
        check(ovpot_model_save_to_memory_buffer(ptr_, &b));
        return IrBuffer(b);
    }
    /// IR text and weights, copied out of an IrBuffer.
    std::pair<std::string, std::vector<uint8_t>> save_to_memory() const {
        const IrBuffer buf = save_to_memory_buffer();
        const std::string_view xml = buf.xml();
        const Bytes w = buf.weights();
        return {std::string(xml), std::vector<uint8_t>(w.begin(), w.end())};
    }
    std::string friendly_name() const {
        const char* n = nullptr;
        check(ovpot_model_get_friendly_name(ptr_, &n));
        return n;
    }
    size_t inputs_size() const {
        size_t n = 0;
        check(ovpot_model_inputs_size(ptr_, &n));
        return n;
    }
    size_t outputs_size() const {
        size_t n = 0;
        check(ovpot_model_outputs_size(ptr_, &n));
        return n;
    }
    std::string input_name(size_t i) const {
        const char* n = nullptr;
        check(ovpot_model_input_name(ptr_, i, &n));
        return n;
    }
    std::string output_name(size_t i) const {
        const char* n = nullptr;
        check(ovpot_model_output_name(ptr_, i, &n));
        return n;
    }
    ovpot_element_type_e input_element_type(size_t i) const {
        ovpot_element_type_e t;
        check(ovpot_model_input_element_type(ptr_, i, &t));
        return t;
    }
    ovpot_element_type_e output_element_type(size_t i) const {
        ovpot_element_type_e t;
        check(ovpot_model_output_element_type(ptr_, i, &t));
        return t;
    }
    /// The partial shape of input `i`.
    PartialShape input_shape(size_t i) const {
        const int64_t* d = nullptr;
        int64_t r = 0;
        check(ovpot_model_input_partial_shape(ptr_, i, &d, &r));
        return make_shape(d, r);
    }
    /// The partial shape of output `i`.
    PartialShape output_shape(size_t i) const {
        const int64_t* d = nullptr;
        int64_t r = 0;
        check(ovpot_model_output_partial_shape(ptr_, i, &d, &r));
        return make_shape(d, r);
    }
    /// Runs the built-in engine on one sample.
    Outputs infer(const Sample& sample) const {
        ovpot_outputs_t* o = nullptr;
        check(ovpot_model_infer(ptr_, sample.get(), &o));
        return Outputs(o);
    }
    const ovpot_model_t* get() const noexcept { return ptr_; }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }
    /// Whether the wrapper frees the model (false for a view).
    bool owns() const noexcept { return static_cast<bool>(owned_); }
    /// Gives up ownership: the caller frees the handle with ovpot_model_free (NULL for a view).
    ovpot_model_t* release() noexcept {
        if (!owned_) return nullptr;
        ptr_ = nullptr;
        return owned_.release();
    }

private:
    static PartialShape make_shape(const int64_t* d, int64_t r) {
        PartialShape s;
        if (r < 0) s.dynamic_rank = true;
        else s.dims.assign(d, d + r);
        return s;
    }
    detail::Handle<ovpot_model_t, ovpot_model_free> owned_;
    const ovpot_model_t* ptr_;
};

inline Sample::Sample(const Model& model) : view_(nullptr) {
    ovpot_sample_t* s = nullptr;
    check(ovpot_sample_create(model.get(), &s));
    owned_.reset(s);
    view_ = s;
}

/// One input of Dataset::from_arrays: the samples stacked on axis 0 (data is copied).
struct Array {
    std::string name;
    ovpot_element_type_e element_type = OVPOT_ELEMENT_TYPE_F32;
    std::vector<int64_t> shape;
    const void* data = nullptr;
    size_t byte_size = 0;
};

/// A source of samples: a callback, samples added in memory, stacked arrays, a folder of .npy
/// files or synthetic images.
class Dataset {
public:
    /// Fills `sample` with the inputs of sample `index`; an exception stops the run and comes out
    /// of the wrapper call that ran it.
    using GetItem = std::function<void(size_t index, Sample& sample)>;

    /// `length` samples produced by `get_item`, checked against `model`'s inputs as they are set.
    static Dataset from_callback(const Model& model, size_t length, GetItem get_item) {
        return make_callback(model.get(), length, std::move(get_item));
    }
    /// `length` samples produced by `get_item`, for no particular model (inputs by name only).
    static Dataset from_callback(size_t length, GetItem get_item) {
        return make_callback(nullptr, length, std::move(get_item));
    }
    /// An empty dataset; add samples with add().
    static Dataset in_memory() {
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create_in_memory(&d));
        return Dataset(d);
    }
    /// From arrays stacked on axis 0, one per model input: arrays [N, ...] give N samples [1, ...].
    static Dataset from_arrays(const std::vector<Array>& arrays) {
        std::vector<ovpot_array_t> c(arrays.size());
        for (size_t i = 0; i < arrays.size(); i++) {
            const Array& a = arrays[i];
            c[i] = ovpot_array_t{a.name.c_str(), static_cast<uint32_t>(a.element_type), a.shape.data(),
                                 a.shape.size(), a.data, a.byte_size};
        }
        return from_arrays(c.data(), c.size());
    }
    static Dataset from_arrays(const ovpot_array_t* arrays, size_t count) {
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create_from_arrays(arrays, count, &d));
        return Dataset(d);
    }
    /// A folder with `<input name>.npy` per model input (or per-sample / stacked files).
    static Dataset from_npy_folder(const Model& model, const std::string& path) {
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create_from_npy_folder(model.get(), path.c_str(), &d));
        return Dataset(d);
    }
    /// `count` synthetic images for `model`'s image input (data-free quantization: see
    /// Session::set_data_free); also written as PNG files to `save_dir` unless it is "".
    static Dataset synthetic(const Model& model, size_t count, uint64_t seed = 0, const std::string& save_dir = "") {
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create_synthetic(model.get(), count, seed, save_dir.empty() ? nullptr : save_dir.c_str(),
                                             &d));
        return Dataset(d);
    }
    /// Takes ownership of `owned`.
    explicit Dataset(ovpot_dataset_t* owned) noexcept : h_(owned) {}
    Dataset(Dataset&& o) noexcept : h_(std::move(o.h_)), state_(std::exchange(o.state_, nullptr)) {}
    Dataset& operator=(Dataset&& o) noexcept {
        h_ = std::move(o.h_);
        state_ = std::exchange(o.state_, nullptr);
        return *this;
    }

    /// Appends a copy of `sample` (in-memory datasets only).
    void add(const Sample& sample) { check(ovpot_dataset_add_sample(h_.get(), sample.get())); }
    size_t size() const {
        size_t n = 0;
        check(ovpot_dataset_size(h_.get(), &n));
        return n;
    }
    /// A copy of sample `index` (calling get_item for callback datasets, whose exception is
    /// rethrown here).
    Sample get(size_t index) const {
        detail::CallScope scope;
        ovpot_sample_t* s = nullptr;
        const ovpot_status_e st = ovpot_dataset_get(h_.get(), index, &s);
        Sample sample = Sample::adopt(s);
        scope.finish(st);
        return sample;
    }
    const ovpot_dataset_t* get() const noexcept { return h_.get(); }
    ovpot_dataset_t* get() noexcept { return h_.get(); }
    /// Rethrows an exception that get_item threw in a call made through the C API directly
    /// (wrapper calls rethrow it themselves), if any.
    void rethrow() const {
        if (state_ && state_->error) std::rethrow_exception(std::exchange(state_->error, nullptr));
    }

private:
    struct State {
        GetItem fn;
        std::exception_ptr error;
        static int call(void* ud, size_t index, ovpot_sample_t* s) noexcept {
            if (detail::stopping()) return 1;
            auto* st = static_cast<State*>(ud);
            try {
                Sample sample(s);
                st->fn(index, sample);
                return 0;
            } catch (...) {
                detail::capture(&st->error);
                return 1;
            }
        }
        static void destroy(void* ud) noexcept { delete static_cast<State*>(ud); }
    };
    static Dataset make_callback(const ovpot_model_t* model, size_t length, GetItem get_item) {
        auto state = std::make_unique<State>(State{std::move(get_item), nullptr});
        ovpot_dataset_t* d = nullptr;
        check(ovpot_dataset_create(model, length, &State::call, state.get(), &State::destroy, &d));
        Dataset ds(d);
        ds.state_ = state.release();  // now owned by the C dataset (freed by State::destroy)
        return ds;
    }
    detail::Handle<ovpot_dataset_t, ovpot_dataset_free> h_;
    State* state_ = nullptr;
};

/// A metric for accuracy-aware quantization: callbacks over outputs, a model evaluator, or the
/// built-in top-1 accuracy.
class Metric {
public:
    using Update = std::function<void(const Outputs& outputs, size_t index)>;
    using Value = std::function<double()>;
    using Reset = std::function<void()>;
    /// Judges a whole model (a view, valid during the call only) on the user's own data.
    using EvaluateModel = std::function<double(const Model& model)>;

    /// `update` accumulates the outputs of each sample, `value` gives the metric over them,
    /// `reset` (may be empty) forgets them.
    static Metric from_callbacks(Update update, Value value, Reset reset, bool higher_is_better = true) {
        const bool has_reset = static_cast<bool>(reset);
        auto state = std::make_unique<State>(State{std::move(update), std::move(value), std::move(reset), nullptr});
        ovpot_metric_t* m = nullptr;
        check(ovpot_metric_create(&State::update_cb, &State::value_cb, has_reset ? &State::reset_cb : nullptr,
                                  higher_is_better, state.get(), &State::destroy, &m));
        state.release();  // owned by the C metric
        return Metric(m);
    }
    /// NNCF's validation_fn: `evaluate` judges the FP32 model and each candidate.
    static Metric model_evaluator(EvaluateModel evaluate, bool higher_is_better = true) {
        auto state = std::make_unique<State>(State{nullptr, nullptr, nullptr, std::move(evaluate)});
        ovpot_metric_t* m = nullptr;
        check(ovpot_metric_create_model_evaluator(&State::evaluate_cb, higher_is_better, state.get(),
                                                  &State::destroy, &m));
        state.release();
        return Metric(m);
    }
    /// Top-1 accuracy of output `output_index` against `labels` (one per evaluation sample).
    static Metric top1_accuracy(const std::vector<int64_t>& labels, size_t output_index = 0) {
        ovpot_metric_t* m = nullptr;
        check(ovpot_metric_create_top1_accuracy(labels.data(), labels.size(), output_index, &m));
        return Metric(m);
    }
    /// Top-1 accuracy with the labels read from a .npy file ([N] or [N, 1]).
    static Metric top1_accuracy_from_npy(const std::string& labels_path, size_t output_index = 0) {
        ovpot_metric_t* m = nullptr;
        check(ovpot_metric_create_top1_accuracy_from_npy(labels_path.c_str(), output_index, &m));
        return Metric(m);
    }
    /// Takes ownership of `owned`.
    explicit Metric(ovpot_metric_t* owned) noexcept : h_(owned) {}

    /// The metric of `model` over every sample of `data` (built-in engine, exact IR arithmetic,
    /// this thread): reset, update per sample, value; a model evaluator is handed the model. To
    /// judge as the target CPU or OpenVINO computes, use Session::evaluate.
    double evaluate(const Model& model, const Dataset& data) {
        detail::CallScope scope;
        double v = 0;
        const ovpot_status_e st = ovpot_metric_evaluate(h_.get(), model.get(), data.get(), &v);
        scope.finish(st);
        return v;
    }
    ovpot_metric_t* get() noexcept { return h_.get(); }
    const ovpot_metric_t* get() const noexcept { return h_.get(); }

private:
    struct State {
        Update update;
        Value value;
        Reset reset;
        EvaluateModel evaluate;
        static int update_cb(void* ud, const ovpot_outputs_t* o, size_t index) noexcept {
            if (detail::stopping()) return 1;
            try {
                static_cast<State*>(ud)->update(Outputs(o), index);
                return 0;
            } catch (...) {
                detail::capture();
                return 1;
            }
        }
        static int value_cb(void* ud, double* v) noexcept {
            if (detail::stopping()) return 1;
            try {
                *v = static_cast<State*>(ud)->value();
                return 0;
            } catch (...) {
                detail::capture();
                return 1;
            }
        }
        static int reset_cb(void* ud) noexcept {
            if (detail::stopping()) return 1;
            try {
                static_cast<State*>(ud)->reset();
                return 0;
            } catch (...) {
                detail::capture();
                return 1;
            }
        }
        static int evaluate_cb(void* ud, const ovpot_model_t* model, double* v) noexcept {
            if (detail::stopping()) return 1;
            try {
                const Model view = Model::view(model);
                *v = static_cast<State*>(ud)->evaluate(view);
                return 0;
            } catch (...) {
                detail::capture();
                return 1;
            }
        }
        static void destroy(void* ud) noexcept { delete static_cast<State*>(ud); }
    };
    detail::Handle<ovpot_metric_t, ovpot_metric_free> h_;
};

/// Result of a run: the quantized model and whether accuracy control reached its target.
struct Result {
    Model model;
    bool accuracy_reached;
};

/// A quantization session over one model (which it copies).
class Session {
public:
    using Progress = ovpot::Progress;
    using Log = ovpot::Log;

    /// A session on `model`; `config_json` is POT or ovpot JSON ("" for defaults).
    explicit Session(const Model& model, const std::string& config_json = "") {
        ovpot_session_t* s = nullptr;
        check(ovpot_session_create(model.get(), config_json.empty() ? nullptr : config_json.c_str(), &s));
        h_.reset(s);
    }
    /// One POT parameter from its JSON text, e.g. ("stat_subset_size", "100").
    Session& set_option(const std::string& key, const std::string& json_value) {
        check(ovpot_session_set_option(h_.get(), key.c_str(), json_value.c_str()));
        return *this;
    }
    /// "performance", "mixed" or "accuracy".
    Session& set_preset(const std::string& preset) {
        check(ovpot_session_set_preset(h_.get(), preset.c_str()));
        return *this;
    }
    /// "ANY", "CPU", "CPU_SPR", "GPU", "NPU" or "GNA".
    Session& set_target_device(const std::string& device) {
        check(ovpot_session_set_target_device(h_.get(), device.c_str()));
        return *this;
    }
    /// The int8 arithmetic of the target CPU: "auto", "avx2" or "vnni" (see host_target_isa()).
    Session& set_target_isa(const std::string& isa) {
        check(ovpot_session_set_target_isa(h_.get(), isa.c_str()));
        return *this;
    }
    /// Where inferences run: "builtin" or "openvino" (`openvino_lib`: its C library, a file or
    /// folder; "" for $OVPOT_OPENVINO_LIB, the loaded copy or the loader's path). Errors come
    /// when the session runs.
    Session& set_backend(const std::string& backend, const std::string& openvino_lib = "") {
        check(ovpot_session_set_backend(h_.get(), backend.c_str(),
                                        openvino_lib.empty() ? nullptr : openvino_lib.c_str()));
        return *this;
    }
    /// Runs inferences in the application's own `ov_core_t*` (which must outlive the session).
    Session& set_openvino_core(void* ov_core, const std::string& openvino_lib = "") {
        check(ovpot_session_set_openvino_core(h_.get(), ov_core, openvino_lib.empty() ? nullptr : openvino_lib.c_str()));
        return *this;
    }
    /// Calibration samples used for statistics (POT's stat_subset_size).
    Session& set_subset_size(size_t n) {
        check(ovpot_session_set_subset_size(h_.get(), n));
        return *this;
    }
    /// Data-free quantization (with Dataset::synthetic).
    Session& set_data_free() {
        check(ovpot_session_set_data_free(h_.get()));
        return *this;
    }
    /// Accuracy control without labels: agreement with the FP32 model on confident samples;
    /// run_accuracy_aware then needs no metric.
    Session& set_annotation_free(bool enable = true, double conf_threshold = 0.6, size_t output_index = 0) {
        check(ovpot_session_set_annotation_free(h_.get(), enable ? 1 : 0, conf_threshold, output_index));
        return *this;
    }
    /// Largest metric drop accuracy-aware quantization accepts (POT's maximal_drop).
    Session& set_max_drop(double d) {
        check(ovpot_session_set_max_drop(h_.get(), d));
        return *this;
    }
    /// `progress` returns false to cancel; an empty function clears it.
    Session& on_progress(Progress progress) {
        if (!progress) {
            check(ovpot_session_set_progress_callback(h_.get(), nullptr, nullptr));
            progress_.reset();
            return *this;
        }
        auto p = std::make_unique<Progress>(std::move(progress));
        check(ovpot_session_set_progress_callback(h_.get(), &detail::progress_thunk, p.get()));
        progress_ = std::move(p);
        return *this;
    }
    /// Messages of `level` and more severe; an empty function clears it.
    Session& on_log(Log log, ovpot_log_level_e level = OVPOT_LOG_INFO) {
        if (!log) {
            check(ovpot_session_set_log_callback(h_.get(), nullptr, static_cast<uint32_t>(level), nullptr));
            log_.reset();
            return *this;
        }
        auto l = std::make_unique<Log>(std::move(log));
        check(ovpot_session_set_log_callback(h_.get(), &detail::log_thunk, static_cast<uint32_t>(level), l.get()));
        log_ = std::move(l);
        return *this;
    }
    /// The configuration as ovpot's flat JSON.
    std::string config_json() const {
        const char* j = nullptr;
        check(ovpot_session_config_json(h_.get(), &j));
        return j;
    }
    /// DefaultQuantization.
    Model run(const Dataset& calibration) {
        detail::CallScope scope;
        ovpot_model_t* q = nullptr;
        const ovpot_status_e st = ovpot_session_run(h_.get(), calibration.get(), &q);
        Model m(q);
        scope.finish(st);
        return m;
    }
    /// AccuracyAwareQuantization; accuracy_reached is false when the best model found is still
    /// above the maximal drop (OVPOT_ACCURACY_NOT_REACHED).
    Result run_accuracy_aware(const Dataset& calibration, const Dataset& evaluation, Metric& metric) {
        return accuracy_aware(calibration, evaluation, metric.get());
    }
    /// AccuracyAwareQuantization judged by agreement with the FP32 model (set_annotation_free).
    Result run_accuracy_aware(const Dataset& calibration, const Dataset& evaluation) {
        return accuracy_aware(calibration, evaluation, nullptr);
    }
    /// The per-layer analysis of quantizing with this session's settings (`ovpot analyze`), as
    /// JSON: statistics on `calibration`, output SQNRs on the first `samples` (0: automatic) samples of
    /// `evaluation` (nullptr: `calibration`), the smallest ignored scope reaching
    /// `target_sqnr_db` (NaN: the quantized model's SQNR + 3 dB). analysis_html() gives the page.
    std::string analyze(const Dataset& calibration, const Dataset* evaluation = nullptr, size_t samples = 0,
                        double target_sqnr_db = std::numeric_limits<double>::quiet_NaN()) {
        detail::CallScope scope;
        const char* j = nullptr;
        const ovpot_status_e st = ovpot_session_analyze(h_.get(), calibration.get(),
                                                        evaluation ? evaluation->get() : nullptr, samples,
                                                        target_sqnr_db, &j);
        scope.finish(st);
        return j;
    }
    /// The last analysis as one self-contained HTML page.
    std::string analysis_html() const {
        const char* h = nullptr;
        check(ovpot_session_analysis_html(h_.get(), &h));
        return h;
    }
    /// Runs `model` on one sample as `judge` computes it with this session's settings (the
    /// default: as its accuracy-aware run judges candidates).
    Outputs infer(const Model& model, const Sample& sample, ovpot_judge_e judge = OVPOT_JUDGE_DEFAULT) const {
        ovpot_outputs_t* o = nullptr;
        check(ovpot_session_infer(h_.get(), model.get(), sample.get(), static_cast<uint32_t>(judge), &o));
        return Outputs(o);
    }
    /// `metric` of `model` over every sample of `data`, the outputs computed as `judge` computes
    /// them with this session's settings; a model evaluator is handed the model.
    double evaluate(Metric& metric, const Model& model, const Dataset& data,
                    ovpot_judge_e judge = OVPOT_JUDGE_DEFAULT) const {
        detail::CallScope scope;
        double v = 0;
        const ovpot_status_e st = ovpot_session_evaluate(h_.get(), metric.get(), model.get(), data.get(),
                                                         static_cast<uint32_t>(judge), &v);
        scope.finish(st);
        return v;
    }
    /// What `judge` is with this session's settings, in words (the report's `judge` for the default).
    std::string judge_name(ovpot_judge_e judge = OVPOT_JUDGE_DEFAULT) const {
        const char* n = nullptr;
        check(ovpot_session_judge_name(h_.get(), static_cast<uint32_t>(judge), &n));
        return n;
    }
    /// The JSON report of the last run that returned a model.
    std::string report_json() const {
        const char* j = nullptr;
        check(ovpot_session_report_json(h_.get(), &j));
        return j;
    }
    ovpot_session_t* get() noexcept { return h_.get(); }
    const ovpot_session_t* get() const noexcept { return h_.get(); }

private:
    Result accuracy_aware(const Dataset& calibration, const Dataset& evaluation, ovpot_metric_t* metric) {
        detail::CallScope scope;
        ovpot_model_t* q = nullptr;
        const ovpot_status_e st =
            ovpot_session_run_accuracy_aware(h_.get(), calibration.get(), evaluation.get(), metric, &q);
        Model m(q);
        if (st == OVPOT_ACCURACY_NOT_REACHED) {
            scope.finish(OVPOT_OK);
            return Result{std::move(m), false};
        }
        scope.finish(st);
        return Result{std::move(m), true};
    }
    // Declared before the handle: the session is freed first.
    std::unique_ptr<Progress> progress_;
    std::unique_ptr<Log> log_;
    detail::Handle<ovpot_session_t, ovpot_session_free> h_;
};

/// Weight-only compression (NNCF's compress_weights).
class Compressor {
public:
    using Progress = ovpot::Progress;
    using Log = ovpot::Log;

    /// `options_json`: NNCF's names ({"mode": "int4_asym", "group_size": 128, ...}); "" for the
    /// defaults (int8_asym per channel).
    explicit Compressor(const std::string& options_json = "") {
        ovpot_compressor_t* c = nullptr;
        check(ovpot_compressor_create(options_json.empty() ? nullptr : options_json.c_str(), &c));
        h_.reset(c);
    }
    /// One step per weight; `progress` returns false to cancel; an empty function clears it.
    Compressor& on_progress(Progress progress) {
        if (!progress) {
            check(ovpot_compressor_set_progress_callback(h_.get(), nullptr, nullptr));
            progress_.reset();
            return *this;
        }
        auto p = std::make_unique<Progress>(std::move(progress));
        check(ovpot_compressor_set_progress_callback(h_.get(), &detail::progress_thunk, p.get()));
        progress_ = std::move(p);
        return *this;
    }
    /// Messages of `level` and more severe; an empty function clears it.
    Compressor& on_log(Log log, ovpot_log_level_e level = OVPOT_LOG_INFO) {
        if (!log) {
            check(ovpot_compressor_set_log_callback(h_.get(), nullptr, static_cast<uint32_t>(level), nullptr));
            log_.reset();
            return *this;
        }
        auto l = std::make_unique<Log>(std::move(log));
        check(ovpot_compressor_set_log_callback(h_.get(), &detail::log_thunk, static_cast<uint32_t>(level), l.get()));
        log_ = std::move(l);
        return *this;
    }
    /// Calibration data for AWQ, scale estimation and data-aware mixed precision: the first
    /// `subset_size` samples are copied now (`dataset` may go away afterwards).
    Compressor& set_calibration(const Dataset& dataset) {
        detail::CallScope scope;
        check(ovpot_compressor_set_calibration(h_.get(), dataset.get()));
        return *this;
    }
    /// Drops the calibration data.
    Compressor& clear_calibration() {
        check(ovpot_compressor_set_calibration(h_.get(), nullptr));
        return *this;
    }
    /// Where the statistics run: "builtin" or "openvino" (`openvino_lib` as for
    /// `Session::set_backend`).
    Compressor& set_backend(const std::string& backend, const std::string& openvino_lib = "") {
        check(ovpot_compressor_set_backend(h_.get(), backend.c_str(),
                                           openvino_lib.empty() ? nullptr : openvino_lib.c_str()));
        return *this;
    }
    /// The compressed model; `model` is not changed.
    Model compress(const Model& model) {
        detail::CallScope scope;
        ovpot_model_t* c = nullptr;
        const ovpot_status_e st = ovpot_compressor_compress_model(h_.get(), model.get(), &c);
        Model m(c);
        scope.finish(st);
        return m;
    }
    /// Compresses the model file `input_xml` into `output_xml`, streamed, written atomically.
    void compress_file(const std::string& input_xml, const std::string& output_xml) {
        detail::CallScope scope;
        const ovpot_status_e st = ovpot_compressor_compress_file(h_.get(), input_xml.c_str(), output_xml.c_str());
        scope.finish(st);
    }
    /// The JSON report of the last successful compression.
    std::string report_json() const {
        const char* j = nullptr;
        check(ovpot_compressor_report_json(h_.get(), &j));
        return j;
    }
    ovpot_compressor_t* get() noexcept { return h_.get(); }
    const ovpot_compressor_t* get() const noexcept { return h_.get(); }

private:
    std::unique_ptr<Progress> progress_;
    std::unique_ptr<Log> log_;
    detail::Handle<ovpot_compressor_t, ovpot_compressor_free> h_;
};

}  // namespace ovpot

#endif  // OVPOT_HPP
