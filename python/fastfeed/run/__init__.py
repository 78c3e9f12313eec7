"""Running epochs: handing out a pipeline's blocks as batches, statistics, resumable state."""
