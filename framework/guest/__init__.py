"""The paravirtual guest kernel: PPC64 runtime, native routines and workloads."""
