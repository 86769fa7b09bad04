//! Datasets from files: folders of `.npy`, images. (Being built.)
