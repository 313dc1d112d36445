"""Loaders for each benchmark's own annotation files. Every loader raises BenchmarkDataError
naming the file on bad or missing input, and maps sign conventions once, here."""
