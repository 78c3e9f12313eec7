"""Reading sources: arrays, .npy files and dataset directories, and writing dataset directories."""
