"""The run model: phases, the audit contract and its reconciliation, as plain values.

No storage and no HTTP: the store persists these values, the kernel moves them.
"""
