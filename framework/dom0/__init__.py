"""dom0's user space: the toolstack (the domain builder), xend and its xm verbs, xenstored
and xenconsoled.

dom0's *kernel* side (blkback, netback, the bridge) is the guest kernel's, in
`framework.guest`; what lives here runs on top of it and reaches Xen only through hypercalls
made by that kernel, so it imports nothing of `framework.xen` but the guest ABI
(`framework.xen.public`).
"""
