"""Feeding a GPU: uploading blocks from pinned memory, or gathering from a copy of the source kept on the device."""
