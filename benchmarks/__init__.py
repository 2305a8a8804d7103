"""Benchmark bridgefs against the native directory, bindfs and sshfs on one machine.

Run ``python -m benchmarks.run --help`` from the repository root; BENCHMARKS.md explains the
workloads and how to read the figures.
"""
