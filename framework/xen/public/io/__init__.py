"""The public I/O interfaces (`public/io/`) shared by front ends, back ends and daemons.

Offsets and sizes are those a 64-bit big-endian (LP64, naturally aligned) PowerPC compiler
gives Xen 3.0.4's headers; each structure is declared once, as a `Layout`.
"""
