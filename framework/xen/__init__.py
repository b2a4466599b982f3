"""Xen on the 970: hypercalls, domains, scheduling, memory, event channels, toolstack."""
