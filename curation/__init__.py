"""Probing, decoding, scene detection, frame sampling, the dataset store and batch jobs."""

CODE_VERSION = "densevid-0.1.0"
