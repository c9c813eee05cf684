"""Simulated AIS-140 tracking units that connect over TCP, in several vendors' shapes.

The encoder is the simulator's own (not the driver's), so a mistake shared by
both would have to be made twice.
"""
