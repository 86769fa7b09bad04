// Default quantization of an MNIST CNN with the C++ wrapper (include/ovpot.hpp).
//
//   quantize_cpp FIXTURE_DIR OUT.xml
//
// Exit: 0 done, 1 failure, 3 quantization unsupported in this build.
#include <cstdio>
#include <iostream>
#include <string>

#include "ovpot.hpp"
extern "C" {
#include "npy.h"
}

#ifndef OVPOT_EXAMPLES_ALLOW_UNSUPPORTED
#define OVPOT_EXAMPLES_ALLOW_UNSUPPORTED 0
#endif

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " FIXTURE_DIR OUT.xml\n";
        return 1;
    }
    const std::string dir = argv[1];
    try {
        ovpot::Model model = ovpot::Model::read(dir + "/model.xml");
        std::cout << "input " << model.input_name(0) << ", output " << model.output_name(0) << "\n";

        npy_array images;
        if (npy_read((dir + "/calib/input.npy").c_str(), &images) != 0) throw std::runtime_error("calib data");
        std::unique_ptr<npy_array, void (*)(npy_array*)> guard(&images, npy_free);
        const size_t per = 28 * 28;
        auto calib = ovpot::Dataset::from_callback(model, images.shape[0], [&](size_t i, ovpot::Sample& s) {
            s.set_input("input", {1, 1, 28, 28}, static_cast<const float*>(images.data) + i * per, per);
        });

        // Errors arrive as exceptions with the C status.
        try {
            ovpot::Model::read(dir + "/missing.xml");
            return 1;
        } catch (const ovpot::Error& e) {
            if (e.status() != OVPOT_IO_ERROR) return 1;
            std::cout << "expected error: " << e.what() << "\n";
        }
        // An exception in a data callback comes back out of the run.
        auto broken = ovpot::Dataset::from_callback(model, 4, [](size_t i, ovpot::Sample&) {
            throw std::runtime_error("no sample " + std::to_string(i));
        });

        ovpot::Session session(model);
        session.set_preset("performance").set_subset_size(100).on_progress(
            [](ovpot_stage_e stage, size_t done, size_t total) {
                if (done == total) std::cout << "stage " << stage << " done\n";
                return true;
            });
        try {
            session.run(broken);
            return 1;
        } catch (const std::runtime_error& e) {
            std::cout << "callback error: " << e.what() << "\n";
        }

        ovpot::Model quantized = session.run(calib);
        quantized.save(argv[2]);
        auto [xml, weights] = quantized.save_to_memory();
        ovpot::Model again = ovpot::Model::read_from_memory(xml, weights);
        std::cout << "quantized: " << xml.size() << " bytes of IR, " << weights.size() << " bytes of weights, "
                  << again.inputs_size() << " input\n";
        std::cout << "report: " << session.report_json().size() << " bytes\n";
    } catch (const ovpot::Error& e) {
        std::cerr << "ovpot error " << ovpot_status_name(e.status()) << ": " << e.what() << "\n";
        if (e.status() == OVPOT_UNSUPPORTED) return OVPOT_EXAMPLES_ALLOW_UNSUPPORTED ? 3 : 1;
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
