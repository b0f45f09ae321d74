"""Helpers of the entry points: instantiation, rank-zero logging, config printing, results."""
