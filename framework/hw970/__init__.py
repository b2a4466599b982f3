"""The emulated IBM PowerPC 970 machine: cores, MMU, timebase, MPIC, memory, devtree.

Nothing here knows about Xen: the hypervisor plugs in through the `Core` callbacks.
"""
