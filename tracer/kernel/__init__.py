"""The kernel edge: the C/Python ABI mirror, BTF offsets, loading the probes, reading their buffers.

The only code that imports bcc or needs root (probes.py, collector.py); abi.py
and btf.py are pure and tested without root.
"""
